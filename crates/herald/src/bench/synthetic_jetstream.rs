//! A synthetic Jetstream v1 stream shaped like the real one, for `bench
//! jetstream`.
//!
//! The shapes are those of recorded events
//! (`shared/fixtures/atproto/jetstream_golden_v1.jsonl`): `did:plc` DIDs of
//! 24 base32 characters, TIDs as record keys and revisions, CIDs, `at://`
//! URIs, and records with their keys sorted as Jetstream writes them. Posts
//! carry text, `#mention` facets with their byte ranges, reply refs, image
//! embeds and quote embeds (with and without media); likes and reposts
//! sometimes a `via`. The mix of collections is the network's ([`MIX`]).
//!
//! Everything comes from one seeded generator, so a seed names a stream:
//! two runs with the same arguments measure the same events. Each account a
//! record points at (a liked post's author, a followed account, a mentioned
//! one, …) is a registered account with probability `recipient_share`, and
//! otherwise a fresh DID, as nearly every account on the network is unknown
//! to herald. The stream says which registered accounts it points at, so
//! the benchmark can give just those a device.

use std::collections::{BTreeSet, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use herald_atproto::jetstream_event::nsid;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use serde_json::{Value, json};

/// What kind of event to write next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A record created in this collection.
    Create(&'static str),
    Delete,
    ProfileUpdate,
    Identity,
}

/// Events per 10,000 of a Jetstream subscription to the rules' collections.
/// Likes, posts, reposts and follows as sampled from the network (atproto.md
/// §15: 69 / 11 / 10 / 6 %; issue 8: "about 70% likes"); the other 3 %
/// split, by estimate, between blocks, list items, deletes, profile updates
/// and identity events, which the rules read but rarely act on.
const MIX: [(Kind, u32); 9] = [
    (Kind::Create(nsid::FEED_LIKE), 7_000),
    (Kind::Create(nsid::FEED_POST), 1_100),
    (Kind::Create(nsid::FEED_REPOST), 1_000),
    (Kind::Create(nsid::GRAPH_FOLLOW), 600),
    (Kind::Create(nsid::GRAPH_BLOCK), 100),
    (Kind::Create(nsid::GRAPH_LISTITEM), 50),
    (Kind::Delete, 100),
    (Kind::ProfileUpdate, 25),
    (Kind::Identity, 25),
];

// Shares within posts, likes and reposts: estimates (atproto.md gives only
// the collection mix), chosen so every rule the posts feed is exercised.
/// Posts that are replies: about half of what the network posts.
const REPLY_SHARE: f64 = 0.45;
/// Replies to a post seen earlier in the stream, so the rules climb a
/// thread the state knows, rather than stopping at the parent.
const REPLY_IN_STREAM_SHARE: f64 = 0.5;
/// Posts with at least one `#mention` facet; a fifth of them two.
const MENTION_SHARE: f64 = 0.10;
const SECOND_MENTION_SHARE: f64 = 0.2;
/// Posts quoting a post; a third of those with media beside the quote.
const QUOTE_SHARE: f64 = 0.08;
const QUOTE_WITH_MEDIA_SHARE: f64 = 0.3;
/// Posts (not quoting) with images.
const IMAGES_SHARE: f64 = 0.2;
/// Likes and reposts made through someone's repost.
const VIA_SHARE: f64 = 0.05;
/// Deletes by collection: mostly un-likes, as likes are most of the creates.
const DELETED: [(&str, u32); 4] = [
    (nsid::FEED_LIKE, 70),
    (nsid::FEED_POST, 12),
    (nsid::FEED_REPOST, 10),
    (nsid::GRAPH_FOLLOW, 8),
];
/// Recent posts remembered as reply parents: a few seconds of the network's
/// posts, where most replies land.
const RECENT_POSTS: usize = 4_096;
/// Words of a post: between these counts (a post is at most 300 graphemes).
const WORDS_PER_POST: std::ops::RangeInclusive<usize> = 3..=40;
const WORDS: [&str; 48] = [
    "the", "a", "and", "to", "of", "in", "is", "it", "that", "this", "for", "on", "with", "you",
    "just", "so", "what", "my", "new", "today", "really", "good", "think", "people", "time",
    "love", "post", "thread", "here", "about", "now", "first", "sky", "blue", "art", "music",
    "coffee", "morning", "news", "game", "photo", "week", "great", "again", "🦋", "✨", "😂", "—",
];

/// `did:plc:` identifiers: 24 characters of RFC 4648 base32, lowercase.
const PLC_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const PLC_ID_CHARS: usize = 24;
/// TIDs: 13 characters of base32-sortable, 53 bits of microseconds then 10
/// of clock id (atproto's record key spec).
const TID_ALPHABET: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";
const TID_CHARS: usize = 13;
const TID_CLOCK_BITS: u32 = 10;
/// A CIDv1 with a sha2-256 hash in base32 is 59 characters: a 7-character
/// prefix (`bafyrei` for a record, `bafkrei` for a blob) and 52 more.
const CID_HASH_CHARS: usize = 52;
/// Records are created up to this long before Jetstream sees them.
const MAX_CREATED_BEFORE_US: u64 = 2_000_000;

/// A v1 event, its fields in Jetstream's order.
#[derive(Serialize)]
struct Event {
    did: String,
    time_us: u64,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    commit: Option<Commit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<Value>,
}

#[derive(Serialize)]
struct Commit {
    rev: String,
    operation: &'static str,
    collection: &'static str,
    rkey: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cid: Option<String>,
}

/// The generator: its registered accounts, its clock, and the recent posts
/// replies answer.
pub struct SyntheticNetwork {
    rng: Xoshiro256PlusPlus,
    registered: Vec<String>,
    recipient_share: f64,
    time_us: u64,
    /// The relay's sequence number, for identity events.
    seq: u64,
    /// `(uri, cid)` of recent posts.
    recent_posts: VecDeque<(String, String)>,
    /// Indices into `registered` of the accounts some event pointed at.
    targeted: BTreeSet<usize>,
}

impl SyntheticNetwork {
    /// A network with `accounts` registered accounts, drawn from `seed`.
    pub fn new(seed: u64, accounts: usize, recipient_share: f64) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let registered = (0..accounts).map(|_| random_did(&mut rng)).collect();
        Self {
            rng,
            registered,
            recipient_share,
            time_us: 0,
            seq: 0,
            recent_posts: VecDeque::with_capacity(RECENT_POSTS),
            targeted: BTreeSet::new(),
        }
    }

    /// The registered accounts' DIDs.
    pub fn registered(&self) -> &[String] {
        &self.registered
    }

    /// `count` Jetstream v1 events as JSON text, one microsecond apart and
    /// the last one now: all inside the replay window, cursors ascending.
    pub fn events(&mut self, count: usize) -> Vec<String> {
        let now_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        self.time_us = now_us.saturating_sub(count as u64);
        (0..count).map(|_| self.event()).collect()
    }

    /// The registered accounts the events so far point at, in the order
    /// they were registered.
    pub fn targeted(&self) -> impl Iterator<Item = &str> {
        self.targeted.iter().map(|&i| self.registered[i].as_str())
    }

    fn event(&mut self) -> String {
        self.time_us += 1;
        let actor = random_did(&mut self.rng);
        let event = match pick(&mut self.rng, &MIX) {
            Kind::Identity => {
                self.seq += 1;
                Event {
                    identity: Some(json!({
                        "did": actor,
                        "handle": self.handle(),
                        "seq": self.seq,
                        "time": rfc3339_millis(self.time_us),
                    })),
                    did: actor,
                    time_us: self.time_us,
                    kind: "identity",
                    commit: None,
                }
            }
            Kind::Delete => {
                let collection = pick(&mut self.rng, &DELETED);
                let rkey = self.tid_before(MAX_CREATED_BEFORE_US * 100);
                self.commit(actor, "delete", collection, rkey, None)
            }
            Kind::ProfileUpdate => {
                let record = json!({
                    "$type": nsid::ACTOR_PROFILE,
                    "avatar": self.blob(),
                    "createdAt": self.created_at(),
                    "description": self.text(),
                    "displayName": self.words(2),
                });
                self.commit(
                    actor,
                    "update",
                    nsid::ACTOR_PROFILE,
                    "self".into(),
                    Some(record),
                )
            }
            Kind::Create(collection) => {
                let record = self.record(collection, &actor);
                let rkey = self.tid_before(MAX_CREATED_BEFORE_US / 2);
                if collection == nsid::FEED_POST {
                    let uri = format!("at://{actor}/{collection}/{rkey}");
                    self.remember_post(uri);
                }
                self.commit(actor, "create", collection, rkey, Some(record))
            }
        };
        serde_json::to_string(&event).expect("plain JSON values serialise")
    }

    fn commit(
        &mut self,
        actor: String,
        operation: &'static str,
        collection: &'static str,
        rkey: String,
        record: Option<Value>,
    ) -> Event {
        let cid = record.is_some().then(|| self.cid("bafyrei"));
        Event {
            did: actor,
            time_us: self.time_us,
            kind: "commit",
            commit: Some(Commit {
                rev: self.tid_before(0),
                operation,
                collection,
                rkey,
                record,
                cid,
            }),
            identity: None,
        }
    }

    /// A new record of `collection` (one of [`MIX`]'s creates) by `actor`.
    fn record(&mut self, collection: &str, actor: &str) -> Value {
        match collection {
            nsid::FEED_LIKE | nsid::FEED_REPOST => {
                let mut record = json!({
                    "$type": collection,
                    "createdAt": self.created_at(),
                    "subject": self.strong_ref(nsid::FEED_POST),
                });
                if self.rng.random_bool(VIA_SHARE) {
                    record["via"] = self.strong_ref(nsid::FEED_REPOST);
                }
                record
            }
            nsid::GRAPH_FOLLOW | nsid::GRAPH_BLOCK => json!({
                "$type": collection,
                "createdAt": self.created_at(),
                "subject": self.target(),
            }),
            nsid::GRAPH_LISTITEM => {
                let list = format!(
                    "at://{actor}/app.bsky.graph.list/{}",
                    self.tid_before(MAX_CREATED_BEFORE_US * 1_000)
                );
                json!({
                    "$type": collection,
                    "createdAt": self.created_at(),
                    "list": list,
                    "subject": self.target(),
                })
            }
            _ => self.post(),
        }
    }

    fn post(&mut self) -> Value {
        let mut text = String::new();
        let mut facets = Vec::new();
        if self.rng.random_bool(MENTION_SHARE) {
            let mentions = if self.rng.random_bool(SECOND_MENTION_SHARE) {
                2
            } else {
                1
            };
            for _ in 0..mentions {
                let start = text.len();
                text.push('@');
                text.push_str(&self.handle());
                facets.push(json!({
                    "$type": "app.bsky.richtext.facet",
                    "features": [{"$type": "app.bsky.richtext.facet#mention", "did": self.target()}],
                    "index": {"byteEnd": text.len(), "byteStart": start},
                }));
                text.push(' ');
            }
        }
        text.push_str(&self.text());
        let mut record = json!({
            "$type": nsid::FEED_POST,
            "createdAt": self.created_at(),
            "langs": ["en"],
            "text": text,
        });
        if !facets.is_empty() {
            record["facets"] = Value::Array(facets);
        }
        if self.rng.random_bool(REPLY_SHARE) {
            let parent = match self.recent_posts.len() {
                n if n > 0 && self.rng.random_bool(REPLY_IN_STREAM_SHARE) => {
                    let (uri, cid) = &self.recent_posts[self.rng.random_range(0..n)];
                    json!({"cid": cid, "uri": uri})
                }
                _ => self.strong_ref(nsid::FEED_POST),
            };
            // The root is the parent for a direct answer; further up, another post.
            let root = if self.rng.random_bool(0.5) {
                parent.clone()
            } else {
                self.strong_ref(nsid::FEED_POST)
            };
            record["reply"] = json!({"parent": parent, "root": root});
        }
        if self.rng.random_bool(QUOTE_SHARE) {
            let quoted = self.strong_ref(nsid::FEED_POST);
            record["embed"] = if self.rng.random_bool(QUOTE_WITH_MEDIA_SHARE) {
                json!({
                    "$type": "app.bsky.embed.recordWithMedia",
                    "media": self.images(),
                    "record": {"$type": "app.bsky.embed.record", "record": quoted},
                })
            } else {
                json!({"$type": "app.bsky.embed.record", "record": quoted})
            };
        } else if self.rng.random_bool(IMAGES_SHARE) {
            record["embed"] = self.images();
        }
        record
    }

    fn remember_post(&mut self, uri: String) {
        if self.recent_posts.len() == RECENT_POSTS {
            self.recent_posts.pop_front();
        }
        let cid = self.cid("bafyrei");
        self.recent_posts.push_back((uri, cid));
    }

    /// An account a record points at: registered with probability
    /// `recipient_share`.
    fn target(&mut self) -> String {
        if self.rng.random_bool(self.recipient_share) {
            let i = self.rng.random_range(0..self.registered.len());
            self.targeted.insert(i);
            self.registered[i].clone()
        } else {
            random_did(&mut self.rng)
        }
    }

    /// A `com.atproto.repo.strongRef` to a record of `collection` by a target.
    fn strong_ref(&mut self, collection: &str) -> Value {
        let author = self.target();
        let age = self.rng.random_range(0..MAX_CREATED_BEFORE_US * 10_000);
        let rkey = self.tid_before(age);
        json!({"cid": self.cid("bafyrei"), "uri": format!("at://{author}/{collection}/{rkey}")})
    }

    fn images(&mut self) -> Value {
        json!({
            "$type": "app.bsky.embed.images",
            "images": [{
                "alt": "",
                "aspectRatio": {"height": 1500, "width": 2000},
                "image": self.blob(),
            }],
        })
    }

    fn blob(&mut self) -> Value {
        json!({
            "$type": "blob",
            "mimeType": "image/jpeg",
            "ref": {"$link": self.cid("bafkrei")},
            "size": self.rng.random_range(20_000..1_000_000),
        })
    }

    fn text(&mut self) -> String {
        let count = self.rng.random_range(WORDS_PER_POST);
        self.words(count)
    }

    fn words(&mut self, count: usize) -> String {
        let words: Vec<&str> = (0..count)
            .map(|_| WORDS[self.rng.random_range(0..WORDS.len())])
            .collect();
        words.join(" ")
    }

    fn handle(&mut self) -> String {
        let word = WORDS[self.rng.random_range(0..WORDS.len() / 2)];
        format!("{word}{}.bsky.social", self.rng.random_range(0..100_000))
    }

    fn created_at(&mut self) -> String {
        let before = self.rng.random_range(0..MAX_CREATED_BEFORE_US);
        rfc3339_millis(self.time_us.saturating_sub(before))
    }

    /// A TID from `age_us` before the event, with a random clock id.
    fn tid_before(&mut self, age_us: u64) -> String {
        let clock_id = self.rng.random_range(0..1u64 << TID_CLOCK_BITS);
        tid(self.time_us.saturating_sub(age_us), clock_id)
    }

    fn cid(&mut self, prefix: &str) -> String {
        let mut cid = String::from(prefix);
        cid.push_str(&base32(&mut self.rng, PLC_ALPHABET, CID_HASH_CHARS));
        cid
    }
}

