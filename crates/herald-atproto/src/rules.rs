//! The notification rules: which accounts a Jetstream event concerns, and why.
//!
//! They follow the Bluesky AppView's own derivation (atproto.md §10), so a
//! user hears from herald about what their notifications tab will show:
//!
//! | reason | from | recipient |
//! |---|---|---|
//! | `like`, `repost` | a like or repost created | the author of the subject (any collection for likes: "liked your custom feed") |
//! | `like-via-repost`, `repost-via-repost` | the same with `via` | the author of the `via` repost |
//! | `mention` | a post's `#mention` facets | each mentioned account |
//! | `quote` | a post embedding a post (`embed.record` or `embed.recordWithMedia`) | the quoted post's author |
//! | `reply` | a post with `reply` | the authors of the parent, of the ancestors herald has seen (up to [`MAX_REPLY_ANCESTORS`]) and of the root |
//! | `follow` | a follow created | the followed account |
//! | `verified`, `unverified` | a verification created, deleted | its subject |
//! | `starterpack-joined` | a profile created with `joinedViaStarterPack` | the starter pack's author |
//!
//! Then, for every record: the actor is never told about their own action;
//! each recipient gets at most one notification per record, the first reason
//! winning in the order above (so mention, then quote, then reply, as the
//! AppView does); only registered accounts are recipients; and a pair that
//! blocks in either direction gets nothing. Updates and deletes notify
//! nobody, except the delete of a verification.
//!
//! The rules are pure: same event and same [`RuleState`] in, same
//! candidates out. They see the state as it was *before* the event; the
//! caller applies the event to the state afterwards (`MemoryState::apply`).
//!
//! Repeats are left to the queue's dedupe window rather than to state: a
//! second like, repost or follow of the same subject by the same actor, or
//! the same event replayed after a reconnect, yields the same dedupe key.
//! Collapse keys group likes, reposts, follows and the other count-like
//! reasons by reason and subject, so a burst replaces one notification on
//! the device instead of stacking; replies, mentions and quotes carry their
//! own text and are never collapsed.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::at_uri::AtUri;
use crate::did::Did;
use crate::jetstream_event::{
    Commit, Engagement, EventBody, JetstreamEvent, Operation, Post, Record, ReplyRef, nsid,
};

/// Replies notify ancestors up to this height (1 = the parent): the
/// AppView's `REPLY_NOTIF_DEPTH = 5` with `height < 5`. The root is notified
/// whatever its height, as the issue asks; the AppView only within this.
pub const MAX_REPLY_ANCESTORS: usize = 4;

/// Key hashes keep 128 bits: no collision among one recipient's keys within
/// reach, and the longest reason plus 22 base64 characters (41 bytes) fits
/// APNs's 64-byte `apns-collapse-id`, the tightest collapse key limit.
const KEY_HASH_BYTES: usize = 16;

/// Why an account is told: the `reason` the official app reads (atproto.md §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    Like,
    Repost,
    LikeViaRepost,
    RepostViaRepost,
    Reply,
    Mention,
    Quote,
    Follow,
    Verified,
    Unverified,
    StarterpackJoined,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Like => "like",
            Reason::Repost => "repost",
            Reason::LikeViaRepost => "like-via-repost",
            Reason::RepostViaRepost => "repost-via-repost",
            Reason::Reply => "reply",
            Reason::Mention => "mention",
            Reason::Quote => "quote",
            Reason::Follow => "follow",
            Reason::Verified => "verified",
            Reason::Unverified => "unverified",
            Reason::StarterpackJoined => "starterpack-joined",
        }
    }

    /// Replies, mentions and quotes show the post's text.
    pub fn carries_text(self) -> bool {
        matches!(self, Reason::Reply | Reason::Mention | Reason::Quote)
    }
}

/// What the rules read besides the event. Implementations answer from
/// memory; a slow answer would hold up the whole stream.
pub trait RuleState {
    /// Whether the account has registered a device: nobody else is told anything.
    fn is_registered(&self, did: &Did) -> bool;
    /// Whether either account blocks the other, directly or through a list.
    fn is_blocked(&self, a: &Did, b: &Did) -> bool;
    /// The parent of a reply herald has seen, to reach further ancestors.
    fn parent_of(&self, post: &AtUri) -> Option<AtUri>;
    /// The subject of a verification record still in force. Its delete
    /// carries only the record's URI, so telling the subject it was
    /// `unverified` needs this remembered from the create.
    fn verification_subject(&self, verification: &AtUri) -> Option<Did>;
    /// Whether verifications by this account count (all, unless the
    /// operator names trusted verifiers; the AppView trusts all).
    fn trusts_verifier(&self, verifier: &Did) -> bool;
}

/// A notification the rules derived, before policy (age, rate) and rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub recipient: Did,
    pub reason: Reason,
    /// The record that caused it.
    pub uri: AtUri,
    /// The AppView's `reasonSubject`: the liked or reposted record, the
    /// `via` repost, the post replied to or quoted, the starter pack.
    pub subject: Option<AtUri>,
    pub actor: Did,
    /// The post's text, for replies, mentions and quotes.
    pub text: Option<String>,
    /// Same key, same device: delivered once within the dedupe window.
    pub dedupe_key: String,
    /// A newer notification with this key replaces the shown one.
    pub collapse_key: Option<String>,
}

