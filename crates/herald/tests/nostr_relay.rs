//! The Nostr relay source end to end through the real binary: two local
//! relays that apply NIP-01 filters (`since` included) to stored and live
//! events, a `nostr:` account registered through the admin API, and the
//! pushes at a UnifiedPush receiver. Also a relay that serves gift wraps
//! only to their authenticated recipient: herald watches it for the other
//! kinds, and Mostro's sender-triggered `/api/notify` wakes the recipient.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use herald_nostr::test_support::TestKey;
use herald_standins::nostr_relay::NostrRelay;
use serde_json::{Value, json};
use support::{Herald, Receiver, data, wait_until, with_relays};

const TWO_DAYS: u64 = 2 * 24 * 60 * 60;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
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

#[tokio::test]
async fn herald_authenticates_with_its_own_key_where_a_relay_requires_it_then_gets_dms() {
    let relay = NostrRelay::start_requiring_auth().await;
    let receiver = Receiver::start().await;
    let (alice, bob) = (TestKey::new("alice"), TestKey::new("bob"));
    let herald_key = TestKey::new("herald's own key");
    let bob_hex = bob.pubkey_hex();

    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("nostr.key");
    std::fs::write(&key_file, format!("{}\n", herald_key.secret_key().to_hex())).unwrap();
    let herald = Herald::start_edited(dir.path(), |c| {
        format!("{}key_file = {key_file:?}\n", with_relays(c, &[&relay]))
    })
    .await;
    let (status, _) = herald
        .register(&format!("nostr:{bob_hex}"), &receiver.endpoint("bob"))
        .await;
    assert_eq!(status, 201);

    // The first REQ is refused (auth-required), herald answers the
    // challenge, and asks again once the relay accepted it.
    wait_until("herald subscribes again after authenticating", || async {
        relay.requests().len() >= 2
    })
    .await;
    assert_eq!(relay.authenticated(), [herald_key.pubkey_hex()]);
    assert_eq!(relay.requests()[1][2]["#p"], json!([bob_hex]));
    let health = herald.health().await["nostr"]["relays"]["relays"][0].clone();
    assert_eq!(health["authenticated"], true, "{health}");
    assert!(
        health["closed_subscriptions"].as_u64() >= Some(1),
        "{health}"
    );

    let dm = alice.sign(now(), 4, &[&["p", &bob_hex]], "hi?iv=x");
    relay.publish(dm.clone());
    let pushed = receiver.wait_for("bob", 1, |_| true).await;
    assert_eq!(data(&pushed[0])["eventId"], dm["id"]);
    assert_eq!(data(&pushed[0])["reason"], "message");
}

/// Registers a device of `app` for `account` with the device `options`.
async fn register_with(herald: &Herald, app: &str, account: &str, token: &str, options: Value) {
    let body = json!({
        "account": account, "app_id": app, "platform": "android",
        "transport": "unifiedpush", "token": token, "options": options,
    });
    let (status, answer) = herald
        .request(reqwest::Method::PUT, "/v1/devices", Some(&body))
        .await;
    assert_eq!(status, 201, "{answer}");
}

