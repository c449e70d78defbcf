//! FCM, Expo and gorush end to end through the real binary, against the
//! stand-ins: inferred transports, dead tokens, misconfiguration in /health,
//! the gorush-compatible /api/push, and forwarding from one herald to another.

mod support;

use herald_standins::expo::ExpoService;
use herald_standins::fcm::{FcmAnswer, FcmService};
use reqwest::Method;
use serde_json::{Value, json};
use support::{APP, Herald, wait_until};

const FCM_TOKEN: &str = "ZmNtOkFQQTkxYkhlcmFsZC10ZXN0LXRva2VuLWZvci1hbGljZS1kZXZpY2U";
const FCM_DEAD: &str = "ZmNtOkFQQTkxYkRlYWQtdGVzdC10b2tlbi1mb3ItYS1nb25lLWRldmljZQ";
const GORUSH_TOKEN: &str = "gorush-api-token-0123456789";

fn with_tables(tables: String) -> impl FnOnce(String) -> String {
    move |config| format!("{config}\n{tables}")
}

fn fcm_table(fcm: &FcmService) -> String {
    format!(
        "[apps.\"{APP}\".fcm]\nservice_account_file = \"{}\"\nbase_url = \"{}\"\n",
        fcm.service_account_file().display(),
        fcm.base_url()
    )
}

async fn register(herald: &Herald, account: &str, platform: &str, token: &str) -> (u16, Value) {
    let body = json!({"account": account, "app_id": APP, "platform": platform, "token": token});
    herald
        .request(Method::PUT, "/v1/devices", Some(&body))
        .await
}

#[tokio::test]
async fn fcm_and_expo_devices_are_routed_by_token_shape_and_reached() {
    let dir = tempfile::tempdir().unwrap();
    let fcm = FcmService::start(dir.path()).await;
    let expo = ExpoService::start(None).await;
    let tables = format!(
        "{}\n[apps.\"{APP}\".expo]\nbase_url = \"{}\"\nreceipt_delay_secs = 0\n",
        fcm_table(&fcm),
        expo.base_url()
    );
    let herald = Herald::start_edited(dir.path(), with_tables(tables)).await;

    let (status, device) = register(&herald, "test:alice", "android", FCM_TOKEN).await;
    assert_eq!(
        (status, device["transport"].as_str()),
        (201, Some("fcm")),
        "{device}"
    );
    let (status, device) = register(
        &herald,
        "test:alice",
        "ios",
        "ExponentPushToken[alice-phone]",
    )
    .await;
    assert_eq!(
        (status, device["transport"].as_str()),
        (201, Some("expo")),
        "{device}"
    );
    let (status, err) = register(&herald, "test:alice", "desktop", "opaque-token").await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("transport_unavailable")),
        "{err}"
    );

    let (_, queued) = herald
        .notify(json!({"account": "test:alice", "title": "Bob", "body": "hi", "data": {"n": 1}}))
        .await;
    assert_eq!(queued["queued"], 2);
    wait_until("FCM and Expo both accepted", || async {
        fcm.accepted().len() == 1 && expo.accepted().len() == 1
    })
    .await;
    assert_eq!(
        fcm.accepted()[0]["data"]["n"],
        "1",
        "FCM data values are strings"
    );
    assert_eq!(expo.accepted()[0]["to"], "ExponentPushToken[alice-phone]");
}

