//! The APNs provider against the APNs stand-in, over TLS and HTTP/2 with a
//! test CA given to herald as its extra trusted CA.

use std::sync::Arc;

use herald_core::model::{Account, AppId, Delivery, Message, Platform, Priority, Transport};
use herald_core::provider::{Outcome, Provider};
use herald_push::HttpClientConfig;
use herald_push::apns::{Apns, ApnsConfig, ApnsEnvironment, ApnsPushType};
use herald_standins::apns::{ApnsService, KEY_ID, TEAM_ID};
use serde_json::json;

const TOPIC: &str = "org.example.chat";
const TOKEN: &str = "740f4707bebcf74f9b7c25d48e3358945f6aa01da5ddb387462c7eaf61bb78ad";

fn app() -> AppId {
    AppId::parse("app").unwrap()
}

fn config(service: &ApnsService) -> ApnsConfig {
    ApnsConfig {
        enabled: true,
        team_id: TEAM_ID.into(),
        key_id: KEY_ID.into(),
        key_file: service.key_path.clone(),
        topic: TOPIC.into(),
        environment: ApnsEnvironment::Production,
        production_url: Some(service.url()),
        sandbox_url: Some(service.url()),
        push_type: ApnsPushType::Alert,
        connections: 1,
        max_streams: 100,
    }
}

fn http(service: &ApnsService) -> HttpClientConfig {
    HttpClientConfig {
        extra_ca_file: Some(service.ca_pem_path.clone()),
        resolver: None,
    }
}

fn delivery(token: &str) -> Delivery {
    Delivery {
        id: 1,
        device_id: 1,
        account: Account::parse("test:alice").unwrap(),
        app_id: app(),
        platform: Platform::Ios,
        transport: Transport::Apns,
        token: token.into(),
        options: Default::default(),
        message: Message {
            title: Some("Alice".into()),
            body: Some("hello".into()),
            data: json!({"uri": "at://x", "n": 2})
                .as_object()
                .unwrap()
                .clone(),
            collapse_key: Some("dm-alice".into()),
            ttl: Some(3600),
            priority: Priority::High,
            ..Message::default()
        },
        created_at: 0,
        attempts: 1,
    }
}

async fn setup() -> (ApnsService, Apns, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let service = ApnsService::start(dir.path(), TOPIC).await;
    let apns = Apns::new(&http(&service), vec![(app(), config(&service))]).unwrap();
    (service, apns, dir)
}

#[tokio::test]
async fn an_alert_goes_over_http2_with_apples_headers() {
    let (service, apns, _dir) = setup().await;
    assert_eq!(apns.send(&delivery(TOKEN)).await, Outcome::Delivered);
    let a = service.accepted().remove(0);
    assert_eq!(a.device_token, TOKEN);
    assert_eq!(a.headers["apns-topic"], TOPIC);
    assert_eq!(a.headers["apns-push-type"], "alert");
    assert_eq!(a.headers["apns-priority"], "10");
    assert_eq!(a.headers["apns-collapse-id"], "dm-alice");
    let expiration: u64 = a.headers["apns-expiration"].parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!((now + 3590..=now + 3610).contains(&expiration));
    assert_eq!(
        a.payload,
        json!({"aps": {"alert": {"title": "Alice", "body": "hello"}, "sound": "default"}, "uri": "at://x", "n": 2})
    );
}

