//! herald against nostr-tools: events and NIP-98 headers made by an
//! implementation nobody here wrote (npm `nostr-tools`, driven by
//! `interop/nostr/events.mjs`). herald must accept every one, read its
//! keys and tags as nostr-tools wrote them, and refuse tampered copies
//! and a NIP-98 header's second use.
//!
//! Runs when `HERALD_TEST_NODE` names a Node binary (20.19 or later) and
//! `HERALD_TEST_NOSTR_MODULES` the directory `interop/nostr/setup.sh`
//! installed into (setup.sh prints both); without them it says so and
//! returns. With them, every failure fails the test.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use herald_nostr::event::kind;
use herald_nostr::nip98::{self, HttpRequest, MAX_CLOCK_SKEW_SECS};
use herald_nostr::replay_guard::ReplayGuard;
use herald_nostr::test_support::{nostr_tools_peer, run_events_mjs};
use herald_nostr::{Event, NostrError, PublicKey};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// Test keys; any 32 bytes below the curve order will do.
const SENDER_SECRET: &str = "0101010101010101010101010101010101010101010101010101010101010101";
const RECIPIENT_SECRET: &str = "0202020202020202020202020202020202020202020202020202020202020202";
/// A key neither test key signs with: NIP-19's example npub's.
const STRANGER: &str = "7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e";
/// A URL with a query and a percent-escape, which `u` must match exactly.
const URL: &str = "https://push.example.org/v1/nostr/devices?app=org.example.chat&n=%C3%A9";
/// NIP-59: wraps are back-dated up to two days.
const TWO_DAYS_SECS: u64 = 2 * 24 * 60 * 60;
/// Slack for the seconds between nostr-tools' clock reading and ours.
const CLOCK_SLACK_SECS: u64 = 30;

/// One line of events.mjs, each event's JSON exactly as nostr-tools wrote
/// it; the other fields are those of its `keys` or `auth` lines.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    name: String,
    #[serde(borrow, default)]
    event: Option<&'a RawValue>,
    #[serde(default)]
    sender: String,
    #[serde(default)]
    sender_npub: String,
    #[serde(default)]
    recipient: String,
    #[serde(default)]
    recipient_npub: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    method: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    authorization: String,
}

