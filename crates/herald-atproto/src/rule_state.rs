//! The rules' view of the world, kept in memory from the events themselves.
//!
//! [`MemoryState`] answers [`RuleState`] from what it has been told: the
//! registered accounts (the shared [`RecipientIndex`]), and what
//! [`MemoryState::apply`] learns from each event after the rules have seen
//! it (blocks, the parents of replies, the verifications of registered
//! accounts). That is everything a replay of recorded events needs, and
//! what the live source uses.
//!
//! It runs on the whole network's stream, so nothing in it may grow with
//! the network (the Go gateway's mistake, atproto.md §14):
//! - verifications are kept only for accounts registered when the
//!   verification is created: a delete is all `unverified` needs them for;
//! - blocks only where a registered account blocks or is blocked, and list
//!   items only where the member is registered or a registered account
//!   blocks through the list: no other can hide a notification. List
//!   blocks are all kept, since their lists' members may register later;
//!   they are rare (a subscription to a moderation list), so they grow
//!   slowly. An account that registers later is missing the direct blocks
//!   made before (backfilling them from its PDS is still to be built);
//! - reply parents up to [`MAX_REPLY_PARENTS`], the oldest forgotten first:
//!   they serve only notifications to ancestors above the parent, whose
//!   threads are recent.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::at_uri::AtUri;
use crate::block_graph::{self, BlockGraph};
use crate::did::Did;
use crate::jetstream_event::{Commit, EventBody, JetstreamEvent, Operation, Record, nsid};
use crate::recipients::RecipientIndex;
use crate::rules::RuleState;
use herald_core::store::StateChange;

/// Reply links remembered: at about 250 bytes each, some 50 MB, several
/// minutes of the whole network's replies (about 11% of ~2,000 events/s).
pub const MAX_REPLY_PARENTS: usize = 200_000;

#[derive(Debug)]
pub struct MemoryState {
    registered: Arc<RecipientIndex>,
    blocks: BlockGraph,
    /// Reply → the post it answers.
    parents: HashMap<AtUri, AtUri>,
    /// Replies in the order they were remembered, to forget the oldest.
    parent_order: VecDeque<AtUri>,
    /// [`MAX_REPLY_PARENTS`], smaller in tests.
    max_parents: usize,
    /// Verification record → its (registered) subject.
    verifications: HashMap<AtUri, Did>,
    /// `None`: every verifier counts.
    trusted_verifiers: Option<HashSet<Did>>,
}

impl Default for MemoryState {
    fn default() -> Self {
        Self {
            registered: Arc::default(),
            blocks: BlockGraph::default(),
            parents: HashMap::new(),
            parent_order: VecDeque::new(),
            max_parents: MAX_REPLY_PARENTS,
            verifications: HashMap::new(),
            trusted_verifiers: None,
        }
    }
}

impl MemoryState {
    pub fn new() -> Self {
        Self::default()
    }

    /// A state whose registered accounts are `recipients`, shared with
    /// whoever registers devices.
    pub fn with_recipients(recipients: Arc<RecipientIndex>) -> Self {
        Self {
            registered: recipients,
            ..Self::default()
        }
    }

    pub fn register(&mut self, did: Did) {
        self.registered.insert(did);
    }

    /// From now on only these accounts' verifications count.
    pub fn trust_only_verifiers(&mut self, verifiers: impl IntoIterator<Item = Did>) {
        self.trusted_verifiers = Some(verifiers.into_iter().collect());
    }

