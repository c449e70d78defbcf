//! The Mostro-compatible API through the real binary: Mostro's bodies byte
//! for byte, its status codes and headers, its privacy properties (202 for
//! every valid `/api/notify`, the same 429 from either limit, fresh request
//! ids), and herald's improvements (the same unregister answer either way,
//! JSON refusals of bad bodies, registrations that survive a restart and
//! expire, encrypted UnifiedPush wake-ups, logs without pubkeys or tokens).

mod support;

use std::time::Duration;

use herald_standins::fcm::FcmService;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use support::{APP, Herald, Receiver, wait_until};

const HEALTH: &str = r#"{"status":"ok"}"#;
const REGISTERED: &str =
    r#"{"success":true,"message":"Token registered successfully","platform":"android"}"#;
const UNREGISTERED: &str = r#"{"success":true,"message":"Token unregistered successfully"}"#;
const ACCEPTED: &str = r#"{"accepted":true}"#;
const RATE_LIMITED: &str = r#"{"success":false,"message":"rate limited"}"#;
const BAD_PUBKEY: &str =
    r#"{"success":false,"message":"Invalid trade_pubkey format (expected 64 hex characters)"}"#;
const BAD_JSON: &str = r#"{"success":false,"message":"Invalid JSON body"}"#;
const TOO_LARGE: &str = r#"{"success":false,"message":"Request body too large"}"#;
/// Mostro's bursts: 10 per pubkey and 30 per client address.
const PUBKEY_BURST: usize = 10;
const CLIENT_BURST: usize = 30;

/// Mostro's bursts refilled at one request a minute, so that however long
/// the test takes, no bucket refills during it.
fn slow_limits() -> String {
    format!(
        "[mostro_api.notify_per_pubkey]\nper_minute = 1\nburst = {PUBKEY_BURST}\n\
         [mostro_api.notify_per_ip]\nper_minute = 1\nburst = {CLIENT_BURST}\n"
    )
}

/// A distinct, valid trade key per number.
fn trade_key(n: u32) -> String {
    format!("{n:064x}")
}

/// The test configuration with the Mostro API on for the test app.
fn mostro(extra: &str) -> impl FnOnce(String) -> String {
    let extra = extra.to_owned();
    move |config| format!("{config}\n[mostro_api]\napp_id = \"{APP}\"\n{extra}")
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {:?}", self.body))
    }

    fn request_id(&self) -> &str {
        self.headers["x-request-id"].to_str().unwrap()
    }

    /// The status, body and headers, less those that differ between any
    /// two responses (the request id, the date).
    fn observable(&self) -> (u16, String, Vec<(String, String)>) {
        let mut headers: Vec<(String, String)> = self
            .headers
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "x-request-id" | "date"))
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        headers.sort();
        (self.status, self.body.clone(), headers)
    }
}

