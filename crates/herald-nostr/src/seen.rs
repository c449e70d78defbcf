//! The seen-set: event ids herald has already handled, so that an event
//! served by several relays, or again after a reconnect or a restart, is
//! handled once.
//!
//! - **Why it must outlive a restart.** Every connection subscribes with
//!   `since` two days back for gift wraps (their `created_at` is randomised
//!   up to two days into the past, NIP-59), so each reconnect is served up
//!   to two days of stored events again. Each id is therefore kept beside
//!   the source's cursor in the store (`StateChange`s with the key
//!   `seen.<id>`), written in the transaction that queues the event's
//!   pushes, and read back at start.
//! - **Bounded in time and size.** An id is kept [`SEEN_RETENTION`]: past
//!   that the event falls outside any `since` herald asks for, so no relay
//!   serves it again. At most [`MAX_SEEN_EVENTS`] are kept; beyond that the
//!   oldest are forgotten first, and the deliveries' dedupe key (event id +
//!   recipient) still stops a second push within the dedupe window.
//! - Forgetting writes a `StateChange` that removes the key, so the store
//!   holds what memory holds.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use herald_core::store::StateChange;

use crate::event::EventId;

/// The window relays are asked for (two days, NIP-59's largest back-dating)
/// plus an hour for clocks and the time an event takes to reach a relay.
pub const SEEN_RETENTION: Duration = Duration::from_secs(49 * 60 * 60);

/// Ids kept at most: two days of events for the registered keys of a
/// large instance (about one every two seconds), 4 MB in memory.
pub const MAX_SEEN_EVENTS: usize = 100_000;

/// The prefix of a seen id's key in the source's stored state.
const KEY_PREFIX: &str = "seen.";

#[derive(Debug)]
pub struct SeenSet {
    ids: HashSet<EventId>,
    /// Ids with the Unix second they were seen, oldest first.
    order: VecDeque<(EventId, u64)>,
    max: usize,
    retention_secs: u64,
    /// Changes not yet handed to the store.
    changes: Vec<StateChange>,
}

impl SeenSet {
    pub fn new(max: usize, retention: Duration) -> Self {
        Self {
            ids: HashSet::new(),
            order: VecDeque::new(),
            max,
            retention_secs: retention.as_secs(),
            changes: Vec::new(),
        }
    }

    /// The ids among what the store kept for the source; other keys are
    /// someone else's and ignored.
    pub fn restore(&mut self, kept: &[(String, String)]) {
        let mut restored: Vec<(EventId, u64)> = kept
            .iter()
            .filter_map(|(key, value)| {
                let id = EventId::parse_hex(key.strip_prefix(KEY_PREFIX)?)?;
                Some((id, value.parse().ok()?))
            })
            .collect();
        restored.sort_by_key(|(_, at)| *at);
        for (id, at) in restored {
            if self.ids.insert(id) {
                self.order.push_back((id, at));
            }
        }
        self.evict_over_size();
    }

    pub fn contains(&self, id: &EventId) -> bool {
        self.ids.contains(id)
    }

    /// Marks `id` seen at `now` (Unix seconds); `false` if it already was.
    pub fn mark(&mut self, id: EventId, now: u64) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back((id, now));
        self.changes.push(StateChange {
            key: key(&id),
            value: Some(now.to_string()),
        });
        self.evict_over_size();
        true
    }

    /// Forgets the ids seen longer ago than the retention.
    pub fn sweep(&mut self, now: u64) {
        let cutoff = now.saturating_sub(self.retention_secs);
        while let Some(&(id, at)) = self.order.front()
            && at < cutoff
        {
            self.order.pop_front();
            self.forget(id);
        }
    }

    /// What the store must apply to hold what memory holds.
    pub fn take_changes(&mut self) -> Vec<StateChange> {
        std::mem::take(&mut self.changes)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn evict_over_size(&mut self) {
        while self.order.len() > self.max {
            if let Some((id, _)) = self.order.pop_front() {
                self.forget(id);
            }
        }
    }

    fn forget(&mut self, id: EventId) {
        self.ids.remove(&id);
        self.changes.push(StateChange {
            key: key(&id),
            value: None,
        });
    }
}

impl Default for SeenSet {
    fn default() -> Self {
        Self::new(MAX_SEEN_EVENTS, SEEN_RETENTION)
    }
}

fn key(id: &EventId) -> String {
    format!("{KEY_PREFIX}{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> EventId {
        EventId::parse_hex(&format!("{n:02x}").repeat(32)).unwrap()
    }

    /// Applies `changes` to `kept` as the store would.
    fn apply(kept: &mut Vec<(String, String)>, changes: Vec<StateChange>) {
        for change in changes {
            kept.retain(|(k, _)| *k != change.key);
            if let Some(value) = change.value {
                kept.push((change.key, value));
            }
        }
    }

    #[test]
    fn an_id_is_new_once() {
        let mut seen = SeenSet::default();
        assert!(seen.mark(id(1), 100));
        assert!(!seen.mark(id(1), 101));
        assert!(seen.contains(&id(1)));
        assert_eq!(seen.take_changes().len(), 1);
    }

    #[test]
    fn what_was_seen_before_a_restart_is_still_seen_after_it() {
        let mut kept = vec![("atproto.other".to_owned(), "x".to_owned())];
        let mut before = SeenSet::default();
        before.mark(id(1), 100);
        before.mark(id(2), 101);
        apply(&mut kept, before.take_changes());
        let mut after = SeenSet::default();
        after.restore(&kept);
        assert_eq!(after.len(), 2);
        assert!(!after.mark(id(1), 200));
        assert!(after.mark(id(3), 200));
    }

    #[test]
    fn forgets_the_oldest_beyond_its_size_in_memory_and_in_the_store() {
        let mut kept = Vec::new();
        let mut seen = SeenSet::new(2, SEEN_RETENTION);
        for n in 1..=3 {
            seen.mark(id(n), 100 + u64::from(n));
        }
        apply(&mut kept, seen.take_changes());
        assert!(!seen.contains(&id(1)) && seen.contains(&id(3)));
        assert_eq!(kept.len(), 2);
        let mut restored = SeenSet::new(1, SEEN_RETENTION);
        restored.restore(&kept);
        assert!(restored.contains(&id(3)) && !restored.contains(&id(2)));
    }

    #[test]
    fn a_sweep_forgets_what_is_older_than_the_retention() {
        let mut seen = SeenSet::new(10, Duration::from_secs(60));
        seen.mark(id(1), 1_000);
        seen.mark(id(2), 1_050);
        seen.take_changes();
        seen.sweep(1_070);
        assert!(!seen.contains(&id(1)) && seen.contains(&id(2)));
        assert_eq!(
            seen.take_changes(),
            [StateChange {
                key: key(&id(1)),
                value: None
            }]
        );
    }
}
