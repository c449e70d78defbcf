//! The gorush-compatible inbound API: `POST /api/push`.
//!
//! Accepts gorush's request body and answers in its shape, so a backend
//! written for gorush (Status's push-notification server among them) can
//! point at herald unchanged. Like gorush in sync mode, each token is sent
//! at once through the provider and its result is in the answer's `logs`;
//! unlike gorush, a failed entry says in typed fields whether the token is
//! dead (`token_dead`) or worth retrying (`retryable`), instead of leaving
//! callers to parse error strings (gorush issue #109). A dead token that is
//! also registered in herald is removed.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use herald_core::model::{
    Account, AppId, Delivery, Message, NewDevice, Platform, Priority, Transport,
};
use herald_core::provider::{Outcome, Provider};
use herald_core::store::Store;
use herald_core::time::now_ms;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::runtime::Runtime;

/// gorush's `core.max_notification` default.
pub const MAX_NOTIFICATIONS: usize = 100;
/// gorush's limit of tokens in one Android notification, applied to both.
pub const MAX_TOKENS: usize = 500;

/// One entry of gorush's `notifications` array; fields herald has no use
/// for (HMS, Live Activities, most of the FCM passthrough structs) are
/// accepted and ignored.
#[derive(Deserialize)]
pub struct GorushNotification {
    #[serde(default)]
    tokens: Vec<String>,
    platform: u8,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    data: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    collapse_id: Option<String>,
    /// Unix time after which the push is useless (APNs `apns-expiration`).
    #[serde(default)]
    expiration: Option<u64>,
    #[serde(default)]
    topic: Option<String>,
    /// iOS: run the app's Notification Service Extension.
    #[serde(default)]
    mutable_content: bool,
    /// iOS: the notification thread (gorush spells it with a hyphen).
    #[serde(default, rename = "thread-id")]
    thread_id: Option<String>,
    #[serde(default)]
    android: Option<AndroidConfig>,
}

/// The part of gorush's FCM v1 `android` passthrough (Firebase's
/// `AndroidConfig`) that herald honours: the notification channel.
#[derive(Deserialize)]
struct AndroidConfig {
    #[serde(default)]
    notification: Option<AndroidNotification>,
}

#[derive(Deserialize)]
struct AndroidNotification {
    #[serde(default)]
    channel_id: Option<String>,
}

#[derive(Deserialize)]
pub struct GorushRequest {
    notifications: Vec<GorushNotification>,
}

/// A request-level refusal, answered as gorush's `{"code","message"}`.
#[derive(Debug)]
pub struct GorushError(pub String);

/// What one token came to, as a log entry.
struct Sent {
    token: String,
    platform: &'static str,
    outcome: Outcome,
}

fn platform(number: u8) -> Result<(Platform, &'static str), GorushError> {
    match number {
        1 => Ok((Platform::Ios, "ios")),
        2 => Ok((Platform::Android, "android")),
        3 => Err(GorushError(
            "platform 3 (Huawei HMS) is not supported by herald".into(),
        )),
        other => Err(GorushError(format!(
            "platform {other} is not 1 (iOS) or 2 (Android)"
        ))),
    }
}

fn message(n: &GorushNotification) -> Message {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Message {
        title: n.title.clone().filter(|t| !t.is_empty()),
        body: n.message.clone().filter(|m| !m.is_empty()),
        data: n.data.clone().unwrap_or_default(),
        collapse_key: n.collapse_id.clone(),
        ttl: n
            .expiration
            .map(|at| u32::try_from(at.saturating_sub(now)).unwrap_or(u32::MAX)),
        priority: match n.priority.as_deref() {
            Some("normal") => Priority::Normal,
            _ => Priority::High,
        },
        channel: n
            .android
            .as_ref()
            .and_then(|a| a.notification.as_ref())
            .and_then(|n| n.channel_id.clone()),
        mutable_content: n.mutable_content,
        thread_id: n.thread_id.clone(),
    }
}

