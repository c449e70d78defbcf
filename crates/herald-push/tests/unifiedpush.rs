//! The UnifiedPush provider against a local distributor stand-in that checks
//! requests the way ntfy does and answers with the status under test.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use herald_core::model::{
    Account, AppId, Delivery, Message, NewDevice, Platform, Priority, Transport,
};
use herald_core::provider::{Outcome, Provider};
use herald_push::{HttpClientConfig, UnifiedPush};

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(HeaderMap, Bytes)>>>);

/// Answers `/{status}` with that status; 429 and 503 carry `Retry-After: 7`.
/// Refuses what ntfy refuses: a missing TTL and bodies over 4,096 bytes.
async fn distributor(
    State(seen): State<Seen>,
    Path(status): Path<u16>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ttl_ok = headers
        .get("ttl")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.parse::<u32>().is_ok());
    if !ttl_ok {
        return (StatusCode::BAD_REQUEST, "missing TTL").into_response();
    }
    if body.len() > 4096 {
        return (StatusCode::PAYLOAD_TOO_LARGE, "too large").into_response();
    }
    seen.0.lock().unwrap().push((headers, body));
    let status = StatusCode::from_u16(status).unwrap();
    if matches!(status.as_u16(), 429 | 503) {
        return (status, [("retry-after", "7")], "").into_response();
    }
    (status, "").into_response()
}

async fn start() -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .route("/{status}", post(distributor))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

fn delivery(token: String, message: Message) -> Delivery {
    Delivery {
        id: 1,
        device_id: 1,
        account: Account::parse("test:alice").unwrap(),
        app_id: AppId::parse("app").unwrap(),
        platform: Platform::Android,
        transport: Transport::UnifiedPush,
        token,
        options: Default::default(),
        message,
        created_at: 0,
        attempts: 1,
    }
}

fn hello() -> Message {
    Message {
        title: Some("Alice".into()),
        body: Some("hello".into()),
        data: serde_json::json!({"uri": "at://x"})
            .as_object()
            .unwrap()
            .clone(),
        ttl: Some(120),
        priority: Priority::Normal,
        ..Message::default()
    }
}

fn provider() -> UnifiedPush {
    UnifiedPush::new(&HttpClientConfig::default(), vec![], true).unwrap()
}

#[tokio::test]
async fn posts_the_message_with_ttl_and_urgency() {
    let (addr, seen) = start().await;
    let outcome = provider()
        .send(&delivery(format!("http://{addr}/201"), hello()))
        .await;
    assert_eq!(outcome, Outcome::Delivered);
    let (headers, body) = seen.0.lock().unwrap().remove(0);
    assert_eq!(headers["ttl"], "120");
    assert_eq!(headers["urgency"], "normal");
    assert_eq!(headers["content-type"], "application/json");
    let sent: Message = serde_json::from_slice(&body).unwrap();
    assert_eq!(sent, hello());
}

#[tokio::test]
async fn the_display_fields_travel_in_the_json_body_only_when_set() {
    let (addr, seen) = start().await;
    let asked = Message {
        channel: Some("reply".into()),
        mutable_content: true,
        thread_id: Some("convo-1".into()),
        ..hello()
    };
    let p = provider();
    for message in [asked, hello()] {
        let outcome = p
            .send(&delivery(format!("http://{addr}/201"), message))
            .await;
        assert_eq!(outcome, Outcome::Delivered);
    }
    let bodies: Vec<serde_json::Value> = seen
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(_, body)| serde_json::from_slice(body).unwrap())
        .collect();
    assert_eq!(
        (
            &bodies[0]["channel"],
            &bodies[0]["mutable_content"],
            &bodies[0]["thread_id"]
        ),
        (
            &serde_json::json!("reply"),
            &serde_json::json!(true),
            &serde_json::json!("convo-1")
        )
    );
    for key in ["channel", "mutable_content", "thread_id"] {
        assert!(
            bodies[1].get(key).is_none(),
            "{key} sent unset: {}",
            bodies[1]
        );
    }
}

#[tokio::test]
async fn a_message_without_ttl_gets_the_default() {
    let (addr, seen) = start().await;
    let message = Message {
        ttl: None,
        priority: Priority::High,
        ..hello()
    };
    provider()
        .send(&delivery(format!("http://{addr}/200"), message))
        .await;
    let (headers, _) = seen.0.lock().unwrap().remove(0);
    assert_eq!(headers["ttl"], "86400");
    assert_eq!(headers["urgency"], "high");
}

#[tokio::test]
async fn classifies_every_documented_answer() {
    let (addr, _) = start().await;
    let p = provider();
    let send = |status: u16| {
        let d = delivery(format!("http://{addr}/{status}"), hello());
        let p = &p;
        async move { p.send(&d).await }
    };
    for ok in [200, 201, 202] {
        assert_eq!(send(ok).await, Outcome::Delivered, "{ok}");
    }
    for dead in [404, 410] {
        assert!(
            matches!(send(dead).await, Outcome::TokenDead { .. }),
            "{dead}"
        );
    }
    assert!(matches!(send(413).await, Outcome::Rejected { .. }));
    assert!(matches!(send(400).await, Outcome::Rejected { .. }));
    for again in [429, 503] {
        match send(again).await {
            Outcome::Retry { after, .. } => assert_eq!(after, Some(Duration::from_secs(7))),
            other => panic!("{again}: {other:?}"),
        }
    }
    assert!(matches!(
        send(500).await,
        Outcome::Retry { after: None, .. }
    ));
    assert!(
        matches!(send(507).await, Outcome::Retry { .. }),
        "ntfy: nobody subscribed yet"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_retried_and_its_url_stays_out_of_the_reason() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let secret = format!("http://{addr}/upSECRETTOKEN");
    match provider().send(&delivery(secret, hello())).await {
        Outcome::Retry { reason, .. } => assert!(!reason.contains("SECRETTOKEN"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn refuses_oversized_payloads_before_sending() {
    let (addr, seen) = start().await;
    let message = Message {
        body: Some("x".repeat(4096)),
        ..hello()
    };
    let outcome = provider()
        .send(&delivery(format!("http://{addr}/201"), message))
        .await;
    assert!(
        matches!(outcome, Outcome::Rejected { ref reason } if reason.contains("4096")),
        "{outcome:?}"
    );
    assert!(seen.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn private_endpoints_are_refused_unless_allowed() {
    let (addr, seen) = start().await;
    let strict = UnifiedPush::new(&HttpClientConfig::default(), vec![], false).unwrap();
    let token = format!("http://{addr}/201");
    let registration = NewDevice {
        account: Account::parse("test:alice").unwrap(),
        app_id: AppId::parse("app").unwrap(),
        platform: Platform::Android,
        transport: Transport::UnifiedPush,
        token: token.clone(),
        options: Default::default(),
    };
    let err = strict
        .accept_registration(registration.clone())
        .await
        .unwrap_err();
    assert!(err.reason.contains("https"), "{err}");
    let mut https = registration.clone();
    https.token = format!("https://{addr}/201");
    let err = strict.accept_registration(https.clone()).await.unwrap_err();
    assert!(err.reason.contains("non-public"), "{err}");
    assert!(matches!(
        strict.send(&delivery(https.token, hello())).await,
        Outcome::Rejected { .. }
    ));
    assert!(
        seen.0.lock().unwrap().is_empty(),
        "nothing reached the private address"
    );
    assert!(provider().accept_registration(registration).await.is_ok());
}
