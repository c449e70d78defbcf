//! Per-recipient rate limit for the count-like reasons: likes, reposts
//! (also via reposts) and follows.
//!
//! A post that goes viral brings its author thousands of likes an hour;
//! pushing each one would drain the phone's battery and the provider's
//! quota for no news the collapsed notification does not already carry.
//! Each recipient has a token bucket: `pushes` tokens, refilled evenly
//! over `window`. Replies, mentions and quotes are conversation and are
//! never limited.
//!
//! Memory stays bounded by the recipients who were told something
//! recently: a bucket that has refilled completely says nothing a new one
//! would not, so full buckets are swept out once per window.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::did::Did;
use crate::rules::Reason;

/// How many count-like pushes a recipient may get per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// 0 switches the limit off.
    pub pushes: u32,
    pub window: Duration,
}

impl RateLimit {
    /// Bluesky's own app shows at most a few likes a minute as separate
    /// pushes; 30 per 10 minutes keeps a busy account informed and a viral
    /// post from sending thousands.
    pub const DEFAULT: RateLimit = RateLimit {
        pushes: 30,
        window: Duration::from_secs(600),
    };
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Debug)]
pub struct RecipientRates {
    limit: RateLimit,
    buckets: HashMap<Did, Bucket>,
    last_sweep: Option<Instant>,
}

impl RecipientRates {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: HashMap::new(),
            last_sweep: None,
        }
    }

    /// Whether a push for `reason` may go to `recipient` at `now`; counts it if so.
    pub fn allow(&mut self, recipient: &Did, reason: Reason, now: Instant) -> bool {
        if self.limit.pushes == 0 || !limited(reason) {
            return true;
        }
        self.sweep(now);
        let capacity = f64::from(self.limit.pushes);
        let per_second = capacity / self.limit.window.as_secs_f64().max(f64::MIN_POSITIVE);
        let bucket = self.buckets.entry(recipient.clone()).or_insert(Bucket {
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

    /// Recipients tracked now.
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

/// The count-like reasons; conversation is never limited.
fn limited(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::Like
            | Reason::Repost
            | Reason::LikeViaRepost
            | Reason::RepostViaRepost
            | Reason::Follow
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{ALICE, BOB, did};

    fn rates(pushes: u32, secs: u64) -> RecipientRates {
        RecipientRates::new(RateLimit {
            pushes,
            window: Duration::from_secs(secs),
        })
    }

    #[test]
    fn a_burst_of_likes_stops_at_the_limit_and_refills_over_the_window() {
        let mut r = rates(3, 60);
        let t0 = Instant::now();
        let bob = did(BOB);
        let allowed = (0..10).filter(|_| r.allow(&bob, Reason::Like, t0)).count();
        assert_eq!(allowed, 3);
        // One token back every 20 s, refilling while refused too.
        assert!(!r.allow(&bob, Reason::Follow, t0 + Duration::from_secs(19)));
        let t40 = t0 + Duration::from_secs(40);
        assert!(r.allow(&bob, Reason::Repost, t40));
        assert!(r.allow(&bob, Reason::Repost, t40));
        assert!(!r.allow(&bob, Reason::Repost, t40));
    }

    #[test]
    fn conversation_is_never_limited_and_recipients_are_separate() {
        let mut r = rates(1, 60);
        let t0 = Instant::now();
        assert!(r.allow(&did(BOB), Reason::Like, t0));
        assert!(!r.allow(&did(BOB), Reason::Like, t0));
        for reason in [
            Reason::Reply,
            Reason::Mention,
            Reason::Quote,
            Reason::Verified,
        ] {
            assert!(r.allow(&did(BOB), reason, t0), "{reason:?}");
        }
        assert!(r.allow(&did(ALICE), Reason::Like, t0));
    }

    #[test]
    fn zero_switches_it_off() {
        let mut r = rates(0, 60);
        let t0 = Instant::now();
        assert!((0..1000).all(|_| r.allow(&did(BOB), Reason::Like, t0)));
        assert_eq!(r.tracked(), 0);
    }

    #[test]
    fn buckets_full_again_are_forgotten() {
        let mut r = rates(5, 60);
        let t0 = Instant::now();
        r.allow(&did(BOB), Reason::Like, t0);
        r.allow(&did(ALICE), Reason::Like, t0 + Duration::from_secs(50));
        assert_eq!(r.tracked(), 2);
        // A window after bob's last push, his bucket is full and goes.
        r.allow(&did(ALICE), Reason::Like, t0 + Duration::from_secs(70));
        assert_eq!(r.tracked(), 1);
    }
}
