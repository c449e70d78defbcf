//! A Web Push service, checking requests as Mozilla's autopush does.
//!
//! It hands out subscriptions (generating each user agent's key pair and
//! auth secret, as a browser would), and on `POST /push/{id}` requires a
//! valid VAPID header (ES256 signature by `k`, `aud` = this origin, `exp`
//! within 24 h, `sub`), a numeric `TTL`, `Content-Encoding: aes128gcm` and
//! at most 5,630 bytes; it then decrypts the body (RFC 8291, the user
//! agent's side) and records the plaintext. Errors use autopush's bodies
//! `{code, errno, error, message}`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use p256::ecdsa::signature::Verifier;
use p256::elliptic_curve::Generate;
use p256::elliptic_curve::sec1::ToSec1Point;
use rand::RngExt;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::OnAccept;

/// autopush's `max_data_bytes`.
const MAX_BODY_BYTES: usize = 5630;
/// RFC 8292: a VAPID token may not expire more than 24 h ahead.
const MAX_VAPID_SECS: u64 = 24 * 60 * 60;

/// A subscription as a browser hands it to the application.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
}

impl Subscription {
    /// The JSON a browser's `PushSubscription.toJSON()` gives.
    pub fn to_json(&self) -> String {
        json!({"endpoint": self.endpoint, "expirationTime": null, "keys": {"p256dh": self.p256dh, "auth": self.auth}}).to_string()
    }
}

/// A message the service accepted, decrypted.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HashMap<String, String>,
    pub plaintext: Vec<u8>,
    pub vapid_claims: Value,
    pub vapid_key: String,
}

struct UserAgent {
    secret: p256::SecretKey,
    auth: [u8; 16],
    answers: VecDeque<u16>,
}

#[derive(Default)]
struct Service {
    origin: String,
    agents: HashMap<String, UserAgent>,
    received: Vec<Received>,
    on_accept: Option<OnAccept<Received>>,
    /// `Authorization` values whose VAPID signature verified: the same
    /// bytes verify again, so only their claims are checked again.
    vapid_verified: HashSet<String>,
}

type Shared = Arc<Mutex<Service>>;

pub struct WebPushService {
    addr: SocketAddr,
    state: Shared,
}

impl WebPushService {
    pub async fn start() -> Self {
        let state = Shared::default();
        let app = Router::new()
            .route("/push/{id}", post(push))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local address");
        state.lock().unwrap().origin = format!("http://{addr}");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, state }
    }

    /// A new subscription, as `PushManager.subscribe` would create it.
    pub fn subscribe(&self) -> Subscription {
        let mut s = self.state.lock().unwrap();
        let id = format!("sub{}", s.agents.len() + 1);
        let mut rng = rand::rng();
        let secret = p256::SecretKey::generate_from_rng(&mut rng);
        let auth: [u8; 16] = rng.random();
        let p256dh = URL_SAFE_NO_PAD.encode(secret.public_key().to_sec1_point(false).as_bytes());
        s.agents.insert(
            id.clone(),
            UserAgent {
                secret,
                auth,
                answers: VecDeque::new(),
            },
        );
        Subscription {
            endpoint: format!("http://{}/push/{id}", self.addr),
            p256dh,
            auth: URL_SAFE_NO_PAD.encode(auth),
        }
    }

    /// Answers for the subscription, in order, before it accepts again.
    pub fn script(&self, subscription: &Subscription, answers: impl IntoIterator<Item = u16>) {
        let id = subscription
            .endpoint
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        if let Some(agent) = self.state.lock().unwrap().agents.get_mut(&id) {
            agent.answers.extend(answers);
        }
    }

    /// Calls `hook` with every message accepted (and decrypted) from now on.
    pub fn on_accept(&self, hook: impl Fn(&Received) + Send + Sync + 'static) {
        self.state.lock().unwrap().on_accept = Some(Box::new(hook));
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }
}

