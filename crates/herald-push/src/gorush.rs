//! Forwarding to an existing gorush instance: `POST {url}/api/push`.
//!
//! For operators who already run gorush with their APNs and FCM credentials.
//! One request per delivery (`platform` 1 for iOS, 2 for Android), so each
//! delivery keeps its own outcome. gorush reports failures only as strings
//! in its sync-mode logs (its issue #109); herald reads the reasons that
//! mean a dead token from them, and reads herald's own typed `token_dead`
//! field when the other side is a herald.
//!
//! The display fields map to gorush's own: on iOS `mutable_content` and
//! `thread-id` (hyphenated, as gorush spells it); on Android, for a
//! displayed notification, `android.notification.channel_id` in gorush's
//! FCM v1 passthrough. A data-only message gets no `android.notification`,
//! which would make FCM display one.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use herald_core::model::{AppId, Delivery, InvalidField, NewDevice, Platform, Priority, Transport};
use herald_core::provider::{Outcome, Provider};
use reqwest::Client;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;

use crate::http_client::HttpClientConfig;
use crate::provider_error::ProviderError;
use crate::response::{describe_transport_error, retry_after};

/// gorush's platform numbers.
const PLATFORM_IOS: u8 = 1;
const PLATFORM_ANDROID: u8 = 2;
/// Error strings in gorush's logs that mean the token is dead: APNs reasons
/// and the FCM error codes go-fcm passes through.
const DEAD_TOKEN_ERRORS: &[&str] = &[
    "Unregistered",
    "BadDeviceToken",
    "DeviceTokenNotForTopic",
    "ExpiredToken",
    "UNREGISTERED",
    "registration-token-not-registered",
    "NotRegistered",
    "InvalidRegistration",
];

/// `[apps."<id>".gorush]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GorushConfig {
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// The gorush base URL, such as `http://127.0.0.1:8088`.
    pub url: String,
    /// The iOS bundle id gorush sends with (its `topic`).
    #[serde(default)]
    pub topic: Option<String>,
    /// Bearer token for a gorush behind an authenticating proxy, or a herald.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

fn enabled() -> bool {
    true
}

struct GorushApp {
    push_url: String,
    topic: Option<String>,
    bearer: Option<String>,
}

pub struct Gorush {
    client: Client,
    apps: HashMap<AppId, GorushApp>,
}

impl Gorush {
    pub fn new(
        http: &HttpClientConfig,
        apps: Vec<(AppId, GorushConfig)>,
    ) -> Result<Self, ProviderError> {
        let client = http.build().map_err(|e| ProviderError {
            app: "*".into(),
            reason: e.to_string(),
        })?;
        let apps = apps
            .into_iter()
            .filter(|(_, c)| c.enabled)
            .map(|(id, c)| {
                let fail = |reason: String| ProviderError {
                    app: id.to_string(),
                    reason: format!("gorush: {reason}"),
                };
                let url =
                    url::Url::parse(&c.url).map_err(|e| fail(format!("url {:?}: {e}", c.url)))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(fail("url must be http:// or https://".into()));
                }
                let bearer = match &c.token_file {
                    Some(path) => Some(
                        std::fs::read_to_string(path)
                            .map_err(|e| {
                                fail(format!("cannot read token {}: {e}", path.display()))
                            })?
                            .trim()
                            .to_owned(),
                    ),
                    None => None,
                };
                let app = GorushApp {
                    push_url: format!("{}/api/push", c.url.trim_end_matches('/')),
                    topic: c.topic.clone(),
                    bearer,
                };
                Ok((id, app))
            })
            .collect::<Result<_, ProviderError>>()?;
        Ok(Self { client, apps })
    }
}

fn platform_number(platform: Platform) -> Option<u8> {
    match platform {
        Platform::Ios => Some(PLATFORM_IOS),
        Platform::Android => Some(PLATFORM_ANDROID),
        Platform::Web | Platform::Desktop => None,
    }
}

fn notification(app: &GorushApp, delivery: &Delivery, platform: u8) -> Value {
    let m = &delivery.message;
    let mut n = json!({
        "tokens": [delivery.token],
        "platform": platform,
        "message": m.body.clone().unwrap_or_default(),
        "priority": if m.priority == Priority::High { "high" } else { "normal" },
    });
    if let Some(title) = &m.title {
        n["title"] = json!(title);
    }
    if !m.data.is_empty() {
        n["data"] = Value::Object(m.data.clone());
    }
    if let Some(topic) = &app.topic {
        n["topic"] = json!(topic);
    }
    if let Some(key) = &m.collapse_key {
        n["collapse_id"] = json!(key);
    }
    if let Some(ttl) = m.ttl.filter(|t| *t > 0) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        n["expiration"] = json!(now + u64::from(ttl));
    }
    let displayed = m.title.is_some() || m.body.is_some();
    if platform == PLATFORM_IOS {
        // Nothing to show: a background wake-up, as the APNs provider sends it.
        if !displayed {
            n["content_available"] = json!(true);
            n["push_type"] = json!("background");
            n["priority"] = json!("normal");
        }
        if m.mutable_content {
            n["mutable_content"] = json!(true);
        }
        if let Some(thread) = &m.thread_id {
            n["thread-id"] = json!(thread);
        }
    } else if let Some(channel) = &m.channel
        && displayed
    {
        n["android"] = json!({"notification": {"channel_id": channel}});
    }
    n
}

