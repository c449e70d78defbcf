//! The XRPC edge: `registerPush`, `unregisterPush` and herald's DID
//! document. Errors are XRPC bodies `{"error","message"}`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald_atproto::registration::{REGISTER_PUSH, UNREGISTER_PUSH, XrpcError};
use serde_json::json;

use crate::server::AppState;

fn xrpc_error(e: XrpcError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        Json(json!({"error": e.error, "message": e.message})),
    )
        .into_response()
}

async fn call(
    state: &AppState,
    method: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return xrpc_error(XrpcError {
                status: 413,
                error: "PayloadTooLarge",
                message: "the request body is too large".into(),
            });
        }
        Err(rejection) => return xrpc_error(XrpcError::invalid(rejection.body_text())),
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match state
        .runtime
        .atproto_push(method, authorization, &body)
        .await
    {
        Ok(()) => Json(json!({})).into_response(),
        Err(e) => xrpc_error(e),
    }
}

pub async fn register_push(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    call(&state, REGISTER_PUSH, &headers, body).await
}

pub async fn unregister_push(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    call(&state, UNREGISTER_PUSH, &headers, body).await
}

/// `GET /.well-known/did.json`: served when herald's DID is a did:web.
pub async fn did_document(State(state): State<Arc<AppState>>) -> Response {
    match &state.runtime.atproto {
        Some(at) if at.service_did.starts_with("did:web:") => {
            Json(at.did_document()).into_response()
        }
        _ => xrpc_error(XrpcError {
            status: 404,
            error: "NotFound",
            message: "this herald has no did:web identity".into(),
        }),
    }
}