/// Every C0 control character, the two JSON must escape, DEL, the line
/// and paragraph separators JavaScript once could not hold in strings, a
/// character outside the BMP, and text that looks like markup.
fn tricky_content() -> String {
    let controls: String = (0u8..0x20).map(char::from).collect();
    format!("{controls} \" \\ \u{7f} \u{2028}\u{2029} \u{e9}\u{65e5}\u{1F600} </script> / \\u0041")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Each change to a genuine event, and what herald must say of the result.
fn assert_refuses_tampered_copies(name: &str, json: &str, other_key: &PublicKey) {
    let original: Value = serde_json::from_str(json).unwrap();
    let sig = original["sig"].as_str().unwrap();
    let last = if sig.ends_with('0') { "1" } else { "0" };
    let changes: [(&str, Value, NostrError); 6] = [
        (
            "content",
            json!(format!("{}x", original["content"].as_str().unwrap())),
            NostrError::IdMismatch,
        ),
        (
            "created_at",
            json!(original["created_at"].as_u64().unwrap() + 1),
            NostrError::IdMismatch,
        ),
        (
            "kind",
            json!(1 + original["kind"].as_u64().unwrap()),
            NostrError::IdMismatch,
        ),
        (
            "tags",
            {
                let mut tags = original["tags"].clone();
                tags.as_array_mut()
                    .unwrap()
                    .push(json!(["p", other_key.to_hex()]));
                tags
            },
            NostrError::IdMismatch,
        ),
        ("pubkey", json!(other_key.to_hex()), NostrError::IdMismatch),
        (
            "sig",
            json!(format!("{}{last}", &sig[..sig.len() - 1])),
            NostrError::BadSignature,
        ),
    ];
    for (field, value, expected) in changes {
        let mut copy = original.clone();
        copy[field] = value;
        assert_eq!(
            Event::from_json(&copy.to_string()),
            Err(expected),
            "{name} with {field} changed"
        );
    }
}

#[test]
fn accepts_what_nostr_tools_signs_and_refuses_it_tampered() {
    let Some((node, modules)) = nostr_tools_peer() else {
        println!(
            "skipped: set HERALD_TEST_NODE and HERALD_TEST_NOSTR_MODULES (interop/nostr/setup.sh prints them)"
        );
        return;
    };
    let tricky = tricky_content();
    let request = json!({
        "senderSecretKey": SENDER_SECRET,
        "recipientSecretKey": RECIPIENT_SECRET,
        "note": tricky,
        "auth": [
            {"url": URL, "method": "GET"},
            {"url": URL, "method": "PUT", "payload": {
                "pubkey": "npub", "platform": "ios", "token": "t\u{f6}k\u{e9}n \"quoted\" \u{1F600}"
            }},
            {"url": URL, "method": "DELETE", "payload": {"token": "abc"}},
        ],
    });
    let stdout = run_events_mjs(&node, &modules, &request);
    let lines: Vec<Line<'_>> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let names: Vec<&str> = lines.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "keys",
            "note",
            "dm",
            "gift_wrap",
            "gift_wrap_two_days",
            "reaction",
            "auth",
            "auth",
            "auth"
        ]
    );

    // NIP-19: nostr-tools' npubs decode to its hex keys.
    let keys = &lines[0];
    let sender = PublicKey::parse_hex(&keys.sender).unwrap();
    let recipient = PublicKey::parse_hex(&keys.recipient).unwrap();
    assert_eq!(PublicKey::parse_npub_or_hex(&keys.sender_npub), Ok(sender));
    assert_eq!(
        PublicKey::parse_npub_or_hex(&keys.recipient_npub),
        Ok(recipient)
    );

    let events: HashMap<&str, (&str, Event)> = lines
        .iter()
        .filter_map(|l| Some((l.name.as_str(), l.event?.get())))
        .map(|(name, json)| {
            let event = Event::from_json(json)
                .unwrap_or_else(|e| panic!("herald refuses nostr-tools' {name}: {e}\n{json}"));
            (name, (json, event))
        })
        .collect();
    let received = now();

    let (_, note) = &events["note"];
    assert_eq!(note.kind(), kind::TEXT_NOTE);
    assert_eq!(note.pubkey(), &sender);
    assert_eq!(note.content(), tricky);
    assert_eq!(note.tag_values("t").collect::<Vec<_>>(), [tricky.as_str()]);
    assert_eq!(note.p_tags().collect::<Vec<_>>(), [recipient]);

    let (_, dm) = &events["dm"];
    assert_eq!(dm.kind(), kind::ENCRYPTED_DIRECT_MESSAGE);
    assert_eq!(dm.pubkey(), &sender);
    assert_eq!(dm.p_tags().collect::<Vec<_>>(), [recipient]);

    for name in ["gift_wrap", "gift_wrap_two_days"] {
        let (_, wrap) = &events[name];
        assert_eq!(wrap.kind(), kind::GIFT_WRAP, "{name}");
        assert_ne!(wrap.pubkey(), &sender, "{name} is signed by a one-time key");
        assert_eq!(wrap.p_tags().collect::<Vec<_>>(), [recipient], "{name}");
        assert!(wrap.created_at() <= received + CLOCK_SLACK_SECS, "{name}");
        assert!(
            wrap.created_at() + TWO_DAYS_SECS + CLOCK_SLACK_SECS >= received,
            "{name} is back-dated {} s",
            received - wrap.created_at()
        );
    }
    let (_, old_wrap) = &events["gift_wrap_two_days"];
    assert!(old_wrap.created_at() + TWO_DAYS_SECS <= received + CLOCK_SLACK_SECS);

    let (_, reaction) = &events["reaction"];
    assert_eq!(reaction.kind(), kind::REACTION);
    assert_eq!(reaction.pubkey(), &recipient);
    assert_eq!(reaction.content(), "+");
    assert_eq!(reaction.e_tags().collect::<Vec<_>>(), [*note.id()]);
    assert_eq!(reaction.p_tags().last(), Some(sender));

    let stranger = PublicKey::parse_hex(STRANGER).unwrap();
    for (name, (json, _)) in &events {
        assert_refuses_tampered_copies(name, json, &stranger);
    }

    for auth in lines.iter().filter(|l| l.name == "auth") {
        check_auth_header(auth, &sender, received);
    }
}