/// Reads a gorush answer: counts, and failed-push logs in sync mode.
fn classify(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &str,
) -> Outcome {
    if status.as_u16() == 429 || status.is_server_error() {
        return Outcome::Retry {
            after: retry_after(headers, SystemTime::now()),
            reason: format!("gorush answered {status}"),
        };
    }
    let parsed: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    if !status.is_success() {
        let message = parsed["message"].as_str().unwrap_or(body);
        return Outcome::rejected(format!(
            "gorush refused the request ({status}): {}",
            message.chars().take(200).collect::<String>()
        ));
    }
    let failed = parsed["logs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|log| log["type"] == "failed-push");
    let Some(log) = failed else {
        return Outcome::Delivered;
    };
    let error = log["error"].as_str().unwrap_or("unknown error");
    let reason = format!("gorush: {error}");
    let dead = log["token_dead"]
        .as_bool()
        .unwrap_or_else(|| DEAD_TOKEN_ERRORS.iter().any(|e| error.contains(e)));
    if dead {
        Outcome::token_dead(reason)
    } else {
        // gorush itself does not retry (max_retry 0); a transient failure is ours to retry.
        Outcome::retry(reason)
    }
}

#[async_trait]
impl Provider for Gorush {
    fn transport(&self) -> Transport {
        Transport::Gorush
    }

    async fn accept_registration(&self, device: NewDevice) -> Result<NewDevice, InvalidField> {
        if platform_number(device.platform).is_none() {
            return Err(InvalidField::new(
                "platform",
                "gorush delivers to ios and android devices only",
            ));
        }
        Ok(device)
    }

    async fn send(&self, delivery: &Delivery) -> Outcome {
        let Some(app) = self.apps.get(&delivery.app_id) else {
            return Outcome::rejected(format!(
                "app {} has no gorush configuration",
                delivery.app_id
            ));
        };
        let Some(platform) = platform_number(delivery.platform) else {
            return Outcome::rejected(format!(
                "gorush cannot deliver to {} devices",
                delivery.platform
            ));
        };
        let body = json!({ "notifications": [notification(app, delivery, platform)] });
        let mut request = self.client.post(&app.push_url).json(&body);
        if let Some(bearer) = &app.bearer {
            request = request.bearer_auth(bearer);
        }
        match request.send().await {
            Ok(r) => {
                let (status, headers) = (r.status(), r.headers().clone());
                let text = r.text().await.unwrap_or_default();
                classify(status, &headers, &text)
            }
            Err(e) => Outcome::retry(describe_transport_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::model::{Account, Message};
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    fn c(status: u16, body: Value) -> Outcome {
        classify(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            &body.to_string(),
        )
    }

    fn delivery(platform: Platform, message: Message) -> Delivery {
        Delivery {
            id: 1,
            device_id: 1,
            account: Account::parse("test:alice").unwrap(),
            app_id: AppId::parse("app").unwrap(),
            platform,
            transport: Transport::Gorush,
            token: "t".into(),
            options: Default::default(),
            message,
            created_at: 0,
            attempts: 1,
        }
    }

    #[test]
    fn the_display_fields_map_to_gorushs_own_per_platform() {
        let app = GorushApp {
            push_url: String::new(),
            topic: None,
            bearer: None,
        };
        let asked = Message {
            title: Some("Bob".into()),
            channel: Some("reply".into()),
            mutable_content: true,
            thread_id: Some("convo-1".into()),
            ..Message::default()
        };
        let ios = notification(&app, &delivery(Platform::Ios, asked.clone()), PLATFORM_IOS);
        assert_eq!(
            (
                &ios["mutable_content"],
                &ios["thread-id"],
                ios.get("android")
            ),
            (&json!(true), &json!("convo-1"), None)
        );
        let android = notification(
            &app,
            &delivery(Platform::Android, asked.clone()),
            PLATFORM_ANDROID,
        );
        assert_eq!(
            android["android"],
            json!({"notification": {"channel_id": "reply"}})
        );
        assert!(android.get("thread-id").is_none() && android.get("mutable_content").is_none());
        let data_only = Message {
            title: None,
            data: json!({"k": "v"}).as_object().unwrap().clone(),
            ..asked
        };
        let android = notification(
            &app,
            &delivery(Platform::Android, data_only.clone()),
            PLATFORM_ANDROID,
        );
        assert!(android.get("android").is_none(), "{android}");
        assert!(android.get("content_available").is_none(), "{android}");
        let ios = notification(&app, &delivery(Platform::Ios, data_only), PLATFORM_IOS);
        assert_eq!(
            (
                &ios["content_available"],
                &ios["push_type"],
                &ios["priority"]
            ),
            (&json!(true), &json!("background"), &json!("normal")),
            "nothing to show on iOS is a background wake-up: {ios}"
        );
    }

    #[test]
    fn reads_gorush_logs() {
        assert_eq!(
            c(200, json!({"success": "ok", "counts": 1, "logs": []})),
            Outcome::Delivered
        );
        let failed = |error: &str| json!({"success": "ok", "counts": 1, "logs": [{"type": "failed-push", "platform": "ios", "token": "t", "error": error}]});
        assert_eq!(c(200, failed("Unregistered")).label(), "token_dead");
        assert_eq!(
            c(200, failed("registration-token-not-registered")).label(),
            "token_dead"
        );
        assert_eq!(c(200, failed("connection reset")).label(), "retry");
        let typed = json!({"success": "ok", "counts": 1, "logs": [{"type": "failed-push", "error": "anything", "token_dead": true}]});
        assert_eq!(c(200, typed).label(), "token_dead");
        assert_eq!(
            c(400, json!({"code": 400, "message": "bad"})).label(),
            "rejected"
        );
        assert_eq!(c(503, json!({})).label(), "retry");
    }
}
