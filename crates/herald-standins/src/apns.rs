//! APNs, as strict as Apple: `POST /3/device/{token}` over TLS and HTTP/2.
//!
//! Checks the provider token (ES256 JWT: `kid` = key id, `iss` = team id,
//! `iat` younger than an hour and not in the future, signature by the
//! `.p8` key), `apns-topic`, `apns-push-type`, `apns-priority`,
//! `apns-expiration`, `apns-collapse-id`, the device token's shape and the
//! 4,096-byte payload limit, and answers with Apple's status codes and
//! `{"reason": …}` bodies. Answers can be scripted per device token; the
//! provider tokens seen and the connections accepted are counted.
//!
//! It is stricter than Apple in one place: `aps` flags
//! (`content-available`, `mutable-content`) must be the number 0 or 1 and
//! `thread-id` a string. Apple accepts other values and the device then
//! quietly ignores them (no extension runs, no thread groups), so the
//! stand-in refuses them with its own reason, [`BAD_APS_VALUE`], to make
//! the mistake fail a test instead.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::elliptic_curve::Generate;
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use serde_json::{Value, json};

use crate::OnAccept;
use crate::tls::TestCa;

pub const TEAM_ID: &str = "TEAM123456";
pub const KEY_ID: &str = "KEY1234567";
/// Apple's payload limit for regular pushes.
const MAX_PAYLOAD: usize = 4096;
/// Apple refuses provider tokens older than an hour.
const TOKEN_MAX_AGE_SECS: u64 = 3600;
/// The stand-in's own reason for an `aps` value the device would ignore;
/// not one of Apple's.
pub const BAD_APS_VALUE: &str = "StandInBadApsValue";
/// `aps` keys whose value is a flag: Apple's documented values are 0 and 1.
const APS_FLAGS: &[&str] = &["content-available", "mutable-content"];
const PUSH_TYPES: &[&str] = &[
    "alert",
    "background",
    "voip",
    "complication",
    "fileprovider",
    "mdm",
    "location",
    "liveactivity",
    "pushtotalk",
];

/// An accepted push.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub device_token: String,
    pub headers: HashMap<String, String>,
    pub payload: Value,
}

#[derive(Default)]
struct Apns {
    topic: String,
    public: Option<VerifyingKey>,
    scripts: HashMap<String, VecDeque<(u16, &'static str)>>,
    accepted: Vec<Accepted>,
    on_accept: Option<OnAccept<Accepted>>,
    provider_tokens: HashSet<String>,
    /// Provider tokens to answer `ExpiredProviderToken` for, as if they aged out.
    expired: HashSet<String>,
}

type Shared = Arc<Mutex<Apns>>;

pub struct ApnsService {
    addr: SocketAddr,
    state: Shared,
    connections: Arc<AtomicUsize>,
    ca: Arc<TestCa>,
    pub key_path: PathBuf,
    pub ca_pem_path: PathBuf,
}

impl ApnsService {
    /// Starts with a fresh `.p8` key and test CA written into `dir`.
    pub async fn start(dir: &Path, topic: &str) -> Self {
        let ca = Arc::new(TestCa::create(dir));
        let key = SigningKey::generate_from_rng(&mut rand::rng());
        let key_path = dir.join(format!("AuthKey_{KEY_ID}.p8"));
        std::fs::write(
            &key_path,
            key.to_pkcs8_pem(LineEnding::LF).expect("PKCS#8").as_bytes(),
        )
        .expect("write .p8");
        Self::serve(ca, key_path, topic, *key.verifying_key()).await
    }

    /// Another APNs (the sandbox) with this one's key and CA.
    pub async fn start_sibling(&self) -> Self {
        let (topic, public) = {
            let s = self.state.lock().unwrap();
            (s.topic.clone(), s.public.expect("started with a key"))
        };
        Self::serve(Arc::clone(&self.ca), self.key_path.clone(), &topic, public).await
    }