/// The notifications `event` causes, in precedence order.
pub fn notifications<S: RuleState + ?Sized>(event: &JetstreamEvent, state: &S) -> Vec<Candidate> {
    let EventBody::Commit(commit) = &event.body else {
        return Vec::new();
    };
    let actor = &event.did;
    let text = match &commit.operation {
        Operation::Create(Record::Post(post)) => Some(post.text.as_str()),
        _ => None,
    };
    let mut out: Vec<Candidate> = Vec::new();
    for target in targets(commit, actor, state) {
        let told = |c: &Candidate| c.recipient == *target.recipient;
        if *target.recipient == *actor
            || out.iter().any(told)
            || !state.is_registered(&target.recipient)
            || state.is_blocked(actor, &target.recipient)
        {
            continue;
        }
        out.push(target.into_candidate(commit, actor, text));
    }
    out
}

/// Who a record concerns and why, before the rules common to all records.
/// Borrowed from the event where it can be: most targets are not registered
/// and are dropped, so only a candidate owns its DIDs and URIs.
struct Target<'e> {
    recipient: Cow<'e, Did>,
    reason: Reason,
    subject: Option<Cow<'e, AtUri>>,
}

impl<'e> Target<'e> {
    fn new(recipient: Cow<'e, Did>, reason: Reason) -> Self {
        Self {
            recipient,
            reason,
            subject: None,
        }
    }

    /// About a record: its author is the recipient.
    fn about(record: Cow<'e, AtUri>, reason: Reason) -> Self {
        let recipient = match &record {
            Cow::Borrowed(record) => Cow::Borrowed(record.did()),
            Cow::Owned(record) => Cow::Owned(record.did().clone()),
        };
        Self {
            recipient,
            reason,
            subject: Some(record),
        }
    }

    fn into_candidate(self, commit: &Commit, actor: &Did, text: Option<&str>) -> Candidate {
        let Target {
            recipient,
            reason,
            subject,
        } = self;
        let (recipient, subject) = (recipient.into_owned(), subject.map(Cow::into_owned));
        let subject_text = subject.as_ref().map_or("", AtUri::as_str);
        let (dedupe_key, collapse_key, text) = if reason.carries_text() {
            // One per (record, recipient), whatever the reason.
            let dedupe = key("record", &[commit.uri.as_str(), recipient.as_str()]);
            (dedupe, None, text.map(str::to_owned))
        } else {
            let parts = [actor.as_str(), subject_text, recipient.as_str()];
            let collapse = match &subject {
                Some(subject) => key(reason.as_str(), &[subject.as_str()]),
                None => reason.as_str().to_owned(),
            };
            (key(reason.as_str(), &parts), Some(collapse), None)
        };
        Candidate {
            recipient,
            reason,
            uri: commit.uri.clone(),
            subject,
            actor: actor.clone(),
            text,
            dedupe_key,
            collapse_key,
        }
    }
}

fn targets<'e, S: RuleState + ?Sized>(
    commit: &'e Commit,
    actor: &Did,
    state: &S,
) -> Vec<Target<'e>> {
    match &commit.operation {
        Operation::Create(record) => created(commit, record, actor, state),
        Operation::Update(_) => Vec::new(),
        Operation::Delete => deleted(commit, actor, state),
    }
}

fn created<'e, S: RuleState + ?Sized>(
    commit: &'e Commit,
    record: &'e Record,
    actor: &Did,
    state: &S,
) -> Vec<Target<'e>> {
    match record {
        Record::Like(like) => engagement(like, Reason::Like, Reason::LikeViaRepost),
        Record::Repost(repost) => engagement(repost, Reason::Repost, Reason::RepostViaRepost),
        Record::Post(post) => post_targets(post, state),
        Record::Follow(follow) => vec![Target::new(Cow::Borrowed(&follow.subject), Reason::Follow)],
        Record::Verification(verification) if state.trusts_verifier(actor) => {
            vec![Target::new(
                Cow::Borrowed(&verification.subject),
                Reason::Verified,
            )]
        }
        // The AppView reads only the profile record (`self`).
        Record::Profile(profile) if commit.uri.rkey() == "self" => profile
            .joined_via_starter_pack
            .iter()
            .filter(|pack| pack.collection() == nsid::GRAPH_STARTERPACK)
            .map(|pack| Target::about(Cow::Borrowed(pack), Reason::StarterpackJoined))
            .collect(),
        _ => Vec::new(),
    }
}

/// A like or repost: the subject's author, and the author of the repost it
/// came through. `via` must name a repost record: anything else would let
/// an actor send "liked your repost" to any author of anything.
fn engagement(record: &Engagement, reason: Reason, via_reason: Reason) -> Vec<Target<'_>> {
    let via = record
        .via
        .iter()
        .filter(|via| via.collection() == nsid::FEED_REPOST)
        .map(|via| Target::about(Cow::Borrowed(via), via_reason));
    std::iter::once(Target::about(Cow::Borrowed(&record.subject), reason))
        .chain(via)
        .collect()
}

