//! The FCM provider against the FCM and OAuth2 stand-in.

use herald_core::model::{
    Account, AppId, Delivery, Message, NewDevice, Platform, Priority, Transport,
};
use herald_core::provider::{Outcome, Provider};
use herald_push::HttpClientConfig;
use herald_push::fcm::{Fcm, FcmConfig};
use herald_standins::fcm::{FcmAnswer, FcmService};
use serde_json::json;

const TOKEN: &str = "cXh0b2tlbjpBUEE5MWJGZXhhbXBsZS1yZWdpc3RyYXRpb24tdG9rZW4tZm9yLWhlcmFsZA";

struct Setup {
    service: FcmService,
    fcm: Fcm,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let service = FcmService::start(dir.path()).await;
    let config = FcmConfig {
        enabled: true,
        service_account_file: service.service_account_file().to_owned(),
        base_url: Some(service.base_url()),
        android_channel_id: Some("messages".into()),
    };
    let fcm = Fcm::new(
        &HttpClientConfig::default(),
        vec![(AppId::parse("app").unwrap(), config)],
    )
    .unwrap();
    Setup {
        service,
        fcm,
        _dir: dir,
    }
}

fn delivery(token: &str, platform: Platform) -> Delivery {
    Delivery {
        id: 1,
        device_id: 1,
        account: Account::parse("test:alice").unwrap(),
        app_id: AppId::parse("app").unwrap(),
        platform,
        transport: Transport::Fcm,
        token: token.into(),
        options: Default::default(),
        message: Message {
            title: Some("Alice".into()),
            body: Some("hello".into()),
            data: json!({"uri": "at://x", "count": 3})
                .as_object()
                .unwrap()
                .clone(),
            collapse_key: Some("dm".into()),
            ttl: Some(600),
            priority: Priority::High,
            ..Message::default()
        },
        created_at: 0,
        attempts: 1,
    }
}

#[tokio::test]
async fn android_message_carries_channel_priority_ttl_and_string_data() {
    let s = setup().await;
    assert_eq!(
        s.fcm.send(&delivery(TOKEN, Platform::Android)).await,
        Outcome::Delivered
    );
    let m = s.service.accepted().remove(0);
    assert_eq!(m["token"], TOKEN);
    assert_eq!(
        m["notification"],
        json!({"title": "Alice", "body": "hello"})
    );
    assert_eq!(m["data"], json!({"uri": "at://x", "count": "3"}));
    assert_eq!(
        m["android"],
        json!({"priority": "HIGH", "ttl": "600s", "collapse_key": "dm", "notification": {"channel_id": "messages"}})
    );
    assert!(m.get("apns").is_none());
}

