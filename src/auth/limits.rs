//! Per-key budgets: a token bucket of requests, and a count of open
//! event streams.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::state::RateLimit;

/// The longest `Retry-After` a key's budget can ask for.
const MAX_WAIT: Duration = Duration::from_secs(86_400);

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The gate's settings a config reload replaces (the default rate limit
/// is the limiter's).
pub struct LiveSettings {
    pub allowed_origins: Vec<String>,
    pub request_timeout: Duration,
}

impl LiveSettings {
    /// The settings `server` gives (`allowed_origins`, `request_timeout_ms`).
    pub fn of(server: &crate::config::server::ServerSection) -> Self {
        Self {
            allowed_origins: server.allowed_origins.clone(),
            request_timeout: Duration::from_millis(server.request_timeout_ms),
        }
    }
}

/// The request budget of keys that carry none (`server.rate_limit_per_second`
/// and `server.rate_limit_burst`); `None` when the rate is 0 (unlimited).
pub fn default_rate(per_second: f64, burst: u64) -> Option<RateLimit> {
    (per_second > 0.0).then(|| RateLimit { per_second, burst: burst.clamp(1, u32::MAX as u64) as u32 })
}

/// Token buckets by key name. Keys are few (each was created by an admin),
/// so the map is bounded by the key count.
pub struct RateLimiter {
    /// Changed by a config reload (`set_default`).
    default: parking_lot::RwLock<Option<RateLimit>>,
    buckets: Mutex<HashMap<Arc<str>, Bucket>>,
}

impl RateLimiter {
    /// `default`: the budget of keys that carry none; `None` = unlimited.
    pub fn new(default: Option<RateLimit>) -> Self {
        Self { default: parking_lot::RwLock::new(default), buckets: Mutex::new(HashMap::new()) }
    }

    /// The budget of keys that carry none, from now on.
    pub fn set_default(&self, default: Option<RateLimit>) {
        *self.default.write() = default;
    }

    /// Takes one request from `key`'s bucket, or says how long until one
    /// is available.
    pub fn take(&self, key: &Arc<str>, own: Option<RateLimit>, now: Instant) -> Result<(), Duration> {
        let default = *self.default.read();
        let Some(limit) = own.or(default) else { return Ok(()) };
        if limit.per_second <= 0.0 {
            return Ok(());
        }
        let burst = f64::from(limit.burst.max(1));
        let mut buckets = self.buckets.lock();
        let bucket = buckets.entry(key.clone()).or_insert(Bucket { tokens: burst, at: now });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.per_second).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            // A tiny rate would ask for an absurd wait (or overflow a Duration).
            let wait = Duration::try_from_secs_f64((1.0 - bucket.tokens) / limit.per_second).unwrap_or(MAX_WAIT);
            Err(wait.min(MAX_WAIT))
        }
    }
}

/// Things a key holds at once (open event streams, requests in flight), by
/// key name, at most `max` each.
#[derive(Clone)]
pub struct StreamSlots {
    max: usize,
    open: Arc<Mutex<HashMap<Arc<str>, usize>>>,
}

/// One open stream; dropping it (the client went away, or the stream
/// ended) frees the slot.
pub struct StreamSlot {
    key: Arc<str>,
    open: Arc<Mutex<HashMap<Arc<str>, usize>>>,
}

impl StreamSlots {
    pub fn new(max: usize) -> Self {
        Self { max, open: Arc::default() }
    }

    pub fn try_open(&self, key: &Arc<str>) -> Option<StreamSlot> {
        let mut open = self.open.lock();
        let n = open.entry(key.clone()).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(StreamSlot { key: key.clone(), open: self.open.clone() })
    }

    #[cfg(test)]
    pub fn open_for(&self, key: &str) -> usize {
        self.open.lock().get(key).copied().unwrap_or(0)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock();
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let limiter = RateLimiter::new(Some(RateLimit { per_second: 2.0, burst: 3 }));
        let key: Arc<str> = "k".into();
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.take(&key, None, t0).unwrap();
        }
        let wait = limiter.take(&key, None, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 0.01, "{wait:?}");
        limiter.take(&key, None, t0 + Duration::from_millis(500)).unwrap();
        assert!(limiter.take(&key, None, t0 + Duration::from_millis(500)).is_err());
        // A key's own budget wins over the default; no budget = unlimited.
        let own = Some(RateLimit { per_second: 1.0, burst: 1 });
        let other: Arc<str> = "o".into();
        limiter.take(&other, own, t0).unwrap();
        assert!(limiter.take(&other, own, t0).is_err());
        let free = RateLimiter::new(None);
        assert!((0..1000).all(|_| free.take(&key, None, t0).is_ok()));
        // A vanishingly small rate waits at most a day, and never panics.
        let tiny = Some(RateLimit { per_second: 1e-300, burst: 1 });
        let slow: Arc<str> = "s".into();
        limiter.take(&slow, tiny, t0).unwrap();
        assert_eq!(limiter.take(&slow, tiny, t0).unwrap_err(), MAX_WAIT);
    }

    #[test]
    fn stream_slots_are_counted_per_key_and_freed_on_drop() {
        let slots = StreamSlots::new(2);
        let k: Arc<str> = "k".into();
        let a = slots.try_open(&k).unwrap();
        let _b = slots.try_open(&k).unwrap();
        assert!(slots.try_open(&k).is_none());
        assert!(slots.try_open(&"other".into()).is_some());
        drop(a);
        assert_eq!(slots.open_for("k"), 1);
        assert!(slots.try_open(&k).is_some());
    }
}