/// Mentions, then the quoted post's author, then the thread's authors.
fn post_targets<'e, S: RuleState + ?Sized>(post: &'e Post, state: &S) -> Vec<Target<'e>> {
    let mentions = post
        .mentions
        .iter()
        .map(|did| Target::new(Cow::Borrowed(did), Reason::Mention));
    let quote = post
        .embedded
        .iter()
        .filter(|quoted| quoted.collection() == nsid::FEED_POST)
        .map(|quoted| Target::about(Cow::Borrowed(quoted), Reason::Quote));
    let replies = post
        .reply
        .iter()
        .flat_map(|reply| ancestors(reply, state))
        .map(|ancestor| Target::about(ancestor, Reason::Reply));
    mentions.chain(quote).chain(replies).collect()
}

/// The posts a reply answers, nearest first: the parent, its ancestors as
/// far as herald has seen them (bounded, so a cycle in hostile records
/// cannot loop), then the root. Only posts: a reply ref to anything else
/// points outside any thread.
fn ancestors<'e, S: RuleState + ?Sized>(reply: &'e ReplyRef, state: &S) -> Vec<Cow<'e, AtUri>> {
    let mut chain = vec![Cow::Borrowed(&reply.parent)];
    while chain.len() < MAX_REPLY_ANCESTORS {
        let Some(parent) = chain.last().and_then(|post| state.parent_of(post)) else {
            break;
        };
        chain.push(Cow::Owned(parent));
    }
    if !chain.iter().any(|post| **post == reply.root) {
        chain.push(Cow::Borrowed(&reply.root));
    }
    chain.retain(|post| post.collection() == nsid::FEED_POST);
    chain
}

/// Deletes tell nobody, except that a verification was withdrawn.
fn deleted<'e, S: RuleState + ?Sized>(commit: &Commit, actor: &Did, state: &S) -> Vec<Target<'e>> {
    if commit.uri.collection() != nsid::GRAPH_VERIFICATION || !state.trusts_verifier(actor) {
        return Vec::new();
    }
    state
        .verification_subject(&commit.uri)
        .map(|subject| Target::new(Cow::Owned(subject), Reason::Unverified))
        .into_iter()
        .collect()
}

