//! FCM HTTP v1: `POST {base}/v1/projects/{project}/messages:send` with an
//! OAuth2 access token obtained from the app's service account.
//!
//! The access token comes from the service account's own `token_uri` (so a
//! local stand-in can issue it) by the JWT-bearer grant: an RS256 assertion
//! `{iss: client_email, scope, aud: token_uri, iat, exp}`. It is cached until
//! shortly before it expires, fetched by one caller at a time (the others
//! wait for it rather than each minting their own), and refreshed once when
//! FCM answers 401.
//!
//! FCM carries only string data values, so other JSON values are sent as
//! their JSON text; keys FCM reserves are refused rather than renamed.
//!
//! A displayed notification goes to the message's Android channel, or the
//! app's configured one, and on iOS carries `mutable-content` and
//! `thread-id` in the `apns` override's `aps`, as a direct APNs alert
//! would. A data-only message gets neither: an `android.notification` alone
//! makes FCM display one, and an `aps` without an alert has nothing for an
//! extension to change or a thread to group.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use herald_core::model::{
    AppId, Delivery, InvalidField, Message, NewDevice, Platform, Priority, Transport,
};
use herald_core::provider::{Outcome, Provider};
use reqwest::{Client, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::apns;
use crate::http_client::HttpClientConfig;
use crate::jwt::RsaKey;
use crate::misconfiguration::Misconfigurations;
use crate::provider_error::ProviderError;
use crate::response::{describe_transport_error, retry_after};

/// Google's production FCM endpoint.
pub const DEFAULT_BASE_URL: &str = "https://fcm.googleapis.com";
/// The OAuth2 scope FCM v1 requires.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// Lifetime asked for in the assertion; Google allows at most one hour.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);
/// An access token is replaced this long before it expires, so a request
/// never leaves with a token that dies on the way.
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Data keys FCM refuses (its "reserved words"), and prefixes it reserves.
const RESERVED_DATA_KEYS: &[&str] = &["from", "notification", "message_type"];
const RESERVED_DATA_PREFIXES: &[&str] = &["google.", "gcm."];
/// FCM registration tokens are about 150–200 characters; allow ample room.
const TOKEN_LENGTH: std::ops::RangeInclusive<usize> = 32..=4096;

/// `[apps."<id>".fcm]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcmConfig {
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// The service account JSON downloaded from the Firebase console.
    pub service_account_file: PathBuf,
    /// FCM's base URL; `https://fcm.googleapis.com` unless overridden.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Android notification channel for displayed notifications.
    #[serde(default)]
    pub android_channel_id: Option<String>,
}

fn enabled() -> bool {
    true
}

/// The fields of a Google service account file that FCM needs.
#[derive(Deserialize)]
struct ServiceAccount {
    project_id: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    client_email: String,
    token_uri: String,
}

struct AccessToken {
    value: String,
    refresh_at: Instant,
}

/// One app's credentials and cached access token.
struct FcmApp {
    project_id: String,
    client_email: String,
    key_id: Option<String>,
    key: RsaKey,
    token_uri: String,
    send_url: String,
    android_channel_id: Option<String>,
    token: Mutex<Option<AccessToken>>,
}

pub struct Fcm {
    client: Client,
    apps: HashMap<AppId, FcmApp>,
    misconfigured: Misconfigurations,
}

/// Why an access token could not be had.
enum TokenError {
    /// The token endpoint refused the credentials: the app is misconfigured.
    Refused(String),
    /// The endpoint could not be reached or failed; try again later.
    Unavailable(String),
}

impl From<TokenError> for Outcome {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Refused(reason) => Outcome::rejected(reason),
            TokenError::Unavailable(reason) => Outcome::retry(reason),
        }
    }
}

impl Fcm {
    pub fn new(
        http: &HttpClientConfig,
        apps: Vec<(AppId, FcmConfig)>,
    ) -> Result<Self, ProviderError> {
        let client = http.build().map_err(|e| ProviderError {
            app: "*".into(),
            reason: e.to_string(),
        })?;
        let apps = apps
            .into_iter()
            .filter(|(_, c)| c.enabled)
            .map(|(id, config)| {
                let app = FcmApp::load(&config).map_err(|reason| ProviderError {
                    app: id.to_string(),
                    reason: format!("fcm: {reason}"),
                })?;
                Ok((id, app))
            })
            .collect::<Result<_, ProviderError>>()?;
        Ok(Self {
            client,
            apps,
            misconfigured: Misconfigurations::new(Transport::Fcm),
        })
    }

