//! The Expo provider against the Expo stand-in: batching, tickets, receipts.

use std::sync::Arc;
use std::time::Duration;

use herald_core::model::{Account, AppId, Delivery, Message, NewDevice, Platform, Transport};
use herald_core::provider::{Outcome, Provider};
use herald_core::store::Store;
use herald_push::HttpClientConfig;
use herald_push::expo::{Expo, ExpoConfig};
use herald_standins::expo::{ExpoError, ExpoService};
use serde_json::json;

fn config(service: &ExpoService, token_file: Option<std::path::PathBuf>) -> ExpoConfig {
    ExpoConfig {
        enabled: true,
        access_token_file: token_file,
        base_url: Some(service.base_url()),
        receipt_delay_secs: 0,
    }
}

fn app() -> AppId {
    AppId::parse("app").unwrap()
}

fn delivery(token: &str) -> Delivery {
    Delivery {
        id: 1,
        device_id: 1,
        account: Account::parse("test:alice").unwrap(),
        app_id: app(),
        platform: Platform::Ios,
        transport: Transport::Expo,
        token: token.into(),
        options: Default::default(),
        message: Message {
            title: Some("Hi".into()),
            body: Some("there".into()),
            ttl: Some(60),
            ..Message::default()
        },
        created_at: 0,
        attempts: 1,
    }
}

fn token(i: usize) -> String {
    format!("ExponentPushToken[device-{i:04}]")
}

#[tokio::test]
async fn concurrent_sends_go_out_in_batches_of_at_most_100_with_gzip() {
    let service = ExpoService::start(None).await;
    let expo = Arc::new(
        Expo::new(
            &HttpClientConfig::default(),
            vec![(app(), config(&service, None))],
            None,
        )
        .unwrap(),
    );
    let mut sends = Vec::new();
    for i in 0..250 {
        let expo = Arc::clone(&expo);
        sends.push(tokio::spawn(async move {
            expo.send(&delivery(&token(i))).await
        }));
    }
    for s in sends {
        assert_eq!(s.await.unwrap(), Outcome::Delivered);
    }
    let sizes = service.batch_sizes();
    assert_eq!(sizes.iter().sum::<usize>(), 250);
    assert!(sizes.iter().all(|&n| n <= 100), "{sizes:?}");
    assert!(sizes.len() < 250, "messages were batched: {sizes:?}");
    assert!(service.gzipped_requests() > 0, "large batches are gzipped");
    let m = &service.accepted()[0];
    assert_eq!(
        (
            m["title"].as_str(),
            m["body"].as_str(),
            m["ttl"].as_u64(),
            m["priority"].as_str()
        ),
        (Some("Hi"), Some("there"), Some(60), Some("high"))
    );
}

#[tokio::test]
async fn the_channel_and_mutable_content_reach_expo_and_the_thread_id_does_not() {
    let service = ExpoService::start(None).await;
    let expo = Expo::new(
        &HttpClientConfig::default(),
        vec![(app(), config(&service, None))],
        None,
    )
    .unwrap();
    let mut asked = delivery(&token(0));
    asked.message.channel = Some("mention".into());
    asked.message.mutable_content = true;
    asked.message.thread_id = Some("convo-1".into());
    assert_eq!(expo.send(&asked).await, Outcome::Delivered);
    assert_eq!(expo.send(&delivery(&token(1))).await, Outcome::Delivered);
    let [asked, plain] = <[_; 2]>::try_from(service.accepted()).unwrap();
    assert_eq!(
        (&asked["channelId"], &asked["mutableContent"]),
        (&json!("mention"), &json!(true))
    );
    assert!(
        !asked.to_string().contains("convo-1"),
        "Expo has no thread id field: {asked}"
    );
    for key in ["channelId", "mutableContent"] {
        assert!(plain.get(key).is_none(), "{key} sent unasked: {plain}");
    }
}

#[tokio::test]
async fn ticket_errors_map_to_outcomes_per_message() {
    let service = ExpoService::start(None).await;
    service.ticket_error(&token(1), ExpoError::DeviceNotRegistered);
    service.ticket_error(&token(2), ExpoError::MessageRateExceeded);
    service.ticket_error(&token(3), ExpoError::MessageTooBig);
    service.ticket_error(&token(4), ExpoError::InvalidCredentials);
    let expo = Expo::new(
        &HttpClientConfig::default(),
        vec![(app(), config(&service, None))],
        None,
    )
    .unwrap();
    let labels = send_labels(&expo, 0..5).await;
    assert_eq!(
        labels,
        ["delivered", "token_dead", "retry", "rejected", "rejected"]
    );
}

