//! Jetstream v1 events (atproto.md §7), decoded into what the rules read.
//!
//! One JSON object per event: `did`, `time_us` and `kind` (`commit`,
//! `identity` or `account`) with a body of that name. A commit carries one
//! operation on one record; creates and updates carry the record as JSON,
//! deletes only its collection and key.
//!
//! The stream is written by every account on the network, so nothing in an
//! event is trusted: parsing never panics, caps nothing it does not have to
//! (the source caps frame sizes) and answers anything malformed with a typed
//! [`EventError`] whose message quotes at most a short preview. Records are
//! decoded only for the collections in [`RULE_COLLECTIONS`], and only the
//! fields the rules need; the record of any other collection is skipped
//! without being decoded (it is borrowed from the input as raw JSON), so a
//! record the rules never read cannot make an event fail.

use std::borrow::Cow;

use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::at_uri::{AtUri, AtUriError, json_text, preview};
use crate::did::Did;

/// Collection NSIDs the rules and the block graph read.
pub mod nsid {
    pub const FEED_LIKE: &str = "app.bsky.feed.like";
    pub const FEED_REPOST: &str = "app.bsky.feed.repost";
    pub const FEED_POST: &str = "app.bsky.feed.post";
    pub const GRAPH_FOLLOW: &str = "app.bsky.graph.follow";
    pub const GRAPH_BLOCK: &str = "app.bsky.graph.block";
    pub const GRAPH_LISTBLOCK: &str = "app.bsky.graph.listblock";
    pub const GRAPH_LISTITEM: &str = "app.bsky.graph.listitem";
    pub const GRAPH_VERIFICATION: &str = "app.bsky.graph.verification";
    pub const ACTOR_PROFILE: &str = "app.bsky.actor.profile";
    /// Not subscribed to: the collection a `joinedViaStarterPack` must point into.
    pub const GRAPH_STARTERPACK: &str = "app.bsky.graph.starterpack";
    /// Not subscribed to: a liked custom feed is worded differently.
    pub const FEED_GENERATOR: &str = "app.bsky.feed.generator";
}

/// Exactly the collections whose records are decoded: what a Jetstream
/// subscription's `wantedCollections` should list for the rules.
pub const RULE_COLLECTIONS: [&str; 9] = [
    nsid::FEED_LIKE,
    nsid::FEED_REPOST,
    nsid::FEED_POST,
    nsid::GRAPH_FOLLOW,
    nsid::GRAPH_BLOCK,
    nsid::GRAPH_LISTBLOCK,
    nsid::GRAPH_LISTITEM,
    nsid::GRAPH_VERIFICATION,
    nsid::ACTOR_PROFILE,
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("not a Jetstream event: {0}")]
    Json(String),
    #[error("event did: {0}")]
    Did(String),
    #[error("unknown event kind {0:?}")]
    UnknownKind(String),
    #[error("a {0} event without its {0} object")]
    MissingBody(&'static str),
    #[error("unknown commit operation {0:?}")]
    UnknownOperation(String),
    #[error("a commit {0} without a record")]
    MissingRecord(&'static str),
    #[error("commit: {0}")]
    RecordUri(#[from] AtUriError),
    #[error("{collection} record: {reason}")]
    Record { collection: String, reason: String },
}

/// One Jetstream event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetstreamEvent {
    /// The account the event is about: the repository of a commit.
    pub did: Did,
    /// When Jetstream saw it, in microseconds since the epoch: v1's cursor.
    pub time_us: u64,
    pub body: EventBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventBody {
    /// Boxed: a commit is ten times the size of the other bodies.
    Commit(Box<Commit>),
    Identity(Identity),
    Account(Account),
}

/// One operation on one record. The stream's `rev` and `cid` are not
/// kept: no rule reads them, and copying them out of every event of the
/// network cost two allocations each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// `at://<did>/<collection>/<rkey>` of the record.
    pub uri: AtUri,
    pub operation: Operation,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Create(Record),
    Update(Record),
    Delete,
}

/// A record, decoded for the collections in [`RULE_COLLECTIONS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Like(Engagement),
    Repost(Engagement),
    Post(Post),
    Follow(AccountSubject),
    Block(AccountSubject),
    Verification(AccountSubject),
    Profile(Profile),
    ListBlock(ListBlock),
    ListItem(ListItem),
    /// Any other collection: not decoded.
    Other,
}

/// A like or a repost.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Engagement {
    #[serde(deserialize_with = "strong_ref")]
    pub subject: AtUri,
    /// The repost through which the actor found the subject.
    #[serde(default, deserialize_with = "optional_strong_ref")]
    pub via: Option<AtUri>,
}