/// An entry of a weighted table, with odds in proportion to its weight.
fn pick<T: Copy>(rng: &mut Xoshiro256PlusPlus, table: &[(T, u32)]) -> T {
    let total: u32 = table.iter().map(|&(_, weight)| weight).sum();
    let draw = rng.random_range(0..total);
    let mut below = 0;
    for &(item, weight) in table {
        below += weight;
        if draw < below {
            return item;
        }
    }
    table[table.len() - 1].0
}

fn random_did(rng: &mut Xoshiro256PlusPlus) -> String {
    format!("did:plc:{}", base32(rng, PLC_ALPHABET, PLC_ID_CHARS))
}

fn base32(rng: &mut Xoshiro256PlusPlus, alphabet: &[u8; 32], len: usize) -> String {
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

/// A TID: microseconds and clock id as one 64-bit number (top bit zero),
/// written in base32-sortable, most significant first.
fn tid(time_us: u64, clock_id: u64) -> String {
    let mut value = (time_us << TID_CLOCK_BITS) | clock_id;
    let mut out = [0u8; TID_CHARS];
    for c in out.iter_mut().rev() {
        *c = TID_ALPHABET[(value & 31) as usize];
        value >>= 5;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

/// `2026-12-01T12:34:56.789Z`, as records' `createdAt`.
fn rfc3339_millis(time_us: u64) -> String {
    herald_atproto::time::format_rfc3339(time_us, 3)
}

#[cfg(test)]
mod tests {
    use herald_atproto::did::Did;
    use herald_atproto::jetstream_event::{EventBody, Operation, Record, parse_event};

    use super::*;

    /// `events` events of a network of 100 registered accounts.
    fn stream(events: usize, recipient_share: f64) -> (SyntheticNetwork, Vec<String>) {
        let mut network = SyntheticNetwork::new(7, 100, recipient_share);
        let events = network.events(events);
        (network, events)
    }

    #[test]
    fn every_event_is_one_herald_reads() {
        let (_, events) = stream(5_000, 0.1);
        let mut likes = 0;
        let mut mentions = 0;
        let mut quotes = 0;
        let mut replies = 0;
        for line in &events {
            let event = parse_event(line.as_bytes()).unwrap_or_else(|e| panic!("{e}: {line}"));
            let EventBody::Commit(commit) = event.body else {
                continue;
            };
            match commit.operation {
                Operation::Create(Record::Like(_)) => likes += 1,
                Operation::Create(Record::Post(post)) => {
                    mentions += usize::from(!post.mentions.is_empty());
                    quotes += usize::from(post.embedded.is_some());
                    replies += usize::from(post.reply.is_some());
                }
                _ => {}
            }
        }
        assert!((3_300..3_700).contains(&likes), "{likes} likes of 5,000");
        assert!(mentions > 0 && quotes > 0 && replies > 0);
    }

    #[test]
    fn a_seed_names_a_stream() {
        let ((a, a_events), (b, b_events)) = (stream(200, 0.5), stream(200, 0.5));
        // The timestamps follow the clock; everything else is the seed's.
        let shape = |events: &[String]| events.iter().map(String::len).collect::<Vec<_>>();
        assert_eq!(shape(&a_events), shape(&b_events));
        assert_eq!(a.registered(), b.registered());
        assert!(a.targeted().eq(b.targeted()));
    }

    #[test]
    fn points_at_registered_accounts_only_as_often_as_asked() {
        assert_eq!(stream(1_000, 0.0).0.targeted().count(), 0);
        let (all, _) = stream(1_000, 1.0);
        assert!(all.targeted().count() > 90, "{}", all.targeted().count());
        for did in all.registered() {
            Did::parse(did).unwrap();
        }
    }

    #[test]
    fn writes_tids_and_times_as_atproto_does() {
        // The golden fixture's first event: its rev, and its time.
        assert_eq!(tid(1_779_719_008_873_876, 12), "3mmoojp7vgo2g");
        assert_eq!(
            rfc3339_millis(1_779_719_009_132_431),
            "2026-05-25T14:23:29.132Z"
        );
        assert_eq!(
            rfc3339_millis(951_782_400_000_000),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
