//! An nwaku node's REST relay API, as herald's Status side uses it.
//!
//! Written from nwaku's `waku/rest_api/endpoint/relay` (commit 7d1c6aba):
//!
//! - `POST`/`DELETE /relay/v1/subscriptions` take a JSON array of pubsub
//!   topics; anything but static-sharding topics (`/waku/2/rs/<cluster>/<shard>`)
//!   is a 400 "Invalid pubsub topic(s)". Unsubscribing drops the topic's
//!   cached messages.
//! - `GET /relay/v1/messages/{pubsubTopic}` (the topic URL-encoded as one
//!   segment) returns everything cached for the topic since the last call
//!   and clears it; 404 when not subscribed. The cache is shared by all
//!   topics, bounded (`--rest-relay-cache-capacity`, 50 by default), ignores
//!   a message it already holds, and evicts the oldest timestamp first.
//! - `POST /relay/v1/messages/{pubsubTopic}`: 400 "Failed to publish: Node
//!   not subscribed to topic" first; then the body must be JSON (or
//!   text/plain) with a non-empty base64 `payload` and a non-empty
//!   `contentTopic`; `version` defaults to 0 and a missing or zero
//!   `timestamp` becomes now; an encoded message over `--max-msg-size`
//!   (150 KiB) is refused. The node hears its own messages (gossipsub
//!   `triggerSelf`), so a published message also lands in its cache.
//! - `GET /health` answers `{"nodeHealth": …, "protocolsHealth": […]}`.
//!
//! Tests play the network with `inject` and read what was published with
//! `published`; `stop` and `restart` take the node away and bring it back
//! empty, as a real restart does (subscriptions and cache live in memory).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// nwaku's `--rest-relay-cache-capacity` default (`cli_args.nim`).
pub const DEFAULT_CACHE_CAPACITY: usize = 50;
/// nwaku's `--max-msg-size` default: 150 KiB of encoded Waku message.
pub const MAX_MESSAGE_SIZE: usize = 150 * 1024;

/// A Waku message as the node holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NwakuMessage {
    pub payload: Vec<u8>,
    pub content_topic: String,
    pub version: u32,
    /// Nanoseconds since the Unix epoch.
    pub timestamp: i64,
    pub meta: Vec<u8>,
    pub ephemeral: bool,
}

impl NwakuMessage {
    /// A version-1 message stamped now, as Status sends them.
    pub fn new(content_topic: &str, payload: Vec<u8>) -> Self {
        Self {
            payload,
            content_topic: content_topic.into(),
            version: 1,
            timestamp: now_nanos(),
            meta: Vec::new(),
            ephemeral: false,
        }
    }

    /// The length of the message's protobuf (14/WAKU2-MESSAGE), which
    /// nwaku checks against `--max-msg-size`.
    fn encoded_len(&self) -> usize {
        let bytes_field = |len: usize| {
            if len == 0 {
                0
            } else {
                1 + varint_len(len as u64) + len
            }
        };
        let zigzag = ((self.timestamp << 1) ^ (self.timestamp >> 63)) as u64;
        bytes_field(self.payload.len())
            + bytes_field(self.content_topic.len())
            + if self.version == 0 { 0 } else { 1 + varint_len(u64::from(self.version)) }
            + if self.timestamp == 0 { 0 } else { 1 + varint_len(zigzag) }
            + bytes_field(self.meta.len())
            // Field 31's tag takes two bytes.
            + if self.ephemeral { 3 } else { 0 }
    }

    fn to_json(&self) -> Value {
        let mut object = json!({
            "payload": STANDARD.encode(&self.payload),
            "contentTopic": self.content_topic,
            "version": self.version,
            "timestamp": self.timestamp,
            "ephemeral": self.ephemeral,
            "proof": "",
        });
        if !self.meta.is_empty() {
            object["meta"] = json!(STANDARD.encode(&self.meta));
        }
        object
    }
}

#[derive(Default)]
struct Node {
    capacity: usize,
    subscriptions: Vec<String>,
    /// (pubsub topic, message), oldest arrival first.
    cache: Vec<(String, NwakuMessage)>,
    published: Vec<(String, NwakuMessage)>,
    health: String,
}

impl Node {
    fn is_subscribed(&self, topic: &str) -> bool {
        self.subscriptions.iter().any(|t| t == topic)
    }