    /// Learns what later events need from `event`. Call it after the rules
    /// have seen the event: they read the state as it was before, and the
    /// delete of a verification needs the subject it is about to forget.
    /// Returns what of it the store must keep to rebuild the blocks after a
    /// restart (the rest is rebuilt by the stream itself).
    pub fn apply(&mut self, event: &JetstreamEvent) -> Option<StateChange> {
        let EventBody::Commit(commit) = &event.body else {
            return None;
        };
        let kept = (block_graph::is_block_graph(commit.uri.collection())
            && self.may_hide_a_notification(commit)
            && self.blocks.apply(event))
        .then(|| block_graph::state_change(commit));
        let uri = &commit.uri;
        match uri.collection() {
            nsid::FEED_POST => match &commit.operation {
                Operation::Create(Record::Post(post)) | Operation::Update(Record::Post(post)) => {
                    match &post.reply {
                        Some(reply) => self.remember_parent(uri, &reply.parent),
                        None => {
                            self.parents.remove(uri);
                        }
                    };
                }
                _ => {
                    self.parents.remove(uri);
                }
            },
            nsid::GRAPH_VERIFICATION => match &commit.operation {
                Operation::Create(Record::Verification(v))
                | Operation::Update(Record::Verification(v))
                    if self.registered.contains(&v.subject) =>
                {
                    self.verifications.insert(uri.clone(), v.subject.clone());
                }
                _ => {
                    self.verifications.remove(uri);
                }
            },
            _ => {}
        }
        kept
    }
}

impl MemoryState {
    /// Whether a block-graph record can matter: deletes and updates always
    /// (they only change what is known), creates as the module doc says.
    fn may_hide_a_notification(&self, commit: &Commit) -> bool {
        let owner = commit.uri.did();
        match &commit.operation {
            Operation::Delete | Operation::Update(_) => true,
            Operation::Create(Record::Block(block)) => {
                self.registered.contains(owner) || self.registered.contains(&block.subject)
            }
            Operation::Create(Record::ListBlock(_)) => true,
            Operation::Create(Record::ListItem(item)) => {
                self.registered.contains(&item.subject)
                    || self
                        .blocks
                        .list_subscribers(&item.list)
                        .any(|s| self.registered.contains(s))
            }
            Operation::Create(_) => false,
        }
    }

    fn remember_parent(&mut self, reply: &AtUri, parent: &AtUri) {
        if self.parents.insert(reply.clone(), parent.clone()).is_none() {
            self.parent_order.push_back(reply.clone());
        }
        while self.parents.len() > self.max_parents {
            let Some(oldest) = self.parent_order.pop_front() else {
                break;
            };
            self.parents.remove(&oldest);
        }
        // Deleted replies leave their place in the order behind; drop the
        // stale places once they outnumber the live ones.
        if self.parent_order.len() > 2 * self.max_parents {
            let parents = &self.parents;
            self.parent_order.retain(|r| parents.contains_key(r));
        }
    }
}

impl RuleState for MemoryState {
    fn is_registered(&self, did: &Did) -> bool {
        self.registered.contains(did)
    }

    fn is_blocked(&self, a: &Did, b: &Did) -> bool {
        self.blocks.either_blocks(a, b)
    }

    fn parent_of(&self, post: &AtUri) -> Option<AtUri> {
        self.parents.get(post).cloned()
    }

    fn verification_subject(&self, verification: &AtUri) -> Option<Did> {
        self.verifications.get(verification).cloned()
    }

