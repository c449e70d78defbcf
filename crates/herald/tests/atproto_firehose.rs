//! The firehose source end to end with a real PDS (`@atproto/dev-env`, run
//! by `interop/atproto/pds.mjs` with Node 22): herald reads the PDS's own
//! `com.atproto.sync.subscribeRepos`, verifies every commit against the
//! accounts' keys on the test PLC, and pushes what alice does to bob's
//! device, registered through the PDS's `registerPush`.
//!
//! Runs when `HERALD_TEST_NODE22` and `HERALD_TEST_ATPROTO_MODULES` are set
//! (`interop/atproto/setup.sh` prints them; CI sets them).

mod support;

use std::collections::BTreeMap;

use serde_json::{Value, json};
use support::pds_peer::{Peer, peer_env};
use support::{APP, Arrival, Herald, Receiver, metric, wait_until, with_atproto};

const REGISTER: &str = "app.bsky.notification.registerPush";
const CREATE_RECORD: &str = "com.atproto.repo.createRecord";

/// An account on the PDS.
struct Account {
    did: String,
    jwt: String,
}

/// A record's strong reference `{uri, cid}`, as createRecord answers it.
type StrongRef = Value;

fn create_account(peer: &mut Peer, handle: &str) -> Account {
    let (did, jwt) = peer.create_account(handle);
    Account { did, jwt }
}

/// Creates a record in `who`'s repository; its `{uri, cid}`.
fn create(peer: &mut Peer, who: &Account, collection: &str, record: Value) -> StrongRef {
    let mut record = record;
    record["$type"] = json!(collection);
    record["createdAt"] = json!("2026-12-01T10:00:00.000Z");
    let mut body = json!({"repo": who.did, "collection": collection, "record": record});
    // A profile lives at one key.
    if collection == "app.bsky.actor.profile" {
        body["rkey"] = json!("self");
    }
    let (status, answer) = peer.pds_post(&who.jwt, CREATE_RECORD, &body);
    assert_eq!(status, 200, "createRecord {collection}: {answer}");
    json!({"uri": answer["uri"], "cid": answer["cid"]})
}

fn post(peer: &mut Peer, who: &Account, text: &str, extra: Value) -> StrongRef {
    let mut record = json!({"text": text});
    if let Value::Object(fields) = extra {
        record.as_object_mut().unwrap().extend(fields);
    }
    create(peer, who, "app.bsky.feed.post", record)
}

fn uri(strong_ref: &StrongRef) -> &str {
    strong_ref["uri"].as_str().unwrap()
}

/// herald configured to read the PDS's firehose, verifying commits.
async fn start_herald(dir: &std::path::Path, peer: &Peer) -> Herald {
    let firehose = peer.pds.replacen("http://", "ws://", 1);
    let extra = format!(
        "source = \"firehose\"\n[atproto.firehose]\nurls = [\"{firehose}\"]\nverify = true"
    );
    let plc = peer.plc.clone();
    Herald::start_edited(dir, |c| with_atproto(c, &plc, &extra, "")).await
}

/// Each push's record URI and reason.
fn by_uri(arrivals: &[Arrival]) -> BTreeMap<String, &str> {
    arrivals
        .iter()
        .map(|a| {
            let data = &a.body["data"];
            (
                data["uri"].as_str().unwrap_or("?").to_owned(),
                data["reason"].as_str().unwrap_or("?"),
            )
        })
        .collect()
}