fn autopush_error(status: StatusCode, errno: u16, message: &str) -> Response {
    let body = json!({"code": status.as_u16(), "errno": errno, "error": status.canonical_reason().unwrap_or(""), "message": message});
    (status, axum::Json(body)).into_response()
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn push(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorization = header(&headers, "authorization");
    let (origin, verified) = {
        let s = state.lock().unwrap();
        let verified = authorization
            .as_ref()
            .is_some_and(|a| s.vapid_verified.contains(a));
        (s.origin.clone(), verified)
    };
    let (claims, key) = match check_vapid(authorization.as_deref(), &origin, verified) {
        Ok(v) => v,
        Err(why) => return autopush_error(StatusCode::UNAUTHORIZED, 109, &why),
    };
    if let Some(a) = authorization.filter(|_| !verified) {
        state.lock().unwrap().vapid_verified.insert(a);
    }
    if header(&headers, "ttl").is_none_or(|t| t.parse::<u64>().is_err()) {
        return autopush_error(StatusCode::BAD_REQUEST, 111, "Missing TTL header");
    }
    if header(&headers, "content-encoding").as_deref() != Some("aes128gcm") {
        return autopush_error(StatusCode::BAD_REQUEST, 110, "Unknown Content-Encoding");
    }
    if body.len() > MAX_BODY_BYTES {
        return autopush_error(StatusCode::PAYLOAD_TOO_LARGE, 104, "Data payload too large");
    }
    let mut s = state.lock().unwrap();
    let Some(agent) = s.agents.get_mut(&id) else {
        return autopush_error(
            StatusCode::NOT_FOUND,
            102,
            "Request did not validate invalid token",
        );
    };
    if let Some(status) = agent.answers.pop_front() {
        return scripted(status);
    }
    let plaintext = match decrypt(agent, &body) {
        Ok(p) => p,
        Err(why) => return autopush_error(StatusCode::BAD_REQUEST, 110, &why),
    };
    let headers = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    let received = Received {
        headers,
        plaintext,
        vapid_claims: claims,
        vapid_key: key,
    };
    if let Some(hook) = &s.on_accept {
        hook(&received);
    }
    s.received.push(received);
    let location = format!("{origin}/m/{}", s.received.len());
    (
        StatusCode::CREATED,
        [("location", location), ("ttl", "0".to_owned())],
    )
        .into_response()
}

fn scripted(status: u16) -> Response {
    match status {
        410 => autopush_error(
            StatusCode::GONE,
            106,
            "Request did not validate Subscription has been removed",
        ),
        404 => autopush_error(
            StatusCode::NOT_FOUND,
            102,
            "Request did not validate invalid token",
        ),
        429 => {
            let mut r = autopush_error(StatusCode::TOO_MANY_REQUESTS, 429, "Too Many Requests");
            r.headers_mut().insert("retry-after", 5.into());
            r
        }
        other => {
            let status = StatusCode::from_u16(other).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            autopush_error(status, 999, "scripted")
        }
    }
}

/// Checks `vapid t=…, k=…` and returns the token's claims and `k`; the
/// signature only unless `signature_verified` (the same header verified before).
fn check_vapid(
    authorization: Option<&str>,
    origin: &str,
    signature_verified: bool,
) -> Result<(Value, String), String> {
    let value = authorization
        .and_then(|a| a.strip_prefix("vapid "))
        .ok_or("Missing Authorization Header")?;
    let mut token = None;
    let mut key = None;
    for part in value.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => token = Some(t.trim()),
            Some(("k", k)) => key = Some(k.trim()),
            _ => return Err("Invalid Authorization Header".into()),
        }
    }
    let (token, key) = token.zip(key).ok_or("Invalid Authorization Header")?;
    let decode = |s: &str| {
        URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| "Invalid base64".to_owned())
    };
    let public = p256::ecdsa::VerifyingKey::from_sec1_bytes(&decode(key)?)
        .map_err(|_| "Invalid VAPID public key")?;
    let (signed, signature) = token.rsplit_once('.').ok_or("Invalid JWT")?;
    let signature = p256::ecdsa::Signature::from_slice(&decode(signature)?)
        .map_err(|_| "Invalid JWT signature")?;
    if !signature_verified {
        public
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| "VAPID signature does not verify")?;
    }
    let (header, payload) = signed.split_once('.').ok_or("Invalid JWT")?;
    let header: Value =
        serde_json::from_slice(&decode(header)?).map_err(|_| "Invalid JWT header")?;
    if header["alg"] != "ES256" {
        return Err("VAPID alg must be ES256".into());
    }
    let claims: Value =
        serde_json::from_slice(&decode(payload)?).map_err(|_| "Invalid JWT payload")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let exp = claims["exp"].as_u64().ok_or("Missing exp")?;
    if exp <= now || exp > now + MAX_VAPID_SECS {
        return Err("VAPID exp is in the past or more than 24 h ahead".into());
    }
    if claims["aud"] != origin {
        return Err(format!("VAPID aud must be {origin}"));
    }
    if !claims["sub"]
        .as_str()
        .is_some_and(|s| s.starts_with("mailto:") || s.starts_with("https:"))
    {
        return Err("VAPID sub must be a mailto: or https: contact".into());
    }
    Ok((claims, key.to_owned()))
}

