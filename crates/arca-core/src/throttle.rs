//! A byte-rate limit shared by threads (`restore --limit-rate`): a caller asks for `n` bytes and
//! sleeps until the average since the start falls back under the limit.
//!
//! Concurrency: any number of threads may call [`Throttle::take`]; the lock is held only to add.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A rate limit in bytes per second; `None` inside means unlimited.
#[derive(Debug)]
pub struct Throttle {
    limit: Option<u64>,
    start: Instant,
    taken: Mutex<u64>,
}

impl Throttle {
    /// A limit of `bytes_per_second` (`None` or 0: no limit).
    pub fn new(bytes_per_second: Option<u64>) -> Throttle {
        Throttle { limit: bytes_per_second.filter(|&b| b > 0), start: Instant::now(), taken: Mutex::new(0) }
    }

    /// Accounts for `n` bytes, sleeping as long as needed to stay under the limit on average.
    pub fn take(&self, n: u64) {
        let Some(limit) = self.limit else { return };
        let total = {
            let mut t = self.taken.lock().unwrap_or_else(|p| p.into_inner());
            *t += n;
            *t
        };
        let due = Duration::from_secs_f64(total as f64 / limit as f64);
        let elapsed = self.start.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_never_sleeps_and_a_limit_does() {
        let t = Throttle::new(None);
        let s = Instant::now();
        t.take(u64::MAX / 2);
        assert!(s.elapsed() < Duration::from_secs(1));
        // 100 kB at 1 MB/s must take at least 0.1 s (a lower bound: sleeping never ends early).
        let t = Throttle::new(Some(1_000_000));
        let s = Instant::now();
        t.take(50_000);
        t.take(50_000);
        assert!(s.elapsed() >= Duration::from_millis(100));
    }
}
