//! The Nostr registration APIs through the real binary: the native
//! `/v1/nostr/devices` with NIP-98 headers signed here as an app signs
//! them, and the Sigil-compatible `/register` and `/unregister` in both of
//! their auth modes. Every refusal is a JSON `{"error","message"}` and
//! stores nothing; a stored device is pushed to like any other.

mod support;

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k256::schnorr::SigningKey;
use k256::schnorr::signature::hazmat::PrehashSigner;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::Connection;
use support::{APP, Herald, Receiver};

/// Where herald says it is: not the loopback address the test connects
/// to, so a check built from `Host` could not pass.
const PUBLIC_URL: &str = "https://push.example.org";
const DEVICES: &str = "/v1/nostr/devices";
/// NIP-98's kind.
const HTTP_AUTH: u16 = 27235;
/// NIP-19's example key, as an npub and as hex.
const NIP19_NPUB: &str = "npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptg";
const NIP19_HEX: &str = "7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e";

/// A Nostr key for tests, derived from a name.
struct TestKey(SigningKey);

impl TestKey {
    fn new(name: &str) -> Self {
        let secret = Sha256::digest(format!("herald nostr_api test key {name}"));
        Self(SigningKey::from_slice(&secret).unwrap())
    }

    fn hex(&self) -> String {
        hex(&self.0.verifying_key().to_bytes())
    }

    fn account(&self) -> String {
        format!("nostr:{}", self.hex())
    }

    /// A signed NIP-01 event: id = SHA-256 of `[0,pubkey,created_at,kind,tags,content]`.
    fn sign(&self, created_at: u64, kind: u16, tags: &[Vec<String>]) -> Value {
        let serialized = json!([0, self.hex(), created_at, kind, tags, ""]).to_string();
        let id = Sha256::digest(serialized.as_bytes());
        let sig = self.0.sign_prehash(&id).unwrap();
        json!({
            "id": hex(&id), "pubkey": self.hex(), "created_at": created_at, "kind": kind,
            "tags": tags, "content": "", "sig": hex(&sig.to_bytes()),
        })
    }