#[tokio::test]
async fn an_alert_runs_the_service_extension_in_a_thread_with_custom_keys_beside_aps() {
    let (service, apns, _dir) = setup().await;
    let mut d = delivery(TOKEN);
    d.message.data = json!({
        "reason": "reply", "uri": "at://did:plc:bob/app.bsky.feed.post/2",
        "subject": "at://did:plc:alice/app.bsky.feed.post/1", "recipientDid": "did:plc:alice",
    })
    .as_object()
    .unwrap()
    .clone();
    d.message.mutable_content = true;
    d.message.thread_id = Some("at://did:plc:alice/app.bsky.feed.post/1".into());
    assert_eq!(apns.send(&d).await, Outcome::Delivered);
    assert_eq!(
        service.accepted().remove(0).payload,
        json!({
            "aps": {
                "alert": {"title": "Alice", "body": "hello"}, "sound": "default",
                "mutable-content": 1, "thread-id": "at://did:plc:alice/app.bsky.feed.post/1",
            },
            "reason": "reply", "uri": "at://did:plc:bob/app.bsky.feed.post/2",
            "subject": "at://did:plc:alice/app.bsky.feed.post/1", "recipientDid": "did:plc:alice",
        })
    );
}

#[tokio::test]
async fn a_message_with_nothing_to_show_goes_as_a_background_wake_up() {
    let (service, apns, _dir) = setup().await;
    let mut wake = delivery(TOKEN);
    (wake.message.title, wake.message.body) = (None, None);
    assert_eq!(apns.send(&wake).await, Outcome::Delivered);
    let a = service.accepted().remove(0);
    assert_eq!(a.headers["apns-push-type"], "background");
    assert_eq!(a.headers["apns-priority"], "5");
    assert_eq!(a.payload["aps"], json!({"content-available": 1}));
    assert_eq!(a.payload["uri"], "at://x", "the data still rides along");
}

#[tokio::test]
async fn a_background_push_has_priority_5_and_no_alert() {
    let dir = tempfile::tempdir().unwrap();
    let service = ApnsService::start(dir.path(), TOPIC).await;
    let apns = Apns::new(
        &http(&service),
        vec![(
            app(),
            ApnsConfig {
                push_type: ApnsPushType::Background,
                ..config(&service)
            },
        )],
    )
    .unwrap();
    let mut d = delivery(TOKEN);
    d.message.mutable_content = true;
    d.message.thread_id = Some("t".into());
    assert_eq!(apns.send(&d).await, Outcome::Delivered);
    let a = service.accepted().remove(0);
    assert_eq!(
        (
            a.headers["apns-push-type"].as_str(),
            a.headers["apns-priority"].as_str()
        ),
        ("background", "5")
    );
    assert_eq!(
        a.payload["aps"],
        json!({"content-available": 1}),
        "nothing is displayed, so no extension and no thread"
    );
}

#[tokio::test]
async fn every_documented_reason_has_its_outcome() {
    let (service, apns, _dir) = setup().await;
    let cases: [(u16, &str, &str); 11] = [
        (410, "Unregistered", "token_dead"),
        (410, "ExpiredToken", "token_dead"),
        (400, "BadDeviceToken", "token_dead"),
        (400, "DeviceTokenNotForTopic", "token_dead"),
        (429, "TooManyRequests", "retry"),
        (500, "InternalServerError", "retry"),
        (503, "ServiceUnavailable", "retry"),
        (503, "Shutdown", "retry"),
        (413, "PayloadTooLarge", "rejected"),
        (403, "InvalidProviderToken", "rejected"),
        (400, "TopicDisallowed", "rejected"),
    ];
    for (status, reason, label) in cases {
        service.script(TOKEN, [(status, reason)]);
        let outcome = apns.send(&delivery(TOKEN)).await;
        assert_eq!(outcome.label(), label, "{status} {reason}: {outcome:?}");
    }
    let standing = apns.misconfigurations();
    assert_eq!(standing.len(), 1, "{standing:?}");
    assert!(standing[0].1.contains("TopicDisallowed"));
    assert_eq!(apns.send(&delivery(TOKEN)).await, Outcome::Delivered);
    assert!(apns.misconfigurations().is_empty(), "cleared by a success");
}

