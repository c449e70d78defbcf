//! APNs: HTTP/2 to Apple with token (`.p8`) authentication.
//!
//! Each app and environment (production, sandbox) has a pool of
//! `connections` HTTP/2 clients used in turn, each carrying at most
//! `max_streams` requests at once: one connection multiplexes many pushes,
//! several spread load. The provider token (ES256 JWT `{iss: team, iat}`,
//! `kid` = key id) is shared per app and renewed after 50 minutes — Apple
//! refuses tokens older than 60 and answers `TooManyProviderTokenUpdates`
//! to renewals more often than every 20 — and at once when Apple answers
//! `ExpiredProviderToken`, retrying that push with the new token.
//!
//! Payloads are at most 4,096 bytes: the alert body is shortened (on a
//! character boundary) until it fits; the app's custom keys are never cut.
//! They stay top-level siblings of `aps`, where an iOS app and its
//! Notification Service Extension read them (`userInfo`). An alert carries
//! `mutable-content` and `thread-id` when the message asks; a background
//! push carries neither, since Apple wants only `content-available` in its
//! `aps` and nothing is displayed for an extension to change or a thread to
//! group.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use herald_core::model::{AppId, Delivery, InvalidField, Message, NewDevice, Priority, Transport};
use herald_core::provider::{Outcome, Provider};
use p256::ecdsa::SigningKey;
use reqwest::{Client, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::http_client::HttpClientConfig;
use crate::jwt::{p256_from_pem, sign_es256};
use crate::misconfiguration::Misconfigurations;
use crate::provider_error::ProviderError;
use crate::response::{describe_transport_error, retry_after};

pub const PRODUCTION_URL: &str = "https://api.push.apple.com";
pub const SANDBOX_URL: &str = "https://api.sandbox.push.apple.com";
/// Apple's payload limit for everything but VoIP.
pub const MAX_PAYLOAD_BYTES: usize = 4096;
/// Renew the provider token this long after minting (Apple: at most 60 min).
const TOKEN_RENEW_AFTER: Duration = Duration::from_secs(50 * 60);
/// APNs device tokens: hex, 32 bytes today, allowed to grow.
const DEVICE_TOKEN_HEX: std::ops::RangeInclusive<usize> = 64..=200;
/// Apple's team and key ids are ten characters.
const APPLE_ID_LEN: usize = 10;
/// Appended to a shortened alert body.
const ELLIPSIS: &str = "…";
/// Apple's value for an `aps` flag that is on: the number 1, not `true`
/// (`content-available`, `mutable-content`).
const APS_FLAG: u8 = 1;
/// Apple's reasons that mean the token will never work again.
const DEAD_REASONS: &[&str] = &[
    "Unregistered",
    "ExpiredToken",
    "BadDeviceToken",
    "DeviceTokenNotForTopic",
];
/// Apple's reasons that mean the app's key, team, topic or certificate is wrong.
const CONFIGURATION_REASONS: &[&str] = &[
    "InvalidProviderToken",
    "MissingProviderToken",
    "BadCertificate",
    "BadCertificateEnvironment",
    "Forbidden",
    "UnrelatedKeyIdInToken",
    "BadEnvironmentKeyIdInToken",
    "BadTopic",
    "TopicDisallowed",
    "MissingTopic",
    "TooManyProviderTokenUpdates",
];

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApnsEnvironment {
    #[default]
    Production,
    Sandbox,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApnsPushType {
    #[default]
    Alert,
    Background,
    Voip,
}

/// `[apps."<id>".apns]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApnsConfig {
    #[serde(default = "enabled")]
    pub enabled: bool,
    pub team_id: String,
    pub key_id: String,
    /// The `.p8` token-signing key from Apple's developer portal.
    pub key_file: PathBuf,
    /// The app's bundle id.
    pub topic: String,
    #[serde(default)]
    pub environment: ApnsEnvironment,
    #[serde(default)]
    pub production_url: Option<String>,
    #[serde(default)]
    pub sandbox_url: Option<String>,
    #[serde(default)]
    pub push_type: ApnsPushType,
    /// HTTP/2 connections per environment.
    #[serde(default = "one")]
    pub connections: usize,
    /// Requests in flight per connection (Apple allows about 1,000 streams).
    #[serde(default = "max_streams")]
    pub max_streams: usize,
}

fn enabled() -> bool {
    true
}

fn one() -> usize {
    1
}

fn max_streams() -> usize {
    500
}

/// Clients used in turn, each bounded in concurrent streams.
struct Pool {
    base: String,
    lanes: Vec<(Client, Semaphore)>,
    next: AtomicUsize,
}

impl Pool {
    fn new(
        http: &HttpClientConfig,
        base: &str,
        connections: usize,
        streams: usize,
    ) -> Result<Self, String> {
        let lanes = (0..connections.max(1))
            .map(|_| {
                let client = http
                    .builder()
                    .map_err(|e| e.to_string())?
                    .http2_prior_knowledge()
                    .build()
                    .map_err(|e| e.to_string())?;
                Ok((client, Semaphore::new(streams.max(1))))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            lanes,
            next: AtomicUsize::new(0),
        })
    }

    fn lane(&self) -> &(Client, Semaphore) {
        &self.lanes[self.next.fetch_add(1, Ordering::Relaxed) % self.lanes.len()]
    }
}

struct ProviderToken {
    jwt: String,
    minted: Instant,
}

struct ApnsApp {
    team_id: String,
    key_id: String,
    key: SigningKey,
    topic: String,
    environment: ApnsEnvironment,
    push_type: ApnsPushType,
    production: Pool,
    sandbox: Pool,
    token: Mutex<Option<ProviderToken>>,
}

impl ApnsApp {
    fn load(http: &HttpClientConfig, c: &ApnsConfig) -> Result<Self, String> {
        for (name, value) in [("team_id", &c.team_id), ("key_id", &c.key_id)] {
            if value.len() != APPLE_ID_LEN || !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!("{name} {value:?} is not a 10-character Apple id"));
            }
        }
        let pem = std::fs::read_to_string(&c.key_file)
            .map_err(|e| format!("cannot read key {}: {e}", c.key_file.display()))?;
        let key = p256_from_pem(&pem).map_err(|e| format!("key {}: {e}", c.key_file.display()))?;
        let pool = |url: &Option<String>, default: &str| {
            Pool::new(
                http,
                url.as_deref().unwrap_or(default),
                c.connections,
                c.max_streams,
            )
        };
        Ok(Self {
            team_id: c.team_id.clone(),
            key_id: c.key_id.clone(),
            key,
            topic: c.topic.clone(),
            environment: c.environment,
            push_type: c.push_type,
            production: pool(&c.production_url, PRODUCTION_URL)?,
            sandbox: pool(&c.sandbox_url, SANDBOX_URL)?,
            token: Mutex::new(None),
        })
    }

    /// The current provider token; a new one when due, or when `refused`
    /// is the current one (Apple said it expired).
    fn provider_token(&self, refused: Option<&str>) -> String {
        let mut token = self.token.lock().unwrap_or_else(|p| p.into_inner());
        let current = token
            .as_ref()
            .filter(|t| t.minted.elapsed() < TOKEN_RENEW_AFTER && Some(t.jwt.as_str()) != refused);
        if let Some(t) = current {
            return t.jwt.clone();
        }
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let jwt = sign_es256(
            &json!({"alg": "ES256", "kid": self.key_id}),
            &json!({"iss": self.team_id, "iat": iat}),
            &self.key,
        );
        *token = Some(ProviderToken {
            jwt: jwt.clone(),
            minted: Instant::now(),
        });
        jwt
    }

    fn pool(&self, delivery: &Delivery) -> &Pool {
        match delivery.options.get("environment").and_then(Value::as_str) {
            Some("sandbox") => &self.sandbox,
            Some("production") => &self.production,
            _ if self.environment == ApnsEnvironment::Sandbox => &self.sandbox,
            _ => &self.production,
        }
    }
}

