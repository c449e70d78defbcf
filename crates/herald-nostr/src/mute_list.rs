//! The registered keys' mute lists (NIP-51 kind 10000): whom each of them
//! does not want to hear from.
//!
//! - **Public `p` tags only.** A mute list may also hide keys in its
//!   encrypted content; herald never reads content, so only the public
//!   ones count. Threads, hashtags and words (`e`, `t`, `word`) would need
//!   the content of the event muted, which herald does not read either.
//! - **The newest list wins.** Kind 10000 is replaceable (NIP-01): the
//!   relays keep an author's latest, and herald keeps the one with the
//!   highest `created_at` (the lowest id on a tie, as NIP-01 says), so a
//!   stale copy served by a lagging relay, or the same list served again
//!   after a reconnect, changes nothing.
//! - **Kept beside the seen-set.** A list is written to the source's state
//!   (`StateChange`s with the key `mute.<author>`) in the pipeline's next
//!   commit and read back at start, so a restart does not push what a
//!   recipient muted before the relays serve the list again.
//! - **Bounded.** At most [`MAX_MUTED_PER_LIST`] keys of one list are kept
//!   and [`MAX_MUTED_KEYS`] in all; past that, the lists stored longest ago
//!   are forgotten first (in memory and in the store), until their authors'
//!   relays serve them again on the next subscription.

use std::collections::{BTreeMap, HashMap};

use herald_core::store::StateChange;
use serde::{Deserialize, Serialize};

use crate::event::{Event, EventId, kind};
use crate::pubkey::PublicKey;

/// Keys kept of one list. People mute tens of keys, a few hundred at most;
/// a list longer than this is kept in part (its first keys) rather than
/// let one author take the memory of thousands.
pub const MAX_MUTED_PER_LIST: usize = 2_000;

/// Keys kept in all lists together: 32 MB of keys, ten muted keys each for
/// 100,000 registered accounts.
pub const MAX_MUTED_KEYS: usize = 1_000_000;

/// The prefix of a list's key in the source's stored state.
const KEY_PREFIX: &str = "mute.";

/// One author's list as the store keeps it.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    created_at: u64,
    id: String,
    muted: Vec<String>,
}

#[derive(Debug)]
struct MuteList {
    created_at: u64,
    id: EventId,
    /// Sorted, without repeats, for binary search.
    muted: Vec<PublicKey>,
    /// When it was stored, in the order of `MuteLists::by_age`.
    stored: u64,
}

impl MuteList {
    /// Whether `(created_at, id)` replaces this list (NIP-01).
    fn replaced_by(&self, created_at: u64, id: &EventId) -> bool {
        crate::event::replaces((created_at, id), (self.created_at, &self.id))
    }
}

#[derive(Debug)]
pub struct MuteLists {
    lists: HashMap<PublicKey, MuteList>,
    /// Authors by when their list was stored, oldest first.
    by_age: BTreeMap<u64, PublicKey>,
    next_stored: u64,
    muted_keys: usize,
    max_per_list: usize,
    max_keys: usize,
    /// Changes not yet handed to the store.
    changes: Vec<StateChange>,
}

impl Default for MuteLists {
    fn default() -> Self {
        Self::new(MAX_MUTED_PER_LIST, MAX_MUTED_KEYS)
    }
}

impl MuteLists {
    pub fn new(max_per_list: usize, max_keys: usize) -> Self {
        Self {
            lists: HashMap::new(),
            by_age: BTreeMap::new(),
            next_stored: 0,
            muted_keys: 0,
            max_per_list,
            max_keys,
            changes: Vec::new(),
        }
    }

