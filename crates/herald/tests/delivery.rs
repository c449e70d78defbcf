//! End to end through the real binary: admin API in, UnifiedPush out, with
//! the provider's failures, SIGKILL and SIGTERM.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use support::{Answer, Herald, Receiver, metric, wait_until};

#[tokio::test]
async fn a_notification_reaches_the_registered_device() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let herald = Herald::start(dir.path()).await;

    let (status, device) = herald
        .register("test:alice", &receiver.endpoint("alice"))
        .await;
    assert_eq!(status, 201, "{device}");
    assert_eq!(device["account"], "test:alice");
    assert!(device.get("token").is_none(), "tokens are not echoed");
    let (status, _) = herald
        .register("test:alice", &receiver.endpoint("alice"))
        .await;
    assert_eq!(status, 200, "registering again updates");

    let (status, queued) = herald
        .notify(json!({
            "account": "test:alice", "title": "Bob", "body": "liked your post",
            "data": {"uri": "at://did:plc:bob/app.bsky.feed.like/1"}, "ttl": 600,
            "priority": "normal", "collapse_key": "likes",
            "channel": "like", "mutable_content": true, "thread_id": "post-1",
        }))
        .await;
    assert_eq!(status, 202);
    assert_eq!(queued, json!({"queued": 1, "deduplicated": 0}));

    let arrival = receiver.wait_for("alice", 1, |_| true).await.remove(0);
    assert_eq!(arrival.body["title"], "Bob");
    assert_eq!(arrival.body["body"], "liked your post");
    assert_eq!(
        arrival.body["data"]["uri"],
        "at://did:plc:bob/app.bsky.feed.like/1"
    );
    assert_eq!(
        (
            &arrival.body["channel"],
            &arrival.body["mutable_content"],
            &arrival.body["thread_id"]
        ),
        (&json!("like"), &json!(true), &json!("post-1"))
    );
    assert_eq!(arrival.headers["ttl"], "600");
    assert_eq!(arrival.headers["urgency"], "normal");

    herald.wait_health("queue_depth", 0).await;
    let health = herald.health().await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["devices"], 1);
    assert_eq!(health["store"], "sqlite");
    let metrics = herald.metrics().await;
    let delivered = metric(
        &metrics,
        "herald_deliveries_total",
        &[
            "outcome=\"delivered\"",
            "transport=\"unifiedpush\"",
            "app=\"com.example.app\"",
        ],
    );
    assert_eq!(delivered, Some(1.0), "{metrics}");
    assert!(
        metrics.contains("herald_provider_latency_seconds_bucket"),
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "herald_queue_depth", &[]), Some(0.0));
}

#[tokio::test]
async fn the_same_dedupe_key_is_delivered_once() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let herald = Herald::start(dir.path()).await;
    herald
        .register("test:alice", &receiver.endpoint("alice"))
        .await;
    let n = json!({"account": "test:alice", "body": "hi", "dedupe_key": "event-1"});
    assert_eq!(
        herald.notify(n.clone()).await.1,
        json!({"queued": 1, "deduplicated": 0})
    );
    assert_eq!(
        herald.notify(n).await.1,
        json!({"queued": 0, "deduplicated": 1})
    );
    receiver.wait_for("alice", 1, |_| true).await;
}

#[tokio::test]
async fn a_410_removes_the_device_at_once() {
    let receiver = Receiver::start().await;
    receiver.always("gone", Answer::status(410));
    let dir = tempfile::tempdir().unwrap();
    let herald = Herald::start(dir.path()).await;
    herald
        .register("test:alice", &receiver.endpoint("gone"))
        .await;
    herald
        .notify(json!({"account": "test:alice", "body": "hi"}))
        .await;

    receiver.wait_for("gone", 1, |_| true).await;
    herald.wait_health("devices", 0).await;
    let (_, queued) = herald
        .notify(json!({"account": "test:alice", "body": "again"}))
        .await;
    assert_eq!(queued["queued"], 0, "no device left to push to");
    let metrics = herald.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "herald_deliveries_total",
            &["outcome=\"token_dead\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        receiver.arrivals("gone").len(),
        1,
        "a dead token is never retried"
    );
}