    fn cache_message(&mut self, topic: &str, message: NwakuMessage) {
        if self.cache.iter().any(|(t, m)| t == topic && *m == message) {
            return;
        }
        if self.cache.len() >= self.capacity {
            let oldest = self
                .cache
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, m))| m.timestamp)
                .map(|(index, _)| index);
            if let Some(index) = oldest {
                self.cache.remove(index);
            }
        }
        self.cache.push((topic.into(), message));
    }
}

type Shared = Arc<Mutex<Node>>;

pub struct NwakuService {
    addr: SocketAddr,
    state: Shared,
    server: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
}

impl NwakuService {
    /// Starts on 127.0.0.1 with nwaku's default cache capacity.
    pub async fn start() -> Self {
        Self::start_with_capacity(DEFAULT_CACHE_CAPACITY).await
    }

    /// Starts with a cache of `capacity` messages.
    pub async fn start_with_capacity(capacity: usize) -> Self {
        let state = Shared::default();
        {
            let mut node = state.lock().unwrap();
            node.capacity = capacity;
            node.health = "READY".into();
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let server = serve(listener, Arc::clone(&state));
        Self {
            addr,
            state,
            server: Mutex::new(Some(server)),
        }
    }

    /// The REST API's base URL, e.g. `http://127.0.0.1:8645`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A message arriving from the network on `pubsub_topic`. A node that
    /// is not subscribed never sees it: returns whether it was cached.
    pub fn inject(&self, pubsub_topic: &str, message: NwakuMessage) -> bool {
        let mut node = self.state.lock().unwrap();
        if !node.is_subscribed(pubsub_topic) {
            return false;
        }
        node.cache_message(pubsub_topic, message);
        true
    }

    /// Every message published through `POST /relay/v1/messages`, in order.
    pub fn published(&self) -> Vec<(String, NwakuMessage)> {
        self.state.lock().unwrap().published.clone()
    }

    pub fn subscriptions(&self) -> Vec<String> {
        self.state.lock().unwrap().subscriptions.clone()
    }

    /// Messages waiting for the next `GET`, over all topics.
    pub fn cached(&self) -> usize {
        self.state.lock().unwrap().cache.len()
    }

    /// What `/health` reports as `nodeHealth` (nwaku's `HealthStatus`:
    /// `INITIALIZING`, `SYNCHRONIZING`, `READY`, `NOT_READY`, …).
    pub fn set_health(&self, health: &str) {
        self.state.lock().unwrap().health = health.into();
    }

    /// Takes the node down: the port refuses connections until `restart`.
    pub async fn stop(&self) {
        let server = self.server.lock().unwrap().take();
        if let Some((shutdown, task)) = server {
            let _ = shutdown.send(());
            let _ = task.await;
        }
    }

    /// Brings the node back on the same port with nothing in memory: no
    /// subscriptions, an empty cache (what was published stays recorded).
    pub async fn restart(&self) {
        self.stop().await;
        {
            let mut node = self.state.lock().unwrap();
            node.subscriptions.clear();
            node.cache.clear();
        }
        let listener = TcpListener::bind(self.addr).await.expect("rebind");
        *self.server.lock().unwrap() = Some(serve(listener, Arc::clone(&self.state)));
    }
}

fn serve(listener: TcpListener, state: Shared) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let app = Router::new()
        .route(
            "/relay/v1/subscriptions",
            post(subscribe).delete(unsubscribe),
        )
        .route("/relay/v1/messages/{topic}", get(messages).post(publish))
        .route("/health", get(health))
        .with_state(state);
    let (shutdown, signal) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = signal.await;
            })
            .await;
    });
    (shutdown, task)
}

/// nwaku's error answers: a status and a plain-text reason.
fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], body.into()).into_response()
}

fn ok() -> Response {
    text(StatusCode::OK, "OK")
}

/// nwaku's 400: a plain-text reason.
struct BadRequest(String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        text(StatusCode::BAD_REQUEST, self.0)
    }
}

fn undecodable(reason: impl std::fmt::Display) -> BadRequest {
    BadRequest(format!("Invalid content body, could not decode: {reason}"))
}