/// A post, reduced to what its notifications need.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "PostRecord")]
pub struct Post {
    pub text: String,
    pub reply: Option<ReplyRef>,
    /// Every `#mention` facet's DID, in order, repeats included.
    pub mentions: Vec<Did>,
    /// The record embedded by `app.bsky.embed.record`, or by the record half
    /// of `app.bsky.embed.recordWithMedia` (a quote when it is a post).
    pub embedded: Option<AtUri>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReplyRef {
    #[serde(deserialize_with = "strong_ref")]
    pub parent: AtUri,
    #[serde(deserialize_with = "strong_ref")]
    pub root: AtUri,
}

/// A record about one account: a follow, a block, a verification.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AccountSubject {
    #[serde(deserialize_with = "did")]
    pub subject: Did,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// For the name cache: the actor's name in notification texts.
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default, deserialize_with = "optional_strong_ref")]
    pub joined_via_starter_pack: Option<AtUri>,
}

/// A subscription to a moderation list: its creator blocks every member.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ListBlock {
    /// The list.
    pub subject: AtUri,
}

/// One member of a list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ListItem {
    #[serde(deserialize_with = "did")]
    pub subject: Did,
    pub list: AtUri,
}

/// An account's handle changed (or was re-asserted).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Identity {
    #[serde(default)]
    pub handle: Option<String>,
}

/// An account's hosting status changed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Account {
    pub active: bool,
    /// Why it is inactive: `takendown`, `suspended`, `deleted`, `deactivated`, …
    #[serde(default)]
    pub status: Option<String>,
}

/// Parses one event: a text frame, or a decompressed binary frame.
pub fn parse_event(json: &[u8]) -> Result<JetstreamEvent, EventError> {
    // One check of the whole event is cheaper than serde_json's check of
    // each string it reads, and of the raw record again.
    let json = std::str::from_utf8(json)
        .map_err(|e| EventError::Json(format!("not UTF-8 at byte {}", e.valid_up_to())))?;
    // Whatever the one pass refuses is read again the careful way, whose
    // errors say what is wrong; a well-formed event is read once.
    match parse_in_one_pass(json) {
        Some(event) => Ok(event),
        None => parse_in_two_passes(json),
    }
}

/// Jetstream writes a commit's `collection` before its `record`, so the
/// record is decoded where it lies, in the pass that reads the envelope
/// ([`OnePassCommit`]). `None` for anything the careful parse must look at.
fn parse_in_one_pass(json: &str) -> Option<JetstreamEvent> {
    let raw: RawEvent<OnePassCommit> = serde_json::from_str(json).ok()?;
    raw.into_event(|commit| commit.0).ok()
}

/// The envelope with the record kept raw, then the record decoded: the
/// reference parse, which names the part of an event that is wrong.
fn parse_in_two_passes(json: &str) -> Result<JetstreamEvent, EventError> {
    let raw: RawEvent<RawCommit> = serde_json::from_str(json).map_err(json_error)?;
    raw.into_event(|commit| commit)
}

/// The create event the stream would carry for the record `uri` whose
/// JSON is `record`: how records read elsewhere (a PDS, the store) go
/// through the same checks as live ones.
pub fn create_event(uri: &AtUri, record: &str) -> Result<JetstreamEvent, EventError> {
    let record: serde_json::Value = serde_json::from_str(record).map_err(json_error)?;
    let event = serde_json::json!({
        "did": uri.did().as_str(), "time_us": 0, "kind": "commit",
        "commit": {"rev": "", "operation": "create", "collection": uri.collection(), "rkey": uri.rkey(), "record": record},
    });
    parse_event(event.to_string().as_bytes())
}

/// The `$type` of a v2 `subscribeEvents` message, before its `#kind`.
const V2_MESSAGE_TYPE: &str = "network.bsky.jetstream.subscribeEvents";

/// Parses one v2 `subscribeEvents` message's `payload` into the same event
/// as v1. A v2 commit carries its fields beside `$type` rather than in a
/// `commit` object, identity and account wrap the firehose's own objects,
/// and times are RFC 3339 text: `time_us` is the cursor the source already
/// read from it. `#sync` (no v1 equivalent) and unknown kinds are errors
/// the caller counts and skips, as for v1.
pub fn parse_v2_event(json: &[u8], time_us: u64) -> Result<JetstreamEvent, EventError> {
    let raw: RawV2Event = serde_json::from_slice(json).map_err(json_error)?;
    let did = Did::parse(&raw.did).map_err(|e| EventError::Did(preview(&e.to_string())))?;
    let kind = raw
        .kind
        .strip_prefix(V2_MESSAGE_TYPE)
        .and_then(|k| k.strip_prefix('#'))
        .unwrap_or(&raw.kind);
    let body = match kind {
        "commit" => {
            let missing = || EventError::MissingBody("commit");
            let commit = RawCommit {
                _rev: raw.rev.ok_or_else(missing)?,
                operation: raw.operation.ok_or_else(missing)?,
                collection: raw.collection.ok_or_else(missing)?,
                rkey: raw.rkey.ok_or_else(missing)?,
                record: raw.record.map(ReadRecord::Raw),
            };
            EventBody::Commit(Box::new(commit.decode(&did)?))
        }
        "identity" => EventBody::Identity(raw.identity.ok_or(EventError::MissingBody("identity"))?),
        "account" => EventBody::Account(raw.account.ok_or(EventError::MissingBody("account"))?),
        other => return Err(EventError::UnknownKind(preview(other))),
    };
    Ok(JetstreamEvent { did, time_us, body })
}