#[tokio::test]
async fn the_provider_token_is_reused_and_renewed_at_once_when_apple_says_it_expired() {
    let (service, apns, _dir) = setup().await;
    for _ in 0..5 {
        assert_eq!(apns.send(&delivery(TOKEN)).await, Outcome::Delivered);
    }
    assert_eq!(service.provider_tokens_seen(), 1, "one JWT for every push");
    service.expire_provider_tokens();
    // Signatures are deterministic (RFC 6979): a token minted in the same
    // second as the expired one would be the same token. Apple's expired
    // tokens are an hour old; here, wait for the next second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        apns.send(&delivery(TOKEN)).await,
        Outcome::Delivered,
        "renewed and resent within the attempt"
    );
    assert_eq!(service.provider_tokens_seen(), 2);
    assert_eq!(apns.send(&delivery(TOKEN)).await, Outcome::Delivered);
    assert_eq!(service.provider_tokens_seen(), 2, "the new token is kept");
}

#[tokio::test]
async fn a_sandbox_device_goes_to_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let production = ApnsService::start(dir.path(), TOPIC).await;
    let sandbox = production.start_sibling().await;
    let apns = Apns::new(
        &http(&production),
        vec![(
            app(),
            ApnsConfig {
                sandbox_url: Some(sandbox.url()),
                ..config(&production)
            },
        )],
    )
    .unwrap();
    let mut d = delivery(TOKEN);
    d.options.insert("environment".into(), json!("sandbox"));
    assert_eq!(apns.send(&d).await, Outcome::Delivered);
    assert_eq!(
        (production.accepted().len(), sandbox.accepted().len()),
        (0, 1)
    );
}

#[tokio::test]
async fn the_pool_spreads_pushes_over_its_connections() {
    let dir = tempfile::tempdir().unwrap();
    let service = ApnsService::start(dir.path(), TOPIC).await;
    let apns = Arc::new(
        Apns::new(
            &http(&service),
            vec![(
                app(),
                ApnsConfig {
                    connections: 4,
                    ..config(&service)
                },
            )],
        )
        .unwrap(),
    );
    let mut sends = Vec::new();
    for _ in 0..40 {
        let apns = Arc::clone(&apns);
        sends.push(tokio::spawn(
            async move { apns.send(&delivery(TOKEN)).await },
        ));
    }
    for s in sends {
        assert_eq!(s.await.unwrap(), Outcome::Delivered);
    }
    assert_eq!(service.connections(), 4);
}

#[tokio::test]
async fn an_oversized_payload_is_refused_without_sending() {
    let (service, apns, _dir) = setup().await;
    let mut d = delivery(TOKEN);
    d.message
        .data
        .insert("blob".into(), json!("x".repeat(5000)));
    assert!(matches!(apns.send(&d).await, Outcome::Rejected { .. }));
    assert!(service.accepted().is_empty());
}

#[tokio::test]
async fn a_server_not_signed_by_the_trusted_ca_is_refused() {
    let (service, _, _dir) = setup().await;
    let untrusting = Apns::new(
        &HttpClientConfig::default(),
        vec![(app(), config(&service))],
    )
    .unwrap();
    match untrusting.send(&delivery(TOKEN)).await {
        Outcome::Retry { reason, .. } => assert!(!reason.contains(TOKEN), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(service.accepted().is_empty());
}

#[tokio::test]
async fn a_broken_key_fails_at_start_naming_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let service = ApnsService::start(dir.path(), TOPIC).await;
    let bad = dir.path().join("bad.p8");
    std::fs::write(
        &bad,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    for (c, says) in [
        (
            ApnsConfig {
                key_file: bad,
                ..config(&service)
            },
            "key",
        ),
        (
            ApnsConfig {
                key_file: dir.path().join("none.p8"),
                ..config(&service)
            },
            "cannot read",
        ),
        (
            ApnsConfig {
                team_id: "short".into(),
                ..config(&service)
            },
            "team_id",
        ),
    ] {
        let err = Apns::new(&http(&service), vec![(app(), c)])
            .err()
            .expect("refused");
        assert_eq!(err.app, "app");
        assert!(err.reason.contains(says), "{err}");
    }
}
