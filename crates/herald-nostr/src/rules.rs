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
//! - **Each app chooses its kinds, each device may narrow them.** One
//!   notification per app whose kinds hold the event's ([`AppRules`]), so
//!   an app's devices hear only of what the app asked for, rendered as it
//!   asked (a visible alert, or a silent data-only wake-up); a device's
//!   `kinds` option ([`KINDS_OPTION`]) narrows its app's further, applied
//!   by the fan-out through [`device_wants`].
//! - **Who is behind an event** ([`actors`]) is what a recipient's mute
//!   list is checked against: the author, except of a gift wrap (a
//!   one-time key nobody mutes), and a zap's sender (its `P` tag), since a
//!   zap receipt is signed by the recipient's wallet service, not by the
//!   person who zapped.
//! - **Count-like reasons** (reactions, reposts, zaps) are the ones a
//!   recipient's rate limit applies to ([`Reason::is_count_like`]);
//!   messages, mentions and replies are conversation and always pushed.

use herald_core::model::{AppId, Device, Message, Notification, Priority};
use serde_json::{Map, Value, json};

use crate::event::{Event, kind};
use crate::pubkey::PublicKey;

/// The kinds the rules push for, and those herald watches when the
/// configuration names none: direct messages (NIP-04, NIP-17 through
/// NIP-59), notes, reactions, reposts and zap receipts, the kinds damus's
/// notepush serves plus gift wraps.
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

/// The device option holding the event kinds a device wants, narrowing
/// its app's: a list of kind numbers, as the registration APIs store it.
pub const KINDS_OPTION: &str = "kinds";

/// The tag of a zap receipt naming the zap's sender (NIP-57).
const ZAP_SENDER_TAG: &str = "P";

/// What one app asked of the relay rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRules {
    /// The app whose devices are told; `None`: every app's.
    pub app_id: Option<AppId>,
    /// The kinds its devices are told about.
    pub kinds: Vec<u16>,
    /// Data-only wake-ups (no title: iOS background pushes, Android data
    /// messages) instead of visible alerts; the app shows what it fetched.
    pub silent: bool,
}

