//! Web Push and encrypted UnifiedPush against the Web Push stand-in, which
//! checks VAPID as autopush does and decrypts every body.

use herald_core::model::{
    Account, AppId, Delivery, Message, NewDevice, Platform, Priority, Transport,
};
use herald_core::provider::{Outcome, Provider};
use herald_push::HttpClientConfig;
use herald_push::unifiedpush::{UnifiedPush, UnifiedPushConfig};
use herald_push::vapid::generate_keypair;
use herald_push::webpush::{WebPush, WebPushConfig};
use herald_standins::webpush::{Subscription, WebPushService};
use serde_json::{Map, json};

fn app() -> AppId {
    AppId::parse("app").unwrap()
}

struct Setup {
    service: WebPushService,
    webpush: WebPush,
    dir: tempfile::TempDir,
}

fn vapid_file(dir: &std::path::Path) -> std::path::PathBuf {
    let (pem, _) = generate_keypair();
    let path = dir.join("vapid.pem");
    std::fs::write(&path, pem).unwrap();
    path
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = WebPushConfig {
        enabled: true,
        vapid_private_key_file: vapid_file(dir.path()),
        subject: "mailto:ops@example.com".into(),
    };
    let webpush = WebPush::new(&HttpClientConfig::default(), vec![(app(), config)], true).unwrap();
    Setup {
        service: WebPushService::start().await,
        webpush,
        dir,
    }
}

fn registration(
    token: String,
    options: Map<String, serde_json::Value>,
    transport: Transport,
) -> NewDevice {
    NewDevice {
        account: Account::parse("test:alice").unwrap(),
        app_id: app(),
        platform: Platform::Web,
        transport,
        token,
        options,
    }
}

fn message() -> Message {
    Message {
        title: Some("Alice".into()),
        body: Some("héllo ✓".into()),
        data: json!({"uri": "at://x"}).as_object().unwrap().clone(),
        collapse_key: Some("chat:alice".into()),
        ttl: Some(300),
        priority: Priority::Normal,
        channel: Some("chat-messages".into()),
        mutable_content: true,
        thread_id: Some("convo-1".into()),
    }
}

fn delivery(device: &NewDevice, message: Message) -> Delivery {
    Delivery {
        id: 1,
        device_id: 1,
        account: device.account.clone(),
        app_id: device.app_id.clone(),
        platform: device.platform,
        transport: device.transport,
        token: device.token.clone(),
        options: device.options.clone(),
        message,
        created_at: 0,
        attempts: 1,
    }
}

async fn registered(s: &Setup, sub: &Subscription) -> NewDevice {
    s.webpush
        .accept_registration(registration(sub.to_json(), Map::new(), Transport::WebPush))
        .await
        .unwrap()
}

#[tokio::test]
async fn an_encrypted_signed_push_is_decrypted_by_the_service() {
    let s = setup().await;
    let sub = s.service.subscribe();
    let device = registered(&s, &sub).await;
    assert_eq!(
        device.token, sub.endpoint,
        "the subscription JSON is stored as endpoint + keys"
    );
    assert_eq!(device.options["p256dh"], sub.p256dh);
    assert_eq!(
        s.webpush.send(&delivery(&device, message())).await,
        Outcome::Delivered
    );
    let got = s.service.received().remove(0);
    let plaintext: Message = serde_json::from_slice(&got.plaintext).unwrap();
    assert_eq!(plaintext, message());
    let fields: serde_json::Value = serde_json::from_slice(&got.plaintext).unwrap();
    assert_eq!(
        (
            &fields["channel"],
            &fields["mutable_content"],
            &fields["thread_id"]
        ),
        (&json!("chat-messages"), &json!(true), &json!("convo-1")),
        "the service worker reads the display fields by these names"
    );
    assert_eq!(got.headers["ttl"], "300");
    assert_eq!(got.headers["urgency"], "normal");
    assert_eq!(got.headers["content-encoding"], "aes128gcm");
    assert_eq!(
        got.headers["topic"].len(),
        32,
        "a collapse key with ':' becomes a 32-char base64url topic"
    );
    assert_eq!(got.vapid_claims["sub"], "mailto:ops@example.com");
    assert_eq!(Some(got.vapid_key.as_str()), s.webpush.public_key(&app()));
}

#[tokio::test]
async fn every_documented_answer_has_its_outcome() {
    let s = setup().await;
    let sub = s.service.subscribe();
    let device = registered(&s, &sub).await;
    for (status, label) in [
        (410, "token_dead"),
        (404, "token_dead"),
        (429, "retry"),
        (503, "retry"),
        (413, "rejected"),
        (400, "rejected"),
    ] {
        s.service.script(&sub, [status]);
        let outcome = s.webpush.send(&delivery(&device, message())).await;
        assert_eq!(outcome.label(), label, "{status}: {outcome:?}");
        if status == 429 {
            assert!(matches!(outcome, Outcome::Retry { after: Some(a), .. } if a.as_secs() == 5));
        }
    }
    assert!(s.service.received().is_empty());
}