    /// `Authorization: Nostr …` for `method` on `url` with `body`.
    fn header(&self, created_at: u64, method: &str, url: &str, body: &[u8]) -> String {
        let mut tags = vec![
            vec!["u".to_owned(), url.to_owned()],
            vec!["method".to_owned(), method.to_owned()],
        ];
        if !body.is_empty() {
            tags.push(vec!["payload".to_owned(), hex(&Sha256::digest(body))]);
        }
        let event = self.sign(created_at, HTTP_AUTH, &tags);
        format!("Nostr {}", STANDARD.encode(event.to_string()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The test configuration with the native API on and `extra` appended.
fn nostr(extra: &str) -> impl FnOnce(String) -> String {
    let extra = extra.to_owned();
    move |config| format!("{config}\n[nostr]\npublic_url = \"{PUBLIC_URL}\"\n{extra}")
}

fn sigil(auth: &str) -> String {
    format!("[sigil_api]\napp_id = \"{APP}\"\nauth = \"{auth}\"\n")
}

/// A request with its body's exact bytes, answered as (status, JSON).
async fn send(
    herald: &Herald,
    method: reqwest::Method,
    path: &str,
    authorization: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", herald.base));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    if let Some(value) = content_type {
        request = request.header("content-type", value);
    }
    let response = request.body(body.to_vec()).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, json)
}

/// A signing time not used before in this process, within the last 50
/// seconds: each request signed anew, as an app signs it. Two identical
/// requests signed in the same second are one event, which herald
/// accepts once.
fn fresh_time() -> u64 {
    static USED: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());
    let mut used = USED.lock().unwrap();
    let now = now();
    let time = (now - 50..=now)
        .rev()
        .find(|t| !used.contains(t))
        .expect("fewer than 50 signed requests a second");
    used.insert(time);
    time
}

/// `body` as JSON, signed by `key` for exactly this request.
async fn signed(
    herald: &Herald,
    key: &TestKey,
    method: reqwest::Method,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    let bytes = body.to_string().into_bytes();
    let header = key.header(
        fresh_time(),
        method.as_str(),
        &format!("{PUBLIC_URL}{path}"),
        &bytes,
    );
    let json = Some("application/json");
    send(herald, method, path, Some(&header), json, &bytes).await
}

fn device(key: &TestKey, token: &str) -> Value {
    json!({
        "pubkey": key.hex(), "app_id": APP, "platform": "android",
        "transport": "unifiedpush", "token": token,
    })
}

fn removal(key: &TestKey, token: &str) -> Value {
    json!({"pubkey": key.hex(), "app_id": APP, "token": token})
}

/// Every stored device as (account, token, options).
async fn stored(herald: &Herald) -> Vec<(String, String, Value)> {
    let url = format!("sqlite://{}", herald.dir.join("herald.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT account, token, options FROM devices ORDER BY id")
            .fetch_all(&mut db)
            .await
            .unwrap();
    rows.into_iter()
        .map(|(account, token, options)| (account, token, serde_json::from_str(&options).unwrap()))
        .collect()
}

/// An error in the native convention: the status, the code, a message.
fn assert_error(reply: &(u16, Value), status: u16, code: &str) {
    assert_eq!(reply.0, status, "{}", reply.1);
    assert_eq!(reply.1["error"], code, "{}", reply.1);
    assert!(reply.1["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn registers_updates_and_removes_a_device_signed_by_its_own_key() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let herald = Herald::start_edited(dir.path(), nostr("")).await;
    let alice = TestKey::new("alice");
    let token = receiver.endpoint("alice");
    let put = reqwest::Method::PUT;

    let created = signed(
        &herald,
        &alice,
        put.clone(),
        DEVICES,
        &device(&alice, &token),
    )
    .await;
    assert_eq!(created.0, 201, "{}", created.1);
    assert_eq!(created.1["account"], alice.account());
    assert_eq!(created.1["transport"], "unifiedpush");
    let updated = signed(&herald, &alice, put, DEVICES, &device(&alice, &token)).await;
    assert_eq!(updated.0, 200, "{}", updated.1);
    assert_eq!(updated.1["id"], created.1["id"]);

    let delete = reqwest::Method::DELETE;
    let removed = signed(
        &herald,
        &alice,
        delete.clone(),
        DEVICES,
        &removal(&alice, &token),
    )
    .await;
    assert_eq!(removed, (200, json!({"removed": true})));
    let again = signed(&herald, &alice, delete, DEVICES, &removal(&alice, &token)).await;
    assert_eq!(again, (200, json!({"removed": false})));
    assert!(stored(&herald).await.is_empty());
}

#[tokio::test]
async fn a_registered_device_receives_what_the_admin_api_sends_to_its_nostr_account() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let herald = Herald::start_edited(dir.path(), nostr("")).await;
    let alice = TestKey::new("alice");
    let body = device(&alice, &receiver.endpoint("alice"));
    let reply = signed(&herald, &alice, reqwest::Method::PUT, DEVICES, &body).await;
    assert_eq!(reply.0, 201, "{}", reply.1);

    let push = json!({"account": alice.account(), "title": "New message", "data": {"kind": 1059}});
    assert_eq!(
        herald.notify(push).await,
        (202, json!({"queued": 1, "deduplicated": 0}))
    );
    let arrivals = receiver.wait_for("alice", 1, |_| true).await;
    assert_eq!(arrivals[0].body["title"], "New message");
    assert_eq!(arrivals[0].body["data"]["kind"], 1059);
}

#[tokio::test]
async fn kinds_and_web_push_keys_are_kept_with_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let service = herald_standins::webpush::WebPushService::start().await;
    // The stand-in, like real push services, wants a VAPID signature.
    let key_file = dir.path().join("vapid.pem");
    std::fs::write(&key_file, herald_push::vapid::generate_keypair().0).unwrap();
    let table = format!("[apps.\"{APP}\".unifiedpush]\n");
    let vapid = format!(
        "{table}vapid_private_key_file = \"{}\"\nsubject = \"mailto:ops@example.com\"\n",
        key_file.display()
    );
    let herald = Herald::start_edited(dir.path(), |c| nostr("")(c.replace(&table, &vapid))).await;
    let alice = TestKey::new("alice");
    let subscription = service.subscribe();
    let body = json!({
        "pubkey": alice.hex(), "app_id": APP, "platform": "android",
        "token": subscription.endpoint, "kinds": [1059, 4, 1059],
        "p256dh": subscription.p256dh, "auth": subscription.auth,
    });
    let reply = signed(&herald, &alice, reqwest::Method::PUT, DEVICES, &body).await;
    assert_eq!(reply.0, 201, "{}", reply.1);
    assert_eq!(reply.1["transport"], "unifiedpush", "inferred from the URL");
    let devices = stored(&herald).await;
    let options = &devices[0].2;
    assert_eq!(options["kinds"], json!([4, 1059]));
    assert_eq!(options["p256dh"], subscription.p256dh);
    assert_eq!(options["auth"], subscription.auth);

    let push = json!({"account": alice.account(), "data": {"kind": 4}});
    assert_eq!(herald.notify(push).await.0, 202);
    support::wait_until("the push service decrypted the push", || async {
        service.received().len() == 1
    })
    .await;
    assert_eq!(
        service.received()[0].headers["content-encoding"],
        "aes128gcm"
    );
}

#[tokio::test]
async fn refuses_a_header_signed_by_another_key_than_the_one_registered() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let herald = Herald::start_edited(dir.path(), nostr("")).await;
    let (alice, mallory) = (TestKey::new("alice"), TestKey::new("mallory"));
    let token = receiver.endpoint("alice");
    let reply = signed(
        &herald,
        &mallory,
        reqwest::Method::PUT,
        DEVICES,
        &device(&alice, &token),
    )
    .await;
    assert_error(&reply, 403, "forbidden");
    assert!(stored(&herald).await.is_empty());

    let reply = signed(
        &herald,
        &alice,
        reqwest::Method::PUT,
        DEVICES,
        &device(&alice, &token),
    )
    .await;
    assert_eq!(reply.0, 201);
    let delete = reqwest::Method::DELETE;
    let reply = signed(
        &herald,
        &mallory,
        delete.clone(),
        DEVICES,
        &removal(&alice, &token),
    )
    .await;
    assert_error(&reply, 403, "forbidden");
    let reply = signed(
        &herald,
        &mallory,
        delete,
        DEVICES,
        &removal(&mallory, &token),
    )
    .await;
    assert_eq!(
        reply,
        (200, json!({"removed": false})),
        "not mallory's device"
    );
    assert_eq!(stored(&herald).await.len(), 1);
}

#[tokio::test]
async fn refuses_headers_for_another_url_method_body_or_time_with_401() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let herald = Herald::start_edited(dir.path(), nostr("")).await;
    let alice = TestKey::new("alice");
    let body = device(&alice, &receiver.endpoint("alice"))
        .to_string()
        .into_bytes();
    let url = format!("{PUBLIC_URL}{DEVICES}");
    let as_received = format!("{}{DEVICES}", herald.base);
    let t = now();
    let cases = [
        ("no header", None),
        ("another scheme", Some("Bearer abc".to_owned())),
        (
            "the address connected to",
            Some(alice.header(t, "PUT", &as_received, &body)),
        ),
        (
            "another path",
            Some(alice.header(t, "PUT", &format!("{PUBLIC_URL}/v1/devices"), &body)),
        ),
        (
            "another method",
            Some(alice.header(t, "DELETE", &url, &body)),
        ),
        ("another body", Some(alice.header(t, "PUT", &url, b"{}"))),
        ("no payload tag", Some(alice.header(t, "PUT", &url, b""))),
        (
            "two minutes old",
            Some(alice.header(t - 120, "PUT", &url, &body)),
        ),
        (
            "two minutes ahead",
            Some(alice.header(t + 120, "PUT", &url, &body)),
        ),
    ];
    for (case, header) in cases {
        let reply = send(
            &herald,
            reqwest::Method::PUT,
            DEVICES,
            header.as_deref(),
            Some("application/json"),
            &body,
        )
        .await;
        assert_eq!(reply.0, 401, "{case}: {}", reply.1);
        assert_eq!(reply.1["error"], "unauthorized", "{case}");
    }
    let wrong_url = send(
        &herald,
        reqwest::Method::PUT,
        DEVICES,
        Some(&alice.header(t, "PUT", &as_received, &body)),
        Some("application/json"),
        &body,
    )
    .await;
    let message = wrong_url.1["message"].as_str().unwrap();
    assert!(
        message.contains(&url),
        "names the URL herald expects: {message}"
    );
    assert!(stored(&herald).await.is_empty());
}