#[tokio::test]
async fn a_429_retry_after_is_honoured() {
    let receiver = Receiver::start().await;
    receiver.script("busy", [Answer::retry_after(429, 2)]);
    let dir = tempfile::tempdir().unwrap();
    let herald = Herald::start(dir.path()).await;
    herald
        .register("test:alice", &receiver.endpoint("busy"))
        .await;
    herald
        .notify(json!({"account": "test:alice", "body": "hi"}))
        .await;

    let arrivals = receiver.wait_for("busy", 2, |_| true).await;
    assert_eq!((arrivals[0].answered, arrivals[1].answered), (429, 201));
    let waited = arrivals[1].at - arrivals[0].at;
    // Without Retry-After the configured backoff would retry after 25-50 ms.
    assert!(
        waited >= Duration::from_secs(2),
        "retried after {waited:?}, before Retry-After: 2"
    );
}

#[tokio::test]
async fn a_503_is_retried_with_backoff_until_it_succeeds() {
    let receiver = Receiver::start().await;
    receiver.script(
        "flaky",
        [
            Answer::status(503),
            Answer::status(503),
            Answer::status(503),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let herald = Herald::start(dir.path()).await;
    herald
        .register("test:alice", &receiver.endpoint("flaky"))
        .await;
    herald
        .notify(json!({"account": "test:alice", "body": "hi"}))
        .await;

    let arrivals = receiver.wait_for("flaky", 4, |_| true).await;
    let answers: Vec<u16> = arrivals.iter().map(|a| a.answered).collect();
    assert_eq!(answers, [503, 503, 503, 201]);
    // Equal jitter: each wait is at least half the doubling nominal delay (50, 100, 200 ms).
    for (i, pair) in arrivals.windows(2).enumerate() {
        let min = Duration::from_millis(25 << i);
        assert!(
            pair[1].at - pair[0].at >= min,
            "retry {i} after {:?}",
            pair[1].at - pair[0].at
        );
    }
    herald.wait_health("queue_depth", 0).await;
    let metrics = herald.metrics().await;
    assert_eq!(
        metric(&metrics, "herald_delivery_retries_total", &[]),
        Some(3.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "herald_deliveries_total",
            &["outcome=\"delivered\""]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn sigkill_while_the_endpoint_fails_loses_nothing() {
    const COUNT: usize = 20;
    let receiver = Receiver::start().await;
    receiver.always("down", Answer::status(503));
    let dir = tempfile::tempdir().unwrap();
    let mut herald = Herald::start(dir.path()).await;
    herald
        .register("test:alice", &receiver.endpoint("down"))
        .await;
    for i in 0..COUNT {
        let (status, _) = herald
            .notify(json!({"account": "test:alice", "body": format!("n{i}")}))
            .await;
        assert_eq!(status, 202);
    }
    // Every notification has failed at least once: all are pending retries.
    wait_until("every delivery attempted once", || async {
        distinct_bodies(&receiver, 503).len() == COUNT
    })
    .await;
    herald.kill9();

    receiver.always("down", Answer::status(201));
    herald.restart().await;
    wait_until("every delivery delivered after the restart", || async {
        distinct_bodies(&receiver, 201).len() == COUNT
    })
    .await;
    herald.wait_health("queue_depth", 0).await;
}

fn distinct_bodies(receiver: &Receiver, answered: u16) -> HashSet<String> {
    receiver
        .arrivals("down")
        .into_iter()
        .filter(|a| a.answered == answered)
        .map(|a| a.body["body"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn sigterm_lets_the_delivery_in_flight_finish() {
    let receiver = Receiver::start().await;
    receiver.script("slow", [Answer::slow(201, Duration::from_millis(1500))]);
    let dir = tempfile::tempdir().unwrap();
    let mut herald = Herald::start(dir.path()).await;
    herald
        .register("test:alice", &receiver.endpoint("slow"))
        .await;
    herald
        .notify(json!({"account": "test:alice", "body": "hi"}))
        .await;

    // The receiver records a request only when it answers, so the in-flight
    // gauge is what shows the attempt under way.
    wait_until("the delivery is in flight", || async {
        metric(&herald.metrics().await, "herald_dispatcher_in_flight", &[]) == Some(1.0)
    })
    .await;
    let status = herald.terminate().await;
    assert!(status.success(), "exit status {status}");
    assert_eq!(
        receiver.arrivals("slow").len(),
        1,
        "the attempt completed before exit"
    );

    herald.restart().await;
    assert_eq!(
        herald.health().await["queue_depth"],
        0,
        "its success was recorded, so it is not sent again"
    );
}