#[tokio::test]
async fn a_refused_vapid_key_is_the_apps_misconfiguration() {
    let s = setup().await;
    let sub = s.service.subscribe();
    let device = registered(&s, &sub).await;
    s.service.script(&sub, [401]);
    let outcome = s.webpush.send(&delivery(&device, message())).await;
    assert!(
        matches!(&outcome, Outcome::Rejected { reason } if reason.contains("VAPID")),
        "{outcome:?}"
    );
    assert_eq!(s.webpush.misconfigurations().len(), 1);
    assert_eq!(
        s.webpush.send(&delivery(&device, message())).await,
        Outcome::Delivered
    );
    assert!(s.webpush.misconfigurations().is_empty());
}

#[tokio::test]
async fn oversized_plaintext_is_refused_before_sending() {
    let s = setup().await;
    let sub = s.service.subscribe();
    let device = registered(&s, &sub).await;
    let mut big = message();
    big.body = Some("x".repeat(4000));
    assert!(
        matches!(s.webpush.send(&delivery(&device, big)).await, Outcome::Rejected { reason } if reason.contains("3993"))
    );
    assert!(s.service.received().is_empty());
}

#[tokio::test]
async fn malformed_and_hostile_registrations_are_refused() {
    let s = setup().await;
    let sub = s.service.subscribe();
    let keys = |p256dh: &str, auth: &str| {
        json!({"endpoint": sub.endpoint, "keys": {"p256dh": p256dh, "auth": auth}}).to_string()
    };
    let mut off_curve = base64_decode(&sub.p256dh);
    off_curve[64] ^= 1;
    for token in [
        "{".to_owned(),
        "not json".to_owned(),
        sub.endpoint.clone(),
        keys("!!!", &sub.auth),
        keys(&sub.p256dh[..20], &sub.auth),
        keys(&herald_push::jwt::b64url(off_curve), &sub.auth),
        keys(&sub.p256dh, "AAAA"),
        format!("{{\"endpoint\": \"{}\", \"keys\": {{}}}}", sub.endpoint),
        "x".repeat(100_000),
    ] {
        let refused = s
            .webpush
            .accept_registration(registration(token.clone(), Map::new(), Transport::WebPush))
            .await;
        assert!(refused.is_err(), "{}", &token[..token.len().min(80)]);
    }
    let strict = WebPush::new(
        &HttpClientConfig::default(),
        vec![(
            app(),
            WebPushConfig {
                enabled: true,
                vapid_private_key_file: vapid_file(s.dir.path()),
                subject: "mailto:a@b.c".into(),
            },
        )],
        false,
    )
    .unwrap();
    let err = strict
        .accept_registration(registration(sub.to_json(), Map::new(), Transport::WebPush))
        .await
        .unwrap_err();
    assert!(err.reason.contains("https"), "{err}");
}

fn base64_decode(text: &str) -> Vec<u8> {
    herald_push::jwt::b64url_decode(text).unwrap()
}

#[tokio::test]
async fn a_broken_vapid_key_or_subject_fails_at_start_naming_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a key").unwrap();
    for (file, subject, says) in [
        (bad.clone(), "mailto:a@b.c", "VAPID key"),
        (
            dir.path().join("missing.pem"),
            "mailto:a@b.c",
            "cannot read",
        ),
        (vapid_file(dir.path()), "ops@example.com", "mailto:"),
    ] {
        let config = WebPushConfig {
            enabled: true,
            vapid_private_key_file: file,
            subject: subject.into(),
        };
        let err = WebPush::new(&HttpClientConfig::default(), vec![(app(), config)], true)
            .err()
            .expect("refused");
        assert_eq!(err.app, "app");
        assert!(err.reason.contains(says), "{err}");
    }
}

#[tokio::test]
async fn unifiedpush_with_keys_encrypts_like_web_push() {
    let s = setup().await;
    let sub = s.service.subscribe();
    let config = UnifiedPushConfig {
        enabled: true,
        vapid_private_key_file: Some(vapid_file(s.dir.path())),
        subject: Some("https://example.com/contact".into()),
    };
    let up = UnifiedPush::new(&HttpClientConfig::default(), vec![(app(), config)], true).unwrap();
    let options = json!({"p256dh": sub.p256dh, "auth": sub.auth})
        .as_object()
        .unwrap()
        .clone();
    let device = up
        .accept_registration(registration(
            sub.endpoint.clone(),
            options,
            Transport::UnifiedPush,
        ))
        .await
        .unwrap();
    assert_eq!(
        up.send(&delivery(&device, message())).await,
        Outcome::Delivered
    );
    let got = s.service.received().remove(0);
    assert_eq!(
        serde_json::from_slice::<Message>(&got.plaintext).unwrap(),
        message()
    );
    assert_eq!(got.vapid_claims["sub"], "https://example.com/contact");
}
