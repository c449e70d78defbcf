//! Who is told about a Nostr event, and what the push says.
//!
//! Pure: the same event and the same set of registered keys give the same
//! notifications, so the rules are tested without a relay and replayable.
//!
//! - **Recipients come from `p` tags only**, the way NIP-01, NIP-04, NIP-17,
//!   NIP-18, NIP-25 and NIP-57 name the people an event is for; each
//!   registered key once, however often it is tagged, and never the author:
//!   a client tags its own user in replies and reactions, and nobody wants
//!   a push for what they just did.
//! - **Content is never read.** Kind 4 and 1059 carry ciphertext, and a
//!   note's text would leak to the push provider; the push says what
//!   happened ("New message", "New mention") and the app fetches the event
//!   by its id. A reaction's `+` or emoji is content too, and is not sent.
//! - **No author for gift wraps.** A kind 1059 is signed by a one-time key
//!   (NIP-59): naming it would tell the app nothing and the provider that
//!   one more random key exists. The real sender is inside the seal, which
//!   only the recipient can open.
//! - **Dedupe key = event id + recipient**, so the same event reaching
//!   herald through two relays, or again after a restart, is one push per
//!   device within the delivery dedupe window, whatever the seen-set kept.

use herald_core::model::{Message, Notification, Priority};
use serde_json::{Map, json};

use crate::event::{Event, kind};
use crate::pubkey::PublicKey;

/// The kinds herald watches when the configuration names none: direct
/// messages (NIP-04, NIP-17 through NIP-59), notes, reactions, reposts and
/// zap receipts, the kinds damus's notepush serves plus gift wraps.
pub const DEFAULT_KINDS: &[u16] = &[
    kind::ENCRYPTED_DIRECT_MESSAGE,
    kind::GIFT_WRAP,
    kind::TEXT_NOTE,
    kind::REACTION,
    kind::REPOST,
    kind::GENERIC_REPOST,
    kind::ZAP_RECEIPT,
];

/// The NIP-10 markers that make a note a reply rather than a mention.
const REPLY_MARKERS: &[&str] = &["reply", "root"];

/// Why someone is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A kind 4 or 1059 addressed to them.
    Message,
    /// A note that tags them.
    Mention,
    /// A note that tags them and answers a thread (NIP-10 markers).
    Reply,
    Reaction,
    Repost,
    Zap,
}

impl Reason {
    /// The `reason` an app reads from the push's data.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Message => "message",
            Reason::Mention => "mention",
            Reason::Reply => "reply",
            Reason::Reaction => "reaction",
            Reason::Repost => "repost",
            Reason::Zap => "zap",
        }
    }

    /// The push's title: what happened, never what was said.
    pub fn title(self) -> &'static str {
        match self {
            Reason::Message => "New message",
            Reason::Mention => "New mention",
            Reason::Reply => "New reply",
            Reason::Reaction => "New reaction",
            Reason::Repost => "New repost",
            Reason::Zap => "New zap",
        }
    }

    /// Conversation wakes the device at once; the rest may be batched.
    fn priority(self) -> Priority {
        match self {
            Reason::Message | Reason::Mention | Reason::Reply | Reason::Zap => Priority::High,
            Reason::Reaction | Reason::Repost => Priority::Normal,
        }
    }
}

/// The reason an event of this kind notifies its `p`-tagged people, if any.
pub fn reason(event: &Event) -> Option<Reason> {
    Some(match event.kind() {
        kind::ENCRYPTED_DIRECT_MESSAGE | kind::GIFT_WRAP => Reason::Message,
        kind::TEXT_NOTE if is_reply(event) => Reason::Reply,
        kind::TEXT_NOTE => Reason::Mention,
        kind::REACTION => Reason::Reaction,
        kind::REPOST | kind::GENERIC_REPOST => Reason::Repost,
        kind::ZAP_RECEIPT => Reason::Zap,
        _ => return None,
    })
}