async fn call(
    herald: &Herald,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Reply {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", herald.base));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().await.unwrap();
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

async fn get(herald: &Herald, path: &str) -> Reply {
    call(herald, reqwest::Method::GET, path, &[], None).await
}

async fn post(herald: &Herald, path: &str, body: &Value) -> Reply {
    let json = [("content-type", "application/json")];
    call(
        herald,
        reqwest::Method::POST,
        path,
        &json,
        Some(body.to_string().into_bytes()),
    )
    .await
}

async fn register(herald: &Herald, trade_pubkey: &str, token: &str) -> Reply {
    let body = json!({"trade_pubkey": trade_pubkey, "token": token, "platform": "android"});
    post(herald, "/api/register", &body).await
}

async fn notify(herald: &Herald, trade_pubkey: &str) -> Reply {
    post(
        herald,
        "/api/notify",
        &json!({"trade_pubkey": trade_pubkey}),
    )
    .await
}

async fn unregister(herald: &Herald, trade_pubkey: &str) -> Reply {
    post(
        herald,
        "/api/unregister",
        &json!({"trade_pubkey": trade_pubkey}),
    )
    .await
}

async fn token_counts(herald: &Herald) -> Value {
    get(herald, "/api/status").await.json()["tokens"].clone()
}

fn assert_mostro(reply: &Reply, status: u16, body: &str) {
    assert_eq!((reply.status, reply.body.as_str()), (status, body));
    assert_eq!(reply.headers["content-type"], "application/json");
}

#[tokio::test]
async fn every_route_answers_mostros_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let herald = Herald::start_edited(dir.path(), mostro("")).await;
    let version = env!("CARGO_PKG_VERSION");

    assert_mostro(&get(&herald, "/api/health").await, 200, HEALTH);
    assert_mostro(
        &get(&herald, "/api/info").await,
        200,
        &format!(
            r#"{{"version":"{version}","encryption_enabled":false,"note":"Token encryption will be enabled in a future phase"}}"#
        ),
    );
    let status = |total, android| {
        format!(
            r#"{{"status":"running","version":"{version}","tokens":{{"total":{total},"android":{android},"ios":0}}}}"#
        )
    };
    assert_mostro(&get(&herald, "/api/status").await, 200, &status(0, 0));

    let key = trade_key(1);
    let registered = register(&herald, &key, &receiver.endpoint("phone")).await;
    assert_mostro(&registered, 200, REGISTERED);
    assert_mostro(&get(&herald, "/api/status").await, 200, &status(1, 1));
    assert_mostro(&notify(&herald, &key).await, 202, ACCEPTED);
    assert_mostro(&unregister(&herald, &key).await, 200, UNREGISTERED);
    assert_mostro(&get(&herald, "/api/status").await, 200, &status(0, 0));
}

#[tokio::test]
async fn refusals_carry_mostros_messages() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let herald = Herald::start_edited(dir.path(), mostro("")).await;
    let endpoint = receiver.endpoint("phone");
    let refused = |message: &str| format!(r#"{{"success":false,"message":"{message}"}}"#);

    for bad in ["tooshort", &"z".repeat(64), &format!("{}0", trade_key(1))] {
        let body = json!({"trade_pubkey": bad, "token": endpoint, "platform": "android"});
        assert_mostro(
            &post(&herald, "/api/register", &body).await,
            400,
            BAD_PUBKEY,
        );
        assert_mostro(&unregister(&herald, bad).await, 400, BAD_PUBKEY);
        assert_mostro(&notify(&herald, bad).await, 400, BAD_PUBKEY);
    }
    let body = json!({"trade_pubkey": trade_key(1), "token": "", "platform": "android"});
    assert_mostro(
        &post(&herald, "/api/register", &body).await,
        400,
        &refused("Token cannot be empty"),
    );
    let body = json!({"trade_pubkey": trade_key(1), "token": endpoint, "platform": "web"});
    assert_mostro(
        &post(&herald, "/api/register", &body).await,
        400,
        &refused("Invalid platform 'web' (expected 'android' or 'ios')"),
    );
    assert_eq!(token_counts(&herald).await["total"], 0);
}

#[tokio::test]
async fn trusted_instances_gate_registration_with_mostros_403s() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let trusted = trade_key(7);
    let herald = Herald::start_edited(
        dir.path(),
        mostro(&format!("trusted_mostro_pubkeys = [\"{trusted}\"]\n")),
    )
    .await;
    let register_with = |mostro_pubkey: Option<&str>| {
        let mut body = json!({"trade_pubkey": trade_key(1), "token": receiver.endpoint("phone"), "platform": "android"});
        if let Some(key) = mostro_pubkey {
            body["mostro_pubkey"] = json!(key);
        }
        body
    };
    let untrusted = trade_key(8);
    let cases = [
        (
            None,
            403,
            r#"{"success":false,"message":"Mostro instance pubkey required"}"#,
        ),
        (
            Some("tooshort"),
            400,
            r#"{"success":false,"message":"Invalid mostro_pubkey format (expected 64 hex characters)"}"#,
        ),
        (
            Some(untrusted.as_str()),
            403,
            r#"{"success":false,"message":"Mostro instance not trusted"}"#,
        ),
    ];
    for (mostro_pubkey, status, body) in cases {
        let reply = post(&herald, "/api/register", &register_with(mostro_pubkey)).await;
        assert_mostro(&reply, status, body);
    }
    assert_eq!(token_counts(&herald).await["total"], 0);
    let reply = post(
        &herald,
        "/api/register",
        &register_with(Some(&trusted.to_uppercase())),
    )
    .await;
    assert_mostro(&reply, 200, REGISTERED);
}