#[tokio::test]
async fn each_app_gets_the_kinds_it_chose_a_device_narrows_them_and_a_silent_app_is_woken() {
    let relay = NostrRelay::start().await;
    let receiver = Receiver::start().await;
    let (alice, bob) = (TestKey::new("alice"), TestKey::new("bob"));
    let bob_hex = bob.pubkey_hex();
    let account = format!("nostr:{bob_hex}");
    let to_bob: &[&[&str]] = &[&["p", &bob_hex]];

    let dir = tempfile::tempdir().unwrap();
    let herald = Herald::start_edited(dir.path(), |c| {
        let c = format!(
            "{c}\n[apps.\"org.example.wake\".unifiedpush]\n\
             [apps.\"org.example.wake\".nostr]\nkinds = [4, 7]\nsilent = true\n"
        );
        with_relays(c, &[&relay])
    })
    .await;
    // The test app takes every kind; one of its devices wants DMs only.
    register_with(
        &herald,
        support::APP,
        &account,
        &receiver.endpoint("all"),
        json!({}),
    )
    .await;
    let dms_only = json!({"kinds": [4]});
    register_with(
        &herald,
        support::APP,
        &account,
        &receiver.endpoint("dms"),
        dms_only,
    )
    .await;
    register_with(
        &herald,
        "org.example.wake",
        &account,
        &receiver.endpoint("wake"),
        json!({}),
    )
    .await;
    wait_until("herald subscribes", || async {
        !relay.requests().is_empty()
    })
    .await;
    let request = relay.requests().remove(0);
    assert_eq!(
        request[3]["kinds"],
        json!([4, 1, 7, 6, 16, 9735]),
        "every app's"
    );
    assert_eq!(
        request[4],
        json!({"kinds": [10000], "authors": [bob_hex]}),
        "Bob's own mute list"
    );

    let reaction = alice.sign(now(), 7, to_bob, "+");
    let mention = alice.sign(now(), 1, to_bob, "hi");
    let dm = alice.sign(now(), 4, to_bob, "hi?iv=x");
    for event in [&reaction, &mention, &dm] {
        relay.publish(event.clone());
    }
    let all = receiver.wait_for("all", 3, |_| true).await;
    assert_eq!(all.len(), 3);
    let wake = receiver.wait_for("wake", 2, |_| true).await;
    let dms = receiver.wait_for("dms", 1, |_| true).await;
    // Published before the DM: had they been queued, they would be here.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let dms_only: Vec<_> = dms.iter().map(|a| data(a)["kind"].clone()).collect();
    assert_eq!(
        dms_only,
        [json!(4)],
        "no reaction, no mention for a DM-only device"
    );
    assert_eq!(receiver.arrivals("dms").len(), 1);

    let mut woken: Vec<_> = wake.iter().map(|a| data(a)["reason"].to_string()).collect();
    woken.sort();
    assert_eq!(
        woken,
        ["\"message\"", "\"reaction\""],
        "the silent app chose 4 and 7"
    );
    assert_eq!(receiver.arrivals("wake").len(), 2);
    for arrival in &wake {
        assert!(
            arrival.body.get("title").is_none_or(Value::is_null),
            "{}",
            arrival.body
        );
        assert!(
            arrival.body.get("body").is_none_or(Value::is_null),
            "{}",
            arrival.body
        );
        assert_eq!(data(arrival)["recipientPubkey"], bob_hex);
    }
    let visible = all.iter().find(|a| data(a)["eventId"] == dm["id"]).unwrap();
    assert_eq!(visible.body["title"], "New message");
}