/// `decodeRequestBody`: JSON or text content, then the JSON itself.
fn read_json(headers: &HeaderMap, body: &[u8]) -> Result<Value, BadRequest> {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if !matches!(
        media_type.as_deref(),
        Some("application/json" | "text/plain")
    ) {
        return Err(BadRequest(
            "Wrong Content-Type, expected application/json or text/plain".into(),
        ));
    }
    serde_json::from_slice(body).map_err(undecodable)
}

/// A JSON array of pubsub topics, each a static-sharding one.
fn read_topics(headers: &HeaderMap, body: &[u8]) -> Result<Vec<String>, BadRequest> {
    let topics: Vec<String> =
        serde_json::from_value(read_json(headers, body)?).map_err(undecodable)?;
    let bad: Vec<&String> = topics.iter().filter(|t| !is_static_shard(t)).collect();
    if !bad.is_empty() {
        return Err(BadRequest(format!("Invalid pubsub topic(s): {bad:?}")));
    }
    Ok(topics)
}

/// `RelayShard.parseStaticSharding`: `/waku/2/rs/<cluster>/<shard>`, both
/// 16-bit numbers.
fn is_static_shard(topic: &str) -> bool {
    let Some(rest) = topic.strip_prefix("/waku/2/rs/") else {
        return false;
    };
    let mut parts = rest.split('/');
    let number = |part: Option<&str>| part.is_some_and(|p| p.parse::<u16>().is_ok());
    number(parts.next()) && number(parts.next()) && parts.next().is_none()
}