    /// Sends with a token, refreshing it once after a 401.
    async fn send_with_token(&self, app: &FcmApp, body: &Value) -> Outcome {
        let mut stale = None;
        // The second pass runs only after a 401, with a freshly fetched token.
        for _ in 0..2 {
            let token = match app.access_token(&self.client, stale.as_deref()).await {
                Ok(token) => token,
                Err(e) => return e.into(),
            };
            let response = match self
                .client
                .post(&app.send_url)
                .bearer_auth(&token)
                .json(body)
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) => return Outcome::retry(describe_transport_error(e)),
            };
            let status = response.status();
            let headers = response.headers().clone();
            let text = response.text().await.unwrap_or_default();
            // THIRD_PARTY_AUTH_ERROR is about the APNs or Web Push credentials
            // uploaded to Firebase, not our token: a new token would not help.
            let our_token_refused = status == StatusCode::UNAUTHORIZED
                && parse_error(&text).error_code.as_deref() != Some("THIRD_PARTY_AUTH_ERROR");
            if our_token_refused && stale.is_none() {
                stale = Some(token);
                continue;
            }
            return classify(status, &headers, &text);
        }
        Outcome::rejected(format!(
            "FCM refused a fresh access token for project {}: check the service account's permissions",
            app.project_id
        ))
    }
}

impl FcmApp {
    fn load(config: &FcmConfig) -> Result<Self, String> {
        let path = &config.service_account_file;
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read service account {}: {e}", path.display()))?;
        let account: ServiceAccount = serde_json::from_str(&text)
            .map_err(|e| format!("service account {} is not usable: {e}", path.display()))?;
        let key = RsaKey::from_pem(&account.private_key)
            .map_err(|e| format!("service account {}: private_key: {e}", path.display()))?;
        let base = config.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
        let send_url = format!(
            "{}/v1/projects/{}/messages:send",
            base.trim_end_matches('/'),
            account.project_id
        );
        Ok(Self {
            project_id: account.project_id,
            client_email: account.client_email,
            key_id: account.private_key_id,
            key,
            token_uri: account.token_uri,
            send_url,
            android_channel_id: config.android_channel_id.clone(),
            token: Mutex::new(None),
        })
    }

    fn assertion(&self) -> String {
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut header = json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.key_id {
            header["kid"] = json!(kid);
        }
        let claims = json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": iat,
            "exp": iat + ASSERTION_LIFETIME.as_secs(),
        });
        self.key.sign_rs256(&header, &claims)
    }

    /// A valid access token: the cached one, or a new one if it is due.
    /// `stale` names a token FCM just refused, which must not be reused.
    async fn access_token(
        &self,
        client: &Client,
        stale: Option<&str>,
    ) -> Result<String, TokenError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref()
            && token.refresh_at > Instant::now()
            && Some(token.value.as_str()) != stale
        {
            return Ok(token.value.clone());
        }
        let fresh = self.fetch_token(client).await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    async fn fetch_token(&self, client: &Client) -> Result<AccessToken, TokenError> {
        // The grant type is a URN; its colons are percent-encoded for the form.
        let body = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={}",
            self.assertion()
        );
        let response = client
            .post(&self.token_uri)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| {
                TokenError::Unavailable(format!(
                    "OAuth2 token endpoint: {}",
                    describe_transport_error(e)
                ))
            })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(TokenError::Unavailable(format!(
                "OAuth2 token endpoint answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(TokenError::Refused(format!(
                "OAuth2 token endpoint refused the service account ({status}): {}",
                truncate(&text)
            )));
        }
        #[derive(Deserialize)]
        struct Grant {
            access_token: String,
            expires_in: u64,
        }
        let grant: Grant = serde_json::from_str(&text).map_err(|e| {
            TokenError::Unavailable(format!(
                "OAuth2 token endpoint answered unreadable JSON: {e}"
            ))
        })?;
        let lifetime = Duration::from_secs(grant.expires_in).saturating_sub(TOKEN_REFRESH_MARGIN);
        Ok(AccessToken {
            value: grant.access_token,
            refresh_at: Instant::now() + lifetime,
        })
    }
}

/// Whether a rejection is the app's configuration (credentials, project
/// permissions, the keys uploaded to Firebase) rather than one message.
fn is_configuration_error(reason: &str) -> bool {
    [
        "OAuth2 token endpoint refused",
        "fresh access token",
        "THIRD_PARTY_AUTH_ERROR",
        "PERMISSION_DENIED",
    ]
    .iter()
    .any(|marker| reason.contains(marker))
}

/// Longest provider error text kept in a reason.
const MAX_REASON: usize = 300;