pub struct Apns {
    apps: HashMap<AppId, ApnsApp>,
    misconfigured: Misconfigurations,
}

impl Apns {
    pub fn new(
        http: &HttpClientConfig,
        apps: Vec<(AppId, ApnsConfig)>,
    ) -> Result<Self, ProviderError> {
        let apps = apps
            .into_iter()
            .filter(|(_, c)| c.enabled)
            .map(|(id, c)| {
                let app = ApnsApp::load(http, &c).map_err(|reason| ProviderError {
                    app: id.to_string(),
                    reason: format!("apns: {reason}"),
                })?;
                Ok((id, app))
            })
            .collect::<Result<_, ProviderError>>()?;
        Ok(Self {
            apps,
            misconfigured: Misconfigurations::new(Transport::Apns),
        })
    }

    async fn post(
        &self,
        app: &ApnsApp,
        delivery: &Delivery,
        push_type: ApnsPushType,
        payload: &[u8],
        jwt: &str,
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, String), String> {
        let pool = app.pool(delivery);
        let (client, streams) = pool.lane();
        let _stream = streams.acquire().await.map_err(|e| e.to_string())?;
        let m = &delivery.message;
        let background = push_type == ApnsPushType::Background;
        let priority = if m.priority == Priority::High && !background {
            "10"
        } else {
            "5"
        };
        let topic = match push_type {
            ApnsPushType::Voip => format!("{}.voip", app.topic),
            _ => app.topic.clone(),
        };
        let push_type = match push_type {
            ApnsPushType::Alert => "alert",
            ApnsPushType::Background => "background",
            ApnsPushType::Voip => "voip",
        };
        let mut request = client
            .post(format!("{}/3/device/{}", pool.base, delivery.token))
            .header(reqwest::header::AUTHORIZATION, format!("bearer {jwt}"))
            .header("apns-topic", topic)
            .header("apns-push-type", push_type)
            .header("apns-priority", priority)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(ttl) = m.ttl {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let expiry = if ttl == 0 { 0 } else { now + u64::from(ttl) };
            request = request.header("apns-expiration", expiry.to_string());
        }
        if let Some(key) = &m.collapse_key {
            request = request.header("apns-collapse-id", key.as_str());
        }
        let response = request
            .body(payload.to_vec())
            .send()
            .await
            .map_err(describe_transport_error)?;
        let (status, headers) = (response.status(), response.headers().clone());
        Ok((status, headers, response.text().await.unwrap_or_default()))
    }
}

