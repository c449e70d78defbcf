//! herald's relay listener fed events signed and serialised by nostr-tools
//! (npm, driven by `interop/nostr/events.mjs`), an implementation nobody
//! here wrote: published into the stand-in relay, read by the real binary,
//! pushed to UnifiedPush receivers.
//!
//! Runs when `HERALD_TEST_NODE` and `HERALD_TEST_NOSTR_MODULES` are set
//! (`interop/nostr/setup.sh` prints both); without them it says so and
//! returns. With them, every failure fails the test.

mod support;

use std::path::Path;
use std::time::Duration;

use herald_nostr::SecretKey;
use herald_nostr::test_support::{nostr_tools_peer, run_events_mjs};
use herald_standins::nostr_relay::NostrRelay;
use serde_json::{Value, json};
use support::{Herald, Receiver, data, wait_until, with_relays};

/// Test keys; any 32 bytes below the curve order will do.
const SENDER_SECRET: &str = "0303030303030303030303030303030303030303030303030303030303030303";
const RECIPIENT_SECRET: &str = "0404040404040404040404040404040404040404040404040404040404040404";

/// events.mjs's lines for `request`, as JSON.
fn events(node: &Path, modules: &Path, request: &Value) -> Vec<Value> {
    run_events_mjs(node, modules, request)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test]
async fn pushes_what_nostr_tools_signs_through_the_relay_listener() {
    let Some((node, modules)) = nostr_tools_peer() else {
        println!(
            "skipped: set HERALD_TEST_NODE and HERALD_TEST_NOSTR_MODULES (interop/nostr/setup.sh prints them)"
        );
        return;
    };
    let hex = |secret| SecretKey::parse_hex(secret).unwrap().public_key().to_hex();
    let (sender, recipient) = (hex(SENDER_SECRET), hex(RECIPIENT_SECRET));

    let relay = NostrRelay::start().await;
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let herald = Herald::start_edited(dir.path(), |c| with_relays(c, &[&relay])).await;
    // The recipient gets the note, the DM and the wraps; the reaction is
    // the recipient's, on the sender's note, so it is news to the sender.
    for (key, device) in [(&recipient, "recipient"), (&sender, "sender")] {
        let (status, answer) = herald
            .register(&format!("nostr:{key}"), &receiver.endpoint(device))
            .await;
        assert_eq!(status, 201, "{answer}");
    }
    let asked_for = |key: &str| {
        relay.requests().iter().any(|r| {
            r[2]["#p"]
                .as_array()
                .is_some_and(|p| p.contains(&json!(key)))
        })
    };
    wait_until("herald subscribes for both keys", || async {
        asked_for(&recipient) && asked_for(&sender)
    })
    .await;

    // Signed after the subscriptions, so the two-day wrap is within `since`.
    let request = json!({
        "senderSecretKey": SENDER_SECRET,
        "recipientSecretKey": RECIPIENT_SECRET,
        "note": "tabs\t, \"quotes\", \\ \u{2028} \u{e9}\u{1F600} </script> \u{1}",
    });
    let lines = tokio::task::spawn_blocking(move || events(&node, &modules, &request))
        .await
        .unwrap();
    assert_eq!(lines[0]["name"], "keys");
    assert_eq!(lines[0]["sender"], sender);
    assert_eq!(lines[0]["recipient"], recipient);
    let event = |name: &str| -> Value {
        let line = lines.iter().find(|l| l["name"] == name);
        line.unwrap_or_else(|| panic!("no {name} from events.mjs"))["event"].clone()
    };
    for line in &lines[1..] {
        relay.publish(line["event"].clone());
    }

    let expected = [
        ("recipient", "note", "mention", 1),
        ("recipient", "dm", "message", 4),
        ("recipient", "gift_wrap", "message", 1059),
        ("recipient", "gift_wrap_two_days", "message", 1059),
        ("sender", "reaction", "reaction", 7),
    ];
    let to_recipient = receiver.wait_for("recipient", 4, |_| true).await;
    let to_sender = receiver.wait_for("sender", 1, |_| true).await;
    // Anything pushed twice, or for the recipient's own reaction, is here by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.arrivals("recipient").len(), 4, "once each");
    assert_eq!(receiver.arrivals("sender").len(), 1, "once each");
    for (device, name, reason, kind) in expected {
        let event = event(name);
        let pushed = if device == "sender" {
            &to_sender
        } else {
            &to_recipient
        };
        let push = pushed
            .iter()
            .find(|a| data(a)["eventId"] == event["id"])
            .unwrap_or_else(|| panic!("no push of nostr-tools' {name} to the {device}: {event}"));
        let data = data(push);
        assert_eq!(data["reason"], reason, "{name}: {}", push.body);
        assert_eq!(data["kind"], kind, "{name}: {}", push.body);
        let key = if device == "sender" {
            &sender
        } else {
            &recipient
        };
        assert_eq!(data["recipientPubkey"], *key, "{name}: {}", push.body);
    }
    let dm = to_recipient
        .iter()
        .find(|a| data(a)["eventId"] == event("dm")["id"])
        .unwrap();
    assert_eq!(data(dm)["authorPubkey"], sender);
}