async fn subscribe(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, BadRequest> {
    let topics = read_topics(&headers, &body)?;
    let mut node = state.lock().unwrap();
    for topic in topics {
        if !node.is_subscribed(&topic) {
            node.subscriptions.push(topic);
        }
    }
    Ok(ok())
}

async fn unsubscribe(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, BadRequest> {
    let topics = read_topics(&headers, &body)?;
    let mut node = state.lock().unwrap();
    node.subscriptions.retain(|t| !topics.contains(t));
    node.cache.retain(|(t, _)| !topics.contains(t));
    Ok(ok())
}

async fn messages(State(state): State<Shared>, Path(topic): Path<String>) -> Response {
    let mut node = state.lock().unwrap();
    if !node.is_subscribed(&topic) {
        return text(StatusCode::NOT_FOUND, "");
    }
    let (drained, kept) = std::mem::take(&mut node.cache)
        .into_iter()
        .partition::<Vec<_>, _>(|(t, _)| *t == topic);
    node.cache = kept;
    let body: Vec<Value> = drained.iter().map(|(_, m)| m.to_json()).collect();
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn publish(
    State(state): State<Shared>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, BadRequest> {
    if !state.lock().unwrap().is_subscribed(&topic) {
        return Err(BadRequest(format!(
            "Failed to publish: Node not subscribed to topic: {topic}"
        )));
    }
    let message = relay_message(&read_json(&headers, &body)?).map_err(undecodable)?;
    if message.encoded_len() > MAX_MESSAGE_SIZE {
        return Err(BadRequest(format!(
            "Failed to publish: Message size exceeded maximum of {MAX_MESSAGE_SIZE} bytes"
        )));
    }
    let mut node = state.lock().unwrap();
    node.published.push((topic.clone(), message.clone()));
    node.cache_message(&topic, message);
    Ok(ok())
}

/// `RelayWakuMessage.readValue` and `toWakuMessage`.
fn relay_message(value: &Value) -> Result<NwakuMessage, String> {
    let object = value.as_object().ok_or("a message is a JSON object")?;
    let string = |field: &str| -> Result<Option<&str>, String> {
        match object.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("`{field}` must be a string")),
        }
    };
    let base64 = |field: &str, text: &str| {
        STANDARD
            .decode(text)
            .map_err(|e| format!("`{field}` is not base64: {e}"))
    };
    let payload = string("payload")?
        .filter(|p| !p.trim().is_empty())
        .ok_or("Field `payload` is missing or empty")?;
    let content_topic = string("contentTopic")?
        .filter(|t| !t.trim().is_empty())
        .ok_or("Field `contentTopic` is missing or empty")?;
    let version = match object.get("version") {
        None => 0,
        Some(v) => v
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or("`version` must be a natural number")?,
    };
    let timestamp = match object.get("timestamp") {
        None => 0,
        Some(v) => v.as_i64().ok_or("`timestamp` must be a 64-bit integer")?,
    };
    let ephemeral = match object.get("ephemeral") {
        None => false,
        Some(v) => v.as_bool().ok_or("`ephemeral` must be a boolean")?,
    };
    Ok(NwakuMessage {
        payload: base64("payload", payload)?,
        content_topic: content_topic.into(),
        version,
        timestamp: if timestamp == 0 {
            now_nanos()
        } else {
            timestamp
        },
        meta: string("meta")?.map_or(Ok(Vec::new()), |m| base64("meta", m))?,
        ephemeral,
    })
}

async fn health(State(state): State<Shared>) -> Response {
    let health = state.lock().unwrap().health.clone();
    let body = json!({
        "nodeHealth": health,
        "protocolsHealth": [{"Relay": health, "desc": null}],
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn now_nanos() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_nanos()).unwrap_or(i64::MAX)
}

fn varint_len(value: u64) -> usize {
    (64 - value.leading_zeros() as usize).div_ceil(7).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_shards_only() {
        assert!(is_static_shard("/waku/2/rs/16/32"));
        assert!(is_static_shard("/waku/2/rs/0/0"));
        for bad in [
            "/waku/2/default-waku/proto",
            "/waku/2/rs/16",
            "/waku/2/rs/16/32/",
            "/waku/2/rs/16/x",
            "/waku/2/rs/70000/1",
            "waku/2/rs/16/32",
            "",
        ] {
            assert!(!is_static_shard(bad), "{bad}");
        }
    }

    #[test]
    fn encoded_lengths_follow_the_protobuf() {
        let mut message = NwakuMessage::new("/t", vec![0; 200]);
        message.timestamp = 1;
        // payload: tag + 2-byte length + 200; topic: tag + 1 + 2; version: 2; timestamp: 2.
        assert_eq!(message.encoded_len(), 203 + 4 + 2 + 2);
        message.ephemeral = true;
        assert_eq!(message.encoded_len(), 214);
        assert_eq!(varint_len(0), 1);
        assert_eq!(varint_len(127), 1);
        assert_eq!(varint_len(128), 2);
        assert_eq!(varint_len(u64::MAX), 10);
    }

    #[test]
    fn relay_messages_need_a_payload_and_a_content_topic() {
        let good = json!({"payload": "aGk=", "contentTopic": "/t"});
        let message = relay_message(&good).unwrap();
        assert_eq!(message.payload, b"hi");
        assert_eq!(message.version, 0);
        assert!(message.timestamp > 0);
        for bad in [
            json!({"contentTopic": "/t"}),
            json!({"payload": " ", "contentTopic": "/t"}),
            json!({"payload": "aGk="}),
            json!({"payload": "aGk=", "contentTopic": ""}),
            json!({"payload": "!!", "contentTopic": "/t"}),
            json!({"payload": "aGk=", "contentTopic": "/t", "version": -1}),
            json!({"payload": "aGk=", "contentTopic": "/t", "timestamp": "now"}),
            json!({"payload": "aGk=", "contentTopic": "/t", "ephemeral": 1}),
            json!({"payload": 5, "contentTopic": "/t"}),
            json!(["aGk="]),
        ] {
            assert!(relay_message(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bodies_must_be_json_or_text_and_topics_static_shards() {
        let json_type = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            headers
        };
        let body = br#"["/waku/2/rs/16/32"]"#;
        assert!(read_topics(&json_type("application/json"), body).is_ok());
        assert!(read_topics(&json_type("text/plain; charset=utf-8"), body).is_ok());
        let wrong_type = read_topics(&json_type("application/x-www-form-urlencoded"), body);
        assert!(wrong_type.is_err_and(|e| e.0.starts_with("Wrong Content-Type")));
        assert!(read_topics(&HeaderMap::new(), body).is_err());
        let headers = json_type("application/json");
        for bad in [&b"[\"/waku/2/rs/16/32\""[..], b"{}", b"[1]", b""] {
            assert!(
                read_topics(&headers, bad).is_err_and(|e| e.0.starts_with("Invalid content body")),
                "{bad:?}"
            );
        }
        let sharded = read_topics(
            &headers,
            br#"["/waku/2/rs/16/32", "/waku/2/default-waku/proto"]"#,
        );
        assert!(sharded.is_err_and(|e| e.0.starts_with("Invalid pubsub topic(s)")));
    }
}
