//! FCM HTTP v1 and Google's OAuth2 token endpoint, as strict as Google.
//!
//! `/token` verifies the JWT-bearer assertion (RS256 signature against the
//! service account's key, issuer, audience, scope, lifetime) and issues an
//! access token; `/v1/projects/{project}/messages:send` accepts only issued,
//! unrevoked tokens and checks the message the way FCM does (one target,
//! string data values, reserved keys, TTL format, a string notification
//! channel, an object APNs payload, size). Answers use FCM's error bodies. The service account's key is a test-only RSA key in
//! `fixtures/`, because ring (our RSA implementation) cannot generate one.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

use crate::OnAccept;

/// The service account's private key: test-only, generated for these tests.
const SERVICE_ACCOUNT_KEY: &str = include_str!("fixtures/fcm_service_account_key.pem");
pub const PROJECT_ID: &str = "herald-test";
pub const CLIENT_EMAIL: &str = "herald@herald-test.iam.gserviceaccount.com";
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Google issues access tokens for an hour and refuses longer assertions.
const MAX_ASSERTION_SECS: u64 = 3600;
/// FCM's limit on a message's data and notification payload.
const MAX_PAYLOAD_BYTES: usize = 4096;
const RESERVED_KEYS: &[&str] = &["from", "notification", "message_type"];

/// A scripted FCM answer for one registration token.
#[derive(Debug, Clone, Copy)]
pub enum FcmAnswer {
    Unregistered,
    InvalidToken,
    SenderIdMismatch,
    QuotaExceeded { retry_after: u64 },
    Unavailable,
    Internal,
    ThirdPartyAuthError,
}

#[derive(Default)]
struct Fcm {
    base: String,
    issued: HashSet<String>,
    tokens_issued: usize,
    scripts: HashMap<String, VecDeque<FcmAnswer>>,
    accepted: Vec<Value>,
    on_accept: Option<OnAccept<Value>>,
}

type Shared = Arc<Mutex<Fcm>>;

pub struct FcmService {
    addr: SocketAddr,
    state: Shared,
    service_account: PathBuf,
}

impl FcmService {
    /// Starts on 127.0.0.1 and writes the service account file into `dir`.
    pub async fn start(dir: &Path) -> Self {
        let state = Shared::default();
        let app = Router::new()
            .route("/token", post(token))
            .route("/v1/projects/{*call}", post(send))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local address");
        state.lock().unwrap().base = format!("http://{addr}");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let service_account = dir.join("service-account.json");
        let account = json!({
            "type": "service_account",
            "project_id": PROJECT_ID,
            "private_key_id": "0123456789abcdef",
            "private_key": SERVICE_ACCOUNT_KEY,
            "client_email": CLIENT_EMAIL,
            "token_uri": format!("http://{addr}/token"),
        });
        std::fs::write(&service_account, account.to_string()).expect("write service account");
        Self {
            addr,
            state,
            service_account,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn service_account_file(&self) -> &Path {
        &self.service_account
    }

    /// Answers for `token`, used in order before messages to it are accepted.
    pub fn script(&self, token: &str, answers: impl IntoIterator<Item = FcmAnswer>) {
        self.state
            .lock()
            .unwrap()
            .scripts
            .insert(token.into(), answers.into_iter().collect());
    }

    /// Invalidates every access token issued so far (a revoked grant).
    pub fn revoke_access_tokens(&self) {
        self.state.lock().unwrap().issued.clear();
    }

    pub fn tokens_issued(&self) -> usize {
        self.state.lock().unwrap().tokens_issued
    }

    /// Calls `hook` with every `message` accepted from now on.
    pub fn on_accept(&self, hook: impl Fn(&Value) + Send + Sync + 'static) {
        self.state.lock().unwrap().on_accept = Some(Box::new(hook));
    }

    /// The `message` objects FCM accepted.
    pub fn accepted(&self) -> Vec<Value> {
        self.state.lock().unwrap().accepted.clone()
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn oauth_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

async fn token(State(state): State<Shared>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    if form.get("grant_type").map(String::as_str) != Some(JWT_BEARER) {
        return oauth_error("unsupported_grant_type", "Invalid grant_type");
    }
    let Some(assertion) = form.get("assertion") else {
        return oauth_error("invalid_request", "Missing required parameter: assertion");
    };
    let audience = format!("{}/token", state.lock().unwrap().base);
    if let Err(why) = verify_assertion(assertion, &audience) {
        return oauth_error("invalid_grant", &why);
    }
    let mut s = state.lock().unwrap();
    s.tokens_issued += 1;
    let access = format!("ya29.test-{}", s.tokens_issued);
    s.issued.insert(access.clone());
    axum::Json(json!({"access_token": access, "expires_in": 3599, "token_type": "Bearer"}))
        .into_response()
}

fn decode_part(part: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| "Invalid JWT: not base64url".to_owned())
}

/// Checks an RS256 assertion the way Google's token endpoint does.
fn verify_assertion(jwt: &str, audience: &str) -> Result<(), String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err("Invalid JWT: expected three parts".into());
    };
    let header: Value = serde_json::from_slice(&decode_part(header)?).map_err(|e| e.to_string())?;
    if header["alg"] != "RS256" {
        return Err("Invalid JWT: algorithm must be RS256".into());
    }
    let der = PrivatePkcs8KeyDer::from_pem_slice(SERVICE_ACCOUNT_KEY.as_bytes())
        .map_err(|e| e.to_string())?;
    let pair = ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
        .map_err(|e| e.to_string())?;
    let public = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        pair.public().as_ref(),
    );
    let signed = format!("{}.{}", parts[0], parts[1]);
    public
        .verify(signed.as_bytes(), &decode_part(signature)?)
        .map_err(|_| "Invalid JWT Signature.".to_owned())?;
    let c: Value = serde_json::from_slice(&decode_part(claims)?).map_err(|e| e.to_string())?;
    let (iat, exp) = (
        c["iat"].as_u64().unwrap_or(0),
        c["exp"].as_u64().unwrap_or(0),
    );
    if c["iss"] != CLIENT_EMAIL {
        return Err("Invalid JWT: issuer is not the service account".into());
    }
    if c["aud"] != audience {
        return Err(format!("Invalid JWT: audience must be {audience}"));
    }
    if !c["scope"]
        .as_str()
        .is_some_and(|s| s.split(' ').any(|x| x == SCOPE))
    {
        return Err("Invalid JWT: scope lacks firebase.messaging".into());
    }
    if exp <= now() || iat > now() + 60 || exp.saturating_sub(iat) > MAX_ASSERTION_SECS {
        return Err("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.".into());
    }
    Ok(())
}

