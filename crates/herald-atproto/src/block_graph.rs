//! Who blocks whom, directly or through a moderation list, kept from the stream.
//!
//! The AppView hides a notification when either account blocks the other,
//! by an `app.bsky.graph.block` record or by subscribing to a list
//! (`app.bsky.graph.listblock`) that has the other as a member
//! (`app.bsky.graph.listitem`) (atproto.md §10, `viewerBlockExists`).
//!
//! Edges are kept by the URI of the record that made them, because a delete
//! carries nothing else. Pairs are counted, not just marked: clients do
//! write a second block record for an account already blocked, and deleting
//! one of them must not lift the block. A list item counts only when it is
//! in the list owner's own repository, as the AppView requires; otherwise
//! anyone could add anyone to someone else's block list.
//!
//! This structure keeps everything it is given; which events are worth
//! keeping (those involving registered accounts and the lists they
//! subscribe to) and persisting them are the caller's decisions.

use std::collections::HashMap;
use std::hash::Hash;

use crate::at_uri::AtUri;
use crate::did::Did;
use herald_core::store::StateChange;
use serde_json::json;

use crate::jetstream_event::{
    Commit, EventBody, JetstreamEvent, Operation, Record, create_event, nsid,
};

#[derive(Debug, Default)]
pub struct BlockGraph {
    /// Every block, list block and list item record, by its URI.
    records: HashMap<AtUri, Edge>,
    /// blocker → blocked accounts.
    direct: PairCounts<Did, Did>,
    /// blocker → lists it blocks.
    blocked_lists: PairCounts<Did, AtUri>,
    /// list → members.
    members: PairCounts<AtUri, Did>,
    /// list → accounts blocking through it (`blocked_lists` reversed).
    subscribers: PairCounts<AtUri, Did>,
}

/// What one record contributes to the graph.
#[derive(Debug)]
enum Edge {
    Block(Did),
    ListBlock(AtUri),
    ListItem { list: AtUri, member: Did },
}

impl BlockGraph {
    pub fn new() -> Self {
        Self::default()
    }

    /// Learns a block, list block or list item being created, updated or
    /// deleted; ignores every other event. `true` if the graph changed (a
    /// record was added, replaced or removed), which is what is worth
    /// keeping: the delete of a block herald never knew changes nothing.
    pub fn apply(&mut self, event: &JetstreamEvent) -> bool {
        let EventBody::Commit(commit) = &event.body else {
            return false;
        };
        if !is_block_graph(commit.uri.collection()) {
            return false;
        }
        let owner = commit.uri.did();
        // An update replaces the record's edge; a delete only removes it.
        let old = self.records.remove(&commit.uri);
        if let Some(old) = &old {
            self.unlink(owner, old);
        }
        let edge = match &commit.operation {
            Operation::Create(record) | Operation::Update(record) => Edge::of(owner, record),
            Operation::Delete => None,
        };
        let added = edge.is_some();
        if let Some(edge) = edge {
            self.link(owner, &edge);
            self.records.insert(commit.uri.clone(), edge);
        }
        old.is_some() || added
    }

    /// Whether `blocker` blocks `subject`, directly or through a list.
    pub fn blocks(&self, blocker: &Did, subject: &Did) -> bool {
        self.direct.contains(blocker, subject)
            || self
                .blocked_lists
                .values(blocker)
                .any(|list| self.members.contains(list, subject))
    }

    /// The accounts that block through `list`.
    pub fn list_subscribers<'a>(&'a self, list: &'a AtUri) -> impl Iterator<Item = &'a Did> + 'a {
        self.subscribers.values(list)
    }

    /// Whether either account blocks the other: what hides a notification.
    pub fn either_blocks(&self, a: &Did, b: &Did) -> bool {
        self.blocks(a, b) || self.blocks(b, a)
    }

    fn link(&mut self, owner: &Did, edge: &Edge) {
        match edge {
            Edge::Block(subject) => self.direct.add(owner, subject),
            Edge::ListBlock(list) => {
                self.blocked_lists.add(owner, list);
                self.subscribers.add(list, owner);
            }
            Edge::ListItem { list, member } => self.members.add(list, member),
        }
    }

    fn unlink(&mut self, owner: &Did, edge: &Edge) {
        match edge {
            Edge::Block(subject) => self.direct.remove(owner, subject),
            Edge::ListBlock(list) => {
                self.blocked_lists.remove(owner, list);
                self.subscribers.remove(list, owner);
            }
            Edge::ListItem { list, member } => self.members.remove(list, member),
        }
    }
}

/// The collections whose records make the graph.
pub fn is_block_graph(collection: &str) -> bool {
    matches!(
        collection,
        nsid::GRAPH_BLOCK | nsid::GRAPH_LISTBLOCK | nsid::GRAPH_LISTITEM
    )
}

