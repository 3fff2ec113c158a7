//! Upload throttling with a token bucket over bytes.
//!
//! The bucket goes into debt by what is about to be sent and the sender sleeps until the debt is
//! paid back at the configured rate, so over a transfer the average never exceeds the limit (plus
//! at most [`BURST`] of saved-up tokens). Two ways to apply it:
//! - [`pacer`]: inside an HTTP upload's body, 64 KiB at a time (`arca_store::Pacer`), which keeps
//!   the rate even within one large pack; replication to the provider uses this;
//! - [`Throttled`]: a [`Store`] wrapper that pays for a whole object before its `put`, for stores
//!   without a paced body (and it counts the bytes uploaded either way).
//!
//! Reads, listings and stats are not throttled: they are small, and the limit is about the
//! office's upstream bandwidth.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arca_store::{ObjectInfo, ObjectKind, Result, Store};

/// Tokens an idle bucket may save up, in seconds of the rate.
pub const BURST: Duration = Duration::from_millis(100);

/// A token bucket over bytes.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    /// (tokens, when they were counted); tokens may be negative (debt).
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A bucket refilling at `bytes_per_sec`, starting empty.
    pub fn new(bytes_per_sec: u64) -> TokenBucket {
        let rate = bytes_per_sec as f64;
        TokenBucket { rate, capacity: rate * BURST.as_secs_f64(), state: Mutex::new((0.0, Instant::now())) }
    }

    /// Takes `n` tokens; returns how long the caller must wait before using them.
    pub fn take(&self, n: u64) -> Duration {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(s.1).as_secs_f64() * self.rate;
        let tokens = (s.0 + refill).min(self.capacity) - n as f64;
        *s = (tokens, now);
        if tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-tokens / self.rate)
        }
    }
}

/// A pacer for `arca_store::HttpStore::with_pacer` drawing on `bucket`.
pub fn pacer(bucket: Arc<TokenBucket>) -> arca_store::Pacer {
    arca_store::Pacer(Arc::new(move |n| std::thread::sleep(bucket.take(n as u64))))
}

/// A store whose uploads are paced by a bucket (none: unthrottled) and counted.
pub struct Throttled<S> {
    inner: S,
    bucket: Option<TokenBucket>,
    /// Bytes uploaded through this store.
    pub uploaded: AtomicU64,
}

impl<S: Store> Throttled<S> {
    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Wraps `inner`; `limit` in bytes per second.
    pub fn new(inner: S, limit: Option<u64>) -> Throttled<S> {
        Throttled { inner, bucket: limit.map(TokenBucket::new), uploaded: AtomicU64::new(0) }
    }
}

impl<S: Store> Store for Throttled<S> {
    fn put(&self, kind: ObjectKind, name: &str, bytes: &[u8]) -> Result<()> {
        if let Some(b) = &self.bucket {
            std::thread::sleep(b.take(bytes.len() as u64));
        }
        self.inner.put(kind, name, bytes)?;
        self.uploaded.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }
    fn get(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        self.inner.get(kind, name)
    }
    fn get_range(&self, kind: ObjectKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        self.inner.get_range(kind, name, offset, length)
    }
    fn stat(&self, kind: ObjectKind, name: &str) -> Result<Option<u64>> {
        self.inner.stat(kind, name)
    }
    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>> {
        self.inner.list(kind)
    }
    fn delete(&self, kind: ObjectKind, name: &str) -> Result<()> {
        self.inner.delete(kind, name)
    }
    fn create(&self) -> Result<()> {
        self.inner.create()
    }
    fn location(&self) -> String {
        self.inner.location()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_charges_by_size_and_saves_little() {
        let b = TokenBucket::new(1_000_000);
        let first = b.take(500_000);
        assert!(first > Duration::from_millis(450) && first <= Duration::from_millis(500), "{first:?}");
        // Debt accumulates: the next 500 kB waits for both.
        let second = b.take(500_000);
        assert!(second > Duration::from_millis(950), "{second:?}");
        // An idle bucket saves at most BURST worth.
        let idle = TokenBucket::new(1_000_000);
        std::thread::sleep(Duration::from_millis(300));
        let w = idle.take(300_000);
        assert!(w >= Duration::from_millis(190), "saved more than the burst allows: {w:?}");
    }

    #[test]
    fn throttled_puts_keep_to_the_rate() {
        let dir = tempfile::tempdir().unwrap();
        let store = arca_store::LocalStore::new(dir.path());
        store.create().unwrap();
        let t = Throttled::new(store, Some(4_000_000));
        let started = Instant::now();
        for i in 0..8 {
            t.put(ObjectKind::Lock, &format!("l{i}"), &vec![0u8; 500_000]).unwrap();
        }
        let rate = 4_000_000.0 / started.elapsed().as_secs_f64();
        assert!((4_000_000.0 * 0.8..=4_000_000.0 * 1.1).contains(&rate), "rate {rate}");
        assert_eq!(t.uploaded.load(Ordering::Relaxed), 4_000_000);
    }
}
