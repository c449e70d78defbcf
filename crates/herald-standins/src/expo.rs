//! Expo's push API: `send` with tickets, `getReceipts` with receipts.
//!
//! Checks what Expo checks: at most 100 messages per request (400
//! `PUSH_TOO_MANY_NOTIFICATIONS`), at most 1,000 receipt ids, the access
//! token when one is required (401 `UNAUTHORIZED`), gzip request bodies,
//! the types of the display fields (`channelId` a string, `mutableContent`
//! a boolean: a schema error refuses the whole request with 400
//! `VALIDATION_ERROR`), token shape and the 4,096-byte message limit
//! (per-ticket errors). Tickets and receipts can be scripted per token;
//! batch sizes are recorded.

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

const MAX_MESSAGES: usize = 100;
const MAX_RECEIPT_IDS: usize = 1000;
const MAX_MESSAGE_BYTES: usize = 4096;
/// A message field Expo's schema types, and the type as its errors name it.
struct TypedField {
    name: &'static str,
    is_type: fn(&Value) -> bool,
    type_name: &'static str,
}

const TYPED_FIELDS: &[TypedField] = &[
    TypedField {
        name: "channelId",
        is_type: Value::is_string,
        type_name: "a string",
    },
    TypedField {
        name: "mutableContent",
        is_type: Value::is_boolean,
        type_name: "a boolean",
    },
];

/// An error Expo reports in a ticket or a receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpoError {
    DeviceNotRegistered,
    MessageRateExceeded,
    MessageTooBig,
    InvalidCredentials,
}

impl ExpoError {
    fn code(self) -> &'static str {
        match self {
            ExpoError::DeviceNotRegistered => "DeviceNotRegistered",
            ExpoError::MessageRateExceeded => "MessageRateExceeded",
            ExpoError::MessageTooBig => "MessageTooBig",
            ExpoError::InvalidCredentials => "InvalidCredentials",
        }
    }

    fn body(self, token: &str) -> Value {
        json!({"status": "error", "message": format!("{token:?}: {}", self.code()), "details": {"error": self.code()}})
    }
}

#[derive(Default)]
struct Expo {
    access_token: Option<String>,
    ticket_errors: HashMap<String, ExpoError>,
    receipt_errors: HashMap<String, ExpoError>,
    /// Receipt id → token it was issued for.
    receipts: HashMap<String, String>,
    batch_sizes: Vec<usize>,
    gzipped_requests: usize,
    accepted: Vec<Value>,
    /// Answer the next send requests with 429 this many times.
    throttle: usize,
}

type Shared = Arc<Mutex<Expo>>;

pub struct ExpoService {
    addr: SocketAddr,
    state: Shared,
}

impl ExpoService {
    /// Starts on 127.0.0.1; with `access_token`, requests must carry it.
    pub async fn start(access_token: Option<&str>) -> Self {
        let state = Shared::default();
        state.lock().unwrap().access_token = access_token.map(str::to_owned);
        let app = Router::new()
            .route("/--/api/v2/push/send", post(send))
            .route("/--/api/v2/push/getReceipts", post(get_receipts))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, state }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The ticket for `token` carries this error.
    pub fn ticket_error(&self, token: &str, error: ExpoError) {
        self.state
            .lock()
            .unwrap()
            .ticket_errors
            .insert(token.into(), error);
    }

    /// The ticket for `token` is ok, but its receipt carries this error.
    pub fn receipt_error(&self, token: &str, error: ExpoError) {
        self.state
            .lock()
            .unwrap()
            .receipt_errors
            .insert(token.into(), error);
    }

    /// The next `n` send requests are answered 429.
    pub fn throttle(&self, n: usize) {
        self.state.lock().unwrap().throttle = n;
    }

    pub fn batch_sizes(&self) -> Vec<usize> {
        self.state.lock().unwrap().batch_sizes.clone()
    }

    pub fn gzipped_requests(&self) -> usize {
        self.state.lock().unwrap().gzipped_requests
    }

    pub fn accepted(&self) -> Vec<Value> {
        self.state.lock().unwrap().accepted.clone()
    }
}

/// A request-level error: status, Expo's code, its message.
struct RequestError(StatusCode, &'static str, &'static str);

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        request_error(self.0, self.1, self.2)
    }
}

fn request_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"errors": [{"code": code, "message": message}]})),
    )
        .into_response()
}