#[tokio::test]
async fn a_muted_authors_events_are_not_pushed_before_or_after_a_restart_and_reactions_are_rate_limited()
 {
    let relay = NostrRelay::start().await;
    let receiver = Receiver::start().await;
    let (alice, bob, mallory) = (
        TestKey::new("alice"),
        TestKey::new("bob"),
        TestKey::new("mallory"),
    );
    let bob_hex = bob.pubkey_hex();
    let to_bob: &[&[&str]] = &[&["p", &bob_hex]];
    // Bob muted Mallory before he registered with herald.
    relay.publish(bob.sign(now() - 3_600, 10000, &[&["p", &mallory.pubkey_hex()]], ""));

    let dir = tempfile::tempdir().unwrap();
    let mut herald = Herald::start_edited(dir.path(), |c| {
        format!(
            "{}rate_limit = {{ pushes = 2, window_secs = 3600 }}\n",
            with_relays(c, &[&relay])
        )
    })
    .await;
    let (status, _) = herald
        .register(&format!("nostr:{bob_hex}"), &receiver.endpoint("bob"))
        .await;
    assert_eq!(status, 201);
    wait_until("Bob's mute list is taken", || async {
        source_figure(&herald, "mute_lists").await == 1
    })
    .await;

    let from_mallory = mallory.sign(now(), 4, to_bob, "buy now?iv=x");
    let from_alice = alice.sign(now(), 4, to_bob, "hi?iv=x");
    relay.publish(from_mallory);
    relay.publish(from_alice.clone());
    for n in 0..4 {
        relay.publish(alice.sign(now() + n, 7, to_bob, "+"));
    }
    // The list, the two DMs, the four reactions.
    wait_for_events(&herald, 7).await;
    let pushed = receiver.wait_for("bob", 3, |_| true).await;
    let mut reasons: Vec<_> = pushed
        .iter()
        .map(|a| data(a)["reason"].to_string())
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["\"message\"", "\"reaction\"", "\"reaction\""]);
    assert!(
        pushed
            .iter()
            .any(|a| data(a)["eventId"] == from_alice["id"])
    );
    assert_eq!(source_figure(&herald, "muted").await, 1);
    assert_eq!(source_figure(&herald, "rate_limited").await, 2);

    // Stopped; Mallory and Alice write meanwhile. After the restart the
    // relay serves the DMs before the list: the kept list still mutes.
    assert!(herald.terminate().await.success());
    let mallory_again = mallory.sign(now(), 4, to_bob, "still there?iv=x");
    let alice_again = alice.sign(now(), 4, to_bob, "back?iv=x");
    relay.publish(mallory_again);
    relay.publish(alice_again.clone());
    herald.restart().await;
    let pushed = receiver.wait_for("bob", 4, |_| true).await;
    assert_eq!(data(&pushed[3])["eventId"], alice_again["id"]);
    wait_until("Mallory's second DM is handled", || async {
        source_figure(&herald, "muted").await == 1 && source_figure(&herald, "events").await >= 9
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(receiver.arrivals("bob").len(), 4, "nothing from Mallory");
}

#[tokio::test]
async fn a_relay_serving_gift_wraps_only_to_their_recipient_is_watched_for_the_rest_and_notify_still_wakes()
 {
    let relay = NostrRelay::start_serving_gift_wraps_to_recipient_only().await;
    let receiver = Receiver::start().await;
    let (alice, trade) = (TestKey::new("alice"), TestKey::new("trade key"));
    let herald_key = TestKey::new("herald's own key");
    let trade_hex = trade.pubkey_hex();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("nostr.key");
    std::fs::write(&key_file, herald_key.secret_key().to_hex()).unwrap();
    let herald = Herald::start_edited(dir.path(), |c| {
        let c = format!("{c}\n[mostro_api]\napp_id = \"{}\"\n", support::APP);
        format!("{}key_file = {key_file:?}\n", with_relays(c, &[&relay]))
    })
    .await;
    // Mostro Mobile registers its trade key, as it does for every trade.
    let body = json!({"trade_pubkey": trade_hex, "token": receiver.endpoint("phone"), "platform": "android"});
    let reply = reqwest::Client::new()
        .post(format!("{}/api/register", herald.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);

    // auth-required, then (as herald) restricted, then asked without wraps.
    wait_until("herald asks again without gift wraps", || async {
        relay.requests().iter().any(|req| {
            let filters = &req.as_array().unwrap()[2..];
            filters
                .iter()
                .any(|f| f["kinds"] == json!([4, 1, 7, 6, 16, 9735]))
                && !filters.iter().any(|f| f["kinds"] == json!([1059]))
        })
    })
    .await;
    assert_eq!(relay.authenticated(), [herald_key.pubkey_hex()]);
    let health = herald.health().await["nostr"]["relays"]["relays"][0].clone();
    assert_eq!(health["gift_wraps_restricted"], true, "{health}");
    assert_eq!(health["authenticated"], true, "{health}");

    // The wrap for the trade key is invisible to herald; a DM is not.
    let wrap_key = TestKey::new("one-time wrap key");
    relay.publish(wrap_key.sign(now() - 3_600, 1059, &[&["p", &trade_hex]], "sealed"));
    let dm = alice.sign(now(), 4, &[&["p", &trade_hex]], "hi?iv=x");
    relay.publish(dm.clone());
    let pushed = receiver.wait_for("phone", 1, |_| true).await;
    assert_eq!(data(&pushed[0])["eventId"], dm["id"]);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(receiver.arrivals("phone").len(), 1, "no push for the wrap");

    // The sender's app wakes the recipient instead (Mostro's /api/notify).
    let reply = reqwest::Client::new()
        .post(format!("{}/api/notify", herald.base))
        .json(&json!({"trade_pubkey": trade_hex}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 202);
    let woken = receiver.wait_for("phone", 2, |_| true).await;
    assert_eq!(data(&woken[1])["type"], "chat_wake", "{}", woken[1].body);
}