#[tokio::test]
async fn a_nip98_header_is_good_for_one_request_and_a_replay_is_refused_with_401() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let herald = Herald::start_edited(dir.path(), nostr(&sigil("nip98"))).await;
    let alice = TestKey::new("alice");
    let token = receiver.endpoint("alice");
    let json = Some("application/json");
    let replays = [
        (reqwest::Method::PUT, DEVICES, device(&alice, &token)),
        (reqwest::Method::DELETE, DEVICES, removal(&alice, &token)),
        (
            reqwest::Method::POST,
            "/register",
            json!({"npub": alice.hex(), "device_token": token, "platform": "android"}),
        ),
        (
            reqwest::Method::DELETE,
            "/unregister",
            json!({"device_token": token}),
        ),
    ];
    let mut captured = Vec::new();
    for (method, path, body) in replays {
        let bytes = body.to_string().into_bytes();
        let url = format!("{PUBLIC_URL}{path}");
        let header = alice.header(fresh_time(), method.as_str(), &url, &bytes);
        captured.push((header.clone(), bytes.clone()));
        let first = send(&herald, method.clone(), path, Some(&header), json, &bytes).await;
        assert!(first.0 < 300, "{method} {path}: {}", first.1);
        let again = send(&herald, method.clone(), path, Some(&header), json, &bytes).await;
        assert_error(&again, 401, "unauthorized");
        let message = again.1["message"].as_str().unwrap();
        assert!(
            message.contains("already used"),
            "{method} {path}: {message}"
        );
    }
    // Each was registered and removed once; the captured registration,
    // sent again after the removal, does not bring the device back.
    assert!(stored(&herald).await.is_empty());
    let (header, bytes) = &captured[0];
    let put = reqwest::Method::PUT;
    let replay = send(&herald, put, DEVICES, Some(header), json, bytes).await;
    assert_error(&replay, 401, "unauthorized");
    assert!(stored(&herald).await.is_empty());
    let reply = signed(
        &herald,
        &alice,
        reqwest::Method::PUT,
        DEVICES,
        &device(&alice, &token),
    )
    .await;
    assert_eq!(
        reply.0, 201,
        "a header signed anew is accepted: {}",
        reply.1
    );
}

