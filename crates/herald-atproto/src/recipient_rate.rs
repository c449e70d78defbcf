//! Per-recipient rate limit for the count-like reasons: likes, reposts
//! (also via reposts) and follows.
//!
//! Each recipient has a token bucket (`herald_core::rate`, where the
//! reasons for the bucket are); this module says which reasons take a
//! token. Replies, mentions and quotes are conversation and are never
//! limited.

use std::time::{Duration, Instant};

use herald_core::rate::KeyedBuckets;
pub use herald_core::rate::RateLimit;

use crate::did::Did;
use crate::rules::Reason;

/// Bluesky's own app shows at most a few likes a minute as separate
/// pushes; 30 per 10 minutes keeps a busy account informed and a viral
/// post from sending thousands.
pub const DEFAULT_RATE_LIMIT: RateLimit = RateLimit {
    pushes: 30,
    window: Duration::from_secs(600),
};

#[derive(Debug)]
pub struct RecipientRates(KeyedBuckets<Did>);

impl RecipientRates {
    pub fn new(limit: RateLimit) -> Self {
        Self(KeyedBuckets::new(limit))
    }

    /// Whether a push for `reason` may go to `recipient` at `now`; counts it if so.
    pub fn allow(&mut self, recipient: &Did, reason: Reason, now: Instant) -> bool {
        !limited(reason) || self.0.allow(recipient, now)
    }

    /// Recipients tracked now.
    pub fn tracked(&self) -> usize {
        self.0.tracked()
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
