//! Per-token request rate limits: a token bucket per token, in this process's memory.
//!
//! Each token may make `rate` requests per second on average, in bursts of up to `burst`. Past
//! that the server answers 429 with `Retry-After`, which `arca` clients honour by waiting and
//! retrying. With several server processes each keeps its own buckets, so the limit applies per
//! process (a load balancer's fair spread makes that the limit divided by the processes seen).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Default sustained requests per second per token (a backup of small files makes a few hundred).
pub const DEFAULT_RATE: f64 = 1000.0;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of every token seen.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<i64, Bucket>>,
}

impl RateLimiter {
    /// A limiter of `rate` requests per second per token (0: unlimited), bursts of twice that.
    pub fn new(rate: f64) -> RateLimiter {
        RateLimiter { rate, burst: (rate * 2.0).max(1.0), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one request from `token_id`'s bucket; `Err(seconds)` to wait when it is empty.
    pub fn check(&self, token_id: i64) -> Result<(), f64> {
        self.check_at(token_id, Instant::now())
    }

    fn check_at(&self, token_id: i64, now: Instant) -> Result<(), f64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 100_000 {
            // Forget idle buckets now and then so memory stays bounded (a full bucket is the same
            // as no bucket).
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = buckets.entry(token_id).or_insert(Bucket { tokens: self.burst, at: now });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err((1.0 - b.tokens) / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bursts_then_the_sustained_rate() {
        let l = RateLimiter::new(10.0);
        let t0 = Instant::now();
        for _ in 0..20 {
            assert!(l.check_at(1, t0).is_ok());
        }
        let wait = l.check_at(1, t0).unwrap_err();
        assert!((wait - 0.1).abs() < 1e-9, "{wait}");
        // Another token has its own bucket.
        assert!(l.check_at(2, t0).is_ok());
        // After half a second, five more.
        let t1 = t0 + Duration::from_millis(500);
        for _ in 0..5 {
            assert!(l.check_at(1, t1).is_ok());
        }
        assert!(l.check_at(1, t1).is_err());
        assert!(RateLimiter::new(0.0).check(1).is_ok());
    }
}