#[derive(Deserialize)]
struct RawV2Event<'a> {
    #[serde(rename = "$type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    did: Cow<'a, str>,
    #[serde(default, borrow)]
    rev: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    operation: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    collection: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    rkey: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    record: Option<&'a RawValue>,
    #[serde(default)]
    identity: Option<Identity>,
    #[serde(default)]
    account: Option<Account>,
}

/// serde_json quotes an offending string whole ("invalid type: string …").
fn json_error(e: serde_json::Error) -> EventError {
    EventError::Json(preview(&e.to_string()))
}

/// The envelope's strings borrow from the event's JSON (`Cow`: owned only
/// when the text has escapes), so reading them allocates nothing: the stream
/// is the whole network's, and most of it notifies nobody.
///
/// `C` is how the commit is read: [`RawCommit`] or [`OnePassCommit`].
#[derive(Deserialize)]
struct RawEvent<'a, C> {
    #[serde(borrow)]
    did: Cow<'a, str>,
    time_us: u64,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(default = "Option::default")]
    commit: Option<C>,
    #[serde(default)]
    identity: Option<Identity>,
    #[serde(default)]
    account: Option<Account>,
}

impl<'a, C> RawEvent<'a, C> {
    fn into_event(
        self,
        commit_of: impl FnOnce(C) -> RawCommit<'a>,
    ) -> Result<JetstreamEvent, EventError> {
        let did = Did::parse(&self.did).map_err(|e| EventError::Did(preview(&e.to_string())))?;
        let body = match &*self.kind {
            "commit" => {
                let commit = self.commit.ok_or(EventError::MissingBody("commit"))?;
                EventBody::Commit(Box::new(commit_of(commit).decode(&did)?))
            }
            "identity" => {
                EventBody::Identity(self.identity.ok_or(EventError::MissingBody("identity"))?)
            }
            "account" => {
                EventBody::Account(self.account.ok_or(EventError::MissingBody("account"))?)
            }
            other => return Err(EventError::UnknownKind(preview(other))),
        };
        Ok(JetstreamEvent {
            did,
            time_us: self.time_us,
            body,
        })
    }
}

/// A commit's record: raw JSON to decode, or decoded in the envelope's pass.
/// Lives only while one event is read, and is moved once: boxing the large
/// variant would cost an allocation per event to save a copy.
#[allow(clippy::large_enum_variant)]
enum ReadRecord<'a> {
    Raw(&'a RawValue),
    Decoded(Record),
}

/// A commit as the derive reads it: the record kept raw.
#[derive(Deserialize)]
struct RawCommit<'a> {
    /// Required of every commit, read by nothing.
    #[serde(rename = "rev", borrow)]
    _rev: Cow<'a, str>,
    #[serde(borrow)]
    operation: Cow<'a, str>,
    #[serde(borrow)]
    collection: Cow<'a, str>,
    #[serde(borrow)]
    rkey: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "raw_record")]
    record: Option<ReadRecord<'a>>,
}

fn raw_record<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<ReadRecord<'de>>, D::Error> {
    Option::<&RawValue>::deserialize(deserializer).map(|raw| raw.map(ReadRecord::Raw))
}

impl RawCommit<'_> {
    fn decode(self, did: &Did) -> Result<Commit, EventError> {
        let uri = AtUri::new(did, &self.collection, &self.rkey)?;
        let record = |operation| match self.record {
            None => Err(EventError::MissingRecord(operation)),
            Some(ReadRecord::Decoded(record)) => Ok(record),
            Some(ReadRecord::Raw(raw)) => decode_record(&self.collection, raw),
        };
        let operation = match &*self.operation {
            "create" => Operation::Create(record("create")?),
            "update" => Operation::Update(record("update")?),
            "delete" => Operation::Delete,
            other => return Err(EventError::UnknownOperation(preview(other))),
        };
        Ok(Commit { uri, operation })
    }
}

/// Decodes a raw record; one of a collection the rules do not read is not
/// even parsed.
fn decode_record(collection: &str, raw: &RawValue) -> Result<Record, EventError> {
    if !RULE_COLLECTIONS.contains(&collection) {
        return Ok(Record::Other);
    }
    let mut json = serde_json::Deserializer::from_str(raw.get());
    read_record(collection, &mut json)
        .and_then(|record| json.end().map(|()| record))
        .map_err(|e| EventError::Record {
            collection: collection.to_owned(),
            reason: preview(&e.to_string()),
        })
}

/// The record of `collection`, as the rules read it.
fn read_record<'de, D: Deserializer<'de>>(collection: &str, json: D) -> Result<Record, D::Error> {
    Ok(match collection {
        nsid::FEED_LIKE => Record::Like(Engagement::deserialize(json)?),
        nsid::FEED_REPOST => Record::Repost(Engagement::deserialize(json)?),
        nsid::FEED_POST => Record::Post(Post::deserialize(json)?),
        nsid::GRAPH_FOLLOW => Record::Follow(AccountSubject::deserialize(json)?),
        nsid::GRAPH_BLOCK => Record::Block(AccountSubject::deserialize(json)?),
        nsid::GRAPH_VERIFICATION => Record::Verification(AccountSubject::deserialize(json)?),
        nsid::ACTOR_PROFILE => Record::Profile(Profile::deserialize(json)?),
        nsid::GRAPH_LISTBLOCK => Record::ListBlock(ListBlock::deserialize(json)?),
        nsid::GRAPH_LISTITEM => Record::ListItem(ListItem::deserialize(json)?),
        _ => {
            IgnoredAny::deserialize(json)?;
            Record::Other
        }
    })
}