#[tokio::test]
async fn malformed_oversized_and_hostile_bodies_get_json_errors_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let herald = Herald::start_edited(dir.path(), nostr("")).await;
    let alice = TestKey::new("alice");
    let token = receiver.endpoint("alice");
    let with = |field: &str, value: Value| {
        let mut body = device(&alice, &token);
        body[field] = value;
        body
    };
    let cases = [
        (
            "a bad pubkey",
            with("pubkey", json!("zz")),
            "invalid_request",
        ),
        (
            "an unknown field",
            with("extra", json!(1)),
            "invalid_request",
        ),
        (
            "too many kinds",
            with("kinds", json!((0..65).collect::<Vec<u16>>())),
            "invalid_request",
        ),
        (
            "a kind beyond u16",
            with("kinds", json!([70000])),
            "invalid_request",
        ),
        ("no kinds", with("kinds", json!([])), "invalid_request"),
        (
            "a control character",
            with("token", json!(format!("{token}\u{0}"))),
            "invalid_request",
        ),
        (
            "an unknown app",
            with("app_id", json!("org.example.none")),
            "unknown_app",
        ),
        (
            "an unknown platform",
            with("platform", json!("amiga")),
            "invalid_request",
        ),
        (
            "only one Web Push key",
            with("p256dh", json!("BAAA")),
            "invalid_request",
        ),
    ];
    for (case, body, code) in cases {
        let reply = signed(&herald, &alice, reqwest::Method::PUT, DEVICES, &body).await;
        assert_eq!(reply.0, 400, "{case}: {}", reply.1);
        assert_eq!(reply.1["error"], code, "{case}: {}", reply.1);
    }

    let put = |body: Vec<u8>, content_type: &'static str| {
        let header = alice.header(now(), "PUT", &format!("{PUBLIC_URL}{DEVICES}"), &body);
        let herald = &herald;
        async move {
            send(
                herald,
                reqwest::Method::PUT,
                DEVICES,
                Some(&header),
                Some(content_type),
                &body,
            )
            .await
        }
    };
    assert_error(
        &put(b"{not json".to_vec(), "application/json").await,
        400,
        "invalid_json",
    );
    assert_error(
        &put(b"[1,2]".to_vec(), "application/json").await,
        400,
        "invalid_request",
    );
    let body = device(&alice, &token).to_string().into_bytes();
    assert_error(
        &put(body, "text/plain").await,
        415,
        "unsupported_media_type",
    );
    let huge = with("token", json!("x".repeat(9 * 1024)))
        .to_string()
        .into_bytes();
    assert_error(
        &put(huge, "application/json").await,
        413,
        "payload_too_large",
    );
    assert!(stored(&herald).await.is_empty());
}

