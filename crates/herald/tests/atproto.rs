//! registerPush / unregisterPush through the real binary, with a local PLC
//! directory and service tokens signed here as a PDS would sign them.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use k256::ecdsa::signature::Signer;
use reqwest::Method;
use serde_json::{Value, json};
use support::{APP, Herald, Receiver, with_atproto};

const ALICE: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
const REGISTER: &str = "app.bsky.notification.registerPush";
const UNREGISTER: &str = "app.bsky.notification.unregisterPush";

struct Plc {
    addr: SocketAddr,
    key: k256::ecdsa::SigningKey,
}

async fn plc() -> Plc {
    let key = k256::ecdsa::SigningKey::from_slice(&[42; 32]).unwrap();
    let point = key.verifying_key().to_sec1_point(true);
    let multikey = format!(
        "z{}",
        bs58::encode([&[0xe7, 0x01][..], point.as_ref()].concat()).into_string()
    );
    let doc = Arc::new(Mutex::new(json!({
        "id": ALICE,
        "verificationMethod": [{"id": "#atproto", "type": "Multikey", "controller": ALICE, "publicKeyMultibase": multikey}],
    })));
    let app = Router::new()
        .route("/{did}", get(plc_document))
        .with_state(doc);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Plc { addr, key }
}

/// The PLC directory's answer: alice's document, 404 for anyone else.
async fn plc_document(State(doc): State<Arc<Mutex<Value>>>, Path(did): Path<String>) -> Response {
    if did == ALICE {
        axum::Json(doc.lock().unwrap().clone()).into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

fn service_did(herald: &Herald) -> String {
    let port = herald.base.rsplit(':').next().unwrap();
    format!("did:web:localhost%3A{port}")
}

/// A service token as the reference PDS mints it: ES256K, no kid, 60 s.
fn service_token(key: &k256::ecdsa::SigningKey, aud: &str, lxm: &str, jti: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = json!({"typ": "JWT", "alg": "ES256K"});
    let claims =
        json!({"iat": now, "iss": ALICE, "aud": aud, "exp": now + 60, "lxm": lxm, "jti": jti});
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let input = format!("{}.{}", b64(&header), b64(&claims));
    let sig: k256::ecdsa::Signature = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

async fn start(plc: &Plc, dir: &std::path::Path) -> Herald {
    let plc_url = format!("http://{}", plc.addr);
    Herald::start_edited(dir, |c| {
        with_atproto(c, &plc_url, "max_devices_per_account = 2", "")
    })
    .await
}

async fn xrpc(herald: &Herald, method: &str, token: Option<String>, body: &Value) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/xrpc/{method}", herald.base))
        .json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn body(herald: &Herald, token: &str) -> Value {
    json!({"serviceDid": service_did(herald), "token": token, "platform": "android", "appId": APP, "ageRestricted": false})
}

#[tokio::test]
async fn serves_its_did_document() {
    let plc = plc().await;
    let dir = tempfile::tempdir().unwrap();
    let herald = start(&plc, dir.path()).await;
    let (status, doc) = herald
        .request(Method::GET, "/.well-known/did.json", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(doc["id"], service_did(&herald));
    assert_eq!(
        doc["service"][0],
        json!({"id": "#bsky_notif", "type": "BskyNotificationService", "serviceEndpoint": herald.base.replace("127.0.0.1", "localhost")})
    );
}

#[tokio::test]
async fn a_verified_registration_receives_pushes_and_unregisters() {
    let plc = plc().await;
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let herald = start(&plc, dir.path()).await;
    let aud = service_did(&herald);
    let endpoint = receiver.endpoint("alice");

    let (status, answer) = xrpc(
        &herald,
        REGISTER,
        Some(service_token(&plc.key, &aud, REGISTER, "jti-1")),
        &body(&herald, &endpoint),
    )
    .await;
    assert_eq!((status, &answer), (200, &json!({})));
    herald.wait_health("devices", 1).await;
    herald
        .notify(json!({"account": format!("atproto:{ALICE}"), "body": "liked your post"}))
        .await;
    receiver.wait_for("alice", 1, |_| true).await;

    let (status, err) = xrpc(
        &herald,
        UNREGISTER,
        Some(service_token(&plc.key, &aud, REGISTER, "jti-2")),
        &body(&herald, &endpoint),
    )
    .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (401, Some("BadJwtLexiconMethod")),
        "a registerPush token does not unregister"
    );
    let (status, _) = xrpc(
        &herald,
        UNREGISTER,
        Some(service_token(
            &plc.key,
            &format!("{aud}#bsky_notif"),
            UNREGISTER,
            "jti-3",
        )),
        &body(&herald, &endpoint),
    )
    .await;
    assert_eq!(status, 200);
    herald.wait_health("devices", 0).await;
}

#[tokio::test]
async fn refuses_every_bad_call_with_the_right_xrpc_error() {
    let plc = plc().await;
    let dir = tempfile::tempdir().unwrap();
    let herald = start(&plc, dir.path()).await;
    let aud = service_did(&herald);
    let good = body(&herald, "https://push.example.net/up1");
    let token = |jti: &str| Some(service_token(&plc.key, &aud, REGISTER, jti));
    let with = |field: &str, value: Value| {
        let mut b = good.clone();
        b[field] = value;
        b
    };
    let stranger = k256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
    let cases: Vec<(&str, Option<String>, Value, u16, &str)> = vec![
        ("no token", None, good.clone(), 401, "AuthMissing"),
        (
            "wrong audience",
            Some(service_token(
                &plc.key,
                "did:web:api.bsky.app",
                REGISTER,
                "a1",
            )),
            good.clone(),
            401,
            "BadJwtAudience",
        ),
        (
            "another key",
            Some(service_token(&stranger, &aud, REGISTER, "a2")),
            good.clone(),
            401,
            "BadJwtSignature",
        ),
        (
            "wrong serviceDid",
            token("a3"),
            with("serviceDid", json!("did:web:api.bsky.app")),
            400,
            "InvalidRequest",
        ),
        (
            "bad platform",
            token("a4"),
            with("platform", json!("windows")),
            400,
            "InvalidRequest",
        ),
        (
            "unknown app",
            token("a5"),
            with("appId", json!("com.unknown")),
            400,
            "InvalidRequest",
        ),
        (
            "no token field",
            token("a6"),
            with("token", Value::Null),
            400,
            "InvalidRequest",
        ),
    ];
    for (what, t, b, status, error) in cases {
        let (got, err) = xrpc(&herald, REGISTER, t, &b).await;
        assert_eq!(
            (got, err["error"].as_str()),
            (status, Some(error)),
            "{what}: {err}"
        );
        assert!(err["message"].is_string(), "{what}");
    }
    let huge = reqwest::Client::new()
        .post(format!("{}/xrpc/{REGISTER}", herald.base))
        .bearer_auth(token("a7").unwrap())
        .body(vec![b' '; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    assert_eq!(
        huge.json::<Value>().await.unwrap()["error"],
        "PayloadTooLarge"
    );
    assert_eq!(
        herald.health().await["devices"],
        0,
        "nothing refused was stored"
    );

    let replayed = token("r1");
    assert_eq!(
        xrpc(&herald, REGISTER, replayed.clone(), &good).await.0,
        200
    );
    let (status, err) = xrpc(&herald, REGISTER, replayed, &good).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (401, Some("BadJwt")),
        "replay: {err}"
    );

    assert_eq!(
        xrpc(
            &herald,
            REGISTER,
            token("l1"),
            &with("token", json!("https://push.example.net/up2"))
        )
        .await
        .0,
        200
    );
    let (status, err) = xrpc(
        &herald,
        REGISTER,
        token("l2"),
        &with("token", json!("https://push.example.net/up3")),
    )
    .await;
    assert_eq!(
        status, 400,
        "the third token of an account over a limit of 2: {err}"
    );
    assert!(
        err["message"].as_str().unwrap().contains("2 push tokens"),
        "{err}"
    );
    assert_eq!(
        xrpc(&herald, REGISTER, token("l3"), &good).await.0,
        200,
        "re-registering a known token is not a new one"
    );
}