fn truncate(text: &str) -> &str {
    let mut end = text.len().min(MAX_REASON);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// FCM's data map: every value a string, reserved keys refused.
fn data_strings(message: &Message) -> Result<serde_json::Map<String, Value>, String> {
    let mut data = serde_json::Map::new();
    for (key, value) in &message.data {
        if RESERVED_DATA_KEYS.contains(&key.as_str())
            || RESERVED_DATA_PREFIXES.iter().any(|p| key.starts_with(p))
        {
            return Err(format!("data key {key:?} is reserved by FCM"));
        }
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        data.insert(key.clone(), Value::String(text));
    }
    Ok(data)
}

/// Builds the `messages:send` body for one device.
fn request_body(app: &FcmApp, delivery: &Delivery) -> Result<Value, String> {
    let m = &delivery.message;
    let mut message = json!({ "token": delivery.token });
    let data = data_strings(m)?;
    if !data.is_empty() {
        message["data"] = Value::Object(data);
    }
    if m.title.is_some() || m.body.is_some() {
        let mut notification = serde_json::Map::new();
        if let Some(title) = &m.title {
            notification.insert("title".into(), json!(title));
        }
        if let Some(body) = &m.body {
            notification.insert("body".into(), json!(body));
        }
        message["notification"] = Value::Object(notification);
    }
    let high = m.priority == Priority::High;
    let displayed = message.get("notification").is_some();
    match delivery.platform {
        Platform::Ios => message["apns"] = apns_override(m, high, displayed),
        Platform::Web => message["webpush"] = webpush_override(m, high),
        Platform::Android | Platform::Desktop => {
            message["android"] = android_override(app, m, high, displayed)
        }
    }
    Ok(json!({ "message": message }))
}

fn android_override(app: &FcmApp, m: &Message, high: bool, displayed: bool) -> Value {
    let mut android = json!({ "priority": if high { "HIGH" } else { "NORMAL" } });
    if let Some(ttl) = m.ttl {
        android["ttl"] = json!(format!("{ttl}s"));
    }
    if let Some(key) = &m.collapse_key {
        android["collapse_key"] = json!(key);
    }
    let channel = m.channel.as_ref().or(app.android_channel_id.as_ref());
    if let Some(channel) = channel.filter(|_| displayed) {
        android["notification"] = json!({ "channel_id": channel });
    }
    android
}

/// A message with nothing to show is a background wake-up on iOS: Apple
/// delivers those only at priority 5, with push type `background` and
/// `content-available: 1`, and refuses a background push at priority 10.
fn apns_override(m: &Message, high: bool, displayed: bool) -> Value {
    let priority = if displayed && high { "10" } else { "5" };
    let mut headers = json!({ "apns-priority": priority });
    if !displayed {
        headers["apns-push-type"] = json!("background");
    }
    if let Some(ttl) = m.ttl {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let expiry = if ttl == 0 { 0 } else { now + u64::from(ttl) };
        headers["apns-expiration"] = json!(expiry.to_string());
    }
    if let Some(key) = &m.collapse_key {
        headers["apns-collapse-id"] = json!(key);
    }
    let mut apns = json!({ "headers": headers });
    let aps = apns::alert_options(m);
    if !displayed {
        apns["payload"] = json!({ "aps": { "content-available": 1 } });
    } else if !aps.is_empty() {
        apns["payload"] = json!({ "aps": aps });
    }
    apns
}

fn webpush_override(m: &Message, high: bool) -> Value {
    let mut headers = json!({ "Urgency": if high { "high" } else { "normal" } });
    if let Some(ttl) = m.ttl {
        headers["TTL"] = json!(ttl.to_string());
    }
    json!({ "headers": headers })
}

/// The parts of FCM's error body that decide an outcome.
#[derive(Default)]
struct FcmError {
    status: String,
    error_code: Option<String>,
    message: String,
    field_violations: bool,
}

fn parse_error(body: &str) -> FcmError {
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        return FcmError {
            message: truncate(body).to_owned(),
            ..FcmError::default()
        };
    };
    let error = &value["error"];
    let details = error["details"].as_array().cloned().unwrap_or_default();
    let detail_type =
        |d: &Value, suffix: &str| d["@type"].as_str().is_some_and(|t| t.ends_with(suffix));
    FcmError {
        status: error["status"].as_str().unwrap_or_default().to_owned(),
        error_code: details
            .iter()
            .find(|d| detail_type(d, "google.firebase.fcm.v1.FcmError"))
            .and_then(|d| d["errorCode"].as_str())
            .map(str::to_owned),
        message: truncate(error["message"].as_str().unwrap_or_default()).to_owned(),
        field_violations: details
            .iter()
            .any(|d| detail_type(d, "google.rpc.BadRequest")),
    }
}

/// Maps FCM's answer to an outcome (push-providers.md §1.2).
fn classify(status: StatusCode, headers: &reqwest::header::HeaderMap, body: &str) -> Outcome {
    if status.is_success() {
        return Outcome::Delivered;
    }
    let e = parse_error(body);
    let code = e.error_code.as_deref().unwrap_or(e.status.as_str());
    let reason = format!("FCM answered {status} {code}: {}", e.message);
    match (status.as_u16(), code) {
        (_, "UNREGISTERED") | (404, "NOT_FOUND") => Outcome::token_dead(reason),
        // A malformed token is the token's fault; a malformed message is ours.
        (400, _) if !e.field_violations && e.message.contains("registration token") => {
            Outcome::token_dead(reason)
        }
        (429, _) | (500..=599, _) => Outcome::Retry {
            after: retry_after(headers, SystemTime::now()),
            reason,
        },
        _ => Outcome::rejected(reason),
    }
}

