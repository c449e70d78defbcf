//! JSON bodies whose rejections follow the API's error convention instead
//! of axum's plain-text ones: the `ApiJson` extractor, and `parse_bytes`
//! for routes that must see the body's bytes first (NIP-98 signs them).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(map_rejection(rejection)),
        }
    }
}

/// Whether the body is declared JSON: `application/json` or a `+json`
/// type, parameters allowed, as axum's `Json` decides it.
pub fn declares_json(headers: &HeaderMap) -> bool {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    media_type.is_some_and(|t| {
        t == "application/json" || (t.starts_with("application/") && t.ends_with("+json"))
    })
}

/// A body read whole by a route with its own `DefaultBodyLimit` of
/// `max_bytes`.
pub fn body_bytes(
    body: Result<Bytes, BytesRejection>,
    max_bytes: usize,
) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body is larger than this route's {max_bytes} bytes"),
            )
        } else {
            ApiError::invalid(rejection.body_text())
        }
    })
}

/// `body` as JSON of type `T`, refused exactly as `ApiJson` refuses it.
pub fn parse_bytes<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    if !declares_json(headers) {
        return Err(not_json());
    }
    axum::Json::<T>::from_bytes(body)
        .map(|axum::Json(value)| value)
        .map_err(map_rejection)
}

fn not_json() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "send the body as JSON with Content-Type: application/json",
    )
}

fn map_rejection(rejection: JsonRejection) -> ApiError {
    // axum says 422 for JSON of the wrong shape; every other bad input is a
    // 400 in this API, so callers need to handle one status for it.
    let status = match rejection {
        JsonRejection::JsonDataError(_) => StatusCode::BAD_REQUEST,
        _ => rejection.status(),
    };
    let (code, message) = match &rejection {
        JsonRejection::MissingJsonContentType(_) => return not_json(),
        JsonRejection::JsonSyntaxError(_) => ("invalid_json", rejection.body_text()),
        JsonRejection::JsonDataError(_) => ("invalid_request", rejection.body_text()),
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "the request body is larger than http.max_body_bytes".to_owned(),
        ),
        _ => ("invalid_request", rejection.body_text()),
    };
    ApiError::new(status, code, message)
}