    fn trusts_verifier(&self, verifier: &Did) -> bool {
        self.trusted_verifiers
            .as_ref()
            .is_none_or(|trusted| trusted.contains(verifier))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{
        ALICE, BOB, CAROL, create, delete, did, post_uri, record_uri, strong_ref, update, uri,
    };
    use serde_json::json;

    fn reply(author: &str, rkey: &str, parent: &str) -> JetstreamEvent {
        create(
            author,
            nsid::FEED_POST,
            rkey,
            json!({"text": "", "reply": {"parent": strong_ref(parent), "root": strong_ref(parent)}}),
        )
    }

    #[test]
    fn remembers_the_parent_of_each_reply_until_it_is_deleted() {
        let mut state = MemoryState::new();
        let parent = post_uri(BOB, "3p");
        state.apply(&reply(ALICE, "3r", &parent));
        let child = uri(&post_uri(ALICE, "3r"));
        assert_eq!(state.parent_of(&child), Some(uri(&parent)));
        assert_eq!(state.parent_of(&uri(&parent)), None);
        state.apply(&delete(ALICE, nsid::FEED_POST, "3r"));
        assert_eq!(state.parent_of(&child), None);
    }

    #[test]
    fn an_edit_that_drops_the_reply_forgets_the_parent() {
        let mut state = MemoryState::new();
        state.apply(&reply(ALICE, "3r", &post_uri(BOB, "3p")));
        state.apply(&update(ALICE, nsid::FEED_POST, "3r", json!({"text": "x"})));
        assert_eq!(state.parent_of(&uri(&post_uri(ALICE, "3r"))), None);
    }

    #[test]
    fn keeps_verifications_of_registered_accounts_only() {
        let mut state = MemoryState::new();
        state.register(did(BOB));
        for subject in [BOB, CAROL] {
            state.apply(&create(
                ALICE,
                nsid::GRAPH_VERIFICATION,
                &format!("3{}", &subject[8..12]),
                json!({"subject": subject}),
            ));
        }
        assert_eq!(state.verifications.len(), 1);
        let bobs = uri(&record_uri(ALICE, nsid::GRAPH_VERIFICATION, "3bobb"));
        assert_eq!(state.verification_subject(&bobs), Some(did(BOB)));
        state.apply(&delete(ALICE, nsid::GRAPH_VERIFICATION, "3bobb"));
        assert_eq!(state.verification_subject(&bobs), None);
    }

    #[test]
    fn trusts_every_verifier_until_told_which() {
        let mut state = MemoryState::new();
        assert!(state.trusts_verifier(&did(ALICE)));
        state.trust_only_verifiers([did(BOB)]);
        assert!(!state.trusts_verifier(&did(ALICE)));
        assert!(state.trusts_verifier(&did(BOB)));
    }

    #[test]
    fn learns_blocks_from_the_stream() {
        let mut state = MemoryState::new();
        state.register(did(BOB));
        state.apply(&create(
            ALICE,
            nsid::GRAPH_BLOCK,
            "3b",
            json!({"subject": BOB}),
        ));
        assert!(state.is_blocked(&did(BOB), &did(ALICE)));
        assert!(!state.is_blocked(&did(BOB), &did(CAROL)));
    }

    #[test]
    fn keeps_no_block_between_two_unregistered_accounts() {
        let mut state = MemoryState::new();
        state.register(did(BOB));
        state.apply(&create(
            ALICE,
            nsid::GRAPH_BLOCK,
            "3b",
            json!({"subject": CAROL}),
        ));
        assert!(!state.is_blocked(&did(ALICE), &did(CAROL)));
        let list = record_uri(ALICE, "app.bsky.graph.list", "3mods");
        state.apply(&create(
            ALICE,
            nsid::GRAPH_LISTBLOCK,
            "3lb",
            json!({"subject": list}),
        ));
        state.apply(&create(
            ALICE,
            nsid::GRAPH_LISTITEM,
            "3li",
            json!({"subject": CAROL, "list": list}),
        ));
        assert!(!state.is_blocked(&did(ALICE), &did(CAROL)));
        state.apply(&create(
            ALICE,
            nsid::GRAPH_LISTITEM,
            "3lj",
            json!({"subject": BOB, "list": list}),
        ));
        assert!(state.is_blocked(&did(ALICE), &did(BOB)));
    }

    #[test]
    fn forgets_the_oldest_reply_parents_beyond_the_bound() {
        let mut state = MemoryState {
            max_parents: 10,
            ..MemoryState::new()
        };
        let parent = post_uri(BOB, "3p");
        for n in 0..=10 {
            state.apply(&reply(ALICE, &format!("3r{n}"), &parent));
        }
        assert_eq!(state.parents.len(), 10);
        assert_eq!(state.parent_of(&uri(&post_uri(ALICE, "3r0"))), None);
        let newest = uri(&post_uri(ALICE, "3r10"));
        assert_eq!(state.parent_of(&newest), Some(uri(&parent)));
        // Deleted replies' stale places are swept, not kept forever.
        for n in 11..40 {
            state.apply(&reply(ALICE, &format!("3r{n}"), &parent));
            state.apply(&delete(ALICE, nsid::FEED_POST, &format!("3r{n}")));
        }
        assert!(
            state.parent_order.len() <= 20,
            "{}",
            state.parent_order.len()
        );
    }
}
