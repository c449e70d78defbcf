//! Each registered account's own relays through the real binary: an index
//! relay serves the accounts' kind 10050 and 10002 lists, herald watches
//! the relays they name for those accounts alone, follows newer lists,
//! keeps them across a restart without the index relay, and stays within
//! its bounds whatever the lists hold. Every relay is the stand-in over
//! WebSocket, on loopback (hence `allow_private_account_relays`).

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_nostr::test_support::TestKey;
use herald_standins::nostr_relay::NostrRelay;
use serde_json::{Value, json};
use support::{Herald, Receiver, data, free_port, wait_until};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The test configuration reading lists from `index`, plus `extra` `[nostr]` keys.
fn with_index(config: String, index: &str, extra: &str) -> String {
    format!(
        "{config}\n[nostr]\nindex_relays = [\"{index}\"]\nallow_private_account_relays = true\n{extra}"
    )
}

/// A signed list of `kind` whose tags are `name` and each of `urls`.
fn list(key: &TestKey, created_at: u64, kind: u16, name: &str, urls: &[&str]) -> Value {
    let tags: Vec<[&str; 2]> = urls.iter().map(|url| [name, url]).collect();
    let tags: Vec<&[&str]> = tags.iter().map(|t| t.as_slice()).collect();
    key.sign(created_at, kind, &tags, "")
}

/// The `#p` of every gift-wrap or DM filter a relay was asked for.
fn watched_keys(relay: &NostrRelay) -> Vec<Value> {
    relay
        .requests()
        .iter()
        .flat_map(|req| req.as_array().unwrap()[2..].to_vec())
        .filter(|filter| filter.get("#p").is_some())
        .map(|filter| filter["#p"].clone())
        .collect()
}