/// `<label>:<hash of parts>`: bounded whatever the URIs' lengths, and stable
/// across restarts and versions, since dedupe keys are stored in the queue.
fn key(label: &str, parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        // DIDs and AT URIs never contain a space, so the parts cannot run together.
        hash.update(part.as_bytes());
        hash.update(b" ");
    }
    let digest = hash.finalize();
    format!(
        "{label}:{}",
        URL_SAFE_NO_PAD.encode(&digest[..KEY_HASH_BYTES])
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jetstream_event::parse_event;
    use crate::rule_state::MemoryState;
    use crate::test_support::{
        ALICE, BOB, CAROL, DAVE, EVE, GOLDEN, create, delete, did, golden_dids, post_uri,
        record_uri, strong_ref, update,
    };
    use herald_core::model::{MAX_COLLAPSE_KEY_BYTES, MAX_DEDUPE_KEY_BYTES};
    use serde_json::{Value, json};

    /// State where `registered` have devices and nothing else is known.
    fn state(registered: &[&str]) -> MemoryState {
        let mut state = MemoryState::new();
        for account in registered {
            state.register(did(account));
        }
        state
    }

    /// (recipient, reason, subject) of each candidate.
    fn summary(candidates: &[Candidate]) -> Vec<(String, Reason, Option<String>)> {
        candidates
            .iter()
            .map(|c| {
                (
                    c.recipient.to_string(),
                    c.reason,
                    c.subject.as_ref().map(AtUri::to_string),
                )
            })
            .collect()
    }

    fn told(
        recipient: &str,
        reason: Reason,
        subject: Option<&str>,
    ) -> (String, Reason, Option<String>) {
        (recipient.to_owned(), reason, subject.map(str::to_owned))
    }

    fn like(actor: &str, rkey: &str, subject: &str, via: Option<&str>) -> JetstreamEvent {
        let mut record =
            json!({"subject": strong_ref(subject), "createdAt": "2026-05-25T14:23:28.778Z"});
        if let Some(via) = via {
            record["via"] = strong_ref(via);
        }
        create(actor, nsid::FEED_LIKE, rkey, record)
    }

    fn repost(actor: &str, rkey: &str, subject: &str, via: Option<&str>) -> JetstreamEvent {
        let mut record = json!({"subject": strong_ref(subject)});
        if let Some(via) = via {
            record["via"] = strong_ref(via);
        }
        create(actor, nsid::FEED_REPOST, rkey, record)
    }

    fn post(actor: &str, rkey: &str, fields: Value) -> JetstreamEvent {
        let mut record = json!({"text": "hello there", "createdAt": "2026-05-25T14:23:28.757Z"});
        record
            .as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        create(actor, nsid::FEED_POST, rkey, record)
    }

    fn reply_to(parent: &str, root: &str) -> Value {
        json!({"reply": {"parent": strong_ref(parent), "root": strong_ref(root)}})
    }

    fn mentions(dids: &[&str]) -> Value {
        let features: Vec<Value> = dids
            .iter()
            .map(|d| json!({"$type": "app.bsky.richtext.facet#mention", "did": d}))
            .collect();
        json!([{"index": {"byteStart": 0, "byteEnd": 3}, "features": features}])
    }

    fn quote_of(quoted: &str) -> Value {
        json!({"$type": "app.bsky.embed.record", "record": strong_ref(quoted)})
    }

    fn follow(actor: &str, rkey: &str, subject: &str) -> JetstreamEvent {
        create(actor, nsid::GRAPH_FOLLOW, rkey, json!({"subject": subject}))
    }

    fn verification(verifier: &str, rkey: &str, subject: &str) -> JetstreamEvent {
        create(
            verifier,
            nsid::GRAPH_VERIFICATION,
            rkey,
            json!({"subject": subject, "handle": "bob.example", "displayName": "Bob"}),
        )
    }

    fn golden() -> Vec<JetstreamEvent> {
        GOLDEN
            .lines()
            .map(|line| parse_event(line.as_bytes()).unwrap())
            .collect()
    }

    /// Every account in the golden events.
    fn everyone_in_golden() -> MemoryState {
        let mut state = MemoryState::new();
        for account in golden_dids() {
            state.register(account);
        }
        state
    }

    #[test]
    fn golden_events_notify_the_liked_replied_reposted_and_followed() {
        let state = everyone_in_golden();
        let all: Vec<Candidate> = golden()
            .iter()
            .flat_map(|e| notifications(e, &state))
            .collect();
        let thread = "at://did:plc:j76trmiofvaxxpvx2vnb2vwf/app.bsky.feed.post/3mmojbrjwbs26";
        assert_eq!(
            summary(&all),
            vec![
                told(
                    "did:plc:vfnmgxg2yscfliemmcxzyfyh",
                    Reason::Like,
                    Some("at://did:plc:vfnmgxg2yscfliemmcxzyfyh/app.bsky.feed.post/3mmoodizfwc2j")
                ),
                told(
                    "did:plc:j76trmiofvaxxpvx2vnb2vwf",
                    Reason::Reply,
                    Some(thread)
                ),
                told(
                    "did:plc:hjloomm2tkve3pmfgbxegl3v",
                    Reason::Repost,
                    Some("at://did:plc:hjloomm2tkve3pmfgbxegl3v/app.bsky.feed.post/3mmood3a6hc25")
                ),
                told("did:plc:anc6s2kher6ltrhhglxrzxsa", Reason::Follow, None),
            ]
        );
        let like = &all[0];
        assert_eq!(like.actor.as_str(), "did:plc:mcc5yghbk7tixqryac2yxku7");
        assert_eq!(
            like.uri.as_str(),
            "at://did:plc:mcc5yghbk7tixqryac2yxku7/app.bsky.feed.like/3mmoojp7etg2g"
        );
        assert_eq!(like.text, None);
        let reply = &all[1];
        assert_eq!(reply.text.as_deref(), Some("Try RSV for a good time !!"));
        assert_eq!(reply.actor.as_str(), "did:plc:q235v55g5unth4zjjdpacfdr");
    }

    #[test]
    fn golden_events_notify_nobody_unregistered() {
        let state = MemoryState::new();
        for event in golden() {
            assert_eq!(notifications(&event, &state), vec![]);
        }
    }

    #[test]
    fn a_like_tells_the_author_of_what_was_liked_posts_and_feeds_alike() {
        let state = state(&[BOB]);
        let post = post_uri(BOB, "3p");
        let feed = record_uri(BOB, "app.bsky.feed.generator", "cats");
        for subject in [&post, &feed] {
            let got = notifications(&like(ALICE, "3l", subject, None), &state);
            assert_eq!(summary(&got), vec![told(BOB, Reason::Like, Some(subject))]);
            assert_eq!(got[0].actor, did(ALICE));
            assert_eq!(
                got[0].uri.as_str(),
                record_uri(ALICE, nsid::FEED_LIKE, "3l")
            );
        }
    }

    #[test]
    fn a_like_via_a_repost_also_tells_the_reposter() {
        let state = state(&[BOB, CAROL]);
        let post = post_uri(BOB, "3p");
        let via = record_uri(CAROL, nsid::FEED_REPOST, "3r");
        let got = notifications(&like(ALICE, "3l", &post, Some(&via)), &state);
        assert_eq!(
            summary(&got),
            vec![
                told(BOB, Reason::Like, Some(&post)),
                told(CAROL, Reason::LikeViaRepost, Some(&via)),
            ]
        );
    }

    #[test]
    fn a_repost_via_a_repost_tells_the_author_and_the_reposter() {
        let state = state(&[BOB, CAROL]);
        let post = post_uri(BOB, "3p");
        let via = record_uri(CAROL, nsid::FEED_REPOST, "3r");
        let got = notifications(&repost(ALICE, "3r2", &post, Some(&via)), &state);
        assert_eq!(
            summary(&got),
            vec![
                told(BOB, Reason::Repost, Some(&post)),
                told(CAROL, Reason::RepostViaRepost, Some(&via)),
            ]
        );
    }

    #[test]
    fn a_via_that_is_not_a_repost_tells_nobody() {
        let state = state(&[BOB, CAROL]);
        let post = post_uri(BOB, "3p");
        let not_a_repost = post_uri(CAROL, "3other");
        let got = notifications(&like(ALICE, "3l", &post, Some(&not_a_repost)), &state);
        assert_eq!(summary(&got), vec![told(BOB, Reason::Like, Some(&post))]);
    }

    #[test]
    fn reposting_through_the_authors_own_repost_tells_the_author_once() {
        let state = state(&[BOB]);
        let post = post_uri(BOB, "3p");
        let via = record_uri(BOB, nsid::FEED_REPOST, "3r");
        let got = notifications(&repost(ALICE, "3r2", &post, Some(&via)), &state);
        assert_eq!(summary(&got), vec![told(BOB, Reason::Repost, Some(&post))]);
    }

    #[test]
    fn a_reply_tells_the_parent_and_root_authors_with_the_text() {
        let state = state(&[BOB, CAROL]);
        let root = post_uri(BOB, "3root");
        let parent = post_uri(CAROL, "3parent");
        let got = notifications(&post(ALICE, "3new", reply_to(&parent, &root)), &state);
        assert_eq!(
            summary(&got),
            vec![
                told(CAROL, Reason::Reply, Some(&parent)),
                told(BOB, Reason::Reply, Some(&root)),
            ]
        );
        assert!(got.iter().all(|c| c.text.as_deref() == Some("hello there")));
    }

    #[test]
    fn a_reply_tells_the_ancestors_herald_has_seen_up_to_four_levels_and_the_root() {
        // root (Alice) ← p1 (Carol) ← p2 (Dave) ← p3 (Bob) ← p4 (Dave) ← p5 (Bob) ← Eve's
        // reply: heights 1 to 4 are p5, p4, p3, p2; p1 is too far up; the root is told.
        let mut state = state(&[ALICE, BOB, CAROL, DAVE, EVE]);
        let root = post_uri(ALICE, "3root");
        let mut parent = root.clone();
        let thread = [
            (CAROL, "3p1"),
            (DAVE, "3p2"),
            (BOB, "3p3"),
            (DAVE, "3p4"),
            (BOB, "3p5"),
        ];
        for (author, rkey) in thread {
            state.apply(&post(author, rkey, reply_to(&parent, &root)));
            parent = post_uri(author, rkey);
        }
        let got = notifications(&post(EVE, "3new", reply_to(&parent, &root)), &state);
        assert_eq!(
            summary(&got),
            vec![
                told(BOB, Reason::Reply, Some(&post_uri(BOB, "3p5"))),
                told(DAVE, Reason::Reply, Some(&post_uri(DAVE, "3p4"))),
                told(ALICE, Reason::Reply, Some(&root)),
            ],
            "each author once, for their nearest post; Carol at height 5 is not told"
        );
    }

    #[test]
    fn a_reply_to_something_not_a_post_tells_nobody() {
        let state = state(&[BOB]);
        let not_a_post = record_uri(BOB, "app.bsky.feed.generator", "cats");
        let got = notifications(
            &post(ALICE, "3new", reply_to(&not_a_post, &not_a_post)),
            &state,
        );
        assert_eq!(got, vec![]);
    }

    #[test]
    fn a_mention_tells_each_mentioned_account_once() {
        let state = state(&[BOB, CAROL]);
        let got = notifications(
            &post(
                ALICE,
                "3new",
                json!({"facets": mentions(&[BOB, CAROL, BOB])}),
            ),
            &state,
        );
        assert_eq!(
            summary(&got),
            vec![
                told(BOB, Reason::Mention, None),
                told(CAROL, Reason::Mention, None)
            ]
        );
        assert_eq!(got[0].text.as_deref(), Some("hello there"));
    }

    #[test]
    fn a_quote_tells_the_quoted_author_with_record_and_record_with_media() {
        let state = state(&[BOB]);
        let quoted = post_uri(BOB, "3q");
        let with_media = json!({
            "$type": "app.bsky.embed.recordWithMedia",
            "record": {"$type": "app.bsky.embed.record", "record": strong_ref(&quoted)},
            "media": {"$type": "app.bsky.embed.images", "images": []},
        });
        for embed in [quote_of(&quoted), with_media] {
            let got = notifications(&post(ALICE, "3new", json!({"embed": embed})), &state);
            assert_eq!(summary(&got), vec![told(BOB, Reason::Quote, Some(&quoted))]);
            assert_eq!(got[0].text.as_deref(), Some("hello there"));
        }
    }

    #[test]
    fn embedding_something_other_than_a_post_is_no_quote() {
        let state = state(&[BOB]);
        for embedded in [
            record_uri(BOB, "app.bsky.feed.generator", "cats"),
            record_uri(BOB, "app.bsky.graph.list", "3l"),
            record_uri(BOB, nsid::GRAPH_STARTERPACK, "3s"),
        ] {
            let got = notifications(
                &post(ALICE, "3new", json!({"embed": quote_of(&embedded)})),
                &state,
            );
            assert_eq!(got, vec![], "{embedded}");
        }
    }

    #[test]
    fn one_notification_per_post_and_recipient_mention_before_quote_before_reply() {
        let state = state(&[BOB, CAROL]);
        let bobs = post_uri(BOB, "3b");
        let carols = post_uri(CAROL, "3c");
        let all_three = json!({
            "facets": mentions(&[BOB]),
            "embed": quote_of(&bobs),
            "reply": {"parent": strong_ref(&bobs), "root": strong_ref(&carols)},
        });
        let got = notifications(&post(ALICE, "3new", all_three), &state);
        assert_eq!(
            summary(&got),
            vec![
                told(BOB, Reason::Mention, None),
                told(CAROL, Reason::Reply, Some(&carols)),
            ]
        );
        let quote_and_reply = json!({"embed": quote_of(&bobs), "reply": {"parent": strong_ref(&bobs), "root": strong_ref(&bobs)}});
        let got = notifications(&post(ALICE, "3new", quote_and_reply), &state);
        assert_eq!(summary(&got), vec![told(BOB, Reason::Quote, Some(&bobs))]);
    }

    #[test]
    fn a_follow_tells_the_followed() {
        let got = notifications(&follow(ALICE, "3f", BOB), &state(&[BOB]));
        assert_eq!(summary(&got), vec![told(BOB, Reason::Follow, None)]);
        assert_eq!(
            got[0].uri.as_str(),
            record_uri(ALICE, nsid::GRAPH_FOLLOW, "3f")
        );
    }

    #[test]
    fn a_verification_tells_its_subject_and_its_delete_tells_them_again() {
        let mut state = state(&[BOB]);
        let created = verification(ALICE, "3v", BOB);
        let got = notifications(&created, &state);
        assert_eq!(summary(&got), vec![told(BOB, Reason::Verified, None)]);
        state.apply(&created);
        let deleted = delete(ALICE, nsid::GRAPH_VERIFICATION, "3v");
        let got = notifications(&deleted, &state);
        assert_eq!(summary(&got), vec![told(BOB, Reason::Unverified, None)]);
        assert_eq!(
            got[0].uri.as_str(),
            record_uri(ALICE, nsid::GRAPH_VERIFICATION, "3v")
        );
        state.apply(&deleted);
        assert_eq!(notifications(&deleted, &state), vec![], "told once");
    }

    #[test]
    fn deleting_a_verification_herald_never_saw_tells_nobody() {
        let got = notifications(
            &delete(ALICE, nsid::GRAPH_VERIFICATION, "3v"),
            &state(&[BOB]),
        );
        assert_eq!(got, vec![]);
    }

    #[test]
    fn only_trusted_verifiers_count_when_the_operator_names_them() {
        let mut state = state(&[BOB]);
        state.trust_only_verifiers([did(CAROL)]);
        let untrusted = verification(ALICE, "3v", BOB);
        assert_eq!(notifications(&untrusted, &state), vec![]);
        state.apply(&untrusted);
        assert_eq!(
            notifications(&delete(ALICE, nsid::GRAPH_VERIFICATION, "3v"), &state),
            vec![]
        );
        let trusted = verification(CAROL, "3v", BOB);
        assert_eq!(
            summary(&notifications(&trusted, &state)),
            vec![told(BOB, Reason::Verified, None)]
        );
    }

    #[test]
    fn joining_through_a_starter_pack_tells_its_author() {
        let state = state(&[BOB]);
        let pack = record_uri(BOB, nsid::GRAPH_STARTERPACK, "3s");
        let profile = json!({"displayName": "Alice", "joinedViaStarterPack": strong_ref(&pack)});
        let got = notifications(
            &create(ALICE, nsid::ACTOR_PROFILE, "self", profile.clone()),
            &state,
        );
        assert_eq!(
            summary(&got),
            vec![told(BOB, Reason::StarterpackJoined, Some(&pack))]
        );
        let other_rkey = create(ALICE, nsid::ACTOR_PROFILE, "3x", profile.clone());
        assert_eq!(notifications(&other_rkey, &state), vec![]);
        let edited = update(ALICE, nsid::ACTOR_PROFILE, "self", profile);
        assert_eq!(notifications(&edited, &state), vec![]);
        let not_a_pack = json!({"joinedViaStarterPack": strong_ref(&post_uri(BOB, "3p"))});
        let got = notifications(
            &create(ALICE, nsid::ACTOR_PROFILE, "self", not_a_pack),
            &state,
        );
        assert_eq!(got, vec![]);
        let plain = create(
            ALICE,
            nsid::ACTOR_PROFILE,
            "self",
            json!({"displayName": "A"}),
        );
        assert_eq!(notifications(&plain, &state), vec![]);
    }

    #[test]
    fn never_tells_the_actor_about_their_own_action() {
        let state = state(&[ALICE]);
        let own = post_uri(ALICE, "3own");
        let own_repost = record_uri(ALICE, nsid::FEED_REPOST, "3r");
        let pack = record_uri(ALICE, nsid::GRAPH_STARTERPACK, "3s");
        let events = [
            like(ALICE, "3l", &own, Some(&own_repost)),
            repost(ALICE, "3r2", &own, Some(&own_repost)),
            post(
                ALICE,
                "3new",
                json!({"facets": mentions(&[ALICE]), "embed": quote_of(&own), "reply": {"parent": strong_ref(&own), "root": strong_ref(&own)}}),
            ),
            follow(ALICE, "3f", ALICE),
            verification(ALICE, "3v", ALICE),
            create(
                ALICE,
                nsid::ACTOR_PROFILE,
                "self",
                json!({"joinedViaStarterPack": strong_ref(&pack)}),
            ),
        ];
        for event in events {
            assert_eq!(notifications(&event, &state), vec![], "{event:?}");
        }
    }

    #[test]
    fn unregistered_recipients_are_skipped_and_registered_ones_still_told() {
        let state = state(&[CAROL]);
        let got = notifications(
            &post(
                ALICE,
                "3new",
                json!({"facets": mentions(&[BOB, CAROL, DAVE])}),
            ),
            &state,
        );
        assert_eq!(summary(&got), vec![told(CAROL, Reason::Mention, None)]);
    }

    #[test]
    fn a_blocked_pair_gets_nothing_whoever_blocked_whom() {
        let list = record_uri(EVE, "app.bsky.graph.list", "3mods");
        let blocks = [
            vec![create(
                BOB,
                nsid::GRAPH_BLOCK,
                "3b",
                json!({"subject": ALICE}),
            )],
            vec![create(
                ALICE,
                nsid::GRAPH_BLOCK,
                "3b",
                json!({"subject": BOB}),
            )],
            vec![
                create(BOB, nsid::GRAPH_LISTBLOCK, "3lb", json!({"subject": list})),
                create(
                    EVE,
                    nsid::GRAPH_LISTITEM,
                    "3li",
                    json!({"subject": ALICE, "list": list}),
                ),
            ],
            vec![
                create(
                    ALICE,
                    nsid::GRAPH_LISTBLOCK,
                    "3lb",
                    json!({"subject": list}),
                ),
                create(
                    EVE,
                    nsid::GRAPH_LISTITEM,
                    "3li",
                    json!({"subject": BOB, "list": list}),
                ),
            ],
        ];
        let bobs = post_uri(BOB, "3p");
        for block in blocks {
            let mut state = state(&[BOB, CAROL]);
            for event in &block {
                state.apply(event);
            }
            let mention_both = post(ALICE, "3new", json!({"facets": mentions(&[BOB, CAROL])}));
            assert_eq!(
                summary(&notifications(&mention_both, &state)),
                vec![told(CAROL, Reason::Mention, None)],
                "the unblocked one is still told"
            );
            assert_eq!(
                notifications(&like(ALICE, "3l", &bobs, None), &state),
                vec![]
            );
            assert_eq!(notifications(&follow(ALICE, "3f", BOB), &state), vec![]);
        }
    }

    #[test]
    fn updates_and_deletes_tell_nobody() {
        let state = state(&[BOB]);
        let bobs = post_uri(BOB, "3p");
        let events = [
            update(
                ALICE,
                nsid::FEED_LIKE,
                "3l",
                json!({"subject": strong_ref(&bobs)}),
            ),
            update(
                ALICE,
                nsid::FEED_REPOST,
                "3r",
                json!({"subject": strong_ref(&bobs)}),
            ),
            update(
                ALICE,
                nsid::FEED_POST,
                "3p",
                json!({"text": "x", "facets": mentions(&[BOB])}),
            ),
            update(ALICE, nsid::GRAPH_FOLLOW, "3f", json!({"subject": BOB})),
            update(
                ALICE,
                nsid::GRAPH_VERIFICATION,
                "3v",
                json!({"subject": BOB}),
            ),
            delete(ALICE, nsid::FEED_LIKE, "3l"),
            delete(ALICE, nsid::FEED_POST, "3p"),
            delete(ALICE, nsid::GRAPH_FOLLOW, "3f"),
        ];
        for event in events {
            assert_eq!(notifications(&event, &state), vec![], "{event:?}");
        }
    }

    #[test]
    fn identity_account_and_foreign_events_tell_nobody() {
        let state = everyone_in_golden();
        for event in golden().iter().skip(4) {
            assert_eq!(notifications(event, &state), vec![]);
        }
    }

    #[test]
    fn a_second_like_repost_or_follow_of_the_same_subject_has_the_same_dedupe_key() {
        let state = state(&[BOB]);
        let bobs = post_uri(BOB, "3p");
        let pairs = [
            (
                like(ALICE, "3l1", &bobs, None),
                like(ALICE, "3l2", &bobs, None),
            ),
            (
                repost(ALICE, "3r1", &bobs, None),
                repost(ALICE, "3r2", &bobs, None),
            ),
            (follow(ALICE, "3f1", BOB), follow(ALICE, "3f2", BOB)),
        ];
        for (first, second) in pairs {
            let first = notifications(&first, &state);
            let second = notifications(&second, &state);
            assert_eq!(first.len(), 1);
            assert_ne!(first[0].uri, second[0].uri);
            assert_eq!(first[0].dedupe_key, second[0].dedupe_key);
        }
    }

    #[test]
    fn dedupe_keys_differ_by_actor_subject_and_reason() {
        let state = state(&[BOB]);
        let bobs = post_uri(BOB, "3p");
        let keys = [
            notifications(&like(ALICE, "3l", &bobs, None), &state),
            notifications(&like(CAROL, "3l", &bobs, None), &state),
            notifications(&like(ALICE, "3l", &post_uri(BOB, "3q"), None), &state),
            notifications(&repost(ALICE, "3l", &bobs, None), &state),
            notifications(&follow(ALICE, "3l", BOB), &state),
        ]
        .map(|c| c[0].dedupe_key.clone());
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn a_replayed_post_has_the_same_dedupe_key_and_each_recipient_its_own() {
        let state = state(&[BOB, CAROL]);
        let event = post(ALICE, "3new", json!({"facets": mentions(&[BOB, CAROL])}));
        let first = notifications(&event, &state);
        let again = notifications(&event, &state);
        assert_eq!(first, again);
        assert_ne!(first[0].dedupe_key, first[1].dedupe_key);
        let other_post = notifications(
            &post(ALICE, "3other", json!({"facets": mentions(&[BOB])})),
            &state,
        );
        assert_ne!(first[0].dedupe_key, other_post[0].dedupe_key);
    }

    #[test]
    fn likes_of_one_subject_collapse_together_and_posts_never_collapse() {
        let state = state(&[BOB]);
        let bobs = post_uri(BOB, "3p");
        let a = notifications(&like(ALICE, "3l", &bobs, None), &state);
        let c = notifications(&like(CAROL, "3l", &bobs, None), &state);
        let other = notifications(&like(ALICE, "3l", &post_uri(BOB, "3q"), None), &state);
        let reposted = notifications(&repost(ALICE, "3r", &bobs, None), &state);
        assert!(a[0].collapse_key.as_deref().unwrap().starts_with("like:"));
        assert_eq!(a[0].collapse_key, c[0].collapse_key);
        assert_ne!(a[0].collapse_key, other[0].collapse_key);
        assert_ne!(a[0].collapse_key, reposted[0].collapse_key);
        let followed = notifications(&follow(ALICE, "3f", BOB), &state);
        assert_eq!(followed[0].collapse_key.as_deref(), Some("follow"));
        let mentioned = notifications(
            &post(ALICE, "3new", json!({"facets": mentions(&[BOB])})),
            &state,
        );
        assert_eq!(mentioned[0].collapse_key, None);
    }

    #[test]
    fn keys_fit_the_queue_and_provider_limits_however_long_the_uris() {
        let state = state(&[BOB, CAROL]);
        let long_subject = record_uri(BOB, "app.bsky.feed.post", &"k".repeat(512));
        let long_via = record_uri(CAROL, nsid::FEED_REPOST, &"r".repeat(512));
        let rkey = "l".repeat(512);
        let got = notifications(
            &repost(ALICE, &rkey, &long_subject, Some(&long_via)),
            &state,
        );
        assert_eq!(got.len(), 2);
        let pack = record_uri(BOB, nsid::GRAPH_STARTERPACK, &"s".repeat(512));
        let joined = notifications(
            &create(
                ALICE,
                nsid::ACTOR_PROFILE,
                "self",
                json!({"joinedViaStarterPack": strong_ref(&pack)}),
            ),
            &state,
        );
        for candidate in got.iter().chain(&joined) {
            assert!(candidate.dedupe_key.len() <= MAX_DEDUPE_KEY_BYTES);
            let collapse = candidate.collapse_key.as_deref().unwrap();
            assert!(collapse.len() <= MAX_COLLAPSE_KEY_BYTES, "{collapse}");
            assert!(collapse.bytes().all(|b| b.is_ascii_graphic()));
        }
    }

    #[test]
    fn reasons_have_the_names_the_official_app_reads() {
        let all = [
            (Reason::Like, "like"),
            (Reason::Repost, "repost"),
            (Reason::LikeViaRepost, "like-via-repost"),
            (Reason::RepostViaRepost, "repost-via-repost"),
            (Reason::Reply, "reply"),
            (Reason::Mention, "mention"),
            (Reason::Quote, "quote"),
            (Reason::Follow, "follow"),
            (Reason::Verified, "verified"),
            (Reason::Unverified, "unverified"),
            (Reason::StarterpackJoined, "starterpack-joined"),
        ];
        for (reason, name) in all {
            assert_eq!(reason.as_str(), name);
            assert_eq!(serde_json::to_value(reason).unwrap(), json!(name));
        }
    }

    #[test]
    fn the_state_can_be_a_trait_object() {
        let state = state(&[BOB]);
        let dynamic: &dyn RuleState = &state;
        let got = notifications(&follow(ALICE, "3f", BOB), dynamic);
        assert_eq!(summary(&got), vec![told(BOB, Reason::Follow, None)]);
    }
}
