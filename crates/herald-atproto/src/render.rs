//! From a rule's [`Candidate`] to the notification herald queues: English
//! title and body, and the data fields the official app and its Notification
//! Service Extension read (atproto.md §12; the seed's payload table).
//!
//! The text is a default: apps that localise read `reason`,
//! `actorDisplayName` and `actorHandle` from the data and write their own,
//! which is why `mutable_content` is set (iOS runs the extension first).
//! The Android channel is the reason, as the official app names its
//! channels. Replies, mentions and quotes are direct conversation and go
//! out at high priority; likes, reposts and follows at normal priority,
//! which lets the device batch them.

use herald_core::model::{Account, Message, Notification, Priority};
use serde_json::{Map, Value, json};

use crate::jetstream_event::nsid;
use crate::rules::{Candidate, Reason};

/// Post text beyond this many characters is cut with an ellipsis: a
/// notification shows two or three lines, and a post is at most 300
/// graphemes anyway.
pub const MAX_TEXT_CHARS: usize = 200;
/// The actor's name when neither a display name nor a handle is known.
pub const SOMEONE: &str = "Someone";
const ELLIPSIS: char = '…';

/// What herald knows of the actor's name; either part may be missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActorName {
    pub display_name: Option<String>,
    pub handle: Option<String>,
}

impl ActorName {
    /// The display name, else the handle, else "Someone".
    fn shown(&self) -> &str {
        fn nonempty(s: &Option<String>) -> Option<&str> {
            s.as_deref().map(str::trim).filter(|s| !s.is_empty())
        }
        nonempty(&self.display_name)
            .or(nonempty(&self.handle))
            .unwrap_or(SOMEONE)
    }
}

/// The notification for `candidate`, to every device of its recipient.
pub fn notification(candidate: &Candidate, actor: &ActorName) -> Notification {
    let name = actor.shown();
    let (title, body) = text(candidate, name);
    let mut data = Map::new();
    data.insert("reason".into(), json!(candidate.reason.as_str()));
    data.insert("uri".into(), json!(candidate.uri.as_str()));
    if let Some(subject) = &candidate.subject {
        data.insert("subject".into(), json!(subject.as_str()));
    }
    data.insert("recipientDid".into(), json!(candidate.recipient.as_str()));
    data.insert("actorDid".into(), json!(candidate.actor.as_str()));
    let or_empty = |s: &Option<String>| Value::String(s.clone().unwrap_or_default());
    data.insert("actorDisplayName".into(), or_empty(&actor.display_name));
    data.insert("actorHandle".into(), or_empty(&actor.handle));
    let priority = if candidate.reason.carries_text() {
        Priority::High
    } else {
        Priority::Normal
    };
    Notification {
        // A parsed DID is printable ASCII of at most ~270 bytes (a did:plc,
        // or a did:web host and port), well inside an account's 512.
        account: Account::parse(&format!("atproto:{}", candidate.recipient.as_str()))
            .expect("a parsed DID makes a valid account"),
        app_id: None,
        message: Message {
            title: Some(title.into()),
            body: Some(body),
            data,
            collapse_key: candidate.collapse_key.clone(),
            priority,
            channel: Some(candidate.reason.as_str().into()),
            mutable_content: true,
            thread_id: Some(candidate.reason.as_str().into()),
            ..Message::default()
        },
        dedupe_key: Some(candidate.dedupe_key.clone()),
    }
}

/// Title and body in the words of the seed's table.
fn text(c: &Candidate, name: &str) -> (&'static str, String) {
    let liked_what = match c.subject.as_ref().map(|s| s.collection()) {
        Some(nsid::FEED_GENERATOR) => "your custom feed",
        _ => "your post",
    };
    let with_text = |lead: String| match c.text.as_deref().map(shorten) {
        Some(text) if !text.is_empty() => format!("{lead}: {text}"),
        _ => lead,
    };
    match c.reason {
        Reason::Like => ("New like", format!("{name} liked {liked_what}")),
        Reason::Repost => ("New repost", format!("{name} reposted your post")),
        Reason::LikeViaRepost => ("New like", format!("{name} liked a post you reposted")),
        Reason::RepostViaRepost => ("New repost", format!("{name} reposted a post you reposted")),
        Reason::Reply => (
            "New reply",
            with_text(format!("{name} replied to your post")),
        ),
        Reason::Mention => ("New mention", with_text(format!("{name} mentioned you"))),
        Reason::Quote => ("New quote", with_text(format!("{name} quoted your post"))),
        Reason::Follow => ("New follower", format!("{name} followed you")),
        Reason::Verified => ("Verified", "Your account has been verified".into()),
        Reason::Unverified => (
            "Verification removed",
            "Your account verification was removed".into(),
        ),
        Reason::StarterpackJoined => (
            "New member",
            format!("{name} joined through your starter pack"),
        ),
    }
}

