//! The native admin API, for operators and app backends that push to their
//! own users directly. Bearer-authenticated with the admin token; disabled
//! (403) when no token is configured, so a fresh install exposes nothing.
//!
//! Handlers are thin: parse, call one domain function, map the result.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use herald_core::model::{
    Account, AppId, Device, Message, NewDevice, Notification, Platform, Priority, Transport,
};
use herald_core::store::Store;
use herald_core::time::now_ms;
use metrics::counter;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::json::ApiJson;
use crate::server::AppState;

type JsonObject = serde_json::Map<String, serde_json::Value>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRequest {
    account: Account,
    app_id: AppId,
    platform: Platform,
    /// Chosen from the token's shape when absent.
    transport: Option<Transport>,
    token: String,
    #[serde(default)]
    options: JsonObject,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRemoval {
    app_id: AppId,
    token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationRequest {
    account: Account,
    app_id: Option<AppId>,
    title: Option<String>,
    body: Option<String>,
    #[serde(default)]
    data: JsonObject,
    collapse_key: Option<String>,
    dedupe_key: Option<String>,
    ttl: Option<u32>,
    #[serde(default)]
    priority: Priority,
    channel: Option<String>,
    #[serde(default)]
    mutable_content: bool,
    thread_id: Option<String>,
}

/// Checks the bearer token in constant time.
pub async fn require_admin(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(expected) = state.admin_token.as_deref() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "the admin API is disabled: set HERALD_ADMIN_TOKEN or admin_token_file",
        ));
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => {
            Ok(next.run(request).await)
        }
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the bearer token is wrong",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <admin token>",
        )),
    }
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn device_json(device: &Device) -> serde_json::Value {
    let r = &device.registration;
    json!({
        "id": device.id,
        "account": r.account,
        "app_id": r.app_id,
        "platform": r.platform,
        "transport": r.transport,
        "created_at": device.created_at,
        "updated_at": device.updated_at,
    })
}

pub async fn register_device(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<DeviceRequest>,
) -> Result<Response, ApiError> {
    let transport = match request.transport {
        Some(t) => t,
        None => state
            .runtime
            .infer_transport(&request.app_id, request.platform, &request.token)?,
    };
    let device = NewDevice {
        account: request.account,
        app_id: request.app_id,
        platform: request.platform,
        transport,
        token: request.token,
        options: request.options,
    };
    let device = state.runtime.accept_registration(device).await?;
    let stored = state.runtime.store_device(&device).await?;
    let status = if stored.created_at == stored.updated_at {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(device_json(&stored))).into_response())
}

pub async fn remove_device(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<DeviceRemoval>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let removed = state
        .runtime
        .store
        .remove_device(&request.app_id, &request.token)
        .await?;
    Ok(Json(json!({ "removed": removed })))
}

pub async fn post_notification(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<NotificationRequest>,
) -> Result<Response, ApiError> {
    if let Some(app) = &request.app_id
        && !state.runtime.knows_app(app)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_app",
            format!(
                "unknown app {:?}: it is not configured in herald",
                app.as_str()
            ),
        ));
    }
    let notification = Notification {
        account: request.account,
        app_id: request.app_id,
        message: Message {
            title: request.title,
            body: request.body,
            data: request.data,
            collapse_key: request.collapse_key,
            ttl: request.ttl,
            priority: request.priority,
            channel: request.channel,
            mutable_content: request.mutable_content,
            thread_id: request.thread_id,
        },
        dedupe_key: request.dedupe_key,
    };
    notification.validate()?;
    let report = state
        .runtime
        .fan_out
        .submit(&notification, now_ms())
        .await?;
    counter!("herald_notifications_total").increment(1);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"queued": report.queued, "deduplicated": report.deduplicated})),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison_needs_every_byte() {
        assert!(constant_time_eq(b"abcdef", b"abcdef"));
        assert!(!constant_time_eq(b"abcdef", b"abcdeg"));
        assert!(!constant_time_eq(b"abc", b"abcdef"));
    }
}