/// The user agent's side of RFC 8291 for a single-record body.
fn decrypt(agent: &UserAgent, body: &[u8]) -> Result<Vec<u8>, String> {
    let header_len = 16 + 4 + 1;
    if body.len() < header_len {
        return Err("body shorter than its header".into());
    }
    let (salt, rest) = body.split_at(16);
    let idlen = rest[4] as usize;
    let key_id = rest.get(5..5 + idlen).ok_or("truncated key id")?;
    let record = &rest[5 + idlen..];
    let sender =
        p256::PublicKey::from_sec1_bytes(key_id).map_err(|_| "key id is not a P-256 point")?;
    let receiver_public = agent.secret.public_key().to_sec1_point(false);
    let shared = p256::ecdh::diffie_hellman(agent.secret.to_nonzero_scalar(), sender.as_affine());
    let mut info = b"WebPush: info\0".to_vec();
    info.extend_from_slice(receiver_public.as_bytes());
    info.extend_from_slice(key_id);
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&agent.auth), shared.raw_secret_bytes())
        .expand(&info, &mut ikm)
        .map_err(|_| "hkdf")?;
    let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let (mut cek, mut nonce) = ([0u8; 16], [0u8; 12]);
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
        .map_err(|_| "hkdf")?;
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce)
        .map_err(|_| "hkdf")?;
    let cipher = Aes128Gcm::new_from_slice(&cek).map_err(|_| "key")?;
    let mut plain = cipher
        .decrypt(&Nonce::from(nonce), record)
        .map_err(|_| "decryption failed")?;
    // Strip padding: the last non-zero byte must be the 0x02 last-record delimiter.
    while plain.last() == Some(&0) {
        plain.pop();
    }
    match plain.pop() {
        Some(0x02) => Ok(plain),
        _ => Err("missing last-record delimiter".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;

    const ORIGIN: &str = "http://127.0.0.1:1";

    /// A VAPID `Authorization` value signed by a fixed key.
    fn vapid(aud: &str, flip_signature_bit: bool) -> String {
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600;
        let claims = json!({"aud": aud, "exp": exp, "sub": "mailto:ops@example.com"});
        let signed = format!(
            "{}.{}",
            b64(br#"{"typ":"JWT","alg":"ES256"}"#),
            b64(claims.to_string().as_bytes())
        );
        let signature: p256::ecdsa::Signature = key.sign(signed.as_bytes());
        let mut signature = signature.to_bytes().to_vec();
        signature[10] ^= u8::from(flip_signature_bit);
        let public = key.verifying_key().to_sec1_point(false);
        format!(
            "vapid t={signed}.{}, k={}",
            b64(&signature),
            b64(public.as_bytes())
        )
    }

    #[test]
    fn a_signature_is_checked_unless_the_same_header_verified_before() {
        assert!(check_vapid(Some(&vapid(ORIGIN, false)), ORIGIN, false).is_ok());
        let tampered = vapid(ORIGIN, true);
        let err = check_vapid(Some(&tampered), ORIGIN, false).unwrap_err();
        assert!(err.contains("does not verify"), "{err}");
    }

    #[test]
    fn claims_are_checked_on_every_push() {
        let other = vapid("https://elsewhere.example", false);
        let err = check_vapid(Some(&other), ORIGIN, true).unwrap_err();
        assert!(err.contains("aud"), "{err}");
    }
}