/// An alert app's message with nothing to show (no title, no body) is a
/// silent wake-up: sent as an alert it would be an empty banner, so it goes
/// as a background push, as Apple requires for `content-available`.
pub fn effective_push_type(configured: ApnsPushType, message: &Message) -> ApnsPushType {
    let nothing_to_show = message.title.is_none() && message.body.is_none();
    if configured == ApnsPushType::Alert && nothing_to_show {
        ApnsPushType::Background
    } else {
        configured
    }
}

/// The APNs payload: `aps` and the app's custom keys, the alert body
/// shortened if the whole would pass 4,096 bytes.
pub fn payload(message: &Message, push_type: ApnsPushType) -> Result<Vec<u8>, String> {
    if message.data.contains_key("aps") {
        return Err("data key \"aps\" is reserved by APNs".into());
    }
    let build = |body: Option<&str>| {
        let mut root = serde_json::Map::new();
        let aps = if push_type == ApnsPushType::Background {
            json!({"content-available": APS_FLAG})
        } else {
            let mut alert = serde_json::Map::new();
            if let Some(title) = &message.title {
                alert.insert("title".into(), json!(title));
            }
            if let Some(body) = body {
                alert.insert("body".into(), json!(body));
            }
            let mut aps = serde_json::Map::new();
            aps.insert("alert".into(), Value::Object(alert));
            aps.insert("sound".into(), json!("default"));
            aps.extend(alert_options(message));
            Value::Object(aps)
        };
        root.insert("aps".into(), aps);
        root.extend(message.data.clone());
        serde_json::to_vec(&Value::Object(root)).expect("JSON values serialise")
    };
    let mut body = message.body.clone();
    loop {
        let bytes = build(body.as_deref());
        if bytes.len() <= MAX_PAYLOAD_BYTES {
            return Ok(bytes);
        }
        let Some(text) = body.as_deref().filter(|b| !b.is_empty() && *b != ELLIPSIS) else {
            return Err(format!(
                "payload is {} bytes without the body; APNs accepts {MAX_PAYLOAD_BYTES}",
                bytes.len()
            ));
        };
        body = Some(shorten(text, bytes.len() - MAX_PAYLOAD_BYTES));
    }
}

