//! The HTTP edge of the gorush-compatible API: authentication, gorush's
//! `{"code","message"}` errors, and the app a request is for.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald_core::model::AppId;
use serde::Deserialize;
use serde_json::json;

use crate::gorush_api::{self, GorushError, GorushRequest};
use crate::server::AppState;

/// Largest `/api/push` body: 100 notifications of up to 500 tokens each.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

fn gorush_error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"code": status.as_u16(), "message": message.into()})),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct AppQuery {
    app_id: Option<String>,
}

pub async fn push(
    State(state): State<Arc<AppState>>,
    Query(query): Query<AppQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(default_app) = state.runtime.config.gorush_api.app_id.clone() else {
        return gorush_error(
            StatusCode::NOT_FOUND,
            "the gorush-compatible API is off: set gorush_api.app_id",
        );
    };
    if let Some(expected) = &state.gorush_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !presented
            .is_some_and(|p| crate::api::admin::constant_time_eq(p.as_bytes(), expected.as_bytes()))
        {
            return gorush_error(
                StatusCode::UNAUTHORIZED,
                "send Authorization: Bearer <gorush_api token>",
            );
        }
    }
    let app_name = query.app_id.unwrap_or(default_app);
    let app = match AppId::parse(&app_name) {
        Ok(app) if state.runtime.knows_app(&app) => app,
        _ => return gorush_error(StatusCode::BAD_REQUEST, format!("unknown app {app_name:?}")),
    };
    let request: GorushRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return gorush_error(
                StatusCode::BAD_REQUEST,
                format!("invalid request body: {e}"),
            );
        }
    };
    match gorush_api::push(&state.runtime, &app, request).await {
        Ok(answer) => Json(answer).into_response(),
        Err(GorushError(message)) => gorush_error(StatusCode::BAD_REQUEST, message),
    }
}