    /// The lists among what the store kept for the source; other keys are
    /// someone else's and ignored.
    pub fn restore(&mut self, kept: &[(String, String)]) {
        for (key, value) in kept {
            let Some(author) = key
                .strip_prefix(KEY_PREFIX)
                .and_then(|hex| PublicKey::parse_hex(hex).ok())
            else {
                continue;
            };
            let Ok(stored) = serde_json::from_str::<Stored>(value) else {
                continue;
            };
            let Some(id) = EventId::parse_hex(&stored.id) else {
                continue;
            };
            let muted = stored
                .muted
                .iter()
                .filter_map(|hex| PublicKey::parse_hex(hex).ok());
            self.insert(author, stored.created_at, id, muted);
        }
        // What was restored is what the store holds; only evictions are news.
        self.changes.retain(|change| change.value.is_none());
    }

    /// Takes `event` as its author's list if it is one and newer than the
    /// list held; `true` if it was.
    pub fn update(&mut self, event: &Event) -> bool {
        if event.kind() != kind::MUTE_LIST {
            return false;
        }
        let author = *event.pubkey();
        if self
            .lists
            .get(&author)
            .is_some_and(|held| !held.replaced_by(event.created_at(), event.id()))
        {
            return false;
        }
        self.insert(author, event.created_at(), *event.id(), event.p_tags());
        true
    }

    /// Whether `recipient`'s list mutes `author`.
    pub fn mutes(&self, recipient: &PublicKey, author: &PublicKey) -> bool {
        self.lists
            .get(recipient)
            .is_some_and(|list| list.muted.binary_search(author).is_ok())
    }

    /// What the store must apply to hold what memory holds.
    pub fn take_changes(&mut self) -> Vec<StateChange> {
        std::mem::take(&mut self.changes)
    }