#[tokio::test]
async fn notify_cannot_tell_a_registered_key_from_an_unknown_one() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let herald = Herald::start_edited(dir.path(), mostro("")).await;
    let (known, unknown) = (trade_key(1), trade_key(2));
    register(&herald, &known, &receiver.endpoint("phone")).await;

    let to_unknown = notify(&herald, &unknown).await;
    let to_known = notify(&herald, &known).await;
    assert_mostro(&to_known, 202, ACCEPTED);
    assert_eq!(
        to_unknown.observable(),
        to_known.observable(),
        "status, body and headers"
    );

    let arrived = receiver.wait_for("phone", 1, |_| true).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.arrivals("phone").len(),
        1,
        "only the registered key's wake-up"
    );
    assert_eq!(
        arrived[0].body,
        json!({"data": {"type": "chat_wake"}, "collapse_key": "mostro-wake", "priority": "high"}),
        "a silent, data-only wake-up"
    );
}

#[tokio::test]
async fn both_rate_limits_answer_the_same_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let herald = Herald::start_edited(dir.path(), mostro(&slow_limits())).await;
    let key = trade_key(1);
    for _ in 0..PUBKEY_BURST {
        assert_eq!(notify(&herald, &key).await.status, 202);
    }
    let per_pubkey = notify(&herald, &key).await;
    for n in 2..=(CLIENT_BURST - PUBKEY_BURST) as u32 {
        assert_eq!(notify(&herald, &trade_key(n)).await.status, 202, "{n}");
    }
    let per_client = notify(&herald, &trade_key(1_000)).await;
    let malformed = call(&herald, reqwest::Method::POST, "/api/notify", &[], None).await;

    for limited in [&per_pubkey, &per_client, &malformed] {
        assert_mostro(limited, 429, RATE_LIMITED);
        let retry_after: u64 = limited.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry_after), "{retry_after}");
    }
    let names = |r: &Reply| {
        let mut names: Vec<_> = r.headers.keys().map(|n| n.to_string()).collect();
        names.sort();
        names
    };
    assert_eq!(names(&per_pubkey), names(&per_client));
    assert_eq!(
        per_pubkey.headers["content-length"],
        per_client.headers["content-length"]
    );
}

#[tokio::test]
async fn every_response_has_a_fresh_request_id_and_the_clients_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let herald = Herald::start_edited(dir.path(), mostro("")).await;
    let planted = [
        ("x-request-id", "client-chosen-id"),
        ("content-type", "application/json"),
    ];
    let notify_body = || {
        Some(
            json!({"trade_pubkey": trade_key(1)})
                .to_string()
                .into_bytes(),
        )
    };
    let mut seen = std::collections::HashSet::new();
    let replies = [
        call(&herald, reqwest::Method::GET, "/api/health", &planted, None).await,
        call(&herald, reqwest::Method::GET, "/api/status", &planted, None).await,
        call(
            &herald,
            reqwest::Method::POST,
            "/api/notify",
            &planted,
            notify_body(),
        )
        .await,
        call(
            &herald,
            reqwest::Method::POST,
            "/api/notify",
            &planted,
            notify_body(),
        )
        .await,
        call(
            &herald,
            reqwest::Method::POST,
            "/api/notify",
            &planted,
            Some(b"{".to_vec()),
        )
        .await,
    ];
    for reply in &replies {
        let id = reply.request_id();
        assert_eq!(reply.headers.get_all("x-request-id").iter().count(), 1);
        assert_ne!(id, "client-chosen-id");
        assert_eq!(id.len(), 36, "a UUID: {id}");
        assert!(seen.insert(id.to_owned()), "{id} was given twice");
    }
}