/// One nip98.getToken header: accepted for its request at its own time
/// and up to the skew later, refused for any other request, time or bytes.
fn check_auth_header(auth: &Line<'_>, sender: &PublicKey, received: u64) {
    let (url, method, body, header) = (
        auth.url.as_str(),
        auth.method.as_str(),
        auth.body.as_str(),
        auth.authorization.as_str(),
    );
    let what = format!("{method} with body {body:?}");
    let request = HttpRequest {
        url,
        method,
        body: body.as_bytes(),
    };
    let token = header.strip_prefix("Nostr ").expect("getToken's scheme");
    let event: Value = serde_json::from_slice(&STANDARD.decode(token).unwrap()).unwrap();
    let created_at = event["created_at"].as_u64().unwrap();
    assert!(created_at.abs_diff(received) <= CLOCK_SLACK_SECS, "{what}");

    assert_eq!(
        nip98::verify(Some(header), &request, created_at).map(|a| a.signer),
        Ok(*sender),
        "{what}"
    );
    // Once per header: a second use within its window is a replay.
    let guard = ReplayGuard::default();
    let accepted = nip98::verify(Some(header), &request, created_at).unwrap();
    assert_eq!(guard.admit(&accepted, created_at), Ok(*sender), "{what}");
    let again = nip98::verify(Some(header), &request, created_at + 1).unwrap();
    assert_eq!(
        guard.admit(&again, created_at + 1),
        Err(NostrError::AuthReplayed),
        "{what}"
    );
    let latest = created_at + MAX_CLOCK_SKEW_SECS;
    assert_eq!(
        nip98::verify(Some(header), &request, latest).map(|a| a.signer),
        Ok(*sender),
        "{what}"
    );
    assert_eq!(
        nip98::verify(Some(header), &request, latest + 1),
        Err(NostrError::AuthEventOutOfTime {
            created_at,
            now: latest + 1,
            max_skew_secs: MAX_CLOCK_SKEW_SECS
        }),
        "{what}"
    );

    let other_url = format!("{url}&x=1");
    let other = HttpRequest {
        url: &other_url,
        ..request
    };
    assert_eq!(
        nip98::verify(Some(header), &other, created_at),
        Err(NostrError::AuthUrlMismatch {
            expected: other_url.clone()
        }),
        "{what}"
    );
    let other = HttpRequest {
        method: "PATCH",
        ..request
    };
    assert_eq!(
        nip98::verify(Some(header), &other, created_at),
        Err(NostrError::AuthMethodMismatch {
            expected: "PATCH".to_owned()
        }),
        "{what}"
    );
    let other_body = format!("{body} ");
    let other = HttpRequest {
        body: other_body.as_bytes(),
        ..request
    };
    let expected = if body.is_empty() {
        NostrError::AuthPayloadMissing
    } else {
        NostrError::AuthPayloadMismatch
    };
    assert_eq!(
        nip98::verify(Some(header), &other, created_at),
        Err(expected),
        "{what}"
    );

    // The `u` tag changed to the URL it is then sent to: only the id can tell.
    let mut tampered = event.clone();
    tampered["tags"][0][1] = json!(other_url);
    let tampered = format!("Nostr {}", STANDARD.encode(tampered.to_string()));
    let other = HttpRequest {
        url: &other_url,
        ..request
    };
    assert_eq!(
        nip98::verify(Some(&tampered), &other, created_at),
        Err(NostrError::IdMismatch),
        "{what}"
    );
}