/// The `aps` keys of a displayed notification that the message asks for
/// beyond its text: `mutable-content` and `thread-id`. Shared with FCM's
/// `apns` override, which reaches the same devices through Google.
pub(crate) fn alert_options(message: &Message) -> serde_json::Map<String, Value> {
    let mut options = serde_json::Map::new();
    if message.mutable_content {
        options.insert("mutable-content".into(), json!(APS_FLAG));
    }
    if let Some(thread) = &message.thread_id {
        options.insert("thread-id".into(), json!(thread));
    }
    options
}

/// `text` without at least `excess` bytes (plus room for the ellipsis), cut
/// on a character boundary.
fn shorten(text: &str, excess: usize) -> String {
    let stripped = text.strip_suffix(ELLIPSIS).unwrap_or(text);
    let mut end = stripped.len().saturating_sub(excess + ELLIPSIS.len());
    while !stripped.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ELLIPSIS}", &stripped[..end])
}

/// Apple's `{"reason": …}`.
fn reason_of(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn classify(status: StatusCode, headers: &reqwest::header::HeaderMap, reason: &str) -> Outcome {
    let text = format!("APNs answered {status} {reason}");
    match status.as_u16() {
        200 => Outcome::Delivered,
        _ if DEAD_REASONS.contains(&reason) => Outcome::token_dead(text),
        429 if reason == "TooManyRequests" => Outcome::Retry {
            after: retry_after(headers, SystemTime::now()),
            reason: text,
        },
        500..=599 => Outcome::Retry {
            after: retry_after(headers, SystemTime::now()),
            reason: text,
        },
        _ => Outcome::rejected(text),
    }
}

#[async_trait]
impl Provider for Apns {
    fn transport(&self) -> Transport {
        Transport::Apns
    }

    async fn accept_registration(&self, mut device: NewDevice) -> Result<NewDevice, InvalidField> {
        let token = &device.token;
        if !DEVICE_TOKEN_HEX.contains(&token.len())
            || !token.len().is_multiple_of(2)
            || !token.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(InvalidField::new(
                "token",
                "is not an APNs device token (64 to 200 hexadecimal characters)",
            ));
        }
        device.token = token.to_ascii_lowercase();
        match device.options.get("environment") {
            None => {}
            Some(Value::String(e)) if e == "production" || e == "sandbox" => {}
            Some(_) => {
                return Err(InvalidField::new(
                    "options",
                    "environment is \"production\" or \"sandbox\"",
                ));
            }
        }
        Ok(device)
    }

    async fn send(&self, delivery: &Delivery) -> Outcome {
        let Some(app) = self.apps.get(&delivery.app_id) else {
            return Outcome::rejected(format!("app {} has no APNs configuration", delivery.app_id));
        };
        let push_type = effective_push_type(app.push_type, &delivery.message);
        let payload = match payload(&delivery.message, push_type) {
            Ok(p) => p,
            Err(reason) => return Outcome::rejected(reason),
        };
        let mut refused = None;
        // The second pass runs only after ExpiredProviderToken, with a new token.
        for _ in 0..2 {
            let jwt = app.provider_token(refused.as_deref());
            let (status, headers, body) =
                match self.post(app, delivery, push_type, &payload, &jwt).await {
                    Ok(answer) => answer,
                    Err(reason) => return Outcome::retry(reason),
                };
            let reason = reason_of(&body);
            if status == StatusCode::FORBIDDEN
                && reason == "ExpiredProviderToken"
                && refused.is_none()
            {
                refused = Some(jwt);
                continue;
            }
            let outcome = classify(status, &headers, &reason);
            if CONFIGURATION_REASONS.contains(&reason.as_str()) {
                self.misconfigured.record(
                    &delivery.app_id,
                    &format!("APNs answered {status} {reason}"),
                );
            } else if outcome == Outcome::Delivered {
                self.misconfigured.clear(&delivery.app_id);
            }
            return outcome;
        }
        Outcome::retry(
            "APNs refused a freshly minted provider token as expired; check the machine's clock",
        )
    }

    fn misconfigurations(&self) -> Vec<(AppId, String)> {
        self.misconfigured.list()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &str, data: Value) -> Message {
        Message {
            title: Some("T".into()),
            body: Some(body.into()),
            data: data.as_object().unwrap().clone(),
            ..Message::default()
        }
    }

    #[test]
    fn builds_alert_and_background_payloads() {
        let m = message("hi", json!({"uri": "at://x"}));
        let alert: Value =
            serde_json::from_slice(&payload(&m, ApnsPushType::Alert).unwrap()).unwrap();
        assert_eq!(
            alert,
            json!({"aps": {"alert": {"title": "T", "body": "hi"}, "sound": "default"}, "uri": "at://x"})
        );
        let background: Value =
            serde_json::from_slice(&payload(&m, ApnsPushType::Background).unwrap()).unwrap();
        assert_eq!(
            background,
            json!({"aps": {"content-available": 1}, "uri": "at://x"})
        );
        assert!(payload(&message("x", json!({"aps": 1})), ApnsPushType::Alert).is_err());
    }

    #[test]
    fn an_alert_asks_for_the_service_extension_and_a_thread_and_a_background_push_does_not() {
        let m = Message {
            mutable_content: true,
            thread_id: Some("at://did:plc:x/app.bsky.feed.post/1".into()),
            ..message("hi", json!({"reason": "reply"}))
        };
        let alert: Value =
            serde_json::from_slice(&payload(&m, ApnsPushType::Alert).unwrap()).unwrap();
        assert_eq!(
            alert,
            json!({
                "aps": {
                    "alert": {"title": "T", "body": "hi"}, "sound": "default",
                    "mutable-content": 1, "thread-id": "at://did:plc:x/app.bsky.feed.post/1",
                },
                "reason": "reply",
            })
        );
        let background: Value =
            serde_json::from_slice(&payload(&m, ApnsPushType::Background).unwrap()).unwrap();
        assert_eq!(background["aps"], json!({"content-available": 1}));
    }

    #[test]
    fn shortens_the_body_on_a_character_boundary_and_keeps_custom_keys() {
        let long = "é🎉".repeat(2000);
        let data = json!({"uri": "at://did:plc:x/app.bsky.feed.post/1", "blob": "k".repeat(1000)});
        let bytes = payload(&message(&long, data.clone()), ApnsPushType::Alert).unwrap();
        assert!(bytes.len() <= MAX_PAYLOAD_BYTES, "{}", bytes.len());
        let p: Value = serde_json::from_slice(&bytes).unwrap();
        let body = p["aps"]["alert"]["body"].as_str().unwrap();
        assert!(
            body.ends_with(ELLIPSIS) && body.len() > 2000,
            "{}",
            body.len()
        );
        assert!(long.starts_with(body.trim_end_matches(ELLIPSIS)));
        assert_eq!(
            (p["uri"].clone(), p["blob"].clone()),
            (data["uri"].clone(), data["blob"].clone())
        );
    }

    #[test]
    fn refuses_what_cannot_fit_even_without_a_body() {
        let m = message("hi", json!({"blob": "k".repeat(5000)}));
        assert!(
            payload(&m, ApnsPushType::Alert)
                .unwrap_err()
                .contains("4096")
        );
    }
}