#[tokio::test]
async fn ios_and_web_devices_get_their_overrides() {
    let s = setup().await;
    assert_eq!(
        s.fcm.send(&delivery(TOKEN, Platform::Ios)).await,
        Outcome::Delivered
    );
    assert_eq!(
        s.fcm.send(&delivery(TOKEN, Platform::Web)).await,
        Outcome::Delivered
    );
    let [ios, web] = <[_; 2]>::try_from(s.service.accepted()).unwrap();
    assert_eq!(ios["apns"]["headers"]["apns-priority"], "10");
    assert_eq!(ios["apns"]["headers"]["apns-collapse-id"], "dm");
    assert!(
        ios["apns"]["headers"]["apns-expiration"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .is_ok()
    );
    assert_eq!(
        web["webpush"]["headers"],
        json!({"Urgency": "high", "TTL": "600"})
    );
}

#[tokio::test]
async fn the_messages_channel_wins_over_the_apps_and_data_only_messages_get_none() {
    let s = setup().await;
    let mut reply = delivery(TOKEN, Platform::Android);
    reply.message.channel = Some("reply".into());
    let mut data_only = reply.clone();
    (data_only.message.title, data_only.message.body) = (None, None);
    for d in [&reply, &data_only] {
        assert_eq!(s.fcm.send(d).await, Outcome::Delivered);
    }
    let [reply, data_only] = <[_; 2]>::try_from(s.service.accepted()).unwrap();
    assert_eq!(
        reply["android"]["notification"],
        json!({"channel_id": "reply"})
    );
    assert!(
        data_only["android"].get("notification").is_none(),
        "an android.notification would make FCM display it: {data_only}"
    );
}

#[tokio::test]
async fn a_data_only_ios_message_is_a_background_wake_up() {
    let s = setup().await;
    let mut wake = delivery(TOKEN, Platform::Ios);
    (wake.message.title, wake.message.body) = (None, None);
    assert_eq!(s.fcm.send(&wake).await, Outcome::Delivered);
    let [wake] = <[_; 1]>::try_from(s.service.accepted()).unwrap();
    let apns = &wake["apns"];
    assert_eq!(apns["headers"]["apns-priority"], "5", "{wake}");
    assert_eq!(apns["headers"]["apns-push-type"], "background");
    assert_eq!(apns["payload"], json!({"aps": {"content-available": 1}}));
    assert!(wake.get("notification").is_none());
}

#[tokio::test]
async fn ios_devices_get_mutable_content_and_thread_id_in_aps() {
    let s = setup().await;
    let mut d = delivery(TOKEN, Platform::Ios);
    d.message.mutable_content = true;
    d.message.thread_id = Some("convo-1".into());
    assert_eq!(s.fcm.send(&d).await, Outcome::Delivered);
    assert_eq!(
        s.fcm.send(&delivery(TOKEN, Platform::Ios)).await,
        Outcome::Delivered
    );
    let [asked, plain] = <[_; 2]>::try_from(s.service.accepted()).unwrap();
    assert_eq!(
        asked["apns"]["payload"],
        json!({"aps": {"mutable-content": 1, "thread-id": "convo-1"}})
    );
    assert_eq!(asked["apns"]["headers"]["apns-priority"], "10");
    assert!(plain["apns"].get("payload").is_none(), "{plain}");
}

#[tokio::test]
async fn the_access_token_is_cached_and_refreshed_once_after_a_401() {
    let s = setup().await;
    for _ in 0..3 {
        assert_eq!(
            s.fcm.send(&delivery(TOKEN, Platform::Android)).await,
            Outcome::Delivered
        );
    }
    assert_eq!(s.service.tokens_issued(), 1, "one token serves every send");
    s.service.revoke_access_tokens();
    assert_eq!(
        s.fcm.send(&delivery(TOKEN, Platform::Android)).await,
        Outcome::Delivered
    );
    assert_eq!(
        s.service.tokens_issued(),
        2,
        "a 401 fetched exactly one new token"
    );
}

#[tokio::test]
async fn every_documented_error_has_its_outcome() {
    let s = setup().await;
    let cases = [
        (FcmAnswer::Unregistered, "token_dead"),
        (FcmAnswer::InvalidToken, "token_dead"),
        (FcmAnswer::SenderIdMismatch, "rejected"),
        (FcmAnswer::QuotaExceeded { retry_after: 60 }, "retry"),
        (FcmAnswer::Unavailable, "retry"),
        (FcmAnswer::Internal, "retry"),
        (FcmAnswer::ThirdPartyAuthError, "rejected"),
    ];
    for (answer, expected) in cases {
        s.service.script(TOKEN, [answer]);
        let outcome = s.fcm.send(&delivery(TOKEN, Platform::Android)).await;
        assert_eq!(outcome.label(), expected, "{answer:?}: {outcome:?}");
        if let FcmAnswer::QuotaExceeded { retry_after } = answer {
            assert!(
                matches!(outcome, Outcome::Retry { after: Some(a), .. } if a.as_secs() == retry_after)
            );
        }
    }
    assert!(s.service.accepted().is_empty());
}

#[tokio::test]
async fn reserved_data_keys_are_refused_before_sending() {
    let s = setup().await;
    let mut d = delivery(TOKEN, Platform::Android);
    d.message.data.insert("google.c.a.e".into(), json!("1"));
    assert!(
        matches!(s.fcm.send(&d).await, Outcome::Rejected { reason } if reason.contains("reserved"))
    );
    assert_eq!(s.service.tokens_issued(), 0);
}

#[tokio::test]
async fn a_broken_service_account_fails_at_start_naming_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sa.json");
    let app = AppId::parse("com.example.broken").unwrap();
    for (content, says) in [
        (None, "cannot read"),
        (Some("{not json"), "not usable"),
        (
            Some(
                r#"{"project_id":"p","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n","client_email":"a@b","token_uri":"http://127.0.0.1:9/token"}"#,
            ),
            "private_key",
        ),
    ] {
        match content {
            Some(c) => std::fs::write(&file, c).unwrap(),
            None => {
                let _ = std::fs::remove_file(&file);
            }
        }
        let config = FcmConfig {
            enabled: true,
            service_account_file: file.clone(),
            base_url: None,
            android_channel_id: None,
        };
        let err = Fcm::new(&HttpClientConfig::default(), vec![(app.clone(), config)])
            .err()
            .expect("refused");
        assert_eq!(err.app, "com.example.broken");
        assert!(err.reason.contains(says), "{err}");
    }
}

#[tokio::test]
async fn registration_accepts_only_fcm_shaped_tokens() {
    let s = setup().await;
    let device = |token: &str| NewDevice {
        account: Account::parse("test:alice").unwrap(),
        app_id: AppId::parse("app").unwrap(),
        platform: Platform::Android,
        transport: Transport::Fcm,
        token: token.into(),
        options: Default::default(),
    };
    assert!(s.fcm.accept_registration(device(TOKEN)).await.is_ok());
    for bad in [
        "short",
        "has spaces in it and is long enough to pass the length",
        "ExponentPushToken[abcdefghijklmnopqrstuvwxyz0123]",
        &"x".repeat(5000),
    ] {
        assert!(
            s.fcm.accept_registration(device(bad)).await.is_err(),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn refused_credentials_show_as_a_misconfiguration_until_a_success() {
    let s = setup().await;
    s.service.script(TOKEN, [FcmAnswer::ThirdPartyAuthError]);
    assert!(matches!(
        s.fcm.send(&delivery(TOKEN, Platform::Ios)).await,
        Outcome::Rejected { .. }
    ));
    let standing = s.fcm.misconfigurations();
    assert_eq!(standing.len(), 1);
    assert_eq!(standing[0].0.as_str(), "app");
    assert!(
        standing[0].1.contains("THIRD_PARTY_AUTH_ERROR"),
        "{standing:?}"
    );
    assert_eq!(
        s.fcm.send(&delivery(TOKEN, Platform::Ios)).await,
        Outcome::Delivered
    );
    assert!(s.fcm.misconfigurations().is_empty());
}
