//! A keyed rate limiter (GCRA, the algorithm behind `governor`, which
//! Mostro's push server uses) with a hard bound on the keys it remembers.
//!
//! Each key holds one instant, its theoretical arrival time: a request is
//! allowed when pushing that instant one emission interval (a minute over
//! the rate) further stays within `burst` intervals of now. A key whose
//! instant has passed is indistinguishable from a key never seen, so it is
//! forgotten: a sweep drops such keys once a minute, or sooner when the map
//! is full. The bound is what keeps the limiter from being a memory leak
//! proportional to the number of addresses or pubkeys an attacker can make
//! up; a new key that arrives while the map is full of live keys is refused
//! (fail closed) rather than let through or allowed to evict a key that is
//! being limited.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How often stale keys are dropped when nothing forces it sooner.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Closest two sweeps of a full map may be: a sweep walks every key, and
/// a flood of new keys must not make every request pay for one.
const FULL_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

/// Requests per minute, and how many may come at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

/// A refusal, with how long until the same key would be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
}

impl Limited {
    /// `Retry-After` in whole seconds, rounded up so a client that waits
    /// exactly that long is allowed, and never 0.
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs();
        let rounded = if self.retry_after.subsec_nanos() > 0 {
            secs + 1
        } else {
            secs
        };
        rounded.max(1)
    }
}

struct Keys<K> {
    arrival: HashMap<K, Instant>,
    last_sweep: Instant,
}

pub struct KeyedRateLimiter<K> {
    interval: Duration,
    /// How far ahead of now a key's arrival time may run: `burst` intervals.
    tolerance: Duration,
    max_keys: usize,
    keys: Mutex<Keys<K>>,
}

impl<K: Hash + Eq> KeyedRateLimiter<K> {
    /// `rate` must be at least 1 per minute with a burst of at least 1
    /// (the configuration checks it); `max_keys` bounds the memory.
    pub fn new(rate: Rate, max_keys: usize, now: Instant) -> Self {
        let interval = MINUTE / rate.per_minute.max(1);
        Self {
            interval,
            tolerance: interval * rate.burst.max(1),
            max_keys: max_keys.max(1),
            keys: Mutex::new(Keys {
                arrival: HashMap::new(),
                last_sweep: now,
            }),
        }
    }

    /// Counts one request for `key` at `now`, or says how long to wait.
    pub fn check(&self, key: K, now: Instant) -> Result<(), Limited> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let since_sweep = now.saturating_duration_since(keys.last_sweep);
        let full = keys.arrival.len() >= self.max_keys;
        if since_sweep >= SWEEP_INTERVAL || (full && since_sweep >= FULL_SWEEP_INTERVAL) {
            keys.arrival.retain(|_, at| *at > now);
            keys.last_sweep = now;
        }
        let known = keys.arrival.get(&key).copied();
        if known.is_none() && keys.arrival.len() >= self.max_keys {
            return Err(Limited {
                retry_after: FULL_SWEEP_INTERVAL,
            });
        }
        let next = known.map_or(now, |at| at.max(now)) + self.interval;
        let ahead = next - now;
        if ahead > self.tolerance {
            return Err(Limited {
                retry_after: ahead - self.tolerance,
            });
        }
        keys.arrival.insert(key, next);
        Ok(())
    }

    /// Keys remembered now (expired ones included until the next sweep).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.keys.lock().unwrap().arrival.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THIRTY_BURST_TEN: Rate = Rate {
        per_minute: 30,
        burst: 10,
    };

    #[test]
    fn allows_the_burst_then_one_request_per_interval() {
        let start = Instant::now();
        let limiter = KeyedRateLimiter::new(THIRTY_BURST_TEN, 100, start);
        for _ in 0..10 {
            limiter.check("a", start).unwrap();
        }
        let refused = limiter.check("a", start).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(2));
        assert_eq!(refused.retry_after_secs(), 2);
        limiter
            .check("b", start)
            .expect("another key has its own budget");
        limiter
            .check("a", start + Duration::from_secs(2))
            .expect("one interval later, one more");
        assert!(limiter.check("a", start + Duration::from_secs(2)).is_err());
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        let at = |ms| Limited {
            retry_after: Duration::from_millis(ms),
        };
        assert_eq!(at(1).retry_after_secs(), 1);
        assert_eq!(at(1_000).retry_after_secs(), 1);
        assert_eq!(at(1_001).retry_after_secs(), 2);
        assert_eq!(at(0).retry_after_secs(), 1);
    }

    #[test]
    fn refused_requests_do_not_use_up_the_budget() {
        let start = Instant::now();
        let limiter = KeyedRateLimiter::new(THIRTY_BURST_TEN, 100, start);
        for _ in 0..10 {
            limiter.check("a", start).unwrap();
        }
        for _ in 0..100 {
            assert!(limiter.check("a", start).is_err());
        }
        limiter.check("a", start + Duration::from_secs(2)).unwrap();
    }

    #[test]
    fn memory_stays_bounded_and_a_full_map_refuses_new_keys() {
        let start = Instant::now();
        let limiter = KeyedRateLimiter::new(THIRTY_BURST_TEN, 3, start);
        for key in 0..3 {
            limiter.check(key, start).unwrap();
        }
        assert!(
            limiter.check(3, start).is_err(),
            "live keys are not evicted"
        );
        limiter
            .check(0, start)
            .expect("known keys keep their budget");
        // After one interval keys 1 and 2 are back to a full bucket; key 0
        // (two requests) is not yet.
        let later = start + Duration::from_secs(2);
        limiter.check(3, later).expect("a sweep made room");
        assert_eq!(limiter.len(), 2);
    }

    #[test]
    fn stale_keys_are_swept_once_a_minute() {
        let start = Instant::now();
        let limiter = KeyedRateLimiter::new(THIRTY_BURST_TEN, 1_000, start);
        for key in 0..100 {
            limiter.check(key, start).unwrap();
        }
        limiter.check(1_000, start + SWEEP_INTERVAL).unwrap();
        assert_eq!(limiter.len(), 1);
    }
}