/// Authenticates and decodes a request body (gzip or plain JSON).
fn read_request(state: &Shared, headers: &HeaderMap, body: &[u8]) -> Result<Value, RequestError> {
    let expected = state.lock().unwrap().access_token.clone();
    if let Some(token) = expected {
        let presented = headers.get("authorization").and_then(|v| v.to_str().ok());
        if presented != Some(&format!("Bearer {token}")) {
            return Err(RequestError(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "The bearer token is invalid.",
            ));
        }
    }
    let gzipped = headers.get("content-encoding").is_some_and(|v| v == "gzip");
    let mut text = Vec::new();
    if gzipped {
        state.lock().unwrap().gzipped_requests += 1;
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut text)
            .map_err(|_| {
                RequestError(
                    StatusCode::BAD_REQUEST,
                    "VALIDATION_ERROR",
                    "Invalid gzip body.",
                )
            })?;
    } else {
        text = body.to_vec();
    }
    serde_json::from_slice(&text).map_err(|_| {
        RequestError(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "\"value\" must be a valid JSON body.",
        )
    })
}

fn valid_token(token: &str) -> bool {
    ["ExponentPushToken[", "ExpoPushToken["]
        .iter()
        .any(|p| token.starts_with(p) && token.ends_with(']') && token.len() > p.len() + 1)
}

async fn send(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let request = match read_request(&state, &headers, &body) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let messages = match request {
        Value::Array(items) => items,
        single @ Value::Object(_) => vec![single],
        _ => {
            return request_error(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                "\"value\" must be an object or an array.",
            );
        }
    };
    if messages.len() > MAX_MESSAGES {
        return request_error(
            StatusCode::BAD_REQUEST,
            "PUSH_TOO_MANY_NOTIFICATIONS",
            "You are trying to send more than 100 push notifications in one request.",
        );
    }
    if let Some(why) = schema_error(&messages) {
        return request_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", &why);
    }
    let mut s = state.lock().unwrap();
    if s.throttle > 0 {
        s.throttle -= 1;
        let mut r = request_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_REQUESTS",
            "Rate limit exceeded.",
        );
        r.headers_mut().insert("retry-after", 3.into());
        return r;
    }
    s.batch_sizes.push(messages.len());
    let tickets: Vec<Value> = messages.into_iter().map(|m| ticket(&mut s, m)).collect();
    axum::Json(json!({ "data": tickets })).into_response()
}

/// The first field of any message whose type Expo's schema refuses.
fn schema_error(messages: &[Value]) -> Option<String> {
    messages.iter().enumerate().find_map(|(i, message)| {
        TYPED_FIELDS.iter().find_map(|field| {
            let value = message.get(field.name)?;
            (!(field.is_type)(value))
                .then(|| format!("\"[{i}].{}\" must be {}.", field.name, field.type_name))
        })
    })
}

fn ticket(s: &mut Expo, message: Value) -> Value {
    let token = message["to"].as_str().unwrap_or_default().to_owned();
    if !valid_token(&token) {
        return ExpoError::DeviceNotRegistered.body(&token);
    }
    if message.to_string().len() > MAX_MESSAGE_BYTES {
        return ExpoError::MessageTooBig.body(&token);
    }
    if let Some(error) = s.ticket_errors.get(&token) {
        return error.body(&token);
    }
    s.accepted.push(message);
    let id = format!("receipt-{}", s.accepted.len());
    s.receipts.insert(id.clone(), token);
    json!({"status": "ok", "id": id})
}

async fn get_receipts(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let request = match read_request(&state, &headers, &body) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let Some(ids) = request["ids"].as_array() else {
        return request_error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "\"ids\" is required.",
        );
    };
    if ids.len() > MAX_RECEIPT_IDS {
        return request_error(
            StatusCode::BAD_REQUEST,
            "PUSH_TOO_MANY_RECEIPTS",
            "You are trying to get more than 1000 push receipts in one request.",
        );
    }
    let s = state.lock().unwrap();
    let mut data = serde_json::Map::new();
    for id in ids.iter().filter_map(Value::as_str) {
        if let Some(token) = s.receipts.get(id) {
            let receipt = match s.receipt_errors.get(token) {
                Some(error) => error.body(token),
                None => json!({"status": "ok"}),
            };
            data.insert(id.to_owned(), receipt);
        }
    }
    axum::Json(json!({ "data": data })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_id_is_a_string_and_mutable_content_a_boolean() {
        let ok =
            json!({"to": "ExponentPushToken[a]", "channelId": "reply", "mutableContent": true});
        assert_eq!(schema_error(std::slice::from_ref(&ok)), None);
        for (bad, says) in [
            (
                json!({"channelId": 7}),
                "\"[1].channelId\" must be a string.",
            ),
            (
                json!({"mutableContent": 1}),
                "\"[1].mutableContent\" must be a boolean.",
            ),
        ] {
            assert_eq!(schema_error(&[ok.clone(), bad]).as_deref(), Some(says));
        }
    }
}