/// FCM's error body: `{"error": {code, message, status, details}}`.
fn fcm_error(
    status: StatusCode,
    rpc_status: &str,
    error_code: Option<&str>,
    message: &str,
) -> Response {
    let mut details = Vec::new();
    if let Some(code) = error_code {
        details.push(json!({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}));
    }
    let body = json!({"error": {"code": status.as_u16(), "message": message, "status": rpc_status, "details": details}});
    (status, axum::Json(body)).into_response()
}

fn bad_request(field: &str, message: &str) -> Response {
    let body = json!({"error": {
        "code": 400, "message": message, "status": "INVALID_ARGUMENT",
        "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                     "fieldViolations": [{"field": field, "description": message}]}],
    }});
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

fn scripted(answer: FcmAnswer) -> Response {
    use FcmAnswer::*;
    match answer {
        Unregistered => fcm_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            Some("UNREGISTERED"),
            "Requested entity was not found.",
        ),
        InvalidToken => fcm_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            Some("INVALID_ARGUMENT"),
            "The registration token is not a valid FCM registration token",
        ),
        SenderIdMismatch => fcm_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            Some("SENDER_ID_MISMATCH"),
            "SenderId mismatch",
        ),
        QuotaExceeded { retry_after } => {
            let mut r = fcm_error(
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                Some("QUOTA_EXCEEDED"),
                "Quota exceeded.",
            );
            r.headers_mut().insert("retry-after", retry_after.into());
            r
        }
        Unavailable => fcm_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            Some("UNAVAILABLE"),
            "The service is currently unavailable.",
        ),
        Internal => fcm_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            Some("INTERNAL"),
            "Internal error encountered.",
        ),
        ThirdPartyAuthError => fcm_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            Some("THIRD_PARTY_AUTH_ERROR"),
            "Auth error from APNS or Web Push Service",
        ),
    }
}

async fn send(
    State(state): State<Shared>,
    UrlPath(call): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !bearer.is_some_and(|t| state.lock().unwrap().issued.contains(t)) {
        return fcm_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            None,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        );
    }
    let Some(project) = call
        .strip_suffix("/messages:send")
        .or_else(|| call.split_once("/messages:send").map(|(p, _)| p))
    else {
        return fcm_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            None,
            "Method not found.",
        );
    };
    if project != PROJECT_ID {
        return fcm_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            None,
            "Permission 'cloudmessaging.messages.create' denied on resource",
        );
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("", "Invalid JSON payload received.");
    };
    let message = &request["message"];
    if let Err((field, why)) = check_message(message) {
        return bad_request(&field, &why);
    }
    let token = message["token"].as_str().unwrap_or_default().to_owned();
    let mut s = state.lock().unwrap();
    if let Some(answer) = s.scripts.get_mut(&token).and_then(VecDeque::pop_front) {
        return scripted(answer);
    }
    if let Some(hook) = &s.on_accept {
        hook(message);
    }
    s.accepted.push(message.clone());
    let name = format!("projects/{PROJECT_ID}/messages/{}", s.accepted.len());
    axum::Json(json!({ "name": name })).into_response()
}