#[tokio::test]
async fn malformed_oversized_and_hostile_bodies_get_json_refusals_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let herald = Herald::start_edited(dir.path(), mostro("")).await;
    let raw =
        |path: &'static str, headers: &'static [(&'static str, &'static str)], body: Vec<u8>| {
            let herald = &herald;
            async move { call(herald, reqwest::Method::POST, path, headers, Some(body)).await }
        };
    const JSON: &[(&str, &str)] = &[("content-type", "application/json; charset=utf-8")];
    const TEXT: &[(&str, &str)] = &[("content-type", "text/plain")];

    for path in ["/api/register", "/api/unregister", "/api/notify"] {
        for body in [
            b"{".to_vec(),
            b"null".to_vec(),
            b"[]".to_vec(),
            b"{\"trade_pubkey\": 7}".to_vec(),
            format!("{}{}", "[".repeat(300), "]".repeat(300)).into_bytes(),
            vec![0xff, 0xfe, 0x00],
        ] {
            assert_mostro(&raw(path, JSON, body).await, 400, BAD_JSON);
        }
        let oversized = json!({"trade_pubkey": trade_key(1), "pad": "x".repeat(9 * 1024)});
        let reply = raw(path, JSON, oversized.to_string().into_bytes()).await;
        assert_mostro(&reply, 413, TOO_LARGE);
        let reply = raw(
            path,
            TEXT,
            json!({"trade_pubkey": trade_key(1)})
                .to_string()
                .into_bytes(),
        )
        .await;
        assert_mostro(
            &reply,
            415,
            r#"{"success":false,"message":"Content-Type must be application/json"}"#,
        );
    }
    let refused = |message: &str| format!(r#"{{"success":false,"message":"{message}"}}"#);
    let hostile = [
        (
            receiver.endpoint("phone") + "\u{0}x",
            "Invalid push endpoint",
        ),
        (
            format!("{}/{}", receiver.endpoint("phone"), "a".repeat(5_000)),
            "Token exceeds maximum length",
        ),
        (
            "file:///etc/passwd".to_owned(),
            "Token type not supported by this server",
        ),
        (
            "https://user:secret@push.example.com/x".to_owned(),
            "Invalid push endpoint",
        ),
    ];
    for (token, message) in hostile {
        let body = json!({"trade_pubkey": trade_key(1), "token": token, "platform": "android"});
        let reply = post(&herald, "/api/register", &body).await;
        assert_mostro(&reply, 400, &refused(message));
    }
    assert_eq!(token_counts(&herald).await["total"], 0);
    assert_eq!(herald.health().await["devices"], 0);
}

#[tokio::test]
async fn unregister_answers_the_same_whether_or_not_the_key_was_registered() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let herald = Herald::start_edited(dir.path(), mostro("")).await;
    let key = trade_key(1);
    register(&herald, &key, &receiver.endpoint("phone")).await;

    let was_registered = unregister(&herald, &key).await;
    let was_not = unregister(&herald, &trade_key(2)).await;
    let again = unregister(&herald, &key).await;
    assert_mostro(&was_registered, 200, UNREGISTERED);
    assert_eq!(was_registered.observable(), was_not.observable());
    assert_eq!(was_registered.observable(), again.observable());
    assert_eq!(token_counts(&herald).await["total"], 0);
}

#[tokio::test]
async fn a_trade_key_has_one_device_the_latest_and_keys_are_lowercased() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let herald = Herald::start_edited(dir.path(), mostro("")).await;
    let key = "ab".repeat(32);
    register(&herald, &key, &receiver.endpoint("old")).await;
    let replaced = register(&herald, &key.to_uppercase(), &receiver.endpoint("new")).await;
    assert_mostro(&replaced, 200, REGISTERED);
    assert_eq!(token_counts(&herald).await["total"], 1);

    notify(&herald, &key).await;
    receiver.wait_for("new", 1, |_| true).await;
    assert!(receiver.arrivals("old").is_empty());
}

#[tokio::test]
async fn registrations_survive_a_restart_and_expire_when_not_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let mut herald = Herald::start_edited(dir.path(), mostro("")).await;
    let key = trade_key(1);
    register(&herald, &key, &receiver.endpoint("phone")).await;
    herald.terminate().await;
    herald.restart().await;
    assert_eq!(token_counts(&herald).await["total"], 1);
    assert_mostro(&notify(&herald, &key).await, 202, ACCEPTED);
    receiver.wait_for("phone", 1, |_| true).await;
    herald.terminate().await;

    // The same database with a one-second time to live: the registration,
    // older than that, is gone once herald has started.
    drop(herald);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let herald = Herald::start_edited(dir.path(), mostro("registration_ttl_secs = 1\n")).await;
    wait_until("the expired registration is removed", || async {
        token_counts(&herald).await["total"] == 0
    })
    .await;
}