async fn account_relays(herald: &Herald) -> Vec<Value> {
    herald.health().await["nostr"]["relays"]["account_relays"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn an_accounts_own_relays_are_watched_for_it_alone_follow_its_newest_list_and_survive_a_restart()
 {
    let index = NostrRelay::start().await;
    let (inbox, reading, moved) = (
        NostrRelay::start().await,
        NostrRelay::start().await,
        NostrRelay::start().await,
    );
    let receiver = Receiver::start().await;
    let (alice, bob, carol) = (
        TestKey::new("alice"),
        TestKey::new("bob"),
        TestKey::new("carol"),
    );
    let (bob_hex, carol_hex) = (bob.pubkey_hex(), carol.pubkey_hex());
    let t = now() - 3_600;
    index.publish(list(&bob, t, 10050, "relay", &[&inbox.url()]));
    // Carol's NIP-65 list: only the relays she reads from are hers to watch.
    let write_only = format!("ws://127.0.0.1:{}", free_port());
    index.publish(carol.sign(
        t,
        10002,
        &[&["r", &reading.url(), "read"], &["r", &write_only, "write"]],
        "",
    ));

    let dir = tempfile::tempdir().unwrap();
    let mut herald = Herald::start_edited(dir.path(), |c| with_index(c, &index.url(), "")).await;
    for (name, key) in [("bob", &bob_hex), ("carol", &carol_hex)] {
        let (status, _) = herald
            .register(&format!("nostr:{key}"), &receiver.endpoint(name))
            .await;
        assert_eq!(status, 201);
    }
    wait_until("herald watches Bob's and Carol's relays", || async {
        !watched_keys(&inbox).is_empty() && !watched_keys(&reading).is_empty()
    })
    .await;
    let index_request = &index.requests()[0];
    assert_eq!(index_request[2]["kinds"], json!([10050, 10002, 10000]));
    // Each relay hears only of its own account.
    assert!(watched_keys(&inbox).iter().all(|p| *p == json!([bob_hex])));
    assert!(
        watched_keys(&reading)
            .iter()
            .all(|p| *p == json!([carol_hex]))
    );
    let relays = account_relays(&herald).await;
    assert_eq!(
        relays.len(),
        2,
        "no connection to a write-only relay: {relays:?}"
    );

    let dm = alice.sign(now(), 4, &[&["p", &bob_hex]], "hi?iv=x");
    inbox.publish(dm.clone());
    let wrap_key = TestKey::new("one-time wrap key");
    let back_dated = wrap_key.sign(now() - 100_000, 1059, &[&["p", &bob_hex]], "sealed");
    inbox.publish(back_dated.clone());
    let mention = alice.sign(now(), 1, &[&["p", &carol_hex]], "hey");
    reading.publish(mention.clone());
    let pushed = receiver.wait_for("bob", 2, |_| true).await;
    let ids: Vec<&Value> = pushed.iter().map(|a| &data(a)["eventId"]).collect();
    assert!(ids.contains(&&dm["id"]) && ids.contains(&&back_dated["id"]));
    let carol_pushed = receiver.wait_for("carol", 1, |_| true).await;
    assert_eq!(data(&carol_pushed[0])["relay"], reading.url() + "/");

    // Bob moves his inbox; a lagging copy of the old list changes nothing.
    index.publish(list(&bob, t + 60, 10050, "relay", &[&moved.url()]));
    index.publish(list(&bob, t, 10050, "relay", &[&inbox.url()]));
    wait_until("herald follows Bob to his new inbox", || async {
        !watched_keys(&moved).is_empty() && inbox.open_connections() == 0
    })
    .await;

    // Stopped; the index relay is gone when herald comes back, and a DM
    // reaches the new inbox meanwhile: the kept list still leads there.
    assert!(herald.terminate().await.success());
    let config = dir.path().join("herald.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let dead = format!("ws://127.0.0.1:{}", free_port());
    std::fs::write(&config, text.replace(&index.url(), &dead)).unwrap();
    let meanwhile = alice.sign(now(), 4, &[&["p", &bob_hex]], "still there?iv=x");
    moved.publish(meanwhile.clone());
    herald.restart().await;
    let pushed = receiver.wait_for("bob", 3, |_| true).await;
    assert_eq!(data(&pushed[2])["eventId"], meanwhile["id"]);
    assert_eq!(
        account_relays(&herald).await.len(),
        2,
        "Bob's new inbox and Carol's"
    );
}

#[tokio::test]
async fn hostile_lists_cannot_push_herald_past_its_bounds_or_to_forged_relays() {
    let index = NostrRelay::start().await;
    let mut relays = Vec::new();
    for _ in 0..4 {
        relays.push(NostrRelay::start().await);
    }
    let urls: Vec<String> = relays.iter().map(NostrRelay::url).collect();
    let receiver = Receiver::start().await;
    let (bob, carol, dave, erin) = (
        TestKey::new("bob"),
        TestKey::new("carol"),
        TestKey::new("dave"),
        TestKey::new("erin"),
    );
    let t = now() - 3_600;
    // Bob's list: junk first, then 1,000 relays; only the first two valid
    // ones count (relays_per_account = 2).
    let huge = format!("ws://127.0.0.1:1/{}", "a".repeat(300));
    let mut bobs: Vec<String> = vec![
        "https://not-a-relay.example".into(),
        huge,
        format!("ws://user:secret@{}", urls[0].trim_start_matches("ws://")),
        "not a url".into(),
        urls[0].clone(),
        urls[0].clone() + "/",
        urls[1].clone(),
    ];
    bobs.extend((0..1_000).map(|n| format!("ws://127.0.0.1:1/{n}")));
    let bobs: Vec<&str> = bobs.iter().map(String::as_str).collect();
    index.publish(list(&bob, t, 10050, "relay", &bobs));
    // Carol's two more relays make four candidates for three places.
    index.publish(list(&carol, t, 10002, "r", &[&urls[2], &urls[3]]));
    // Dave's list is forged: his key, someone else's relay, a broken id.
    let mut forged = list(&dave, t, 10050, "relay", &[&urls[0]]);
    forged["tags"][0][1] = json!(format!("ws://127.0.0.1:{}", free_port()));
    index.publish(forged);
    // Erin never registers: her list is not even asked for.
    index.publish(list(&erin, t, 10050, "relay", &[&urls[3]]));

    let dir = tempfile::tempdir().unwrap();
    let extra = "relays_per_account = 2\nmax_account_relays = 3\n";
    let herald = Herald::start_edited(dir.path(), |c| with_index(c, &index.url(), extra)).await;
    for (name, key) in [("bob", &bob), ("carol", &carol), ("dave", &dave)] {
        let account = format!("nostr:{}", key.pubkey_hex());
        let (status, _) = herald.register(&account, &receiver.endpoint(name)).await;
        assert_eq!(status, 201);
    }
    wait_until(
        "three account relays are watched, Dave's forged list refused",
        || async {
            let health = herald.health().await["nostr"]["relays"].clone();
            account_relays(&herald).await.len() == 3
                && health["index_relays"][0]["refused"].as_u64() >= Some(1)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let health = herald.health().await["nostr"]["relays"].clone();
    assert_eq!(health["relay_lists_held"], 2, "Bob's and Carol's: {health}");
    let watched = account_relays(&herald).await;
    assert_eq!(
        watched.len(),
        3,
        "never past max_account_relays: {watched:?}"
    );
    for relay in &watched {
        let url = relay["url"].as_str().unwrap();
        assert!(
            urls.iter().any(|u| url == format!("{u}/")),
            "only the valid relays of registered accounts: {url}"
        );
        assert_eq!(relay["accounts"], 1, "{relay}");
    }
    let erin_hex = json!(erin.pubkey_hex());
    for request in index.requests() {
        let authors = request[2]["authors"].as_array().unwrap();
        assert!(
            !authors.contains(&erin_hex),
            "only registered keys' lists are asked for"
        );
    }
    for relay in &relays {
        let keys = watched_keys(relay);
        assert!(
            keys.iter()
                .all(|p| !p.as_array().unwrap().contains(&erin_hex))
        );
    }
}
