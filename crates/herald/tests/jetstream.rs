//! The AT Protocol source end to end through the real binary: a local
//! Jetstream streams dictionary-compressed events, herald's rules find the
//! registered recipient, and the push reaches a UnifiedPush receiver.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use herald_standins::jetstream::JetstreamService;
use serde_json::{Value, json};
use support::{Herald, Receiver, wait_until, with_atproto};

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

async fn start(dir: &std::path::Path, jetstream: &JetstreamService) -> Herald {
    let source = format!("urls = [\"{}\"]\nmax_event_age_secs = 600", jetstream.url());
    // The PLC directory is never asked: nobody calls registerPush here.
    Herald::start_edited(dir, |c| with_atproto(c, "http://127.0.0.1:9", "", &source)).await
}

#[tokio::test]
async fn a_like_on_the_stream_reaches_the_liked_accounts_device_and_the_cursor_survives_a_restart()
{
    let jetstream = JetstreamService::start().await;
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut herald = start(dir.path(), &jetstream).await;

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
    assert_eq!(body["body"], "Someone liked your post", "{body}");
    let data = &body["data"];
    assert_eq!(data["reason"], "like");
    assert_eq!(data["uri"], format!("at://{ALICE}/app.bsky.feed.like/3new"));
    assert_eq!(
        data["subject"],
        format!("at://{BOB}/app.bsky.feed.post/3post")
    );
    assert_eq!(data["recipientDid"], BOB);
    assert_eq!(data["actorDid"], ALICE);

    // In order: by the time the new like was pushed, the others were handled.
    let health = herald.health().await;
    let source = &health["atproto"]["jetstream"];
    assert_eq!(health["atproto"]["accounts"], 1);
    assert_eq!(source["events"], 4, "{health}");
    assert_eq!(source["unreadable"], 1, "{health}");
    assert_eq!(source["too_old"], 1, "{health}");
    assert_eq!(source["notifications"], 1, "{health}");
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
