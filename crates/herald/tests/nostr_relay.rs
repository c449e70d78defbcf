//! The Nostr relay source end to end through the real binary: two local
//! relays that apply NIP-01 filters (`since` included) to stored and live
//! events, a `nostr:` account registered through the admin API, and the
//! pushes at a UnifiedPush receiver.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use herald_nostr::test_support::TestKey;
use herald_standins::nostr_relay::NostrRelay;
use serde_json::{Value, json};
use support::{Herald, Receiver, wait_until};

const TWO_DAYS: u64 = 2 * 24 * 60 * 60;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn with_relays(config: String, relays: &[&NostrRelay]) -> String {
    let urls: Vec<String> = relays.iter().map(|r| format!("\"{}\"", r.url())).collect();
    format!("{config}\n[nostr]\nrelays = [{}]\n", urls.join(", "))
}

/// The source's figure `field` in /health.
async fn source_figure(herald: &Herald, field: &str) -> u64 {
    herald.health().await["nostr"]["relays"][field]
        .as_u64()
        .unwrap_or(0)
}

async fn wait_for_events(herald: &Herald, n: u64) {
    wait_until(format_args!("{n} relay events handled"), || async {
        source_figure(herald, "events").await >= n
    })
    .await;
}

fn data(arrival: &support::Arrival) -> &Value {
    &arrival.body["data"]
}

#[tokio::test]
async fn dms_and_back_dated_gift_wraps_are_pushed_once_across_relays_and_restarts() {
    let (one, two) = (NostrRelay::start().await, NostrRelay::start().await);
    let receiver = Receiver::start().await;
    let (alice, bob) = (TestKey::new("alice"), TestKey::new("bob"));
    let wrap_key = TestKey::new("one-time wrap key");
    let bob_hex = bob.pubkey_hex();
    let to_bob: &[&[&str]] = &[&["p", &bob_hex]];

    // A gift wrap Bob got before he registered: history, never pushed.
    let old_wrap = wrap_key.sign(now() - TWO_DAYS / 2, 1059, to_bob, "old");
    one.publish(old_wrap);

    let dir = tempfile::tempdir().unwrap();
    let mut herald = Herald::start_edited(dir.path(), |c| with_relays(c, &[&one, &two])).await;
    assert_eq!(
        herald.health().await["nostr"],
        json!({"accounts": 0, "relays": "waiting for the first Nostr device"})
    );
    assert_eq!(one.open_connections() + two.open_connections(), 0);

    let (status, _) = herald
        .register(&format!("nostr:{bob_hex}"), &receiver.endpoint("bob"))
        .await;
    assert_eq!(status, 201);
    wait_until("herald subscribes on both relays", || async {
        !one.requests().is_empty() && !two.requests().is_empty()
    })
    .await;
    let request = one.requests().remove(0);
    let wraps = &request[2];
    assert_eq!(wraps["kinds"], json!([1059]), "{request}");
    assert_eq!(wraps["#p"], json!([bob_hex]), "{request}");
    let since = wraps["since"].as_u64().unwrap();
    assert!(
        since <= now() - TWO_DAYS + 60,
        "gift wraps are asked for two days back: {request}"
    );
    assert_eq!(request[3]["kinds"], json!([4, 1, 7, 6, 16, 9735]));
    wait_until("the old wrap is marked history", || async {
        source_figure(&herald, "history").await == 1
    })
    .await;

    // On both relays: a DM, and a gift wrap back-dated almost two days.
    let dm = alice.sign(now(), 4, to_bob, "hi?iv=x");
    let wrap = wrap_key.sign(now() - TWO_DAYS + 600, 1059, to_bob, "sealed");
    for relay in [&one, &two] {
        relay.publish(dm.clone());
        relay.publish(wrap.clone());
    }
    // Bob's own note, tagging himself, then Alice's reaction.
    one.publish(bob.sign(now(), 1, to_bob, "note to self"));
    let reaction = alice.sign(now(), 7, to_bob, "+");
    one.publish(reaction.clone());
    // The old wrap, the DM and the wrap twice, the note, the reaction.
    wait_for_events(&herald, 7).await;
    let pushed = receiver.wait_for("bob", 3, |_| true).await;
    assert_eq!(pushed.len(), 3, "one push per event, none for Bob's own");
    let by_id = |event: &Value| {
        pushed
            .iter()
            .find(|a| data(a)["eventId"] == event["id"])
            .unwrap_or_else(|| panic!("no push for {event}"))
    };
    let dm_push = by_id(&dm);
    assert_eq!(dm_push.body["title"], "New message");
    assert!(dm_push.body.get("body").is_none_or(Value::is_null));
    assert_eq!(data(dm_push)["reason"], "message");
    assert_eq!(data(dm_push)["kind"], 4);
    assert_eq!(data(dm_push)["recipientPubkey"], bob_hex);
    assert_eq!(data(dm_push)["authorPubkey"], alice.pubkey_hex());
    assert!(!dm_push.body.to_string().contains("hi?iv=x"));
    let wrap_push = by_id(&wrap);
    assert_eq!(data(wrap_push)["kind"], 1059);
    assert!(
        data(wrap_push).get("authorPubkey").is_none(),
        "the wrap key is ephemeral"
    );
    assert_eq!(data(by_id(&reaction))["reason"], "reaction");
    assert_eq!(source_figure(&herald, "duplicates").await, 2);

    // A relay drops herald; what it stores meanwhile is pushed on return.
    two.drop_connections();
    let while_dropped = alice.sign(now(), 4, to_bob, "are you there?iv=x");
    two.publish(while_dropped.clone());
    receiver.wait_for("bob", 4, |_| true).await;

    // Stopped; a DM arrives meanwhile. After the restart every relay serves
    // its two days again: only the new DM is pushed.
    assert!(herald.terminate().await.success());
    let meanwhile = alice.sign(now(), 4, to_bob, "while you slept?iv=x");
    one.publish(meanwhile.clone());
    herald.restart().await;
    let pushed = receiver.wait_for("bob", 5, |_| true).await;
    assert_eq!(data(&pushed[4])["eventId"], meanwhile["id"]);
    // Served again, and seen: all six events of relay one, three of two.
    wait_for_events(&herald, 9).await;
    let settled = source_figure(&herald, "events").await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(source_figure(&herald, "events").await, settled);
    assert_eq!(receiver.arrivals("bob").len(), 5, "nothing pushed twice");
    assert!(source_figure(&herald, "duplicates").await >= 2);
}
