//! A JSON body extractor whose rejections follow the API's error convention
//! instead of axum's plain-text ones.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
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

fn map_rejection(rejection: JsonRejection) -> ApiError {
    // axum says 422 for JSON of the wrong shape; every other bad input is a
    // 400 in this API, so callers need to handle one status for it.
    let status = match rejection {
        JsonRejection::JsonDataError(_) => StatusCode::BAD_REQUEST,
        _ => rejection.status(),
    };
    let (code, message) = match &rejection {
        JsonRejection::MissingJsonContentType(_) => (
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json".to_owned(),
        ),
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