    /// Lists held.
    pub fn len(&self) -> usize {
        self.lists.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    fn insert(
        &mut self,
        author: PublicKey,
        created_at: u64,
        id: EventId,
        muted: impl Iterator<Item = PublicKey>,
    ) {
        let mut muted: Vec<PublicKey> = muted.take(self.max_per_list).collect();
        muted.sort_unstable();
        muted.dedup();
        self.remove(&author);
        let stored = self.next_stored;
        self.next_stored += 1;
        self.changes.push(StateChange {
            key: key(&author),
            value: Some(
                serde_json::to_string(&Stored {
                    created_at,
                    id: id.to_hex(),
                    muted: muted.iter().map(PublicKey::to_hex).collect(),
                })
                .expect("a list of strings serializes"),
            ),
        });
        self.muted_keys += muted.len();
        self.by_age.insert(stored, author);
        self.lists.insert(
            author,
            MuteList {
                created_at,
                id,
                muted,
                stored,
            },
        );
        self.evict_over_size(&author);
    }

    /// Forgets the oldest lists, never `keep`, while over the bound.
    fn evict_over_size(&mut self, keep: &PublicKey) {
        while self.muted_keys > self.max_keys {
            let Some(oldest) = self.by_age.values().find(|author| *author != keep).copied() else {
                return;
            };
            self.remove(&oldest);
            self.changes.push(StateChange {
                key: key(&oldest),
                value: None,
            });
        }
    }

    fn remove(&mut self, author: &PublicKey) {
        if let Some(list) = self.lists.remove(author) {
            self.by_age.remove(&list.stored);
            self.muted_keys -= list.muted.len();
        }
    }
}

fn key(author: &PublicKey) -> String {
    format!("{KEY_PREFIX}{author}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TestKey;

    const NOW: u64 = 1_780_000_000;

    fn list(author: &TestKey, created_at: u64, muted: &[&TestKey]) -> Event {
        let hexes: Vec<String> = muted.iter().map(|k| k.pubkey_hex()).collect();
        let tags: Vec<[&str; 2]> = hexes.iter().map(|h| ["p", h.as_str()]).collect();
        let tags: Vec<&[&str]> = tags.iter().map(|t| t.as_slice()).collect();
        let json = author
            .sign(created_at, kind::MUTE_LIST, &tags, "")
            .to_string();
        Event::from_json(&json).unwrap()
    }

    fn apply(kept: &mut Vec<(String, String)>, changes: Vec<StateChange>) {
        for change in changes {
            kept.retain(|(k, _)| *k != change.key);
            if let Some(value) = change.value {
                kept.push((change.key, value));
            }
        }
    }

    #[test]
    fn a_recipient_mutes_the_public_p_tags_of_their_list() {
        let (bob, mallory, alice) = (
            TestKey::new("bob"),
            TestKey::new("mallory"),
            TestKey::new("alice"),
        );
        let mut lists = MuteLists::default();
        assert!(lists.update(&list(&bob, NOW, &[&mallory])));
        assert!(lists.mutes(&bob.public_key(), &mallory.public_key()));
        assert!(!lists.mutes(&bob.public_key(), &alice.public_key()));
        assert!(!lists.mutes(&alice.public_key(), &mallory.public_key()));
    }

    #[test]
    fn the_newest_list_wins_and_a_stale_copy_changes_nothing() {
        let (bob, mallory) = (TestKey::new("bob"), TestKey::new("mallory"));
        let mut lists = MuteLists::default();
        assert!(lists.update(&list(&bob, NOW, &[&mallory])));
        lists.take_changes();
        // Unmuted a minute later; then a lagging relay serves the old list.
        assert!(lists.update(&list(&bob, NOW + 60, &[])));
        assert!(!lists.update(&list(&bob, NOW, &[&mallory])));
        assert!(!lists.update(&list(&bob, NOW + 60, &[])), "the same again");
        assert!(!lists.mutes(&bob.public_key(), &mallory.public_key()));
        assert_eq!(lists.take_changes().len(), 1);
    }

    #[test]
    fn other_kinds_are_not_lists() {
        let (bob, mallory) = (TestKey::new("bob"), TestKey::new("mallory"));
        let json = bob
            .sign(NOW, kind::TEXT_NOTE, &[&["p", &mallory.pubkey_hex()]], "")
            .to_string();
        let mut lists = MuteLists::default();
        assert!(!lists.update(&Event::from_json(&json).unwrap()));
        assert!(lists.is_empty());
    }

    #[test]
    fn lists_survive_a_restart_through_the_stored_state() {
        let (bob, mallory) = (TestKey::new("bob"), TestKey::new("mallory"));
        let mut kept = vec![("seen.00".to_owned(), "1".to_owned())];
        let mut before = MuteLists::default();
        before.update(&list(&bob, NOW, &[&mallory]));
        apply(&mut kept, before.take_changes());
        let mut after = MuteLists::default();
        after.restore(&kept);
        assert_eq!(after.len(), 1);
        assert!(after.mutes(&bob.public_key(), &mallory.public_key()));
        assert!(after.take_changes().is_empty(), "nothing new to store");
        assert!(!after.update(&list(&bob, NOW, &[&mallory])));
    }

    #[test]
    fn a_long_list_is_kept_in_part_and_the_oldest_lists_go_beyond_the_bound() {
        let keys: Vec<TestKey> = (0..4).map(|n| TestKey::new(&format!("k{n}"))).collect();
        let (a, b, c, muted) = (&keys[0], &keys[1], &keys[2], &keys[3]);
        let mut kept = Vec::new();
        let mut lists = MuteLists::new(1, 2);
        lists.update(&list(a, NOW, &[muted, b]));
        assert!(lists.mutes(&a.public_key(), &muted.public_key()));
        assert!(
            !lists.mutes(&a.public_key(), &b.public_key()),
            "one key per list"
        );
        lists.update(&list(b, NOW, &[muted]));
        lists.update(&list(c, NOW, &[muted]));
        apply(&mut kept, lists.take_changes());
        assert_eq!(lists.len(), 2);
        assert!(
            !lists.mutes(&a.public_key(), &muted.public_key()),
            "a's went first"
        );
        assert!(lists.mutes(&b.public_key(), &muted.public_key()));
        assert!(lists.mutes(&c.public_key(), &muted.public_key()));
        assert_eq!(kept.len(), 2, "the store holds what memory holds");
    }
}
