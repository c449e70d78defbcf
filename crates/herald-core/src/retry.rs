//! What a failed attempt becomes: when to try again, or when to give up.
//!
//! Exponential backoff with "equal jitter" (half fixed, half random), so a
//! provider outage does not make every queued delivery return at the same
//! instant, while no retry comes sooner than half the nominal delay. A
//! provider's `Retry-After` replaces the computed delay: it is the provider
//! telling us when it will accept again.
//!
//! `ReconnectPolicy` applies the same backoff to a network source's
//! connection (Jetstream, Nostr relays): after a server restart, clients
//! spread out instead of returning together, and a connection that stayed
//! up long enough forgets the failures before it.

use std::time::Duration;

use rand::RngExt;

use crate::time::{UnixMillis, millis};

/// Retry limits; the defaults suit a push that is stale after a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay before the second attempt; doubles with every further attempt.
    pub base_delay: Duration,
    /// No computed delay grows beyond this.
    pub max_delay: Duration,
    /// Attempts after which a delivery is given up.
    pub max_attempts: u32,
    /// Age after which a delivery is given up, however few attempts it had.
    pub max_age: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10 * 60),
            // 1 s doubling to the 10-minute cap reaches a day of waiting after
            // about 150 attempts; 12 covers a provider outage of about an hour.
            max_attempts: 12,
            max_age: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// The decision for a delivery whose attempt asked to be retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryDecision {
    RetryAt(UnixMillis),
    GiveUp(String),
}

impl RetryPolicy {
    /// The nominal delay after attempt number `attempts` (1-based), before jitter.
    pub fn nominal_delay(&self, attempts: u32) -> Duration {
        let exponent = attempts.saturating_sub(1).min(31);
        self.base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay)
    }

    /// Decides what happens after a failed attempt.
    ///
    /// `ttl_secs` is the message's own lifetime: a message that would arrive
    /// after it expired is given up rather than retried.
    pub fn decide(
        &self,
        attempts: u32,
        created_at: UnixMillis,
        now: UnixMillis,
        retry_after: Option<Duration>,
        ttl_secs: Option<u32>,
    ) -> RetryDecision {
        if attempts >= self.max_attempts {
            return RetryDecision::GiveUp(format!("gave up after {attempts} attempts"));
        }
        let delay = match retry_after {
            Some(after) => after,
            None => equal_jitter(self.nominal_delay(attempts)),
        };
        let due_at = now.saturating_add(millis(delay));
        let mut deadline = created_at.saturating_add(millis(self.max_age));
        if let Some(ttl) = ttl_secs {
            deadline = deadline.min(created_at.saturating_add(i64::from(ttl) * 1000));
        }
        if due_at > deadline {
            return RetryDecision::GiveUp(format!(
                "next attempt would come {} s after the message expires",
                (due_at - deadline) / 1000
            ));
        }
        RetryDecision::RetryAt(due_at)
    }
}

/// `nominal` with equal jitter: between half of it and all of it.
pub fn equal_jitter(nominal: Duration) -> Duration {
    let half = nominal / 2;
    half + half.mul_f64(rand::rng().random_range(0.0..=1.0))
}

/// When a source reconnects after its connection failed or ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// Delay after the first failure; doubles with each failure in a row.
    pub base_delay: Duration,
    /// No delay grows beyond this.
    pub max_delay: Duration,
    /// A connection that stayed up this long was healthy: the failures
    /// before it are forgotten.
    pub healthy_after: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            base_delay: Duration::from_secs(1),
            // Six doublings from 1 s; a minute is as long as herald should
            // sit blind when a server comes back.
            max_delay: Duration::from_secs(60),
            // Longer than any retry delay, so a server that accepts and
            // drops at once never counts as healthy.
            healthy_after: Duration::from_secs(60),
        }
    }
}

impl ReconnectPolicy {
    /// The delay before the next attempt after `failures` failures in a row
    /// (1-based), before jitter.
    pub fn nominal_delay(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(31);
        self.base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay)
    }

    /// The nominal delay with equal jitter.
    pub fn delay(&self, failures: u32) -> Duration {
        equal_jitter(self.nominal_delay(failures))
    }

    /// Failures in a row after a connection that lasted `lasted`.
    pub fn failures_after(&self, failures: u32, lasted: Duration) -> u32 {
        if lasted >= self.healthy_after {
            1
        } else {
            failures.saturating_add(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: i64 = 3_600_000;

    #[test]
    fn delay_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.nominal_delay(1), Duration::from_secs(1));
        assert_eq!(p.nominal_delay(2), Duration::from_secs(2));
        assert_eq!(p.nominal_delay(5), Duration::from_secs(16));
        assert_eq!(p.nominal_delay(40), Duration::from_secs(600));
    }

    #[test]
    fn jitter_stays_between_half_and_whole_nominal_delay() {
        let p = RetryPolicy::default();
        let now = 10 * HOUR_MS;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let RetryDecision::RetryAt(due) = p.decide(4, now, now, None, None) else {
                panic!("gave up");
            };
            let delay = due - now;
            assert!((4_000..=8_000).contains(&delay), "delay {delay} ms");
            seen.insert(delay);
        }
        assert!(seen.len() > 10, "no jitter: {seen:?}");
    }

    #[test]
    fn retry_after_replaces_the_computed_delay() {
        let p = RetryPolicy::default();
        let d = p.decide(1, 0, 0, Some(Duration::from_secs(120)), None);
        assert_eq!(d, RetryDecision::RetryAt(120_000));
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let p = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        assert!(matches!(
            p.decide(2, 0, 0, None, None),
            RetryDecision::RetryAt(_)
        ));
        assert!(matches!(
            p.decide(3, 0, 0, None, None),
            RetryDecision::GiveUp(_)
        ));
    }

    #[test]
    fn gives_up_when_the_next_attempt_passes_max_age_or_ttl() {
        let p = RetryPolicy::default();
        let created = 0;
        let late = 24 * HOUR_MS - 500;
        assert!(matches!(
            p.decide(1, created, late, Some(Duration::from_secs(1)), None),
            RetryDecision::GiveUp(_)
        ));
        assert!(matches!(
            p.decide(1, created, 50_000, Some(Duration::from_secs(20)), Some(60)),
            RetryDecision::GiveUp(_)
        ));
        assert!(matches!(
            p.decide(1, created, 10_000, Some(Duration::from_secs(20)), Some(60)),
            RetryDecision::RetryAt(30_000)
        ));
    }

    #[test]
    fn reconnect_backoff_doubles_to_its_cap_with_equal_jitter() {
        let policy = ReconnectPolicy::default();
        assert_eq!(policy.nominal_delay(1), Duration::from_secs(1));
        assert_eq!(policy.nominal_delay(4), Duration::from_secs(8));
        assert_eq!(policy.nominal_delay(40), Duration::from_secs(60));
        let delays: std::collections::HashSet<_> = (0..100).map(|_| policy.delay(4)).collect();
        assert!(delays.len() > 10, "no jitter: {delays:?}");
        for delay in delays {
            assert!((Duration::from_secs(4)..=Duration::from_secs(8)).contains(&delay));
        }
    }

    #[test]
    fn reconnect_backoff_resets_after_a_healthy_connection_only() {
        let policy = ReconnectPolicy::default();
        assert_eq!(policy.failures_after(6, Duration::from_secs(2)), 7);
        assert_eq!(policy.failures_after(6, policy.healthy_after), 1);
    }
}