#[tokio::test]
async fn sigil_registration_is_open_when_the_app_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let herald = Herald::start_edited(dir.path(), nostr(&sigil("open"))).await;
    let token = receiver.endpoint("sigil");
    let json = Some("application/json");
    let body = json!({"npub": NIP19_NPUB, "device_token": token, "platform": "android"});
    let post = reqwest::Method::POST;
    let reply = send(
        &herald,
        post.clone(),
        "/register",
        None,
        json,
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(reply, (200, json!({"success": true})));
    let devices = stored(&herald).await;
    assert_eq!(
        devices[0].0,
        format!("nostr:{NIP19_HEX}"),
        "an npub names the hex account"
    );

    let push = json!({"account": format!("nostr:{NIP19_HEX}"), "title": "New message"});
    assert_eq!(herald.notify(push).await.0, 202);
    receiver.wait_for("sigil", 1, |_| true).await;

    let removal = json!({"device_token": token}).to_string();
    let delete = reqwest::Method::DELETE;
    for _ in 0..2 {
        let reply = send(
            &herald,
            delete.clone(),
            "/unregister",
            None,
            json,
            removal.as_bytes(),
        )
        .await;
        assert_eq!(
            reply,
            (200, json!({"success": true})),
            "the same whether or not it was there"
        );
    }
    assert!(stored(&herald).await.is_empty());

    let hex_body = json!({"npub": NIP19_HEX, "device_token": token, "platform": "android"});
    let reply = send(
        &herald,
        post,
        "/register",
        None,
        json,
        hex_body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(reply.0, 200);
    let query = format!(
        "/unregister?device_token={}",
        token.replace(':', "%3A").replace('/', "%2F")
    );
    let reply = send(&herald, delete, &query, None, None, b"").await;
    assert_eq!(
        reply,
        (200, json!({"success": true})),
        "the token in the query"
    );
    assert!(stored(&herald).await.is_empty());

    let bad = json!({"npub": "npub1nope", "device_token": token, "platform": "android"});
    let reply = send(
        &herald,
        reqwest::Method::POST,
        "/register",
        None,
        json,
        bad.to_string().as_bytes(),
    )
    .await;
    assert_error(&reply, 400, "invalid_request");
    let reply = send(
        &herald,
        reqwest::Method::POST,
        "/register",
        None,
        json,
        b"{",
    )
    .await;
    assert_error(&reply, 400, "invalid_json");
    assert!(stored(&herald).await.is_empty());
}

/// One request to a Sigil route and the answer README's table promises:
/// `{"success":true}` with `status`, or an error with `status` and `code`.
struct Case {
    name: &'static str,
    method: reqwest::Method,
    path: &'static str,
    content_type: &'static str,
    body: String,
    status: u16,
    code: Option<&'static str>,
}

fn case(
    name: &'static str,
    path: &'static str,
    body: String,
    status: u16,
    code: Option<&'static str>,
) -> Case {
    let method = if path == "/register" {
        reqwest::Method::POST
    } else {
        reqwest::Method::DELETE
    };
    Case {
        name,
        method,
        path,
        content_type: "application/json",
        body,
        status,
        code,
    }
}

/// The answers README's Sigil table promises, one request each, in order
/// (open mode; the NIP-98 answers are pinned by the tests above and below).
#[tokio::test]
async fn sigil_routes_answer_each_case_with_the_documented_status_and_body() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let herald = Herald::start_edited(dir.path(), nostr(&sigil("open"))).await;
    let token = receiver.endpoint("sigil");
    let register = |npub: &str, token: &str, platform: &str| {
        json!({"npub": npub, "device_token": token, "platform": platform}).to_string()
    };
    let removal = |token: &str| json!({"device_token": token}).to_string();
    let huge = "x".repeat(9 * 1024);
    let apns_token = "ab".repeat(32);
    let cases = [
        case(
            "created",
            "/register",
            register(NIP19_NPUB, &token, "android"),
            200,
            None,
        ),
        case(
            "updated",
            "/register",
            register(NIP19_HEX, &token, "android"),
            200,
            None,
        ),
        case(
            "bad npub",
            "/register",
            register("npub1nope", &token, "android"),
            400,
            Some("invalid_request"),
        ),
        case(
            "bad platform",
            "/register",
            register(NIP19_NPUB, &token, "amiga"),
            400,
            Some("invalid_request"),
        ),
        case(
            "no usable transport",
            "/register",
            register(NIP19_NPUB, &apns_token, "ios"),
            400,
            Some("transport_unavailable"),
        ),
        case(
            "missing field",
            "/register",
            json!({"npub": NIP19_NPUB}).to_string(),
            400,
            Some("invalid_request"),
        ),
        case(
            "malformed JSON",
            "/register",
            "{".into(),
            400,
            Some("invalid_json"),
        ),
        Case {
            content_type: "text/plain",
            ..case(
                "not JSON",
                "/register",
                register(NIP19_NPUB, &token, "android"),
                415,
                Some("unsupported_media_type"),
            )
        },
        case(
            "oversized body",
            "/register",
            register(NIP19_NPUB, &huge, "android"),
            413,
            Some("payload_too_large"),
        ),
        case(
            "unknown token",
            "/unregister",
            removal("https://push.example.net/never"),
            200,
            None,
        ),
        case(
            "malformed JSON",
            "/unregister",
            "{".into(),
            400,
            Some("invalid_json"),
        ),
        case(
            "missing field",
            "/unregister",
            "{}".into(),
            400,
            Some("invalid_request"),
        ),
        case(
            "oversized body",
            "/unregister",
            removal(&huge),
            413,
            Some("payload_too_large"),
        ),
        case("known token", "/unregister", removal(&token), 200, None),
    ];
    for c in cases {
        let reply = send(
            &herald,
            c.method.clone(),
            c.path,
            None,
            Some(c.content_type),
            c.body.as_bytes(),
        )
        .await;
        let what = format!("{} {} {}: {}", c.method, c.path, c.name, reply.1);
        match c.code {
            None => assert_eq!(reply, (c.status, json!({"success": true})), "{what}"),
            Some(code) => assert_error(&reply, c.status, code),
        }
        // One device from the first request on (updated, never doubled,
        // untouched by refusals), until its token is unregistered.
        let expected = usize::from(c.name != "known token");
        assert_eq!(stored(&herald).await.len(), expected, "{what}");
    }
}

