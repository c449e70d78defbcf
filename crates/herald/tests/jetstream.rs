//! The AT Protocol source end to end through the real binary: a local
//! Jetstream streams dictionary-compressed events, herald's rules find the
//! registered recipient, names the actor from a local PLC directory and
//! PDS, and the push reaches a UnifiedPush receiver.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use herald_standins::jetstream::JetstreamService;
use herald_standins::pds::PdsService;
use herald_standins::plc::PlcDirectory;
use serde_json::{Value, json};
use support::{Herald, Receiver, metric, wait_until, with_atproto};

const ALICE: &str = "did:plc:aliceeeeeeeeeeeeeeeeeeee";
const BOB: &str = "did:plc:bobbbbbbbbbbbbbbbbbbbbbb";
const CAROL: &str = "did:plc:carollllllllllllllllllll";

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// A Jetstream v1 event: `actor` likes `author`'s post `3post`, at `time_us`.
fn like(actor: &str, rkey: &str, author: &str, time_us: u64) -> String {
    like_post(actor, rkey, author, "3post", time_us)
}

fn like_post(actor: &str, rkey: &str, author: &str, post: &str, time_us: u64) -> String {
    json!({
        "did": actor, "time_us": time_us, "kind": "commit",
        "commit": {
            "rev": "3mmoojp7vgo2g", "operation": "create", "collection": "app.bsky.feed.like", "rkey": rkey,
            "record": {
                "$type": "app.bsky.feed.like", "createdAt": "2026-12-01T10:00:00.000Z",
                "subject": {"uri": format!("at://{author}/app.bsky.feed.post/{post}"), "cid": "bafyreiaxf7tgbfydx3465sckitq6v564thxe2wwydbi7cwxbxvgssje3em"},
            },
            "cid": "bafyreidqpc7si3dbimffi64lz3xsx2qt45ip7rpna2qpslcddp23itjjzm",
        },
    })
    .to_string()
}

async fn start(dir: &std::path::Path, jetstream: &JetstreamService, plc: &PlcDirectory) -> Herald {
    let source = format!("urls = [\"{}\"]\nmax_event_age_secs = 600", jetstream.url());
    Herald::start_edited(dir, |c| with_atproto(c, &plc.url(), "", &source)).await
}

