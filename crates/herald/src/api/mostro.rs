//! The HTTP edge of the Mostro-compatible API: Mostro's routes under
//! `/api`, its bodies byte for byte (`{"success","message"}` for refusals,
//! in that order) and its status codes, so Mostro Mobile works against
//! herald unchanged. Errors are mapped to the wire in one place,
//! `MostroError::into_response`.
//!
//! Every response carries a fresh random `X-Request-Id`; one sent by the
//! client is dropped before anything sees it, so a client cannot plant its
//! own correlator in the server's logs (Mostro does this for `/api/notify`;
//! here it is every route of the API). Bodies are limited per route as
//! Mostro's later releases limit them, and refusals of the body itself —
//! too large, not JSON, malformed — are JSON too (Mostro answers a
//! malformed body in plain text).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::Instrument;

use crate::mostro_api::{
    Client, MostroApi, MostroError, RegisterRequest, TokenCounts, TradeKeyRequest,
};
use crate::server::AppState;

/// A registration: a token of up to 4,096 bytes, keys and the other fields.
const MAX_REGISTER_BODY_BYTES: usize = 8 * 1024;
/// `/api/unregister` and `/api/notify` carry one 64-character pubkey.
const MAX_TRADE_KEY_BODY_BYTES: usize = 1024;
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `Fly-Client-IP`: the client's address as Fly.io's edge, where Mostro's
/// server runs, hands it on.
const FLY_CLIENT_IP: HeaderName = HeaderName::from_static("fly-client-ip");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Mostro's `{"success","message"}` (and `platform` for a registration),
/// in that order: Mostro's server writes its JSON in insertion order,
/// herald's `json!` in key order, so answers of several keys are structs.
#[derive(Serialize)]
struct Answer<'a> {
    success: bool,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<&'static str>,
}

#[derive(Serialize)]
struct Info {
    version: &'static str,
    encryption_enabled: bool,
    note: &'static str,
}

#[derive(Serialize)]
struct Status {
    status: &'static str,
    version: &'static str,
    tokens: TokenCounts,
}

/// What the Mostro routes share: herald's state and the API's own.
struct MostroState {
    app: Arc<AppState>,
    api: MostroApi,
}

/// The Mostro-compatible routes, or none when `[mostro_api]` is off (they
/// are then herald's 404 like any unknown path).
pub fn routes(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    let Some(api) = MostroApi::from_config(&state.runtime.config) else {
        return Router::new();
    };
    let shared = Arc::new(MostroState {
        app: Arc::clone(state),
        api,
    });
    Router::new()
        .route("/api/health", get(health))
        .route("/api/info", get(info))
        .route("/api/status", get(status))
        .route(
            "/api/register",
            post(register).layer(DefaultBodyLimit::max(MAX_REGISTER_BODY_BYTES)),
        )
        .route(
            "/api/unregister",
            post(unregister).layer(DefaultBodyLimit::max(MAX_TRADE_KEY_BODY_BYTES)),
        )
        .route(
            "/api/notify",
            post(notify).layer(DefaultBodyLimit::max(MAX_TRADE_KEY_BODY_BYTES)),
        )
        .layer(axum::middleware::from_fn(request_id))
        .with_state(shared)
}

async fn health() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// Mostro's answer, with herald's version: herald does not encrypt tokens
/// either.
async fn info() -> Response {
    Json(Info {
        version: env!("CARGO_PKG_VERSION"),
        encryption_enabled: false,
        note: "Token encryption will be enabled in a future phase",
    })
    .into_response()
}

async fn status(State(s): State<Arc<MostroState>>) -> Result<Response, MostroError> {
    Ok(Json(Status {
        status: "running",
        version: env!("CARGO_PKG_VERSION"),
        tokens: s.api.token_counts(&s.app.runtime).await?,
    })
    .into_response())
}