/// A commit read in one pass: when `collection` comes before `record`,
/// as Jetstream writes them, the record is decoded where it lies instead
/// of being scanned once raw and parsed again. A record that comes first
/// is kept raw, as [`RawCommit`] keeps it. The checks are the derive's:
/// every field once, the four strings required.
struct OnePassCommit<'a>(RawCommit<'a>);

impl<'de> Deserialize<'de> for OnePassCommit<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(OnePassVisitor)
    }
}

struct OnePassVisitor;

impl<'de> Visitor<'de> for OnePassVisitor {
    type Value = OnePassCommit<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a commit object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let [mut rev, mut operation, mut collection, mut rkey]: [Option<Cow<'de, str>>; 4] =
            Default::default();
        let mut record = None;
        while let Some(key) = map.next_key_seed(Text)? {
            let text_field = match &*key {
                "rev" => &mut rev,
                "operation" => &mut operation,
                "collection" => &mut collection,
                "rkey" => &mut rkey,
                "record" if record.is_none() => {
                    record = Some(match &collection {
                        Some(collection) => {
                            ReadRecord::Decoded(map.next_value_seed(RecordOf(collection))?)
                        }
                        None => ReadRecord::Raw(map.next_value()?),
                    });
                    continue;
                }
                "record" => return Err(A::Error::duplicate_field("record")),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if text_field.replace(map.next_value_seed(Text)?).is_some() {
                return Err(A::Error::custom("duplicate field"));
            }
        }
        let required =
            |field: Option<Cow<'de, str>>, name| field.ok_or_else(|| A::Error::missing_field(name));
        Ok(OnePassCommit(RawCommit {
            _rev: required(rev, "rev")?,
            operation: required(operation, "operation")?,
            collection: required(collection, "collection")?,
            rkey: required(rkey, "rkey")?,
            record,
        }))
    }
}

/// A string borrowed from the input where it has no escapes.
struct Text;

impl<'de> DeserializeSeed<'de> for Text {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        json_text(deserializer)
    }
}

/// The record of the collection named.
struct RecordOf<'c>(&'c str);

impl<'de> DeserializeSeed<'de> for RecordOf<'_> {
    type Value = Record;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Record, D::Error> {
        read_record(self.0, deserializer)
    }
}

/// The lexicon's shape of a post; [`Post`] keeps what the rules read.
#[derive(Deserialize)]
struct PostRecord {
    #[serde(default)]
    text: String,
    #[serde(default)]
    reply: Option<ReplyRef>,
    #[serde(default)]
    facets: Vec<Facet>,
    #[serde(default)]
    embed: Option<Embed>,
}

#[derive(Deserialize)]
struct Facet {
    features: Vec<Feature>,
}