#[tokio::test]
async fn wake_ups_are_encrypted_when_the_registration_carries_keys() {
    let dir = tempfile::tempdir().unwrap();
    let service = herald_standins::webpush::WebPushService::start().await;
    let key_file = dir.path().join("vapid.pem");
    std::fs::write(&key_file, herald_push::vapid::generate_keypair().0).unwrap();
    let vapid = format!(
        "vapid_private_key_file = \"{}\"\nsubject = \"mailto:ops@example.com\"\n",
        key_file.display()
    );
    let herald = Herald::start_edited(dir.path(), |config| {
        let table = format!("[apps.\"{APP}\".unifiedpush]\n");
        mostro("")(config.replace(&table, &format!("{table}{vapid}")))
    })
    .await;
    let subscription = service.subscribe();
    let key = trade_key(1);
    let body = json!({
        "trade_pubkey": key, "token": subscription.endpoint, "platform": "android",
        "p256dh": subscription.p256dh, "auth": subscription.auth,
    });
    assert_mostro(
        &post(&herald, "/api/register", &body).await,
        200,
        REGISTERED,
    );
    notify(&herald, &key).await;
    wait_until("the push service decrypted the wake-up", || async {
        service.received().len() == 1
    })
    .await;
    let received = &service.received()[0];
    assert_eq!(received.headers["content-encoding"], "aes128gcm");
    let plaintext: Value = serde_json::from_slice(&received.plaintext).unwrap();
    assert_eq!(plaintext["data"], json!({"type": "chat_wake"}));
}

#[tokio::test]
async fn an_fcm_token_as_mostro_mobile_sends_it_is_woken_through_fcm_with_data_only() {
    let dir = tempfile::tempdir().unwrap();
    let fcm = FcmService::start(dir.path()).await;
    let table = format!(
        "[apps.\"{APP}\".fcm]\nservice_account_file = \"{}\"\nbase_url = \"{}\"\n",
        fcm.service_account_file().display(),
        fcm.base_url()
    );
    let herald = Herald::start_edited(dir.path(), |config| {
        mostro("")(format!("{config}\n{table}"))
    })
    .await;
    let key = trade_key(1);
    let token = "dGVzdDpBUEE5MWJIZXJhbGQtbW9zdHJvLWZjbS10b2tlbg";
    let body = json!({"trade_pubkey": key, "token": token, "platform": "ios"});
    let reply = post(&herald, "/api/register", &body).await;
    assert_mostro(
        &reply,
        200,
        r#"{"success":true,"message":"Token registered successfully","platform":"ios"}"#,
    );
    assert_eq!(
        token_counts(&herald).await,
        json!({"total": 1, "android": 0, "ios": 1})
    );
    notify(&herald, &key).await;
    wait_until("FCM accepted the wake-up", || async {
        fcm.accepted().len() == 1
    })
    .await;
    let message = &fcm.accepted()[0];
    assert_eq!(message["token"], token);
    assert_eq!(message["data"], json!({"type": "chat_wake"}));
    assert!(message.get("notification").is_none(), "{message}");
}

#[tokio::test]
async fn logs_never_carry_a_pubkey_or_token() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let herald = Herald::start_edited(dir.path(), mostro("")).await;
    let key = trade_key(0xabcdef);
    let token = receiver.endpoint("secret-endpoint-name");
    register(&herald, &key, &token).await;
    register(&herald, &key, "file:///refused-token").await;
    notify(&herald, &key).await;
    receiver.wait_for("secret-endpoint-name", 1, |_| true).await;
    unregister(&herald, &key).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = herald.logs();
    assert!(logs.contains("mostro: registered"), "{logs}");
    for secret in [
        key.as_str(),
        &token,
        "secret-endpoint-name",
        "refused-token",
    ] {
        assert!(!logs.contains(secret), "{secret:?} in the logs:\n{logs}");
    }
}

#[tokio::test]
async fn the_api_is_absent_unless_configured() {
    let dir = tempfile::tempdir().unwrap();
    let herald = Herald::start(dir.path()).await;
    let reply = get(&herald, "/api/health").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"], "not_found");
}