async fn send_labels(expo: &Expo, range: std::ops::Range<usize>) -> Vec<&'static str> {
    let mut labels = Vec::new();
    for i in range {
        labels.push(expo.send(&delivery(&token(i))).await.label());
    }
    labels
}

#[tokio::test]
async fn a_throttled_request_is_retried_with_retry_after() {
    let service = ExpoService::start(None).await;
    service.throttle(1);
    let expo = Expo::new(
        &HttpClientConfig::default(),
        vec![(app(), config(&service, None))],
        None,
    )
    .unwrap();
    match expo.send(&delivery(&token(0))).await {
        Outcome::Retry { after, .. } => assert_eq!(after, Some(Duration::from_secs(3))),
        other => panic!("{other:?}"),
    }
    assert_eq!(expo.send(&delivery(&token(0))).await, Outcome::Delivered);
}

#[tokio::test]
async fn the_access_token_is_sent_and_a_wrong_one_is_a_configuration_error() {
    let service = ExpoService::start(Some("expo-secret")).await;
    let dir = tempfile::tempdir().unwrap();
    let right = dir.path().join("right");
    let wrong = dir.path().join("wrong");
    std::fs::write(&right, "expo-secret\n").unwrap();
    std::fs::write(&wrong, "nope").unwrap();
    let ok = Expo::new(
        &HttpClientConfig::default(),
        vec![(app(), config(&service, Some(right)))],
        None,
    )
    .unwrap();
    assert_eq!(ok.send(&delivery(&token(0))).await, Outcome::Delivered);
    let bad = Expo::new(
        &HttpClientConfig::default(),
        vec![(app(), config(&service, Some(wrong)))],
        None,
    )
    .unwrap();
    assert!(
        matches!(bad.send(&delivery(&token(0))).await, Outcome::Rejected { reason } if reason.contains("UNAUTHORIZED"))
    );
    let missing = dir.path().join("missing");
    let err = Expo::new(
        &HttpClientConfig::default(),
        vec![(app(), config(&service, Some(missing)))],
        None,
    )
    .err()
    .unwrap();
    assert!(err.reason.contains("access token"), "{err}");
}

#[tokio::test]
async fn a_device_not_registered_receipt_removes_the_device() {
    let service = ExpoService::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        herald_store::open(&format!("sqlite://{}", dir.path().join("h.db").display()))
            .await
            .unwrap(),
    );
    let registration = |t: String| NewDevice {
        account: Account::parse("test:alice").unwrap(),
        app_id: app(),
        platform: Platform::Ios,
        transport: Transport::Expo,
        token: t,
        options: Default::default(),
    };
    store
        .upsert_device(&registration(token(1)), 0)
        .await
        .unwrap();
    store
        .upsert_device(&registration(token(2)), 0)
        .await
        .unwrap();
    service.receipt_error(&token(1), ExpoError::DeviceNotRegistered);
    let expo = Expo::new(
        &HttpClientConfig::default(),
        vec![(app(), config(&service, None))],
        Some(store.clone() as Arc<dyn Store>),
    )
    .unwrap();
    assert_eq!(
        expo.send(&delivery(&token(1))).await,
        Outcome::Delivered,
        "the ticket was ok"
    );
    assert_eq!(expo.send(&delivery(&token(2))).await, Outcome::Delivered);

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while store.count_devices().await.unwrap() != 1 || expo.pending_receipts() != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the receipt was not acted on"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = store
        .devices_for_account(&Account::parse("test:alice").unwrap())
        .await
        .unwrap();
    assert_eq!(left[0].registration.token, token(2));
}

#[tokio::test]
async fn registration_needs_an_expo_token() {
    let service = ExpoService::start(None).await;
    let expo = Expo::new(
        &HttpClientConfig::default(),
        vec![(app(), config(&service, None))],
        None,
    )
    .unwrap();
    let device = |t: &str| NewDevice {
        account: Account::parse("test:alice").unwrap(),
        app_id: app(),
        platform: Platform::Android,
        transport: Transport::Expo,
        token: t.into(),
        options: Default::default(),
    };
    assert!(
        expo.accept_registration(device("ExpoPushToken[abc]"))
            .await
            .is_ok()
    );
    assert!(
        expo.accept_registration(device("fcm-token-abcdef"))
            .await
            .is_err()
    );
}