#[tokio::test]
async fn an_unregistered_fcm_token_removes_the_device_and_refused_credentials_show_in_health() {
    let dir = tempfile::tempdir().unwrap();
    let fcm = FcmService::start(dir.path()).await;
    let herald = Herald::start_edited(dir.path(), with_tables(fcm_table(&fcm))).await;
    register(&herald, "test:alice", "android", FCM_DEAD).await;
    register(&herald, "test:bob", "android", FCM_TOKEN).await;
    fcm.script(FCM_DEAD, [FcmAnswer::Unregistered]);
    fcm.script(FCM_TOKEN, [FcmAnswer::ThirdPartyAuthError]);

    herald
        .notify(json!({"account": "test:alice", "body": "hi"}))
        .await;
    herald.wait_health("devices", 1).await;
    herald
        .notify(json!({"account": "test:bob", "body": "hi"}))
        .await;
    wait_until("the misconfiguration shows in /health", || async {
        let health = herald.health().await;
        health["status"] == "degraded" && health["misconfigured"][0]["transport"] == "fcm"
    })
    .await;
    let health = herald.health().await;
    assert_eq!(health["misconfigured"][0]["app"], APP);
    assert!(
        health["misconfigured"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("THIRD_PARTY_AUTH_ERROR")
    );
}

fn gorush_api_tables(fcm: &FcmService) -> String {
    format!(
        "[gorush_api]\napp_id = \"{APP}\"\ntoken = \"{GORUSH_TOKEN}\"\n\n{}",
        fcm_table(fcm)
    )
}

async fn gorush_push(herald: &Herald, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/push", herald.base))
        .json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn the_gorush_api_answers_in_gorush_shape_with_typed_dead_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let fcm = FcmService::start(dir.path()).await;
    let herald = Herald::start_edited(dir.path(), with_tables(gorush_api_tables(&fcm))).await;
    fcm.script(FCM_DEAD, [FcmAnswer::Unregistered]);
    let body = json!({"notifications": [{
        "tokens": [FCM_TOKEN, FCM_DEAD], "platform": 2, "title": "Hi", "message": "from gorush",
        "data": {"k": "v"}, "priority": "high", "sound": "default", "badge": 1,
    }]});
    let (status, answer) = gorush_push(&herald, Some(GORUSH_TOKEN), &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["success"].as_str(), answer["counts"].as_u64()),
        (Some("ok"), Some(2))
    );
    let logs = answer["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 1, "gorush logs failures only: {answer}");
    assert_eq!(
        (logs[0]["type"].as_str(), logs[0]["token"].as_str()),
        (Some("failed-push"), Some(FCM_DEAD))
    );
    assert_eq!(
        (
            logs[0]["token_dead"].as_bool(),
            logs[0]["retryable"].as_bool()
        ),
        (Some(true), Some(false))
    );
    assert_eq!(fcm.accepted()[0]["notification"]["body"], "from gorush");

    for (what, token, body, status) in [
        ("no token", None, body.clone(), 401),
        ("wrong token", Some("nope"), body.clone(), 401),
        (
            "huawei",
            Some(GORUSH_TOKEN),
            json!({"notifications": [{"tokens": ["x"], "platform": 3, "message": "m"}]}),
            400,
        ),
        (
            "no tokens",
            Some(GORUSH_TOKEN),
            json!({"notifications": [{"platform": 2, "message": "m"}]}),
            400,
        ),
        (
            "too many",
            Some(GORUSH_TOKEN),
            json!({"notifications": vec![json!({"tokens": [FCM_TOKEN], "platform": 2, "message": "m"}); 101]}),
            400,
        ),
        ("not json", Some(GORUSH_TOKEN), json!("notifications"), 400),
    ] {
        let (got, err) = gorush_push(&herald, token, &body).await;
        assert_eq!(got, status, "{what}: {err}");
        assert_eq!(err["code"], status, "{what}: gorush's error shape: {err}");
        assert!(err["message"].is_string());
    }
}

#[tokio::test]
async fn the_gorush_api_honours_mutable_content_thread_id_and_the_android_channel() {
    let dir = tempfile::tempdir().unwrap();
    let fcm = FcmService::start(dir.path()).await;
    let herald = Herald::start_edited(dir.path(), with_tables(gorush_api_tables(&fcm))).await;
    let ios = json!({"notifications": [{
        "tokens": [FCM_TOKEN], "platform": 1, "title": "Bob", "message": "replied",
        "mutable_content": true, "thread-id": "convo-1",
    }]});
    let android = json!({"notifications": [{
        "tokens": [FCM_TOKEN], "platform": 2, "title": "Bob", "message": "replied",
        "android": {"priority": "high", "notification": {"channel_id": "reply", "sound": "default"}},
    }]});
    for body in [&ios, &android] {
        let (status, answer) = gorush_push(&herald, Some(GORUSH_TOKEN), body).await;
        assert_eq!(
            (status, answer["logs"].as_array().map(Vec::len)),
            (200, Some(0)),
            "{answer}"
        );
    }
    let [ios, android] = <[_; 2]>::try_from(fcm.accepted()).unwrap();
    assert_eq!(
        ios["apns"]["payload"]["aps"],
        json!({"mutable-content": 1, "thread-id": "convo-1"})
    );
    assert_eq!(android["android"]["notification"]["channel_id"], "reply");

    let bad = json!({"notifications": [{
        "tokens": [FCM_TOKEN], "platform": 2, "message": "m",
        "android": {"notification": {"channel_id": "chat messages"}},
    }]});
    let (status, answer) = gorush_push(&herald, Some(GORUSH_TOKEN), &bad).await;
    assert_eq!(status, 200, "{answer}");
    let error = answer["logs"][0]["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("channel: may contain only"), "{answer}");
    assert_eq!(fcm.accepted().len(), 2, "nothing invalid was sent");
}

#[tokio::test]
async fn a_herald_forwards_through_gorush_to_another_herald() {
    let upstream_dir = tempfile::tempdir().unwrap();
    let fcm = FcmService::start(upstream_dir.path()).await;
    let upstream =
        Herald::start_edited(upstream_dir.path(), with_tables(gorush_api_tables(&fcm))).await;
    fcm.script(FCM_DEAD, [FcmAnswer::Unregistered]);

    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("gorush-token");
    std::fs::write(&token_file, GORUSH_TOKEN).unwrap();
    let tables = format!(
        "[apps.\"{APP}\".gorush]\nurl = \"{}\"\ntoken_file = \"{}\"\n",
        upstream.base,
        token_file.display()
    );
    let herald = Herald::start_edited(dir.path(), with_tables(tables)).await;
    let (status, device) = register(&herald, "test:alice", "android", FCM_TOKEN).await;
    assert_eq!(
        (status, device["transport"].as_str()),
        (201, Some("gorush")),
        "{device}"
    );
    register(&herald, "test:alice", "android", FCM_DEAD).await;

    herald
        .notify(json!({"account": "test:alice", "title": "Hi", "body": "forwarded"}))
        .await;
    wait_until("the upstream's FCM got the push", || async {
        fcm.accepted().len() == 1
    })
    .await;
    assert_eq!(fcm.accepted()[0]["notification"]["body"], "forwarded");
    herald.wait_health("devices", 1).await;
}

#[tokio::test]
async fn a_browser_subscription_is_routed_to_web_push_and_decrypted_by_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let service = herald_standins::webpush::WebPushService::start().await;
    let key = dir.path().join("vapid.pem");
    std::fs::write(&key, herald_push::vapid::generate_keypair().0).unwrap();
    let tables = format!(
        "[apps.\"{APP}\".webpush]\nvapid_private_key_file = \"{}\"\nsubject = \"mailto:ops@example.com\"\n",
        key.display()
    );
    let herald = Herald::start_edited(dir.path(), with_tables(tables)).await;
    let subscription = service.subscribe();
    let (status, device) = register(&herald, "test:alice", "web", &subscription.to_json()).await;
    assert_eq!(
        (status, device["transport"].as_str()),
        (201, Some("webpush")),
        "{device}"
    );
    let (status, _) = register(&herald, "test:alice", "web", &subscription.to_json()).await;
    assert_eq!(
        status, 200,
        "the same subscription again is the same device"
    );
    herald
        .notify(json!({"account": "test:alice", "title": "Hi", "body": "to the browser"}))
        .await;
    wait_until("the push service decrypted the push", || async {
        service.received().len() == 1
    })
    .await;
    let plaintext: Value = serde_json::from_slice(&service.received()[0].plaintext).unwrap();
    assert_eq!(plaintext["body"], "to the browser");
}

#[tokio::test]
async fn an_ios_token_is_routed_to_apns_over_tls_and_http2() {
    let dir = tempfile::tempdir().unwrap();
    let apns = herald_standins::apns::ApnsService::start(dir.path(), "org.example.chat").await;
    let ca = apns.ca_pem_path.display().to_string();
    let table = format!(
        "[apps.\"{APP}\".apns]\nteam_id = \"{}\"\nkey_id = \"{}\"\nkey_file = \"{}\"\ntopic = \"org.example.chat\"\nproduction_url = \"{}\"\n",
        herald_standins::apns::TEAM_ID,
        herald_standins::apns::KEY_ID,
        apns.key_path.display(),
        apns.url()
    );
    let herald = Herald::start_edited(dir.path(), |c| {
        format!("extra_ca_file = \"{ca}\"\n{c}\n{table}")
    })
    .await;
    let token = "740F4707BEBCF74F9B7C25D48E3358945F6AA01DA5DDB387462C7EAF61BB78AD";
    let (status, device) = register(&herald, "test:alice", "ios", token).await;
    assert_eq!(
        (status, device["transport"].as_str()),
        (201, Some("apns")),
        "{device}"
    );
    apns.script(&token.to_ascii_lowercase(), [(410, "Unregistered")]);
    herald
        .notify(json!({"account": "test:alice", "title": "Hi", "body": "first"}))
        .await;
    herald.wait_health("devices", 0).await;
    let (status, _) = register(&herald, "test:alice", "ios", token).await;
    assert_eq!(status, 201);
    herald
        .notify(json!({"account": "test:alice", "title": "Hi", "body": "second"}))
        .await;
    wait_until("APNs accepted the push", || async {
        apns.accepted().len() == 1
    })
    .await;
    assert_eq!(apns.accepted()[0].payload["aps"]["alert"]["body"], "second");
}