#[tokio::test]
async fn sigil_registration_with_nip98_needs_the_npubs_own_signature() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let herald = Herald::start_edited(dir.path(), nostr(&sigil("nip98"))).await;
    let (alice, mallory) = (TestKey::new("alice"), TestKey::new("mallory"));
    let token = receiver.endpoint("alice");
    let body = json!({"npub": alice.hex(), "device_token": token, "platform": "android"});
    let post = reqwest::Method::POST;

    let json = Some("application/json");
    let unsigned = send(
        &herald,
        post.clone(),
        "/register",
        None,
        json,
        body.to_string().as_bytes(),
    )
    .await;
    assert_error(&unsigned, 401, "unauthorized");
    let reply = signed(&herald, &mallory, post.clone(), "/register", &body).await;
    assert_error(&reply, 403, "forbidden");
    assert!(stored(&herald).await.is_empty());
    let reply = signed(&herald, &alice, post, "/register", &body).await;
    assert_eq!(reply, (200, json!({"success": true})));

    let removal = json!({"device_token": token});
    let delete = reqwest::Method::DELETE;
    let reply = signed(&herald, &mallory, delete.clone(), "/unregister", &removal).await;
    assert_eq!(reply, (200, json!({"success": true})));
    assert_eq!(
        stored(&herald).await.len(),
        1,
        "only the owner removes a device"
    );
    let reply = signed(&herald, &alice, delete, "/unregister", &removal).await;
    assert_eq!(reply, (200, json!({"success": true})));
    assert!(stored(&herald).await.is_empty());
}

#[tokio::test]
async fn the_apis_are_absent_unless_configured() {
    let dir = tempfile::tempdir().unwrap();
    let herald = Herald::start(dir.path()).await;
    let json = Some("application/json");
    for (method, path) in [
        (reqwest::Method::PUT, DEVICES),
        (reqwest::Method::POST, "/register"),
        (reqwest::Method::DELETE, "/unregister"),
    ] {
        let reply = send(&herald, method, path, None, json, b"{}").await;
        assert_error(&reply, 404, "not_found");
    }
}
