//! Password hashing (Argon2id) off the async workers, on a bounded pool.
//!
//! One Argon2id check costs tens of milliseconds of CPU and 19 MiB of memory. Run on the async
//! workers, a flood of wrong sign-ins starves every other request (issue 12: 20 threads of wrong
//! sign-ins made a 0.5 s backup take 11 s). Here at most [`PARALLEL`] hashes run at once, on
//! blocking threads, and at most [`QUEUE`] more wait; past that a sign-in is refused at once with
//! "busy, retry" instead of queueing without bound. Backups, which authenticate by token (a
//! BLAKE3 lookup, no Argon2), never wait for this pool.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use tokio::sync::Semaphore;

/// Hashes computed at once: one core's worth on the 2-core machines servers start on, leaving the
/// rest to backups and restores.
pub const PARALLEL: usize = 1;

/// Sign-ins that may wait for a hash; more are refused as busy.
pub const QUEUE: usize = 16;

/// The pool is full: the caller should answer 503 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the server is busy checking other sign-ins; retry in a second")]
pub struct Busy;

/// A bounded pool for password work.
pub struct PasswordPool {
    running: Semaphore,
    admitted: AtomicUsize,
    parallel: usize,
    queue: usize,
}

impl PasswordPool {
    /// A pool running `parallel` hashes at once with `queue` more waiting.
    pub fn new(parallel: usize, queue: usize) -> PasswordPool {
        PasswordPool { running: Semaphore::new(parallel.max(1)), admitted: AtomicUsize::new(0), parallel, queue }
    }

    /// The process's pool, which every sign-in uses.
    pub fn global() -> &'static PasswordPool {
        static POOL: OnceLock<PasswordPool> = OnceLock::new();
        POOL.get_or_init(|| PasswordPool::new(PARALLEL, QUEUE))
    }

    /// Runs `f` (a hash or a check) on the pool.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, Busy> {
        if self.admitted.fetch_add(1, Ordering::AcqRel) >= self.parallel.max(1) + self.queue {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            return Err(Busy);
        }
        struct Admitted<'a>(&'a AtomicUsize);
        impl Drop for Admitted<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let _admitted = Admitted(&self.admitted);
        let _permit = self.running.acquire().await.map_err(|_| Busy)?;
        tokio::task::spawn_blocking(f).await.map_err(|_| Busy)
    }

    /// Whether `password` matches the PHC string `phc`, checked on the pool.
    pub async fn verify(&self, password: &str, phc: &str) -> Result<bool, Busy> {
        let (password, phc) = (password.to_string(), phc.to_string());
        self.run(move || crate::db::accounts::verify_password(&password, &phc)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_is_refused_beyond_the_queue_and_the_workers_stay_free() {
        let phc = crate::db::accounts::hash_password("correct horse battery").unwrap();
        let pool = std::sync::Arc::new(PasswordPool::new(PARALLEL, QUEUE));
        let mut tasks = Vec::new();
        for _ in 0..(PARALLEL + QUEUE + 20) {
            let phc = phc.clone();
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move { pool.verify("wrong", &phc).await }));
        }
        // While the pool works, an async worker still answers at once.
        let started = std::time::Instant::now();
        tokio::task::yield_now().await;
        assert!(started.elapsed() < std::time::Duration::from_millis(50));
        let mut busy = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(ok) => assert!(!ok),
                Err(Busy) => busy += 1,
            }
        }
        assert!(busy >= 20, "only {busy} of the flood were refused");
        assert_eq!(pool.verify("correct horse battery", &phc).await, Ok(true));
    }
}
