//! The HTTP edge of the Nostr registration APIs: the native
//! `PUT`/`DELETE /v1/nostr/devices` and the Sigil-compatible `POST
//! /register` and `DELETE /unregister`. Errors are the native convention,
//! `{"error","message"}`, mapped from `NostrApiError` in one place.
//!
//! A request is read in this order: the body's bytes (413 past
//! `MAX_BODY_BYTES`), then the NIP-98 header where the route needs one
//! (401), and only then the body as JSON (415, 400). The header signs the
//! bytes (its `payload` tag), so they must be read whole before anything
//! else; and a client that cannot authenticate learns nothing about what
//! herald would make of its body. The URL NIP-98 names is
//! `nostr.public_url` plus the path and query as received, never one built
//! from `Host`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post, put};
use herald_core::time::now_ms;
use herald_nostr::{NostrError, PublicKey};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::admin::device_json;
use super::error::ApiError;
use super::json::{body_bytes, parse_bytes};
use crate::nostr_api::{
    DeviceRemoval, DeviceRequest, NostrApi, NostrApiError, SigilRegistration, SigilRemoval,
};
use crate::server::AppState;

/// A registration: a token of up to 4,096 bytes, Web Push keys, kinds.
const MAX_BODY_BYTES: usize = 8 * 1024;

/// What the Nostr routes share: herald's state and the APIs' own.
struct NostrState {
    app: Arc<AppState>,
    api: NostrApi,
}

/// The routes of whichever Nostr APIs are configured; the others are
/// herald's 404 like any unknown path.
pub fn routes(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    let api = NostrApi::from_config(&state.runtime.config);
    let mut router = Router::new();
    if api.native_enabled() {
        router = router.route(
            "/v1/nostr/devices",
            put(register_device).delete(remove_device),
        );
    }
    if api.sigil_enabled() {
        router = router
            .route("/register", post(sigil_register))
            .route("/unregister", delete(sigil_unregister));
    }
    let shared = Arc::new(NostrState {
        app: Arc::clone(state),
        api,
    });
    router
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

/// The parts of a request NIP-98 signs. `uri` is the request's as
/// received: these routes are merged into the router, never nested, so no
/// prefix has been stripped from it.
struct Signed {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Signed {
    fn new(
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Result<Bytes, BytesRejection>,
    ) -> Result<Self, ApiError> {
        Ok(Self {
            method,
            uri,
            headers,
            body: body_bytes(body, MAX_BODY_BYTES)?,
        })
    }

    /// The key that signed the request's NIP-98 header.
    fn signer(&self, api: &NostrApi) -> Result<PublicKey, NostrApiError> {
        let path_and_query = self
            .uri
            .path_and_query()
            .map_or(self.uri.path(), |p| p.as_str());
        let authorization = self
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let now_secs = u64::try_from(now_ms() / 1000).unwrap_or_default();
        api.signer(
            authorization,
            self.method.as_str(),
            path_and_query,
            &self.body,
            now_secs,
        )
    }

    fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        parse_bytes(&self.headers, &self.body)
    }
}

async fn register_device(
    State(s): State<Arc<NostrState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request = Signed::new(method, uri, headers, body)?;
    let signer = request.signer(&s.api)?;
    let body: DeviceRequest = request.json()?;
    let stored = s.api.register_device(&s.app.runtime, signer, body).await?;
    let status = if stored.created_at == stored.updated_at {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(device_json(&stored))).into_response())
}

async fn remove_device(
    State(s): State<Arc<NostrState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request = Signed::new(method, uri, headers, body)?;
    let signer = request.signer(&s.api)?;
    let body: DeviceRemoval = request.json()?;
    let removed = s.api.remove_device(&s.app.runtime, signer, body).await?;
    Ok(Json(json!({ "removed": removed })).into_response())
}

/// The signer where the Sigil API's policy requires one.
fn sigil_signer(s: &NostrState, request: &Signed) -> Result<Option<PublicKey>, ApiError> {
    if s.api.sigil_requires_nip98() {
        Ok(Some(request.signer(&s.api)?))
    } else {
        Ok(None)
    }
}

async fn sigil_register(
    State(s): State<Arc<NostrState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request = Signed::new(method, uri, headers, body)?;
    let signer = sigil_signer(&s, &request)?;
    let body: SigilRegistration = request.json()?;
    s.api.sigil_register(&s.app.runtime, signer, body).await?;
    Ok(Json(json!({"success": true})).into_response())
}

/// `?device_token=`: some clients and proxies drop the body of a DELETE.
#[derive(Deserialize)]
struct TokenQuery {
    device_token: Option<String>,
}

async fn sigil_unregister(
    State(s): State<Arc<NostrState>>,
    method: Method,
    uri: Uri,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request = Signed::new(method, uri, headers, body)?;
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let signer = sigil_signer(&s, &request)?;
    let token = match query.device_token {
        Some(token) if request.body.is_empty() => token,
        _ => request.json::<SigilRemoval>()?.device_token,
    };
    s.api
        .sigil_unregister(&s.app.runtime, signer, &token)
        .await?;
    Ok(Json(json!({"success": true})).into_response())
}

impl From<NostrApiError> for ApiError {
    fn from(e: NostrApiError) -> Self {
        match e {
            NostrApiError::Unauthorized(NostrError::AuthReplayGuardFull { .. }) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string())
            }
            NostrApiError::Unauthorized(_) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string())
            }
            NostrApiError::WrongSigner => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
            }
            NostrApiError::InvalidPubkey { .. }
            | NostrApiError::InvalidKinds(_)
            | NostrApiError::KeysWithoutWebPush(_) => ApiError::invalid(e.to_string()),
            NostrApiError::Registration(e) => e.into(),
            NostrApiError::Store(e) => e.into(),
        }
    }
}
