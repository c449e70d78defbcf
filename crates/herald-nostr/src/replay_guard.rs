//! The NIP-98 headers already accepted: each auth event once.
//!
//! - **Why.** `nip98::verify` checks what holds for every copy of a
//!   header (URL, method, body hash, time, signature), so whoever saw one
//!   (a log, a proxy, a shoulder) could send the same request again while
//!   it is fresh, for instance re-registering a device its owner had just
//!   removed. The guard remembers each accepted event id and refuses it a
//!   second time.
//! - **Bounded in time.** An id is remembered until its `created_at` plus
//!   `MAX_CLOCK_SKEW_SECS`; after that `verify` refuses the header as
//!   stale anyway, so the entry goes.
//! - **Bounded in size.** At most [`MAX_REMEMBERED_AUTH`] ids at once.
//!   When full, a new header is refused with [`NostrError::AuthReplayGuardFull`]
//!   (the API answers 503, try again) rather than forgetting an id that is
//!   still fresh, which would reopen the replay, or growing without limit.
//!   Only headers that passed `verify` reach the guard, so filling it
//!   takes genuine, fresh, signed requests for herald's own URLs.
//! - Identical requests signed within the same second carry the same id
//!   (NIP-98 events have no nonce): a client retrying must sign again,
//!   a second later at the earliest.

use std::collections::{BTreeSet, HashSet};
use std::sync::Mutex;

use crate::error::NostrError;
use crate::event::EventId;
use crate::nip98::{Authorized, MAX_CLOCK_SKEW_SECS};
use crate::pubkey::PublicKey;

/// Ids remembered at once: 100,000 registrations within any two minutes
/// (over 800 a second, far above what a push gateway sees), about 10 MB.
pub const MAX_REMEMBERED_AUTH: usize = 100_000;

#[derive(Debug)]
pub struct ReplayGuard {
    remembered: Mutex<Remembered>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Remembered {
    ids: HashSet<EventId>,
    /// (the last second the id would pass `verify`, id), soonest first.
    expiry: BTreeSet<(u64, EventId)>,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        Self::new(MAX_REMEMBERED_AUTH)
    }
}

impl ReplayGuard {
    pub fn new(capacity: usize) -> Self {
        Self {
            remembered: Mutex::default(),
            capacity,
        }
    }

    /// The signer of `auth` if its id was not accepted before; the id is
    /// remembered from now until it goes stale. `now` is Unix seconds.
    pub fn admit(&self, auth: &Authorized, now: u64) -> Result<PublicKey, NostrError> {
        let mut r = self.remembered.lock().unwrap_or_else(|p| p.into_inner());
        r.forget_stale(now);
        if r.ids.contains(&auth.id) {
            return Err(NostrError::AuthReplayed);
        }
        if r.ids.len() >= self.capacity {
            return Err(NostrError::AuthReplayGuardFull {
                capacity: self.capacity,
            });
        }
        r.ids.insert(auth.id);
        r.expiry
            .insert((auth.created_at.saturating_add(MAX_CLOCK_SKEW_SECS), auth.id));
        Ok(auth.signer)
    }

    /// Ids remembered now.
    pub fn len(&self) -> usize {
        self.remembered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .ids
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Remembered {
    /// Forgets the ids that `verify` would refuse as stale at `now`.
    fn forget_stale(&mut self, now: u64) {
        while let Some(&(last_valid, id)) = self.expiry.first() {
            if last_valid >= now {
                return;
            }
            self.expiry.pop_first();
            self.ids.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nip98::{HttpRequest, verify};
    use crate::test_support::{TestKey, authorization};

    const URL: &str = "https://push.example.org/register";
    const NOW: u64 = 1_780_000_000;

    fn header(key: &TestKey, created_at: u64) -> String {
        let tags: &[&[&str]] = &[&["u", URL], &["method", "GET"]];
        authorization(&key.sign(created_at, crate::event::kind::HTTP_AUTH, tags, ""))
    }

    fn checked(header: &str, now: u64) -> Authorized {
        let request = HttpRequest {
            url: URL,
            method: "GET",
            body: b"",
        };
        verify(Some(header), &request, now).expect("a valid header")
    }

    #[test]
    fn a_header_is_accepted_once_and_a_second_use_is_refused() {
        let alice = TestKey::new("alice");
        let guard = ReplayGuard::default();
        let auth = checked(&header(&alice, NOW), NOW);
        assert_eq!(guard.admit(&auth, NOW), Ok(alice.public_key()));
        assert_eq!(guard.admit(&auth, NOW + 1), Err(NostrError::AuthReplayed));
        // A header signed a second later is another event.
        let next = checked(&header(&alice, NOW + 1), NOW + 1);
        assert_eq!(guard.admit(&next, NOW + 1), Ok(alice.public_key()));
    }

    #[test]
    fn an_id_is_remembered_for_as_long_as_verify_would_accept_it() {
        let alice = TestKey::new("alice");
        let guard = ReplayGuard::default();
        // Signed a minute ahead of herald's clock: valid until NOW + 120.
        let ahead = checked(&header(&alice, NOW + 60), NOW);
        guard.admit(&ahead, NOW).unwrap();
        let last_valid = NOW + 60 + MAX_CLOCK_SKEW_SECS;
        assert_eq!(
            guard.admit(&ahead, last_valid),
            Err(NostrError::AuthReplayed)
        );
        assert_eq!(guard.len(), 1);
        // Past that `verify` refuses it; the guard has let it go.
        let other = checked(&header(&alice, last_valid + 1), last_valid + 1);
        guard.admit(&other, last_valid + 1).unwrap();
        assert_eq!(guard.len(), 1, "the stale id is gone");
    }

    #[test]
    fn when_full_a_new_header_is_refused_and_nothing_fresh_is_forgotten() {
        let guard = ReplayGuard::new(2);
        let keys: Vec<TestKey> = (0..3).map(|n| TestKey::new(&format!("k{n}"))).collect();
        let auths: Vec<Authorized> = keys.iter().map(|k| checked(&header(k, NOW), NOW)).collect();
        guard.admit(&auths[0], NOW).unwrap();
        guard.admit(&auths[1], NOW).unwrap();
        assert_eq!(
            guard.admit(&auths[2], NOW),
            Err(NostrError::AuthReplayGuardFull { capacity: 2 })
        );
        assert_eq!(
            guard.admit(&auths[0], NOW),
            Err(NostrError::AuthReplayed),
            "still remembered"
        );
        // Once the first two go stale, there is room again.
        let later = NOW + MAX_CLOCK_SKEW_SECS + 1;
        let fresh = checked(&header(&keys[2], later), later);
        assert_eq!(guard.admit(&fresh, later), Ok(keys[2].public_key()));
        assert_eq!(guard.len(), 1);
    }
}