/// An `e` tag marked `reply` or `root` (NIP-10: `["e", id, relay, marker]`).
fn is_reply(event: &Event) -> bool {
    event.tags().iter().any(|tag| {
        tag.first().is_some_and(|name| name == "e")
            && tag
                .get(3)
                .is_some_and(|marker| REPLY_MARKERS.contains(&marker.as_str()))
    })
}

/// The registered people `event` concerns, each once, in tag order,
/// never its author.
pub fn recipients(event: &Event, is_registered: impl Fn(&PublicKey) -> bool) -> Vec<PublicKey> {
    let mut recipients: Vec<PublicKey> = Vec::new();
    if reason(event).is_none() {
        return recipients;
    }
    for key in event.p_tags() {
        if key != *event.pubkey() && !recipients.contains(&key) && is_registered(&key) {
            recipients.push(key);
        }
    }
    recipients
}

/// The push telling `recipient` about `event`, which `relay` served (the
/// app's hint where to fetch it); `None` for a kind the rules ignore.
pub fn notification(event: &Event, recipient: &PublicKey, relay: &str) -> Option<Notification> {
    let reason = reason(event)?;
    let mut data = Map::new();
    data.insert("reason".into(), json!(reason.as_str()));
    data.insert("eventId".into(), json!(event.id().to_hex()));
    data.insert("kind".into(), json!(event.kind()));
    data.insert("recipientPubkey".into(), json!(recipient.to_hex()));
    if event.kind() != kind::GIFT_WRAP {
        data.insert("authorPubkey".into(), json!(event.pubkey().to_hex()));
    }
    data.insert("relay".into(), json!(relay));
    Some(Notification {
        account: recipient.account(),
        app_id: None,
        message: Message {
            title: Some(reason.title().into()),
            data,
            priority: reason.priority(),
            channel: Some(reason.as_str().into()),
            ..Message::default()
        },
        dedupe_key: Some(format!("nostr:{}:{}", event.id(), recipient)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TestKey;

    const NOW: u64 = 1_780_000_000;
    const RELAY: &str = "wss://relay.example";

    fn event(author: &TestKey, kind: u16, tags: &[&[&str]], content: &str) -> Event {
        Event::from_json(&author.sign(NOW, kind, tags, content).to_string()).unwrap()
    }

    fn keys() -> (TestKey, TestKey, TestKey) {
        (
            TestKey::new("alice"),
            TestKey::new("bob"),
            TestKey::new("carol"),
        )
    }

    /// Everyone is registered.
    fn everyone(_: &PublicKey) -> bool {
        true
    }

    #[test]
    fn a_dm_and_a_gift_wrap_are_a_new_message_to_the_tagged_recipient() {
        let (alice, bob, _) = keys();
        let bob_hex = bob.pubkey_hex();
        for kind in [kind::ENCRYPTED_DIRECT_MESSAGE, kind::GIFT_WRAP] {
            let dm = event(&alice, kind, &[&["p", &bob_hex]], "ciphertext?iv=x");
            assert_eq!(recipients(&dm, everyone), [bob.public_key()]);
            let push = notification(&dm, &bob.public_key(), RELAY).unwrap();
            assert_eq!(push.account, bob.public_key().account());
            assert_eq!(push.message.title.as_deref(), Some("New message"));
            assert_eq!(push.message.body, None);
            assert_eq!(push.message.priority, Priority::High);
            let data = &push.message.data;
            assert_eq!(data["reason"], "message");
            assert_eq!(data["eventId"], dm.id().to_hex());
            assert_eq!(data["kind"], kind);
            assert_eq!(data["recipientPubkey"], bob_hex);
            assert_eq!(data["relay"], RELAY);
            assert_eq!(
                push.dedupe_key,
                Some(format!("nostr:{}:{bob_hex}", dm.id()))
            );
        }
    }

    #[test]
    fn never_forwards_content() {
        let (alice, bob, _) = keys();
        let secret = "the plaintext nobody may read";
        for kind in DEFAULT_KINDS {
            let e = event(&alice, *kind, &[&["p", &bob.pubkey_hex()]], secret);
            let push = notification(&e, &bob.public_key(), RELAY).unwrap();
            let text = serde_json::to_string(&push).unwrap();
            assert!(!text.contains(secret), "kind {kind}: {text}");
        }
    }

    #[test]
    fn names_the_author_except_of_a_gift_wrap_whose_key_is_ephemeral() {
        let (alice, bob, _) = keys();
        let tags: &[&[&str]] = &[&["p", &bob.pubkey_hex()]];
        let dm = event(&alice, kind::ENCRYPTED_DIRECT_MESSAGE, tags, "x");
        let data = notification(&dm, &bob.public_key(), RELAY)
            .unwrap()
            .message
            .data;
        assert_eq!(data["authorPubkey"], alice.pubkey_hex());
        let wrap = event(&alice, kind::GIFT_WRAP, tags, "x");
        let data = notification(&wrap, &bob.public_key(), RELAY)
            .unwrap()
            .message
            .data;
        assert!(!data.contains_key("authorPubkey"), "{data:?}");
        assert!(
            !serde_json::to_string(&data)
                .unwrap()
                .contains(&alice.pubkey_hex())
        );
    }

    #[test]
    fn a_note_is_a_mention_or_with_a_reply_or_root_marker_a_reply() {
        let (alice, bob, _) = keys();
        let bob_hex = bob.pubkey_hex();
        let root = "a".repeat(64);
        let mention = event(&alice, kind::TEXT_NOTE, &[&["p", &bob_hex]], "hi");
        assert_eq!(reason(&mention), Some(Reason::Mention));
        let quoted = event(
            &alice,
            kind::TEXT_NOTE,
            &[&["e", &root, "", "mention"], &["p", &bob_hex]],
            "look",
        );
        assert_eq!(reason(&quoted), Some(Reason::Mention));
        for marker in ["reply", "root"] {
            let reply = event(
                &alice,
                kind::TEXT_NOTE,
                &[&["e", &root, RELAY, marker], &["p", &bob_hex]],
                "yes",
            );
            assert_eq!(reason(&reply), Some(Reason::Reply));
            let push = notification(&reply, &bob.public_key(), RELAY).unwrap();
            assert_eq!(push.message.title.as_deref(), Some("New reply"));
        }
    }

    #[test]
    fn reactions_reposts_and_zaps_have_their_own_reason() {
        let (alice, bob, _) = keys();
        let tags: &[&[&str]] = &[&["p", &bob.pubkey_hex()]];
        for (kind, expected) in [
            (kind::REACTION, Reason::Reaction),
            (kind::REPOST, Reason::Repost),
            (kind::GENERIC_REPOST, Reason::Repost),
            (kind::ZAP_RECEIPT, Reason::Zap),
        ] {
            let e = event(&alice, kind, tags, "+");
            assert_eq!(reason(&e), Some(expected), "kind {kind}");
            assert_eq!(recipients(&e, everyone), [bob.public_key()]);
        }
    }

    #[test]
    fn other_kinds_notify_nobody() {
        let (alice, bob, _) = keys();
        let profile = event(&alice, 0, &[&["p", &bob.pubkey_hex()]], "{}");
        assert!(recipients(&profile, everyone).is_empty());
        assert!(notification(&profile, &bob.public_key(), RELAY).is_none());
    }

    #[test]
    fn tells_each_registered_tagged_key_once_and_never_the_author() {
        let (alice, bob, carol) = keys();
        let (a, b, c) = (alice.pubkey_hex(), bob.pubkey_hex(), carol.pubkey_hex());
        let note = event(
            &alice,
            kind::TEXT_NOTE,
            &[
                &["p", &a],
                &["p", &b],
                &["p", &c],
                &["p", &b],
                &["p", "not hex"],
            ],
            "hi all",
        );
        assert_eq!(
            recipients(&note, everyone),
            [bob.public_key(), carol.public_key()]
        );
        let only_carol = |key: &PublicKey| *key == carol.public_key();
        assert_eq!(recipients(&note, only_carol), [carol.public_key()]);
        let own_reaction = event(&alice, kind::REACTION, &[&["p", &a]], "+");
        assert!(recipients(&own_reaction, everyone).is_empty());
    }
}