impl AppRules {
    /// Visible alerts of `kinds` to every app's devices.
    pub fn every_app(kinds: &[u16]) -> Self {
        Self {
            app_id: None,
            kinds: kinds.to_vec(),
            silent: false,
        }
    }
}

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

    /// Counted against the recipient's rate limit: one more of these is
    /// news the collapsed notification already carries. Conversation is not.
    pub fn is_count_like(self) -> bool {
        matches!(self, Reason::Reaction | Reason::Repost | Reason::Zap)
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

/// The people behind `event`, whom a recipient may have muted: its
/// author (but not a gift wrap's one-time key) and a zap's sender.
pub fn actors(event: &Event) -> Vec<PublicKey> {
    let mut actors = Vec::new();
    if event.kind() != kind::GIFT_WRAP {
        actors.push(*event.pubkey());
    }
    if event.kind() == kind::ZAP_RECEIPT {
        actors.extend(
            event
                .tag_values(ZAP_SENDER_TAG)
                .filter_map(|value| PublicKey::parse_hex(value).ok()),
        );
    }
    actors
}

/// The pushes telling `recipient` about `event`, which `relay` served (the
/// app's hint where to fetch it): one per app of `apps` whose kinds hold
/// the event's; none for a kind the rules ignore.
pub fn notifications(
    event: &Event,
    recipient: &PublicKey,
    relay: &str,
    apps: &[AppRules],
) -> Vec<Notification> {
    let Some(reason) = reason(event) else {
        return Vec::new();
    };
    apps.iter()
        .filter(|app| app.kinds.contains(&event.kind()))
        .map(|app| Notification {
            account: recipient.account(),
            app_id: app.app_id.clone(),
            message: message(event, reason, recipient, relay, app.silent),
            dedupe_key: Some(format!("nostr:{}:{}", event.id(), recipient)),
        })
        .collect()
}

fn message(
    event: &Event,
    reason: Reason,
    recipient: &PublicKey,
    relay: &str,
    silent: bool,
) -> Message {
    let mut data = Map::new();
    data.insert("reason".into(), json!(reason.as_str()));
    data.insert("eventId".into(), json!(event.id().to_hex()));
    data.insert("kind".into(), json!(event.kind()));
    data.insert("recipientPubkey".into(), json!(recipient.to_hex()));
    if event.kind() != kind::GIFT_WRAP {
        data.insert("authorPubkey".into(), json!(event.pubkey().to_hex()));
    }
    data.insert("relay".into(), json!(relay));
    if silent {
        // Wakes the app at once on both platforms; nothing is shown.
        return Message {
            data,
            priority: Priority::High,
            ..Message::default()
        };
    }
    Message {
        title: Some(reason.title().into()),
        data,
        priority: reason.priority(),
        channel: Some(reason.as_str().into()),
        ..Message::default()
    }
}

/// Whether `device` wants `notification`, one of these rules' pushes: its
/// `kinds` option, when it is a list of kinds, must hold the event's kind.
/// A device without the option takes its app's kinds; one with something
/// else there (the admin API stores options as given) is not narrowed.
pub fn device_wants(notification: &Notification, device: &Device) -> bool {
    let Some(Value::Array(wanted)) = device.registration.options.get(KINDS_OPTION) else {
        return true;
    };
    let Some(kind) = notification.message.data.get("kind") else {
        return true;
    };
    wanted.contains(kind)
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

    /// Every app, every kind the rules know, visible.
    fn everything() -> AppRules {
        AppRules::every_app(DEFAULT_KINDS)
    }

    /// The one push to `recipient` with `everything()`.
    fn only_push(event: &Event, recipient: &PublicKey) -> Notification {
        let mut pushes = notifications(event, recipient, RELAY, &[everything()]);
        assert_eq!(pushes.len(), 1, "{pushes:?}");
        pushes.remove(0)
    }

    #[test]
    fn a_dm_and_a_gift_wrap_are_a_new_message_to_the_tagged_recipient() {
        let (alice, bob, _) = keys();
        let bob_hex = bob.pubkey_hex();
        for kind in [kind::ENCRYPTED_DIRECT_MESSAGE, kind::GIFT_WRAP] {
            let dm = event(&alice, kind, &[&["p", &bob_hex]], "ciphertext?iv=x");
            assert_eq!(recipients(&dm, everyone), [bob.public_key()]);
            let push = only_push(&dm, &bob.public_key());
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
            let push = only_push(&e, &bob.public_key());
            let text = serde_json::to_string(&push).unwrap();
            assert!(!text.contains(secret), "kind {kind}: {text}");
        }
    }

    #[test]
    fn names_the_author_except_of_a_gift_wrap_whose_key_is_ephemeral() {
        let (alice, bob, _) = keys();
        let tags: &[&[&str]] = &[&["p", &bob.pubkey_hex()]];
        let dm = event(&alice, kind::ENCRYPTED_DIRECT_MESSAGE, tags, "x");
        let data = only_push(&dm, &bob.public_key()).message.data;
        assert_eq!(data["authorPubkey"], alice.pubkey_hex());
        let wrap = event(&alice, kind::GIFT_WRAP, tags, "x");
        let data = only_push(&wrap, &bob.public_key()).message.data;
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
            let push = only_push(&reply, &bob.public_key());
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
        assert!(notifications(&profile, &bob.public_key(), RELAY, &[everything()]).is_empty());
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

    fn app(id: &str, kinds: &[u16], silent: bool) -> AppRules {
        AppRules {
            app_id: Some(AppId::parse(id).unwrap()),
            kinds: kinds.to_vec(),
            silent,
        }
    }

    fn device(app: &str, options: Value) -> Device {
        use herald_core::model::{NewDevice, Platform, Transport};
        Device {
            id: 1,
            registration: NewDevice {
                account: TestKey::new("bob").public_key().account(),
                app_id: AppId::parse(app).unwrap(),
                platform: Platform::Android,
                transport: Transport::UnifiedPush,
                token: "https://push.example/1".into(),
                options: options.as_object().cloned().unwrap_or_default(),
            },
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn each_app_is_told_only_of_the_kinds_it_chose() {
        let (alice, bob, _) = keys();
        let apps = [
            app(
                "chat.dm",
                &[kind::ENCRYPTED_DIRECT_MESSAGE, kind::GIFT_WRAP],
                false,
            ),
            app("social.client", DEFAULT_KINDS, false),
        ];
        let tags: &[&[&str]] = &[&["p", &bob.pubkey_hex()]];
        let for_apps = |e: &Event| -> Vec<String> {
            notifications(e, &bob.public_key(), RELAY, &apps)
                .into_iter()
                .map(|n| n.app_id.unwrap().to_string())
                .collect()
        };
        let dm = event(&alice, kind::ENCRYPTED_DIRECT_MESSAGE, tags, "x");
        assert_eq!(for_apps(&dm), ["chat.dm", "social.client"]);
        let reaction = event(&alice, kind::REACTION, tags, "+");
        assert_eq!(for_apps(&reaction), ["social.client"]);
    }

    #[test]
    fn a_silent_app_gets_a_data_only_high_priority_wake_up() {
        let (alice, bob, _) = keys();
        let tags: &[&[&str]] = &[&["p", &bob.pubkey_hex()]];
        let reaction = event(&alice, kind::REACTION, tags, "+");
        let apps = [app("org.example.mostro", DEFAULT_KINDS, true)];
        let wake = notifications(&reaction, &bob.public_key(), RELAY, &apps).remove(0);
        assert_eq!(wake.message.title, None);
        assert_eq!(wake.message.body, None);
        assert_eq!(wake.message.channel, None);
        assert_eq!(wake.message.priority, Priority::High);
        assert_eq!(wake.message.data["reason"], "reaction");
        assert_eq!(wake.message.data["eventId"], reaction.id().to_hex());
        wake.validate().expect("data alone is a valid message");
    }

    #[test]
    fn a_device_narrowed_to_some_kinds_wants_only_those() {
        let (alice, bob, _) = keys();
        let tags: &[&[&str]] = &[&["p", &bob.pubkey_hex()]];
        let dm = only_push(
            &event(&alice, kind::ENCRYPTED_DIRECT_MESSAGE, tags, "x"),
            &bob.public_key(),
        );
        let reaction = only_push(&event(&alice, kind::REACTION, tags, "+"), &bob.public_key());
        let dms_only = device("chat.dm", json!({KINDS_OPTION: [4, 1059]}));
        assert!(device_wants(&dm, &dms_only));
        assert!(!device_wants(&reaction, &dms_only));
        let unnarrowed = device("chat.dm", json!({"p256dh": "x"}));
        assert!(device_wants(&reaction, &unnarrowed));
        let odd = device("chat.dm", json!({KINDS_OPTION: "all"}));
        assert!(device_wants(&reaction, &odd), "not a list: not narrowed");
    }

    #[test]
    fn the_people_behind_an_event_are_its_author_and_a_zaps_sender_not_a_wrap_key() {
        let (alice, bob, carol) = keys();
        let to_bob: &[&[&str]] = &[&["p", &bob.pubkey_hex()]];
        let dm = event(&alice, kind::ENCRYPTED_DIRECT_MESSAGE, to_bob, "x");
        assert_eq!(actors(&dm), [alice.public_key()]);
        let wrap = event(&alice, kind::GIFT_WRAP, to_bob, "x");
        assert!(actors(&wrap).is_empty());
        // A zap receipt is signed by Bob's wallet service (Alice here); Carol zapped.
        let zap = event(
            &alice,
            kind::ZAP_RECEIPT,
            &[&["p", &bob.pubkey_hex()], &["P", &carol.pubkey_hex()]],
            "",
        );
        assert_eq!(actors(&zap), [alice.public_key(), carol.public_key()]);
    }

    #[test]
    fn reactions_reposts_and_zaps_count_against_the_rate_and_conversation_does_not() {
        for reason in [Reason::Reaction, Reason::Repost, Reason::Zap] {
            assert!(reason.is_count_like(), "{reason:?}");
        }
        for reason in [Reason::Message, Reason::Mention, Reason::Reply] {
            assert!(!reason.is_count_like(), "{reason:?}");
        }
    }
}