async fn register(
    State(s): State<Arc<MostroState>>,
    ClientOf(client): ClientOf,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, MostroError> {
    s.api.admit_registration(client)?;
    let request: RegisterRequest = parse(&headers, body)?;
    let platform = s.api.register(&s.app.runtime, request).await?;
    Ok(Json(Answer {
        success: true,
        message: "Token registered successfully",
        platform: Some(platform.as_str()),
    })
    .into_response())
}

async fn unregister(
    State(s): State<Arc<MostroState>>,
    ClientOf(client): ClientOf,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, MostroError> {
    s.api.admit_registration(client)?;
    let request: TradeKeyRequest = parse(&headers, body)?;
    s.api.unregister(&s.app.runtime, request).await?;
    Ok(Json(Answer {
        success: true,
        message: "Token unregistered successfully",
        platform: None,
    })
    .into_response())
}

async fn notify(
    State(s): State<Arc<MostroState>>,
    ClientOf(client): ClientOf,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, MostroError> {
    s.api.admit_notify(client)?;
    let request: TradeKeyRequest = parse(&headers, body)?;
    s.api.notify(&s.app.runtime, request)?;
    Ok((StatusCode::ACCEPTED, Json(json!({"accepted": true}))).into_response())
}

/// A JSON body (`application/json` or a `+json` type, parameters allowed).
fn parse<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, MostroError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            MostroError::BodyTooLarge
        } else {
            MostroError::MalformedBody
        }
    })?;
    if !super::json::declares_json(headers) {
        return Err(MostroError::NotJson);
    }
    serde_json::from_slice(&body).map_err(|_| MostroError::MalformedBody)
}

/// The client a request's limits apply to (see `MostroApi::client`).
struct ClientOf(Client);

impl FromRequestParts<Arc<MostroState>> for ClientOf {
    type Rejection = MostroError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<MostroState>,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| address.ip());
        let header = |name: &HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
        state
            .api
            .client(peer, header(&FLY_CLIENT_IP), header(&X_FORWARDED_FOR))
            .map(ClientOf)
    }
}

fn refusal(status: StatusCode, message: &str) -> Response {
    let answer = Answer {
        success: false,
        message,
        platform: None,
    };
    (status, Json(answer)).into_response()
}

impl IntoResponse for MostroError {
    fn into_response(self) -> Response {
        use MostroError::*;
        let bad = StatusCode::BAD_REQUEST;
        match self {
            MalformedBody => refusal(bad, "Invalid JSON body"),
            BodyTooLarge => refusal(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large"),
            NotJson => refusal(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/json",
            ),
            InvalidTradePubkey => refusal(
                bad,
                "Invalid trade_pubkey format (expected 64 hex characters)",
            ),
            EmptyToken => refusal(bad, "Token cannot be empty"),
            TokenTooLong => refusal(bad, "Token exceeds maximum length"),
            InvalidPlatform(given) => refusal(
                bad,
                &format!("Invalid platform '{given}' (expected 'android' or 'ios')"),
            ),
            InvalidMostroPubkey => refusal(
                bad,
                "Invalid mostro_pubkey format (expected 64 hex characters)",
            ),
            MostroPubkeyRequired => {
                refusal(StatusCode::FORBIDDEN, "Mostro instance pubkey required")
            }
            UntrustedMostro => refusal(StatusCode::FORBIDDEN, "Mostro instance not trusted"),
            InvalidEndpoint => refusal(bad, "Invalid push endpoint"),
            UnsupportedToken => refusal(bad, "Token type not supported by this server"),
            RateLimited(limited) => {
                let mut response = refusal(StatusCode::TOO_MANY_REQUESTS, "rate limited");
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(limited.retry_after_secs()),
                );
                response
            }
            UnknownClient => refusal(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
            Store(e) => {
                tracing::error!(error = %e, "mostro: store error in a request");
                match e {
                    herald_core::StoreError::Unavailable(_) => refusal(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Service temporarily unavailable",
                    ),
                    _ => refusal(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
                }
            }
        }
    }
}

/// Drops the client's `X-Request-Id`, gives the response a fresh one, and
/// runs the request in a span that carries it, so its log lines can be
/// found from what the client saw.
async fn request_id(mut request: Request, next: Next) -> Response {
    request.headers_mut().remove(X_REQUEST_ID);
    let id = random_uuid();
    let span = tracing::info_span!("mostro", request_id = %id);
    let mut response = next.run(request).instrument(span).await;
    let value = HeaderValue::from_str(&id).expect("a UUID is a valid header value");
    response.headers_mut().insert(X_REQUEST_ID, value);
    response
}

/// A random (version 4) UUID, as Mostro's request ids are.
fn random_uuid() -> String {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random source works");
    // RFC 9562: version 4 in the high nibble of byte 6, variant 0b10 in
    // the two high bits of byte 8.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_fresh_version_4_uuids() {
        let (a, b) = (random_uuid(), random_uuid());
        assert_ne!(a, b);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"));
    }
}