/// A field violation: (field, message).
fn violation(field: &str, message: &str) -> (String, String) {
    (field.to_owned(), message.to_owned())
}

/// FCM's own validation of a `Message`.
fn check_message(message: &Value) -> Result<(), (String, String)> {
    let Some(fields) = message.as_object() else {
        return Err(violation(
            "message",
            "Invalid JSON payload received. 'message' must be an object.",
        ));
    };
    const KNOWN: &[&str] = &[
        "token",
        "topic",
        "condition",
        "data",
        "notification",
        "android",
        "apns",
        "webpush",
        "fcm_options",
        "name",
    ];
    if let Some(unknown) = fields.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(violation(
            unknown,
            &format!("Invalid JSON payload received. Unknown name \"{unknown}\" at 'message'"),
        ));
    }
    let targets = ["token", "topic", "condition"]
        .iter()
        .filter(|t| fields.contains_key(**t))
        .count();
    if targets != 1 {
        return Err(violation(
            "message",
            "Exactly one of token, topic or condition must be given.",
        ));
    }
    if let Some(data) = message.get("data") {
        for (i, (key, value)) in data.as_object().into_iter().flatten().enumerate() {
            if !value.is_string() {
                return Err(violation(
                    &format!("message.data[{i}].value"),
                    &format!("Invalid value at 'message.data[{i}].value' (TYPE_STRING)"),
                ));
            }
            if RESERVED_KEYS.contains(&key.as_str())
                || key.starts_with("google.")
                || key.starts_with("gcm.")
            {
                return Err(violation(
                    "message.data",
                    &format!("Invalid data payload key: {key}"),
                ));
            }
        }
    }
    if let Some(android) = message.get("android") {
        if let Some(p) = android.get("priority")
            && p != "HIGH"
            && p != "NORMAL"
        {
            return Err(violation(
                "message.android.priority",
                "Invalid value at 'message.android.priority'",
            ));
        }
        if let Some(ttl) = android.get("ttl")
            && !is_duration(ttl)
        {
            return Err(violation(
                "message.android.ttl",
                "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration)",
            ));
        }
        if let Some(notification) = android.get("notification") {
            if !notification.is_object() {
                return Err(violation(
                    "message.android.notification",
                    "Invalid value at 'message.android.notification' (type.googleapis.com/google.firebase.fcm.v1.AndroidNotification)",
                ));
            }
            if notification
                .get("channel_id")
                .is_some_and(|c| !c.is_string())
            {
                return Err(violation(
                    "message.android.notification.channel_id",
                    "Invalid value at 'message.android.notification.channel_id' (TYPE_STRING)",
                ));
            }
        }
    }
    if let Some(payload) = message["apns"].get("payload")
        && !payload.is_object()
    {
        return Err(violation(
            "message.apns.payload",
            "Invalid value at 'message.apns.payload' (type.googleapis.com/google.protobuf.Struct)",
        ));
    }
    for section in ["apns", "webpush"] {
        let headers = message[section]["headers"].as_object();
        if headers.is_some_and(|h| h.values().any(|v| !v.is_string())) {
            return Err(violation(
                &format!("message.{section}.headers"),
                "Invalid value: header values must be strings",
            ));
        }
    }
    let payload = message.get("data").map_or(0, |d| d.to_string().len())
        + message
            .get("notification")
            .map_or(0, |n| n.to_string().len());
    if payload > MAX_PAYLOAD_BYTES {
        return Err(violation("message", "Message is too big"));
    }
    Ok(())
}

/// A protobuf Duration in JSON: seconds with up to nine fraction digits and an `s`.
fn is_duration(value: &Value) -> bool {
    let Some(text) = value.as_str().and_then(|t| t.strip_suffix('s')) else {
        return false;
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && (1..=9).contains(&fraction.len())
        && fraction.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(extra: Value) -> Value {
        let mut m = json!({"token": "t", "notification": {"title": "T"}});
        m.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        m
    }

    #[test]
    fn a_channel_is_a_string_and_an_apns_payload_an_object() {
        assert!(
            check_message(&message(json!({
                "android": {"notification": {"channel_id": "reply"}},
            })))
            .is_ok()
        );
        assert!(
            check_message(&message(json!({
                "apns": {"payload": {"aps": {"mutable-content": 1}}},
            })))
            .is_ok()
        );
        for (bad, field) in [
            (
                json!({"android": {"notification": {"channel_id": 7}}}),
                "message.android.notification.channel_id",
            ),
            (
                json!({"android": {"notification": "reply"}}),
                "message.android.notification",
            ),
            (json!({"apns": {"payload": "aps"}}), "message.apns.payload"),
        ] {
            let (got, why) = check_message(&message(bad.clone())).unwrap_err();
            assert_eq!(got, field, "{bad}: {why}");
        }
    }
}