#[derive(Deserialize)]
#[serde(tag = "$type")]
enum Feature {
    #[serde(rename = "app.bsky.richtext.facet#mention")]
    Mention {
        #[serde(deserialize_with = "did")]
        did: Did,
    },
    /// Links and tags.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "$type")]
enum Embed {
    #[serde(rename = "app.bsky.embed.record")]
    Record {
        #[serde(deserialize_with = "strong_ref")]
        record: AtUri,
    },
    #[serde(rename = "app.bsky.embed.recordWithMedia")]
    RecordWithMedia { record: EmbedRecord },
    /// Images, video, external links.
    #[serde(other)]
    Other,
}

/// The `app.bsky.embed.record` inside a `recordWithMedia`.
#[derive(Deserialize)]
struct EmbedRecord {
    #[serde(deserialize_with = "strong_ref")]
    record: AtUri,
}

impl From<PostRecord> for Post {
    fn from(post: PostRecord) -> Self {
        let mentions = post
            .facets
            .into_iter()
            .flat_map(|facet| facet.features)
            .filter_map(|feature| match feature {
                Feature::Mention { did } => Some(did),
                Feature::Other => None,
            })
            .collect();
        let embedded = match post.embed {
            Some(Embed::Record { record }) => Some(record),
            Some(Embed::RecordWithMedia { record }) => Some(record.record),
            Some(Embed::Other) | None => None,
        };
        Post {
            text: post.text,
            reply: post.reply,
            mentions,
            embedded,
        }
    }
}

/// `com.atproto.repo.strongRef`: `{uri, cid}`; the rules need only the URI.
#[derive(Deserialize)]
struct StrongRef {
    uri: AtUri,
}

fn strong_ref<'de, D: Deserializer<'de>>(deserializer: D) -> Result<AtUri, D::Error> {
    StrongRef::deserialize(deserializer).map(|r| r.uri)
}

fn optional_strong_ref<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<AtUri>, D::Error> {
    Option::<StrongRef>::deserialize(deserializer).map(|r| r.map(|r| r.uri))
}

fn did<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Did, D::Error> {
    let text = json_text(deserializer)?;
    Did::parse(&text).map_err(|e| serde::de::Error::custom(preview(&e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{ALICE, BOB, GOLDEN, commit_json, did, event, uri};
    use serde_json::json;

    fn golden() -> Vec<JetstreamEvent> {
        GOLDEN
            .lines()
            .map(|line| parse_event(line.as_bytes()).unwrap())
            .collect()
    }

    /// A v1 event in v2's shape: commit fields beside `$type`, RFC 3339 times.
    fn as_v2(v1: &str) -> String {
        let v1: serde_json::Value = serde_json::from_str(v1).unwrap();
        let kind = v1["kind"].as_str().unwrap();
        let mut v2 = json!({
            "$type": format!("network.bsky.jetstream.subscribeEvents#{kind}"),
            "seq": 42, "did": v1["did"], "time": "2026-05-25T14:23:29.132431Z",
        });
        match kind {
            "commit" => {
                for (k, v) in v1["commit"].as_object().unwrap() {
                    v2[k] = v.clone();
                }
            }
            other => v2[other] = v1[other].clone(),
        }
        v2.to_string()
    }

    #[test]
    fn v2_payloads_parse_to_the_same_events_as_v1() {
        for (line, v1) in GOLDEN.lines().zip(golden()) {
            let v2 = parse_v2_event(as_v2(line).as_bytes(), v1.time_us)
                .unwrap_or_else(|e| panic!("{e}: {}", as_v2(line)));
            assert_eq!(v2, v1, "{line}");
        }
    }

    #[test]
    fn v2_sync_unknown_and_incomplete_payloads_are_errors() {
        let base = json!({"did": ALICE, "seq": 1, "time": "2026-05-25T14:23:29Z"});
        let with = |extra: serde_json::Value| {
            let mut v = base.clone();
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            parse_v2_event(v.to_string().as_bytes(), 1)
        };
        let sync =
            with(json!({"$type": "network.bsky.jetstream.subscribeEvents#sync", "sync": {}}));
        assert!(matches!(sync, Err(EventError::UnknownKind(k)) if k == "sync"));
        let no_rkey = with(json!({
            "$type": "network.bsky.jetstream.subscribeEvents#commit",
            "rev": "3mmoojp7vgo2g", "operation": "delete", "collection": nsid::FEED_LIKE,
        }));
        assert_eq!(no_rkey, Err(EventError::MissingBody("commit")));
        assert!(matches!(
            parse_v2_event(b"{\"$type\": 7}", 1),
            Err(EventError::Json(_))
        ));
    }

    fn record_of(event: &JetstreamEvent) -> &Record {
        let EventBody::Commit(commit) = &event.body else {
            panic!("not a commit: {event:?}");
        };
        match &commit.operation {
            Operation::Create(r) | Operation::Update(r) => r,
            Operation::Delete => panic!("a delete: {event:?}"),
        }
    }

    #[test]
    fn parses_every_golden_event() {
        let events = golden();
        assert_eq!(events.len(), 10);
        assert_eq!(events[0].did.as_str(), "did:plc:mcc5yghbk7tixqryac2yxku7");
        assert_eq!(events[0].time_us, 1_779_719_009_132_431);
    }

    #[test]
    fn decodes_the_golden_like_repost_and_follow() {
        let events = golden();
        let EventBody::Commit(like) = &events[0].body else {
            panic!()
        };
        assert_eq!(
            like.uri.as_str(),
            "at://did:plc:mcc5yghbk7tixqryac2yxku7/app.bsky.feed.like/3mmoojp7etg2g"
        );
        assert_eq!(
            record_of(&events[0]),
            &Record::Like(Engagement {
                subject: uri(
                    "at://did:plc:vfnmgxg2yscfliemmcxzyfyh/app.bsky.feed.post/3mmoodizfwc2j"
                ),
                via: None,
            })
        );
        assert!(matches!(record_of(&events[2]), Record::Repost(r)
            if r.subject.did().as_str() == "did:plc:hjloomm2tkve3pmfgbxegl3v"));
        assert_eq!(
            record_of(&events[3]),
            &Record::Follow(AccountSubject {
                subject: did("did:plc:anc6s2kher6ltrhhglxrzxsa")
            })
        );
        assert_eq!(
            record_of(&events[9]),
            &Record::Block(AccountSubject {
                subject: did("did:plc:pgsrzsvisagr7wfqasmu3cgf")
            })
        );
    }

    #[test]
    fn decodes_the_golden_reply() {
        let Record::Post(post) = record_of(&golden()[1]).clone() else {
            panic!()
        };
        let thread = "at://did:plc:j76trmiofvaxxpvx2vnb2vwf/app.bsky.feed.post/3mmojbrjwbs26";
        assert_eq!(post.text, "Try RSV for a good time !!");
        assert_eq!(
            post.reply,
            Some(ReplyRef {
                parent: uri(thread),
                root: uri(thread)
            })
        );
        assert!(post.mentions.is_empty());
        assert_eq!(post.embedded, None);
    }

    #[test]
    fn decodes_the_golden_profile_update_delete_identity_and_account() {
        let events = golden();
        let EventBody::Commit(profile) = &events[4].body else {
            panic!()
        };
        assert!(
            matches!(&profile.operation, Operation::Update(Record::Profile(p))
            if p.display_name.as_deref() == Some("Multiversal Lokis Unit🔞")
                && p.joined_via_starter_pack.is_none())
        );
        let EventBody::Commit(delete) = &events[5].body else {
            panic!()
        };
        assert_eq!(delete.operation, Operation::Delete);
        assert_eq!(delete.uri.collection(), "org.hypercerts.claim.activity");
        assert_eq!(record_of(&events[6]), &Record::Other);
        assert_eq!(
            events[7].body,
            EventBody::Identity(Identity { handle: None })
        );
        assert_eq!(
            events[8].body,
            EventBody::Account(Account {
                active: true,
                status: None
            })
        );
    }

    #[test]
    fn collects_mentions_and_the_record_a_post_embeds() {
        let quoted = format!("at://{BOB}/app.bsky.feed.post/3quoted");
        let mention = |did: &str| json!({"$type": "app.bsky.richtext.facet#mention", "did": did});
        let link = json!({"$type": "app.bsky.richtext.facet#link", "uri": "https://example.com"});
        let facets = json!([
            {"index": {"byteStart": 0, "byteEnd": 4}, "features": [mention(BOB), link]},
            {"index": {"byteStart": 5, "byteEnd": 9}, "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "x"}, mention(ALICE)]},
        ]);
        for embed in [
            json!({"$type": "app.bsky.embed.record", "record": {"uri": quoted, "cid": "bafy"}}),
            json!({"$type": "app.bsky.embed.recordWithMedia",
                   "record": {"$type": "app.bsky.embed.record", "record": {"uri": quoted, "cid": "bafy"}},
                   "media": {"$type": "app.bsky.embed.images", "images": []}}),
        ] {
            let e = event(&commit_json(
                ALICE,
                "create",
                nsid::FEED_POST,
                "3post",
                Some(json!({"text": "hi", "facets": facets, "embed": embed})),
            ));
            let Record::Post(post) = record_of(&e) else {
                panic!()
            };
            assert_eq!(post.mentions, vec![did(BOB), did(ALICE)]);
            assert_eq!(post.embedded, Some(uri(&quoted)));
        }
        let images = json!({"$type": "app.bsky.embed.images", "images": [{"alt": ""}]});
        let e = event(&commit_json(
            ALICE,
            "create",
            nsid::FEED_POST,
            "3post",
            Some(json!({"text": "", "embed": images})),
        ));
        assert!(matches!(record_of(&e), Record::Post(p) if p.embedded.is_none()));
    }

    #[test]
    fn decodes_a_record_of_every_rule_collection() {
        let post = format!("at://{BOB}/app.bsky.feed.post/3p");
        let list = format!("at://{BOB}/app.bsky.graph.list/3l");
        let pack = format!("at://{BOB}/app.bsky.graph.starterpack/3s");
        let records = [
            (
                nsid::FEED_LIKE,
                json!({"subject": {"uri": post, "cid": "c"}, "via": {"uri": format!("at://{BOB}/app.bsky.feed.repost/3r"), "cid": "c"}}),
            ),
            (
                nsid::FEED_REPOST,
                json!({"subject": {"uri": post, "cid": "c"}}),
            ),
            (nsid::FEED_POST, json!({"text": "t"})),
            (nsid::GRAPH_FOLLOW, json!({"subject": BOB})),
            (nsid::GRAPH_BLOCK, json!({"subject": BOB})),
            (nsid::GRAPH_LISTBLOCK, json!({"subject": list})),
            (nsid::GRAPH_LISTITEM, json!({"subject": BOB, "list": list})),
            (nsid::GRAPH_VERIFICATION, json!({"subject": BOB})),
            (
                nsid::ACTOR_PROFILE,
                json!({"joinedViaStarterPack": {"uri": pack, "cid": "c"}}),
            ),
        ];
        assert_eq!(records.clone().map(|(c, _)| c), RULE_COLLECTIONS);
        for (collection, record) in records {
            let e = event(&commit_json(
                ALICE,
                "create",
                collection,
                "3k",
                Some(record),
            ));
            assert_ne!(record_of(&e), &Record::Other, "{collection}");
        }
    }

    /// Parses text that must be refused, and returns the error.
    fn refused(text: &str) -> EventError {
        match parse_event(text.as_bytes()) {
            Err(e) => e,
            Ok(e) => panic!("accepted {:?}: {e:?}", preview(text)),
        }
    }

    #[test]
    fn every_truncation_of_a_golden_event_is_an_error() {
        for line in GOLDEN.lines() {
            for end in 0..line.len() {
                if line.is_char_boundary(end) {
                    assert!(matches!(refused(&line[..end]), EventError::Json(_)));
                }
            }
        }
    }

    #[test]
    fn wrong_types_are_errors() {
        let like = |record: serde_json::Value| {
            commit_json(ALICE, "create", nsid::FEED_LIKE, "3k", Some(record))
        };
        let follow = |subject: serde_json::Value| {
            commit_json(
                ALICE,
                "create",
                nsid::GRAPH_FOLLOW,
                "3k",
                Some(json!({"subject": subject})),
            )
        };
        let post = |record: serde_json::Value| {
            commit_json(ALICE, "create", nsid::FEED_POST, "3k", Some(record))
        };
        let cases = [
            "null".to_owned(),
            "[]".to_owned(),
            "\"commit\"".to_owned(),
            json!({"did": ALICE, "time_us": "1", "kind": "identity", "identity": {}}).to_string(),
            json!({"did": ALICE, "time_us": -1, "kind": "identity", "identity": {}}).to_string(),
            json!({"did": ALICE, "time_us": 1.5, "kind": "identity", "identity": {}}).to_string(),
            json!({"did": 7, "time_us": 1, "kind": "identity", "identity": {}}).to_string(),
            json!({"did": ALICE, "time_us": 1, "kind": 3, "identity": {}}).to_string(),
            json!({"did": ALICE, "time_us": 1, "kind": "commit", "commit": "x"}).to_string(),
            json!({"did": ALICE, "time_us": 1, "kind": "account", "account": {"active": "yes"}})
                .to_string(),
            json!({"did": ALICE, "time_us": 1, "kind": "identity", "identity": {"handle": 5}})
                .to_string(),
            like(json!({"subject": "not an object"})),
            like(json!({"subject": {"uri": 42}})),
            like(json!({"subject": {"cid": "c"}})),
            like(json!({})),
            like(json!([1, 2])),
            like(
                json!({"subject": {"uri": format!("at://{BOB}/app.bsky.feed.post/3p")}, "via": 1}),
            ),
            follow(json!(["did:plc:x"])),
            follow(json!("alice.bsky.social")),
            post(json!({"text": 5})),
            post(
                json!({"reply": {"parent": {"uri": format!("at://{BOB}/app.bsky.feed.post/3p")}}}),
            ),
            post(
                json!({"facets": [{"features": [{"$type": "app.bsky.richtext.facet#mention", "did": "bob"}]}]}),
            ),
            post(json!({"facets": [{"features": [{"did": BOB}]}]})),
            post(json!({"facets": {"features": []}})),
            post(
                json!({"embed": {"$type": "app.bsky.embed.record", "record": {"uri": "https://x"}}}),
            ),
            post(
                json!({"embed": {"$type": "app.bsky.embed.recordWithMedia", "record": {"uri": "x"}}}),
            ),
            commit_json(
                ALICE,
                "create",
                nsid::GRAPH_LISTITEM,
                "3k",
                Some(json!({"subject": BOB})),
            ),
        ];
        for text in cases {
            refused(&text);
        }
    }

    #[test]
    fn refuses_events_that_break_the_envelope_rules() {
        let cases = [
            (
                json!({"did": ALICE, "time_us": 1, "kind": "sync"}).to_string(),
                "UnknownKind",
            ),
            (
                json!({"did": ALICE, "time_us": 1, "kind": "commit"}).to_string(),
                "MissingBody",
            ),
            (
                json!({"did": ALICE, "time_us": 1, "kind": "identity"}).to_string(),
                "MissingBody",
            ),
            (
                json!({"did": "alice.example", "time_us": 1, "kind": "identity", "identity": {}})
                    .to_string(),
                "Did",
            ),
            (
                commit_json(ALICE, "upsert", nsid::FEED_LIKE, "3k", None),
                "UnknownOperation",
            ),
            (
                commit_json(ALICE, "create", nsid::FEED_LIKE, "3k", None),
                "MissingRecord",
            ),
            (
                commit_json(ALICE, "update", nsid::FEED_LIKE, "3k", None),
                "MissingRecord",
            ),
            (
                commit_json(ALICE, "delete", "app/bsky", "3k", None),
                "RecordUri",
            ),
            (
                commit_json(ALICE, "delete", nsid::FEED_LIKE, "a/b", None),
                "RecordUri",
            ),
            (
                commit_json(ALICE, "create", nsid::FEED_LIKE, "3k", Some(json!({}))),
                "Record",
            ),
        ];
        for (text, expected) in cases {
            let err = refused(&text);
            let name = match &err {
                EventError::Json(_) => "Json",
                EventError::Did(_) => "Did",
                EventError::UnknownKind(_) => "UnknownKind",
                EventError::MissingBody(_) => "MissingBody",
                EventError::UnknownOperation(_) => "UnknownOperation",
                EventError::MissingRecord(_) => "MissingRecord",
                EventError::RecordUri(_) => "RecordUri",
                EventError::Record { .. } => "Record",
            };
            assert_eq!(name, expected, "{text}: {err}");
        }
    }

    #[test]
    fn huge_strings_give_short_errors() {
        let huge = "x".repeat(1 << 20);
        let cases = [
            json!({"did": huge, "time_us": 1, "kind": "identity", "identity": {}}).to_string(),
            json!({"did": ALICE, "time_us": 1, "kind": huge}).to_string(),
            json!({"did": ALICE, "time_us": huge, "kind": "identity", "identity": {}}).to_string(),
            commit_json(ALICE, huge.as_str(), nsid::FEED_LIKE, "3k", None),
            commit_json(ALICE, "delete", &huge, "3k", None),
            commit_json(ALICE, "delete", nsid::FEED_LIKE, &huge, None),
            commit_json(
                ALICE,
                "create",
                nsid::FEED_LIKE,
                "3k",
                Some(json!({"subject": {"uri": huge}})),
            ),
            commit_json(
                ALICE,
                "create",
                nsid::GRAPH_FOLLOW,
                "3k",
                Some(json!({"subject": huge})),
            ),
            commit_json(
                ALICE,
                "create",
                nsid::FEED_POST,
                "3k",
                Some(json!({"text": 1, "x": huge})),
            ),
        ];
        for text in cases {
            let err = refused(&text);
            assert!(err.to_string().len() < 300, "{}", preview(&err.to_string()));
        }
    }

    #[test]
    fn deep_nesting_is_an_error_or_skipped_never_a_stack_overflow() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let envelope = format!(
            r#"{{"did":"{ALICE}","time_us":1,"kind":"identity","identity":{{}},"extra":{deep}}}"#
        );
        match parse_event(envelope.as_bytes()) {
            Ok(_) | Err(EventError::Json(_)) => {}
            Err(e) => panic!("{e}"),
        }
        let other = format!(
            r#"{{"did":"{ALICE}","time_us":1,"kind":"commit","commit":{{"rev":"r","operation":"create","collection":"com.example.thing","rkey":"k","record":{deep}}}}}"#
        );
        assert_eq!(record_of(&event(&other)), &Record::Other);
        let like = other.replace("com.example.thing", nsid::FEED_LIKE);
        assert!(matches!(refused(&like), EventError::Record { .. }));
    }

    /// Strings are borrowed from the input unless they have escapes; the
    /// escaped ones must read the same.
    #[test]
    fn escaped_strings_read_as_the_plain_ones() {
        for (line, plain) in GOLDEN.lines().zip(golden()) {
            let escaped = line.replace('/', "\\/").replace("did:", "\\u0064id:");
            assert_eq!(parse_event(escaped.as_bytes()).unwrap(), plain, "{escaped}");
        }
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut bytes = GOLDEN.lines().next().unwrap().as_bytes().to_vec();
        let at = bytes.iter().position(|&b| b == b'3').unwrap();
        bytes[at] = 0xff;
        assert!(matches!(parse_event(&bytes), Err(EventError::Json(_))));
    }

    /// `line`'s commit with its fields in `order`, whatever Jetstream's.
    fn reordered(line: &str, order: &[&str]) -> String {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        let commit = &event["commit"];
        let fields: Vec<String> = order
            .iter()
            .filter(|key| !commit[**key].is_null())
            .map(|key| format!("{}:{}", json!(key), commit[*key]))
            .collect();
        format!(
            r#"{{"did":{},"time_us":{},"kind":"commit","commit":{{{}}}}}"#,
            event["did"],
            event["time_us"],
            fields.join(",")
        )
    }

    #[test]
    fn one_pass_reads_what_two_passes_read_in_any_field_order() {
        let orders: [&[&str]; 2] = [
            &["rev", "operation", "collection", "rkey", "record", "cid"],
            &["record", "cid", "rkey", "collection", "operation", "rev"],
        ];
        for line in GOLDEN.lines() {
            let commit = line.contains(r#""kind":"commit""#);
            let texts = orders
                .iter()
                .filter(|_| commit)
                .map(|order| reordered(line, order));
            for text in std::iter::once(line.to_owned()).chain(texts) {
                let careful = parse_in_two_passes(&text).unwrap();
                assert_eq!(parse_in_one_pass(&text), Some(careful), "{text}");
            }
        }
    }

    #[test]
    fn what_one_pass_refuses_the_careful_parse_still_reads() {
        // A delete's record is never decoded, so a record the rules could
        // not read does not make it fail.
        let delete = commit_json(ALICE, "delete", nsid::FEED_LIKE, "3k", Some(json!({})));
        assert_eq!(parse_in_one_pass(&delete), None);
        let event = parse_event(delete.as_bytes()).unwrap();
        assert!(matches!(event.body, EventBody::Commit(c) if c.operation == Operation::Delete));
        // Fields twice are refused by both.
        let twice =
            GOLDEN
                .lines()
                .next()
                .unwrap()
                .replacen(r#""rkey":"#, r#""rkey":"x","rkey":"#, 1);
        assert_eq!(parse_in_one_pass(&twice), None);
        assert!(matches!(refused(&twice), EventError::Json(_)));
    }

    #[test]
    fn records_of_other_collections_are_not_decoded() {
        let e = event(&commit_json(
            ALICE,
            "create",
            "com.example.thing",
            "k",
            Some(json!({"subject": 42, "text": ["anything"]})),
        ));
        assert_eq!(record_of(&e), &Record::Other);
    }
}