/// What to keep in the store for a block-graph commit, so the graph can be
/// rebuilt after a restart: the record's essentials under its URI, or the
/// URI's removal. Only the fields the graph reads are kept.
pub fn state_change(commit: &Commit) -> StateChange {
    let essentials = match &commit.operation {
        Operation::Create(record) | Operation::Update(record) => match record {
            Record::Block(block) => Some(json!({"subject": block.subject.as_str()})),
            Record::ListBlock(list_block) => Some(json!({"subject": list_block.subject.as_str()})),
            Record::ListItem(item) => {
                Some(json!({"subject": item.subject.as_str(), "list": item.list.as_str()}))
            }
            _ => None,
        },
        Operation::Delete => None,
    };
    StateChange {
        key: commit.uri.as_str().to_owned(),
        value: essentials.map(|v| v.to_string()),
    }
}

/// The create event a kept `(key, value)` stands for; `None` for a key that
/// is not a block-graph record's.
pub fn restore(key: &str, value: &str) -> Option<JetstreamEvent> {
    let uri = AtUri::parse(key).ok()?;
    if !is_block_graph(uri.collection()) {
        return None;
    }
    create_event(&uri, value).ok()
}

impl Edge {
    fn of(owner: &Did, record: &Record) -> Option<Edge> {
        match record {
            Record::Block(block) => Some(Edge::Block(block.subject.clone())),
            Record::ListBlock(list_block) => Some(Edge::ListBlock(list_block.subject.clone())),
            Record::ListItem(item) if item.list.did() == owner => Some(Edge::ListItem {
                list: item.list.clone(),
                member: item.subject.clone(),
            }),
            _ => None,
        }
    }
}

/// A multiset of `(key, value)` pairs, grouped by key.
#[derive(Debug)]
struct PairCounts<K, V>(HashMap<K, HashMap<V, u32>>);

impl<K, V> Default for PairCounts<K, V> {
    fn default() -> Self {
        Self(HashMap::new())
    }
}

impl<K: Eq + Hash + Clone, V: Eq + Hash + Clone> PairCounts<K, V> {
    fn add(&mut self, key: &K, value: &V) {
        *self
            .0
            .entry(key.clone())
            .or_default()
            .entry(value.clone())
            .or_default() += 1;
    }

    fn remove(&mut self, key: &K, value: &V) {
        let Some(values) = self.0.get_mut(key) else {
            return;
        };
        if let Some(count) = values.get_mut(value) {
            *count -= 1;
            if *count == 0 {
                values.remove(value);
            }
        }
        if values.is_empty() {
            self.0.remove(key);
        }
    }

    fn contains(&self, key: &K, value: &V) -> bool {
        self.0
            .get(key)
            .is_some_and(|values| values.contains_key(value))
    }