#[tokio::test]
async fn a_like_on_the_stream_reaches_the_liked_accounts_device_and_the_cursor_survives_a_restart()
{
    let jetstream = JetstreamService::start().await;
    let receiver = Receiver::start().await;
    // Alice's document names her handle and PDS, whose profile names her.
    let plc = PlcDirectory::start().await;
    let pds = PdsService::start().await;
    plc.set_identity(ALICE, "alice.example.com", &pds.url());
    pds.put_record(
        ALICE,
        "app.bsky.actor.profile",
        "self",
        json!({"$type": "app.bsky.actor.profile", "displayName": "Alice"}),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut herald = start(dir.path(), &jetstream, &plc).await;

    // Lazy: nobody to notify, so no connection.
    let health = herald.health().await;
    assert_eq!(
        health["atproto"],
        json!({"accounts": 0, "jetstream": "waiting for the first AT Protocol device"})
    );
    assert!(jetstream.queries().is_empty());

    let (status, _) = herald
        .register(&format!("atproto:{BOB}"), &receiver.endpoint("bob"))
        .await;
    assert_eq!(status, 201);
    wait_until("herald connects to Jetstream", || async {
        jetstream.open_connections() == 1
    })
    .await;
    let query = jetstream.queries().remove(0);
    assert!(query.contains("compress=true"), "{query}");
    assert!(
        query.contains("wantedCollections=app.bsky.feed.like"),
        "{query}"
    );
    assert!(!query.contains("cursor="), "no stored cursor yet: {query}");

    let now = now_us();
    jetstream.publish(
        json!({"did": ALICE, "time_us": now, "kind": "commit", "commit": {"operation": "explode"}})
            .to_string(),
    );
    jetstream.publish(like(ALICE, "3old", BOB, now - 3_600_000_000));
    jetstream.publish(like(ALICE, "3carol", CAROL, now));
    jetstream.publish(like(ALICE, "3new", BOB, now));
    let pushed = receiver.wait_for("bob", 1, |_| true).await;
    let body = &pushed[0].body;
    assert_eq!(body["title"], "New like", "{body}");
    assert_eq!(body["body"], "Alice liked your post", "{body}");
    let data = &body["data"];
    assert_eq!(data["reason"], "like");
    assert_eq!(data["uri"], format!("at://{ALICE}/app.bsky.feed.like/3new"));
    assert_eq!(
        data["subject"],
        format!("at://{BOB}/app.bsky.feed.post/3post")
    );
    assert_eq!(data["recipientDid"], BOB);
    assert_eq!(data["actorDid"], ALICE);
    assert_eq!(data["actorDisplayName"], "Alice");
    assert_eq!(data["actorHandle"], "alice.example.com");
    assert_eq!(
        pds.requests(),
        1,
        "one lookup: the old like and Carol's notify nobody"
    );

    // In order: by the time the new like was pushed, the others were handled.
    let health = herald.health().await;
    let source = &health["atproto"]["jetstream"];
    assert_eq!(health["atproto"]["accounts"], 1);
    assert_eq!(source["events"], 4, "{health}");
    assert_eq!(source["unreadable"], 1, "{health}");
    assert_eq!(source["too_old"], 1, "{health}");
    assert_eq!(source["notifications"], 1, "{health}");
    // The same counters, for Prometheus.
    let metrics = herald.metrics().await;
    let figure = |name| metric(&metrics, name, &["source=\"jetstream\""]);
    assert_eq!(figure("herald_source_events_total"), Some(4.0), "{metrics}");
    assert_eq!(figure("herald_source_unreadable_total"), Some(1.0));
    assert_eq!(figure("herald_source_notifications_total"), Some(1.0));
    assert_eq!(figure("herald_source_connections"), Some(1.0));
    assert_eq!(receiver.arrivals("bob").len(), 1);

    // SIGTERM stores the cursor; the next start resumes a little before it.
    assert!(herald.terminate().await.success());
    herald.restart().await;
    wait_until("herald reconnects", || async {
        jetstream.queries().len() == 2
    })
    .await;
    let resumed = jetstream.queries().remove(1);
    let cursor: u64 = resumed
        .split('&')
        .find_map(|p| p.strip_prefix("cursor="))
        .unwrap_or_else(|| panic!("no cursor in {resumed}"))
        .parse()
        .unwrap();
    assert!(
        cursor < now && cursor >= now - 60_000_000,
        "{cursor} vs {now}"
    );

    // The replayed like is the same push: the dedupe key absorbs it.
    jetstream.publish(like(ALICE, "3new", BOB, now));
    jetstream.publish(like_post(ALICE, "3later", BOB, "3other", now_us()));
    let pushed = receiver.wait_for("bob", 2, |_| true).await;
    let uris: Vec<&Value> = pushed.iter().map(|a| &a.body["data"]["uri"]).collect();
    assert_eq!(
        uris,
        [
            &json!(format!("at://{ALICE}/app.bsky.feed.like/3new")),
            &json!(format!("at://{ALICE}/app.bsky.feed.like/3later")),
        ]
    );
}

/// `event` (a v1 event) as a v2 `subscribeEvents` payload.
fn as_v2(event: &str) -> String {
    let v1: Value = serde_json::from_str(event).unwrap();
    let seconds = v1["time_us"].as_u64().unwrap() / 1_000_000;
    let micros = v1["time_us"].as_u64().unwrap() % 1_000_000;
    let time = rfc3339(seconds, micros);
    let mut v2 = json!({
        "$type": "network.bsky.jetstream.subscribeEvents#commit",
        "seq": 1, "did": v1["did"], "time": time, "witnessedAt": time,
    });
    for (k, v) in v1["commit"].as_object().unwrap() {
        v2[k] = v.clone();
    }
    v2.to_string()
}

/// Unix seconds and microseconds as RFC 3339 UTC (civil-from-days).
fn rfc3339(seconds: u64, micros: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rem = seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[tokio::test]
async fn v2_events_are_read_and_a_burst_of_likes_stops_at_the_rate_limit() {
    let jetstream = JetstreamService::start().await;
    let receiver = Receiver::start().await;
    let plc = PlcDirectory::start().await;
    let dir = tempfile::tempdir().unwrap();
    let source = format!("urls = [\"{}\"]\napi = \"v2\"", jetstream.url());
    let herald = Herald::start_edited(dir.path(), |c| {
        with_atproto(
            c,
            &plc.url(),
            "[atproto.rate_limit]\npushes = 2\nwindow_secs = 3600",
            &source,
        )
    })
    .await;
    let (status, _) = herald
        .register(&format!("atproto:{BOB}"), &receiver.endpoint("bob"))
        .await;
    assert_eq!(status, 201);
    wait_until("herald connects to Jetstream", || async {
        jetstream.open_connections() == 1
    })
    .await;
    let query = jetstream.queries().remove(0);
    assert!(query.contains("zstdDictionary=20260811"), "{query}");
    assert!(query.contains("collections=app.bsky.feed.like"), "{query}");

    let now = now_us();
    for n in 0..5 {
        jetstream.publish(as_v2(&like_post(
            ALICE,
            &format!("3l{n}"),
            BOB,
            &format!("3p{n}"),
            now,
        )));
    }
    // A reply is conversation: never limited.
    jetstream.publish(as_v2(
        &json!({
            "did": CAROL, "time_us": now, "kind": "commit",
            "commit": {"rev": "3mmoojp7vgo2g", "operation": "create", "collection": "app.bsky.feed.post", "rkey": "3reply",
                "record": {"$type": "app.bsky.feed.post", "text": "hi bob", "createdAt": "2026-12-01T10:00:00.000Z",
                    "reply": {"root": {"uri": format!("at://{BOB}/app.bsky.feed.post/3p0"), "cid": "bafyreiaxf7tgbfydx3465sckitq6v564thxe2wwydbi7cwxbxvgssje3em"},
                              "parent": {"uri": format!("at://{BOB}/app.bsky.feed.post/3p0"), "cid": "bafyreiaxf7tgbfydx3465sckitq6v564thxe2wwydbi7cwxbxvgssje3em"}}},
                "cid": "bafyreidqpc7si3dbimffi64lz3xsx2qt45ip7rpna2qpslcddp23itjjzm"},
        })
        .to_string(),
    ));
    receiver
        .wait_for("bob", 1, |a| a.body["data"]["reason"] == "reply")
        .await;
    // Handled in order: by the reply, every like was queued or limited.
    let pushed = receiver.wait_for("bob", 3, |_| true).await;
    let mut reasons: Vec<String> = pushed
        .iter()
        .map(|a| a.body["data"]["reason"].as_str().unwrap().to_owned())
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["like", "like", "reply"]);
    let reply = pushed
        .iter()
        .find(|a| a.body["data"]["reason"] == "reply")
        .unwrap();
    assert_eq!(reply.body["body"], "Someone replied to your post: hi bob");
    let health = herald.health().await;
    let source = &health["atproto"]["jetstream"];
    assert_eq!(source["rate_limited"], 3, "{health}");
    assert_eq!(source["unreadable"], 0, "{health}");
}

#[tokio::test]
async fn a_block_made_before_registering_hides_the_blockers_likes() {
    let jetstream = JetstreamService::start().await;
    let receiver = Receiver::start().await;
    let plc = PlcDirectory::start().await;
    let pds = PdsService::start().await;
    // Bob blocked Alice last year, long before herald watched.
    plc.set_identity(BOB, "bob.example.com", &pds.url());
    pds.put_record(
        BOB,
        "app.bsky.graph.block",
        "3blk",
        json!({"$type": "app.bsky.graph.block", "subject": ALICE, "createdAt": "2025-01-01T00:00:00.000Z"}),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut herald = start(dir.path(), &jetstream, &plc).await;
    let (status, _) = herald
        .register(&format!("atproto:{BOB}"), &receiver.endpoint("bob"))
        .await;
    assert_eq!(status, 201);
    wait_until("bob's past blocks are read", || async {
        let health = herald.health().await;
        health["atproto"]["jetstream"]["block_backfill"]["accounts_done"] == 1
    })
    .await;

    let now = now_us();
    jetstream.publish(like_post(ALICE, "3la", BOB, "3p", now));
    jetstream.publish(like_post(CAROL, "3lc", BOB, "3p", now));
    let pushed = receiver.wait_for("bob", 1, |_| true).await;
    assert_eq!(pushed[0].body["data"]["actorDid"], CAROL);
    let health = herald.health().await;
    assert_eq!(health["atproto"]["jetstream"]["events"], 2, "{health}");
    assert_eq!(
        health["atproto"]["jetstream"]["block_backfill"]["records"], 1,
        "{health}"
    );
    assert_eq!(receiver.arrivals("bob").len(), 1);

    // The block is kept with the cursor: after a restart it still holds,
    // and bob's PDS is not read again.
    let reads = pds.requests();
    assert!(herald.terminate().await.success());
    herald.restart().await;
    wait_until("herald reconnects", || async {
        jetstream.queries().len() == 2
    })
    .await;
    let now = now_us();
    jetstream.publish(like_post(ALICE, "3la2", BOB, "3q", now));
    jetstream.publish(like_post(CAROL, "3lc2", BOB, "3q", now));
    let pushed = receiver.wait_for("bob", 2, |_| true).await;
    assert_eq!(pushed[1].body["data"]["actorDid"], CAROL);
    let health = herald.health().await;
    let backfill = &health["atproto"]["jetstream"]["block_backfill"];
    assert_eq!(backfill["accounts_done"], 0, "{health}");
    assert_eq!(backfill["waiting"], 0, "{health}");
    assert_eq!(pds.requests(), reads);
    assert_eq!(receiver.arrivals("bob").len(), 2);
}