#[async_trait]
impl Provider for Fcm {
    fn transport(&self) -> Transport {
        Transport::Fcm
    }

    async fn accept_registration(&self, device: NewDevice) -> Result<NewDevice, InvalidField> {
        let token = &device.token;
        let shape_ok = TOKEN_LENGTH.contains(&token.len())
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'-' | b'_'));
        if !shape_ok {
            return Err(InvalidField::new(
                "token",
                "is not an FCM registration token (32 to 4096 characters of letters, digits, ':', '-' and '_')",
            ));
        }
        Ok(device)
    }

    async fn send(&self, delivery: &Delivery) -> Outcome {
        let Some(app) = self.apps.get(&delivery.app_id) else {
            return Outcome::rejected(format!("app {} has no FCM configuration", delivery.app_id));
        };
        let body = match request_body(app, delivery) {
            Ok(body) => body,
            Err(reason) => return Outcome::rejected(reason),
        };
        let outcome = self.send_with_token(app, &body).await;
        match &outcome {
            Outcome::Rejected { reason } if is_configuration_error(reason) => {
                self.misconfigured.record(&delivery.app_id, reason)
            }
            Outcome::Delivered => self.misconfigured.clear(&delivery.app_id),
            _ => {}
        }
        outcome
    }

    fn misconfigurations(&self) -> Vec<(AppId, String)> {
        self.misconfigured.list()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    fn fcm_error(status: &str, code: Option<&str>, message: &str, bad_request: bool) -> String {
        let mut details = Vec::new();
        if let Some(code) = code {
            details.push(json!({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}));
        }
        if bad_request {
            details.push(json!({"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [{"field": "message.data[0].value"}]}));
        }
        json!({"error": {"code": 400, "message": message, "status": status, "details": details}})
            .to_string()
    }

    #[test]
    fn classifies_fcm_errors() {
        let h = HeaderMap::new();
        let c =
            |status: u16, body: String| classify(StatusCode::from_u16(status).unwrap(), &h, &body);
        assert!(matches!(
            c(
                404,
                fcm_error(
                    "NOT_FOUND",
                    Some("UNREGISTERED"),
                    "Requested entity was not found.",
                    false
                )
            ),
            Outcome::TokenDead { .. }
        ));
        assert!(matches!(
            c(
                400,
                fcm_error(
                    "INVALID_ARGUMENT",
                    Some("INVALID_ARGUMENT"),
                    "The registration token is not a valid FCM registration token",
                    false
                )
            ),
            Outcome::TokenDead { .. }
        ));
        assert!(matches!(
            c(
                400,
                fcm_error(
                    "INVALID_ARGUMENT",
                    Some("INVALID_ARGUMENT"),
                    "Invalid value at 'message.data[0].value'",
                    true
                )
            ),
            Outcome::Rejected { .. }
        ));
        assert!(matches!(
            c(
                403,
                fcm_error(
                    "PERMISSION_DENIED",
                    Some("SENDER_ID_MISMATCH"),
                    "SenderId mismatch",
                    false
                )
            ),
            Outcome::Rejected { .. }
        ));
        assert!(matches!(
            c(
                429,
                fcm_error("RESOURCE_EXHAUSTED", Some("QUOTA_EXCEEDED"), "quota", false)
            ),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            c(
                503,
                fcm_error("UNAVAILABLE", Some("UNAVAILABLE"), "", false)
            ),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            c(500, "<html>oops</html>".into()),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            c(
                401,
                fcm_error("UNAUTHENTICATED", Some("THIRD_PARTY_AUTH_ERROR"), "", false)
            ),
            Outcome::Rejected { .. }
        ));
    }

    #[test]
    fn data_values_become_strings_and_reserved_keys_are_refused() {
        let mut m = Message::default();
        m.data.insert("n".into(), json!(1));
        m.data.insert("s".into(), json!("x"));
        m.data.insert("o".into(), json!({"a": [true]}));
        let data = data_strings(&m).unwrap();
        assert_eq!(data["n"], "1");
        assert_eq!(data["s"], "x");
        assert_eq!(data["o"], r#"{"a":[true]}"#);
        for reserved in ["from", "google.x", "gcm.n.e", "message_type"] {
            let mut m = Message::default();
            m.data.insert(reserved.into(), json!("v"));
            assert!(
                data_strings(&m).unwrap_err().contains("reserved"),
                "{reserved}"
            );
        }
    }
}