    fn values(&self, key: &K) -> impl Iterator<Item = &V> {
        self.0.get(key).into_iter().flat_map(HashMap::keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jetstream_event::parse_event;
    use crate::test_support::{ALICE, BOB, CAROL, GOLDEN, create, delete, did, record_uri, update};
    use serde_json::json;

    fn graph(events: &[JetstreamEvent]) -> BlockGraph {
        let mut graph = BlockGraph::new();
        for event in events {
            graph.apply(event);
        }
        graph
    }

    fn block(blocker: &str, rkey: &str, subject: &str) -> JetstreamEvent {
        create(
            blocker,
            nsid::GRAPH_BLOCK,
            rkey,
            json!({"subject": subject}),
        )
    }

    fn list_of(owner: &str) -> String {
        record_uri(owner, "app.bsky.graph.list", "3mods")
    }

    fn list_block(blocker: &str, list: &str) -> JetstreamEvent {
        create(
            blocker,
            nsid::GRAPH_LISTBLOCK,
            "3lb",
            json!({"subject": list}),
        )
    }

    fn list_item(owner: &str, list: &str, member: &str) -> JetstreamEvent {
        create(
            owner,
            nsid::GRAPH_LISTITEM,
            "3li",
            json!({"subject": member, "list": list}),
        )
    }

    #[test]
    fn a_golden_block_blocks_the_pair_in_both_directions() {
        let events: Vec<_> = GOLDEN
            .lines()
            .map(|line| parse_event(line.as_bytes()).unwrap())
            .collect();
        let graph = graph(&events);
        let blocker = did("did:plc:2lv5zdhr6aqncw46v7zgxbio");
        let blocked = did("did:plc:pgsrzsvisagr7wfqasmu3cgf");
        assert!(graph.blocks(&blocker, &blocked));
        assert!(!graph.blocks(&blocked, &blocker));
        assert!(graph.either_blocks(&blocked, &blocker));
        assert!(graph.either_blocks(&blocker, &blocked));
        let follower = did("did:plc:mxwlsvdgs6tn75lq6jrr2vp7");
        let followed = did("did:plc:anc6s2kher6ltrhhglxrzxsa");
        assert!(
            !graph.either_blocks(&follower, &followed),
            "a follow is no block"
        );
    }

    #[test]
    fn deleting_the_block_record_lifts_the_block() {
        let mut graph = graph(&[block(ALICE, "3b1", BOB)]);
        graph.apply(&delete(ALICE, nsid::GRAPH_BLOCK, "3b1"));
        assert!(!graph.either_blocks(&did(ALICE), &did(BOB)));
        assert!(graph.records.is_empty() && graph.direct.0.is_empty());
    }

    #[test]
    fn a_second_block_record_keeps_the_block_when_the_first_is_deleted() {
        let mut graph = graph(&[block(ALICE, "3b1", BOB), block(ALICE, "3b2", BOB)]);
        graph.apply(&delete(ALICE, nsid::GRAPH_BLOCK, "3b1"));
        assert!(graph.blocks(&did(ALICE), &did(BOB)));
        graph.apply(&delete(ALICE, nsid::GRAPH_BLOCK, "3b2"));
        assert!(!graph.blocks(&did(ALICE), &did(BOB)));
    }

    #[test]
    fn an_update_moves_the_block_to_the_new_subject() {
        let mut graph = graph(&[block(ALICE, "3b1", BOB)]);
        graph.apply(&update(
            ALICE,
            nsid::GRAPH_BLOCK,
            "3b1",
            json!({"subject": CAROL}),
        ));
        assert!(!graph.blocks(&did(ALICE), &did(BOB)));
        assert!(graph.blocks(&did(ALICE), &did(CAROL)));
    }

    #[test]
    fn deleting_an_unknown_record_changes_nothing() {
        let mut graph = graph(&[block(ALICE, "3b1", BOB)]);
        assert!(!graph.apply(&delete(ALICE, nsid::GRAPH_BLOCK, "3other")));
        assert!(!graph.apply(&delete(BOB, nsid::GRAPH_BLOCK, "3b1")));
        assert!(graph.blocks(&did(ALICE), &did(BOB)));
    }

    #[test]
    fn a_list_block_blocks_every_member_in_both_directions_whatever_the_order() {
        let list = list_of(CAROL);
        let orders = [
            [list_block(ALICE, &list), list_item(CAROL, &list, BOB)],
            [list_item(CAROL, &list, BOB), list_block(ALICE, &list)],
        ];
        for events in orders {
            let graph = graph(&events);
            assert!(graph.blocks(&did(ALICE), &did(BOB)));
            assert!(graph.either_blocks(&did(BOB), &did(ALICE)));
            assert!(
                !graph.either_blocks(&did(ALICE), &did(CAROL)),
                "the owner is no member"
            );
        }
    }

    #[test]
    fn removing_the_member_or_the_list_block_lifts_a_list_block() {
        let list = list_of(CAROL);
        let events = [list_block(ALICE, &list), list_item(CAROL, &list, BOB)];
        let mut without_item = graph(&events);
        without_item.apply(&delete(CAROL, nsid::GRAPH_LISTITEM, "3li"));
        assert!(!without_item.either_blocks(&did(ALICE), &did(BOB)));
        let mut unsubscribed = graph(&events);
        unsubscribed.apply(&delete(ALICE, nsid::GRAPH_LISTBLOCK, "3lb"));
        assert!(!unsubscribed.either_blocks(&did(ALICE), &did(BOB)));
    }

    #[test]
    fn a_list_item_outside_the_list_owners_repository_is_ignored() {
        let list = list_of(CAROL);
        let graph = graph(&[list_block(ALICE, &list), list_item(BOB, &list, BOB)]);
        assert!(!graph.either_blocks(&did(ALICE), &did(BOB)));
        assert!(graph.members.0.is_empty());
    }

    #[test]
    fn other_collections_are_not_kept() {
        let graph = graph(&[create(
            ALICE,
            nsid::GRAPH_FOLLOW,
            "3f",
            json!({"subject": BOB}),
        )]);
        assert!(graph.records.is_empty());
    }

    #[test]
    fn what_is_kept_restores_the_same_graph_after_a_restart() {
        let list = record_uri(CAROL, "app.bsky.graph.list", "3mods");
        let events = [
            create(ALICE, nsid::GRAPH_BLOCK, "3b", json!({"subject": BOB})),
            create(BOB, nsid::GRAPH_LISTBLOCK, "3lb", json!({"subject": list})),
            create(
                CAROL,
                nsid::GRAPH_LISTITEM,
                "3li",
                json!({"subject": ALICE, "list": list}),
            ),
        ];
        let mut live = BlockGraph::new();
        let mut restored = BlockGraph::new();
        for event in &events {
            assert!(live.apply(event));
            let EventBody::Commit(commit) = &event.body else {
                unreachable!()
            };
            let kept = state_change(commit);
            let value = kept.value.expect("a create keeps its record");
            assert!(value.len() < 200, "{value}");
            restored.apply(&restore(&kept.key, &value).expect("restores"));
        }
        for (a, b) in [(ALICE, BOB), (BOB, ALICE)] {
            assert!(restored.either_blocks(&did(a), &did(b)));
        }
        let forget = state_change(match &delete(ALICE, nsid::GRAPH_BLOCK, "3b").body {
            EventBody::Commit(c) => c,
            _ => unreachable!(),
        });
        assert_eq!(forget.value, None);
        assert!(
            restore(
                "at://did:plc:aliceeeeeeeeeeeeeeeeeeee/app.bsky.feed.like/3x",
                "{}"
            )
            .is_none()
        );
        assert!(restore("not a uri", "{}").is_none());
    }
}