    async fn serve(ca: Arc<TestCa>, key_path: PathBuf, topic: &str, public: VerifyingKey) -> Self {
        let state = Shared::default();
        {
            let mut s = state.lock().unwrap();
            s.topic = topic.to_owned();
            s.public = Some(public);
        }
        let app = Router::new()
            .route("/3/device/{token}", post(push))
            .with_state(Arc::clone(&state));
        let (addr, connections) = ca.serve_h2(app).await;
        let ca_pem_path = ca.ca_pem_path.clone();
        Self {
            addr,
            state,
            connections,
            ca,
            key_path,
            ca_pem_path,
        }
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// Apple's answers for `device_token`, used in order before it accepts.
    pub fn script(
        &self,
        device_token: &str,
        answers: impl IntoIterator<Item = (u16, &'static str)>,
    ) {
        self.state
            .lock()
            .unwrap()
            .scripts
            .entry(device_token.into())
            .or_default()
            .extend(answers);
    }

    /// Makes every provider token seen so far count as expired.
    pub fn expire_provider_tokens(&self) {
        let mut s = self.state.lock().unwrap();
        let seen: Vec<String> = s.provider_tokens.iter().cloned().collect();
        s.expired.extend(seen);
    }

    pub fn accepted(&self) -> Vec<Accepted> {
        self.state.lock().unwrap().accepted.clone()
    }

    /// Calls `hook` with every push accepted from now on.
    pub fn on_accept(&self, hook: impl Fn(&Accepted) + Send + Sync + 'static) {
        self.state.lock().unwrap().on_accept = Some(Box::new(hook));
    }

    pub fn provider_tokens_seen(&self) -> usize {
        self.state.lock().unwrap().provider_tokens.len()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn reason(status: u16, reason: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut body = json!({"reason": reason});
    if status == StatusCode::GONE {
        body["timestamp"] = json!(now_ms());
    }
    (status, axum::Json(body)).into_response()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn push(
    State(state): State<Shared>,
    UrlPath(token): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    if let Err((status, why)) = check_provider_token(&mut s, header(&headers, "authorization")) {
        return reason(status, why);
    }
    if let Err((status, why)) = check_request(&s.topic, &token, &headers, &body) {
        return reason(status, why);
    }
    if let Some((status, why)) = s.scripts.get_mut(&token).and_then(VecDeque::pop_front) {
        return reason(status, why);
    }
    let payload = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let headers = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    let accepted = Accepted {
        device_token: token,
        headers,
        payload,
    };
    if let Some(hook) = &s.on_accept {
        hook(&accepted);
    }
    s.accepted.push(accepted);
    let apns_id = format!("00000000-0000-0000-0000-{:012}", s.accepted.len());
    (StatusCode::OK, [("apns-id", apns_id)]).into_response()
}

type Refusal = (u16, &'static str);

fn check_provider_token(s: &mut Apns, authorization: Option<&str>) -> Result<(), Refusal> {
    let jwt = authorization
        .and_then(|a| a.strip_prefix("bearer "))
        .ok_or((403, "MissingProviderToken"))?;
    let invalid = (403, "InvalidProviderToken");
    let parts: Vec<&str> = jwt.split('.').collect();
    let [h, c, sig] = parts[..] else {
        return Err(invalid);
    };
    let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).map_err(|_| invalid);
    let header: Value = serde_json::from_slice(&decode(h)?).map_err(|_| invalid)?;
    let claims: Value = serde_json::from_slice(&decode(c)?).map_err(|_| invalid)?;
    if header["alg"] != "ES256" || header["kid"] != KEY_ID || claims["iss"] != TEAM_ID {
        return Err(invalid);
    }
    // A token whose signature checked once is the same bytes again: Apple
    // too validates a provider token once per connection, not per push.
    if !s.provider_tokens.contains(jwt) {
        let signature = Signature::from_slice(&decode(sig)?).map_err(|_| invalid)?;
        let public = s.public.ok_or(invalid)?;
        public
            .verify(format!("{h}.{c}").as_bytes(), &signature)
            .map_err(|_| invalid)?;
    }
    let iat = claims["iat"].as_u64().ok_or(invalid)?;
    let now = now_ms() / 1000;
    if iat > now + 60 {
        return Err(invalid);
    }
    if now.saturating_sub(iat) > TOKEN_MAX_AGE_SECS || s.expired.contains(jwt) {
        return Err((403, "ExpiredProviderToken"));
    }
    s.provider_tokens.insert(jwt.to_owned());
    Ok(())
}

fn check_request(
    topic: &str,
    token: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Refusal> {
    if token.len() < 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err((400, "BadDeviceToken"));
    }
    let push_type = header(headers, "apns-push-type").unwrap_or("alert");
    if !PUSH_TYPES.contains(&push_type) {
        return Err((400, "InvalidPushType"));
    }
    let expected_topic = if push_type == "voip" {
        format!("{topic}.voip")
    } else {
        topic.to_owned()
    };
    match header(headers, "apns-topic") {
        None => return Err((400, "MissingTopic")),
        Some(t) if t != expected_topic => return Err((400, "BadTopic")),
        Some(_) => {}
    }
    match header(headers, "apns-priority") {
        None | Some("10") if push_type == "background" => return Err((400, "BadPriority")),
        Some(p) if !matches!(p, "1" | "5" | "10") => return Err((400, "BadPriority")),
        _ => {}
    }
    if header(headers, "apns-expiration").is_some_and(|e| e.parse::<u64>().is_err()) {
        return Err((400, "BadExpirationDate"));
    }
    if header(headers, "apns-collapse-id").is_some_and(|c| c.len() > 64) {
        return Err((400, "BadCollapseId"));
    }
    if body.len() > MAX_PAYLOAD {
        return Err((413, "PayloadTooLarge"));
    }
    let payload: Value = serde_json::from_slice(body).map_err(|_| (400, "PayloadEmpty"))?;
    let Some(aps) = payload["aps"].as_object() else {
        return Err((400, "PayloadEmpty"));
    };
    let flags_ok = APS_FLAGS
        .iter()
        .filter_map(|flag| aps.get(*flag))
        .all(|v| v.as_u64().is_some_and(|n| n <= 1));
    if !flags_ok || aps.get("thread-id").is_some_and(|t| !t.is_string()) {
        return Err((400, BAD_APS_VALUE));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("apns-topic", "org.example.chat".parse().unwrap());
        h.insert("apns-push-type", "alert".parse().unwrap());
        h.insert("apns-priority", "10".parse().unwrap());
        h
    }

    fn check(aps: Value) -> Result<(), Refusal> {
        let body = json!({"aps": aps, "reason": "reply"}).to_string();
        check_request(
            "org.example.chat",
            &"ab".repeat(32),
            &alert_headers(),
            body.as_bytes(),
        )
    }

    #[test]
    fn aps_flags_are_the_numbers_0_or_1_and_a_thread_id_is_a_string() {
        let alert = json!({"title": "T"});
        assert_eq!(
            check(json!({"alert": alert, "mutable-content": 1, "thread-id": "t"})),
            Ok(())
        );
        for bad in [
            json!({"alert": alert, "mutable-content": true}),
            json!({"alert": alert, "mutable-content": "1"}),
            json!({"alert": alert, "mutable-content": 2}),
            json!({"content-available": true}),
            json!({"alert": alert, "thread-id": 7}),
        ] {
            assert_eq!(check(bad.clone()), Err((400, BAD_APS_VALUE)), "{bad}");
        }
    }
}