/// `text` on one line, at most [`MAX_TEXT_CHARS`] characters.
fn shorten(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= MAX_TEXT_CHARS {
        return flat;
    }
    let mut cut: String = flat.chars().take(MAX_TEXT_CHARS - 1).collect();
    cut.push(ELLIPSIS);
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule_state::MemoryState;
    use crate::rules::notifications;
    use crate::test_support::{ALICE, BOB, create, did, post_uri, record_uri, strong_ref};

    fn alice() -> ActorName {
        ActorName {
            display_name: Some("Alice".into()),
            handle: Some("alice.example.com".into()),
        }
    }

    fn only(event: &crate::jetstream_event::JetstreamEvent) -> Candidate {
        let mut state = MemoryState::new();
        state.register(did(BOB));
        let mut all = notifications(event, &state);
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    fn like_of(subject: &str) -> Candidate {
        only(&create(
            ALICE,
            nsid::FEED_LIKE,
            "3like",
            json!({"subject": strong_ref(subject), "createdAt": "2026-05-25T14:23:28.778Z"}),
        ))
    }

    #[test]
    fn a_like_carries_the_fields_the_official_app_reads() {
        let c = like_of(&post_uri(BOB, "3post"));
        let n = notification(&c, &alice());
        assert_eq!(n.account.as_str(), format!("atproto:{BOB}"));
        let m = &n.message;
        assert_eq!(m.title.as_deref(), Some("New like"));
        assert_eq!(m.body.as_deref(), Some("Alice liked your post"));
        assert_eq!(m.data["reason"], "like");
        assert_eq!(m.data["uri"], record_uri(ALICE, nsid::FEED_LIKE, "3like"));
        assert_eq!(m.data["subject"], post_uri(BOB, "3post"));
        assert_eq!(m.data["recipientDid"], BOB);
        assert_eq!(m.data["actorDid"], ALICE);
        assert_eq!(m.data["actorDisplayName"], "Alice");
        assert_eq!(m.data["actorHandle"], "alice.example.com");
        assert_eq!(m.channel.as_deref(), Some("like"));
        assert!(m.mutable_content);
        assert_eq!(m.priority, Priority::Normal);
        assert_eq!(m.collapse_key, c.collapse_key);
        assert_eq!(n.dedupe_key.as_deref(), Some(c.dedupe_key.as_str()));
    }

    #[test]
    fn a_liked_custom_feed_is_named_so() {
        let feed = record_uri(BOB, nsid::FEED_GENERATOR, "cats");
        let n = notification(&like_of(&feed), &alice());
        assert_eq!(
            n.message.body.as_deref(),
            Some("Alice liked your custom feed")
        );
    }

    #[test]
    fn the_name_falls_back_to_the_handle_then_to_someone() {
        let c = like_of(&post_uri(BOB, "3post"));
        let handle_only = ActorName {
            display_name: Some("  ".into()),
            handle: Some("alice.example.com".into()),
        };
        let body = |a: &ActorName| notification(&c, a).message.body.unwrap();
        assert_eq!(body(&handle_only), "alice.example.com liked your post");
        assert_eq!(body(&ActorName::default()), "Someone liked your post");
        let unknown = notification(&c, &ActorName::default());
        assert_eq!(unknown.message.data["actorHandle"], "");
    }

    #[test]
    fn a_reply_shows_its_text_on_one_line_cut_to_length_at_high_priority() {
        let long = format!("first line\nsecond {}", "é".repeat(400));
        let c = only(&create(
            ALICE,
            nsid::FEED_POST,
            "3reply",
            json!({
                "text": long,
                "createdAt": "2026-05-25T14:23:28.778Z",
                "reply": {"root": strong_ref(&post_uri(BOB, "3root")), "parent": strong_ref(&post_uri(BOB, "3root"))},
            }),
        ));
        let m = notification(&c, &alice()).message;
        assert_eq!(m.title.as_deref(), Some("New reply"));
        let body = m.body.unwrap();
        let text = body
            .strip_prefix("Alice replied to your post: first line second ")
            .unwrap();
        assert!(text.ends_with('…'), "{body}");
        assert_eq!(
            body.chars().count(),
            "Alice replied to your post: ".len() + MAX_TEXT_CHARS
        );
        assert_eq!(m.priority, Priority::High);
        assert_eq!(m.collapse_key, None);
    }

    #[test]
    fn every_reason_has_a_title_and_a_body() {
        let mut c = like_of(&post_uri(BOB, "3post"));
        for reason in [
            Reason::Like,
            Reason::Repost,
            Reason::LikeViaRepost,
            Reason::RepostViaRepost,
            Reason::Reply,
            Reason::Mention,
            Reason::Quote,
            Reason::Follow,
            Reason::Verified,
            Reason::Unverified,
            Reason::StarterpackJoined,
        ] {
            c.reason = reason;
            let m = notification(&c, &alice()).message;
            assert!(!m.title.unwrap().is_empty(), "{reason:?}");
            assert!(!m.body.unwrap().is_empty(), "{reason:?}");
            assert_eq!(m.channel.as_deref(), Some(reason.as_str()));
        }
    }
}
