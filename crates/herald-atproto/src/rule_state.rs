//! The rules' view of the world, kept in memory from the events themselves.
//!
//! [`MemoryState`] answers [`RuleState`] from what it has been told: the
//! registered accounts, and what [`MemoryState::apply`] learns from each
//! event after the rules have seen it (blocks, the parents of replies, the
//! verifications of registered accounts). That is everything a replay of
//! recorded events needs, and what the tests use.
//!
//! It keeps verifications only for accounts registered when the
//! verification is created: a delete is all `unverified` needs it for, and
//! keeping the whole network's would grow without bound (the Go gateway's
//! mistake, atproto.md §14). Reply parents and blocks it keeps whole and
//! unbounded, which suits a replay; a live source must bound them.

use std::collections::{HashMap, HashSet};

use crate::at_uri::AtUri;
use crate::block_graph::BlockGraph;
use crate::did::Did;
use crate::jetstream_event::{EventBody, JetstreamEvent, Operation, Record, nsid};
use crate::rules::RuleState;

#[derive(Debug, Default)]
pub struct MemoryState {
    registered: HashSet<Did>,
    blocks: BlockGraph,
    /// Reply → the post it answers.
    parents: HashMap<AtUri, AtUri>,
    /// Verification record → its (registered) subject.
    verifications: HashMap<AtUri, Did>,
    /// `None`: every verifier counts.
    trusted_verifiers: Option<HashSet<Did>>,
}

impl MemoryState {
    pub fn new() -> Self {
        Self::default()
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
    pub fn apply(&mut self, event: &JetstreamEvent) {
        self.blocks.apply(event);
        let EventBody::Commit(commit) = &event.body else {
            return;
        };
        let uri = &commit.uri;
        match uri.collection() {
            nsid::FEED_POST => match &commit.operation {
                Operation::Create(Record::Post(post)) | Operation::Update(Record::Post(post)) => {
                    match &post.reply {
                        Some(reply) => self.parents.insert(uri.clone(), reply.parent.clone()),
                        None => self.parents.remove(uri),
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
        state.apply(&create(
            ALICE,
            nsid::GRAPH_BLOCK,
            "3b",
            json!({"subject": BOB}),
        ));
        assert!(state.is_blocked(&did(BOB), &did(ALICE)));
        assert!(!state.is_blocked(&did(BOB), &did(CAROL)));
    }
}