/// Checks the whole request before anything is sent, as gorush does.
fn validate(request: &GorushRequest) -> Result<(), GorushError> {
    if request.notifications.is_empty() {
        return Err(GorushError("notifications must not be empty".into()));
    }
    if request.notifications.len() > MAX_NOTIFICATIONS {
        return Err(GorushError(format!(
            "too many notifications: {} (at most {MAX_NOTIFICATIONS})",
            request.notifications.len()
        )));
    }
    for n in &request.notifications {
        platform(n.platform)?;
        if n.topic.is_some() && n.tokens.is_empty() {
            return Err(GorushError(
                "topics are not supported by herald; give tokens".into(),
            ));
        }
        if n.tokens.is_empty() {
            return Err(GorushError("the notification must have tokens".into()));
        }
        if n.tokens.len() > MAX_TOKENS {
            return Err(GorushError(format!(
                "too many tokens: {} (at most {MAX_TOKENS})",
                n.tokens.len()
            )));
        }
    }
    Ok(())
}

/// Sends every token of the request and answers gorush's body.
pub async fn push(
    runtime: &Runtime,
    app_id: &AppId,
    request: GorushRequest,
) -> Result<Value, GorushError> {
    validate(&request)?;
    let mut sends = JoinSet::new();
    let mut counts = 0;
    for n in &request.notifications {
        let (platform, name) = platform(n.platform)?;
        let message = message(n);
        for token in &n.tokens {
            counts += 1;
            let job = prepare(runtime, app_id, platform, token, &message).await;
            let token = token.clone();
            sends.spawn(async move {
                let outcome = match job {
                    Ok((provider, delivery)) => provider.send(&delivery).await,
                    Err(reason) => Outcome::rejected(reason),
                };
                Sent {
                    token,
                    platform: name,
                    outcome,
                }
            });
        }
    }
    let mut logs = Vec::new();
    while let Some(sent) = sends.join_next().await {
        let Ok(sent) = sent else { continue };
        if let Outcome::TokenDead { .. } = sent.outcome {
            let _ = runtime.store.remove_device(app_id, &sent.token).await;
        }
        if let Some(entry) = log_entry(&sent) {
            logs.push(entry);
        }
    }
    Ok(json!({"success": "ok", "counts": counts, "logs": logs}))
}

/// The provider and one-off delivery for a token, through the same checks a
/// registration goes through.
async fn prepare(
    runtime: &Runtime,
    app_id: &AppId,
    platform: Platform,
    token: &str,
    message: &Message,
) -> Result<(Arc<dyn Provider>, Delivery), String> {
    message.validate().map_err(|e| e.to_string())?;
    let transport = runtime
        .infer_transport(app_id, platform, token)
        .map_err(|e| e.to_string())?;
    let provider = Arc::clone(
        runtime
            .providers
            .get(&transport)
            .ok_or("no provider running")?,
    );
    let device = NewDevice {
        account: Account::parse("gorush:api").expect("a valid literal account"),
        app_id: app_id.clone(),
        platform,
        transport,
        token: token.to_owned(),
        options: Default::default(),
    };
    device.validate().map_err(|e| e.to_string())?;
    let device = provider
        .accept_registration(device)
        .await
        .map_err(|e| e.to_string())?;
    Ok((provider, one_off(device, message.clone(), transport)))
}

fn one_off(device: NewDevice, message: Message, transport: Transport) -> Delivery {
    Delivery {
        id: 0,
        device_id: 0,
        account: device.account,
        app_id: device.app_id,
        platform: device.platform,
        transport,
        token: device.token,
        options: device.options,
        message,
        created_at: now_ms(),
        attempts: 1,
    }
}

/// gorush logs failures only; herald adds typed fields to them.
fn log_entry(sent: &Sent) -> Option<Value> {
    let (error, token_dead, retryable) = match &sent.outcome {
        Outcome::Delivered => return None,
        Outcome::TokenDead { reason } => (reason, true, false),
        Outcome::Retry { reason, .. } => (reason, false, true),
        Outcome::Rejected { reason } => (reason, false, false),
    };
    Some(json!({
        "type": "failed-push",
        "platform": sent.platform,
        "token": sent.token,
        "message": "",
        "error": error,
        "token_dead": token_dead,
        "retryable": retryable,
    }))
}
