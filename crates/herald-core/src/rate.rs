//! A token bucket per key: how sources limit the pushes one recipient gets.
//!
//! A post that goes viral brings its author thousands of reactions an hour;
//! pushing each one would drain the phone's battery and the provider's
//! quota for no news the collapsed notification does not already carry.
//! Each key (a recipient, in the network's own terms) has a bucket of
//! `pushes` tokens, refilled evenly over `window`; which pushes take a
//! token (likes and reactions, never conversation) is the network's rules'
//! choice, not this module's.
//!
//! Memory stays bounded by the keys that were counted recently: a bucket
//! that has refilled completely says nothing a new one would not, so full
//! buckets are swept out once per window.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How many pushes one key may get per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// 0 switches the limit off.
    pub pushes: u32,
    pub window: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Debug)]
pub struct KeyedBuckets<K> {
    limit: RateLimit,
    buckets: HashMap<K, Bucket>,
    last_sweep: Option<Instant>,
}

impl<K: Hash + Eq + Clone> KeyedBuckets<K> {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: HashMap::new(),
            last_sweep: None,
        }
    }

    /// Whether one more push may go to `key` at `now`; takes its token if so.
    pub fn allow(&mut self, key: &K, now: Instant) -> bool {
        if self.limit.pushes == 0 {
            return true;
        }
        self.sweep(now);
        let capacity = f64::from(self.limit.pushes);
        let per_second = capacity / self.limit.window.as_secs_f64().max(f64::MIN_POSITIVE);
        let bucket = self.buckets.entry(key.clone()).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let refill = now.saturating_duration_since(bucket.updated).as_secs_f64() * per_second;
        bucket.tokens = (bucket.tokens + refill).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Keys tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    /// Drops the buckets that would be full by now, once per window.
    fn sweep(&mut self, now: Instant) {
        let due = self
            .last_sweep
            .is_none_or(|last| now.saturating_duration_since(last) >= self.limit.window);
        if !due {
            return;
        }
        self.last_sweep = Some(now);
        let window = self.limit.window;
        self.buckets
            .retain(|_, b| now.saturating_duration_since(b.updated) < window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(pushes: u32, secs: u64) -> KeyedBuckets<&'static str> {
        KeyedBuckets::new(RateLimit {
            pushes,
            window: Duration::from_secs(secs),
        })
    }

    #[test]
    fn a_burst_stops_at_the_limit_and_refills_evenly_over_the_window() {
        let mut b = buckets(3, 60);
        let t0 = Instant::now();
        assert_eq!((0..10).filter(|_| b.allow(&"bob", t0)).count(), 3);
        // One token back every 20 s, refilling while refused too.
        assert!(!b.allow(&"bob", t0 + Duration::from_secs(19)));
        let t40 = t0 + Duration::from_secs(40);
        assert!(b.allow(&"bob", t40));
        assert!(b.allow(&"bob", t40));
        assert!(!b.allow(&"bob", t40));
    }

    #[test]
    fn each_key_has_its_own_bucket() {
        let mut b = buckets(1, 60);
        let t0 = Instant::now();
        assert!(b.allow(&"bob", t0));
        assert!(!b.allow(&"bob", t0));
        assert!(b.allow(&"alice", t0));
    }

    #[test]
    fn zero_pushes_switches_the_limit_off_and_tracks_nobody() {
        let mut b = buckets(0, 60);
        let t0 = Instant::now();
        assert!((0..1000).all(|_| b.allow(&"bob", t0)));
        assert_eq!(b.tracked(), 0);
    }

    #[test]
    fn buckets_full_again_are_forgotten() {
        let mut b = buckets(5, 60);
        let t0 = Instant::now();
        b.allow(&"bob", t0);
        b.allow(&"alice", t0 + Duration::from_secs(50));
        assert_eq!(b.tracked(), 2);
        // A window after bob's last push, his bucket is full and goes.
        b.allow(&"alice", t0 + Duration::from_secs(70));
        assert_eq!(b.tracked(), 1);
    }
}