fn reasons(arrivals: &[Arrival]) -> Vec<String> {
    arrivals
        .iter()
        .map(|a| a.body["data"]["reason"].as_str().unwrap_or("?").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_pds_firehose_pushes_each_interaction_once_across_a_crash() {
    let Some((node, modules)) = peer_env() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must set HERALD_TEST_NODE22 and HERALD_TEST_ATPROTO_MODULES"
        );
        println!("skipped: set HERALD_TEST_NODE22 and HERALD_TEST_ATPROTO_MODULES");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut peer = Peer::start(&node, &modules, dir.path());
    let alice = create_account(&mut peer, "alice.test");
    let bob = create_account(&mut peer, "bob.test");
    let carol = create_account(&mut peer, "carol.test");
    create(
        &mut peer,
        &alice,
        "app.bsky.actor.profile",
        json!({"displayName": "Alice"}),
    );
    let bobs_post = post(&mut peer, &bob, "hello from bob", json!({}));

    let mut herald = start_herald(dir.path(), &peer).await;
    let receiver = Receiver::start().await;
    let service_did = format!(
        "did:web:localhost%3A{}",
        herald.base.rsplit(':').next().unwrap()
    );
    let registration = json!({
        "serviceDid": service_did, "token": receiver.endpoint("bob"),
        "platform": "android", "appId": APP,
    });
    let (status, answer) = peer.pds_post(&bob.jwt, REGISTER, &registration);
    assert_eq!(status, 200, "registerPush through the PDS: {answer}");
    wait_until("herald reads the PDS's firehose", || async {
        herald.health().await["atproto"]["firehose"]["connected"].is_string()
    })
    .await;

    // Three interactions, pushed live.
    let follow = create(
        &mut peer,
        &alice,
        "app.bsky.graph.follow",
        json!({"subject": bob.did}),
    );
    let like = create(
        &mut peer,
        &alice,
        "app.bsky.feed.like",
        json!({"subject": bobs_post}),
    );
    let reply = post(
        &mut peer,
        &alice,
        "hi bob",
        json!({"reply": {"root": bobs_post, "parent": bobs_post}}),
    );
    let pushed = receiver.wait_for("bob", 3, |_| true).await;
    let mut live = reasons(&pushed);
    live.sort();
    assert_eq!(live, ["follow", "like", "reply"]);
    // A push the receiver accepted but herald had not yet settled when it
    // died is pushed again after the restart: delivery is at least once.
    // This crash is for the source's cursor, so it comes once nothing is
    // in flight.
    herald.wait_health("queue_depth", 0).await;

    // herald dies without a chance to store anything; alice goes on.
    herald.kill9();
    let mention_text = "hey @bob.test";
    let mention = post(
        &mut peer,
        &alice,
        mention_text,
        json!({"facets": [{
            "index": {"byteStart": 4, "byteEnd": mention_text.len()},
            "features": [{"$type": "app.bsky.richtext.facet#mention", "did": bob.did}],
        }]}),
    );
    let quote = post(
        &mut peer,
        &alice,
        "look at this",
        json!({"embed": {"$type": "app.bsky.embed.record", "record": bobs_post}}),
    );
    herald.restart().await;
    let repost = create(
        &mut peer,
        &alice,
        "app.bsky.feed.repost",
        json!({"subject": bobs_post}),
    );
    // Pushes queued together after the restart may arrive in either order.
    let pushed = receiver.wait_for("bob", 6, |_| true).await;
    let expected: BTreeMap<String, &str> = [
        (&follow, "follow"),
        (&like, "like"),
        (&reply, "reply"),
        (&mention, "mention"),
        (&quote, "quote"),
        (&repost, "repost"),
    ]
    .into_iter()
    .map(|(record, reason)| (uri(record).to_owned(), reason))
    .collect();
    assert_eq!(by_uri(&pushed), expected);
    for arrival in &pushed {
        let data = &arrival.body["data"];
        assert_eq!(data["actorDid"], alice.did, "{data}");
        assert_eq!(data["actorDisplayName"], "Alice", "{data}");
        assert_eq!(data["actorHandle"], "alice.test", "{data}");
        assert_eq!(data["recipientDid"], bob.did, "{data}");
    }
    let liked = pushed.iter().find(|a| a.body["data"]["reason"] == "like");
    assert_eq!(liked.unwrap().body["body"], "Alice liked your post");

    // bob blocks alice: her next like pushes nothing, carol's still does.
    create(
        &mut peer,
        &bob,
        "app.bsky.graph.block",
        json!({"subject": alice.did}),
    );
    let second_post = post(&mut peer, &bob, "second", json!({}));
    create(
        &mut peer,
        &alice,
        "app.bsky.feed.like",
        json!({"subject": second_post}),
    );
    create(
        &mut peer,
        &carol,
        "app.bsky.feed.like",
        json!({"subject": second_post}),
    );
    let pushed = receiver
        .wait_for("bob", 1, |a| {
            a.body["data"]["actorDid"] == carol.did.as_str()
        })
        .await;
    assert_eq!(pushed.len(), 1);
    let all = receiver.arrivals("bob");
    assert_eq!(
        all.len(),
        7,
        "exactly once each, and nothing from alice after the block"
    );
    let mut after_block = expected;
    after_block.insert(
        pushed[0].body["data"]["uri"].as_str().unwrap().to_owned(),
        "like",
    );
    assert_eq!(by_uri(&all), after_block);

    // Every commit passed verification; none was refused.
    let health = herald.health().await;
    let verification = &health["atproto"]["firehose"]["verification"];
    assert!(
        verification["commits_verified"].as_u64().unwrap() >= 5,
        "{health}"
    );
    assert_eq!(verification["rejected"], json!({}), "{health}");
    let metrics = herald.metrics().await;
    assert!(
        metric(&metrics, "herald_firehose_commits_verified_total", &[]).unwrap() >= 5.0,
        "{metrics}"
    );
    drop(herald);
    peer.finish();
}
