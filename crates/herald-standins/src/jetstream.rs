//! Jetstream, as herald's source meets it: a WebSocket that streams events
//! as they are published. At v1's `/subscribe` each event goes as it is,
//! one zstd frame with the v1 dictionary when the client asked for
//! `compress=true`, raw JSON text otherwise. At v2's `subscribeEvents` each
//! published event is a payload, sent as `{"$type":"message","payload":…}`
//! and compressed with the v2 dictionary when the client named one.
//!
//! Every handshake's query is recorded, so a test can check what the
//! client subscribed to and which cursor it resumed from. Events published
//! while nobody is connected are kept and sent to the next connection, the
//! way a real Jetstream replays from a cursor.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

use crate::ws_server::{self, Shared};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

/// Jetstream v1's dictionary (dictionary id 1612007021), the one herald embeds.
const V1_DICTIONARY: &[u8] = include_bytes!("../../herald-atproto/dictionaries/jetstream_v1.zdict");
/// Jetstream v2's `subscribeEvents` dictionary (id 20260811).
const V2_DICTIONARY: &[u8] = include_bytes!(
    "../../herald-atproto/dictionaries/jetstream_v2_subscribe_events_20260811.zdict"
);
const V2_PATH: &str = "/xrpc/network.bsky.jetstream.subscribeEvents";

#[derive(Default)]
struct State {
    /// Events not yet sent to a connection.
    pending: VecDeque<String>,
    /// The query string of every handshake, in order.
    queries: Vec<String>,
    /// Connections open now.
    open: usize,
}

pub struct JetstreamService {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    published: Arc<Notify>,
}

impl JetstreamService {
    pub async fn start() -> Self {
        let (addr, shared) = ws_server::start(|stream, shared: Shared<State>| {
            serve(stream, shared.state, shared.published)
        })
        .await;
        Self {
            addr,
            state: shared.state,
            published: shared.published,
        }
    }

    /// The base URL to configure (`ws://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Sends `event` (one JSON event) to the client, now or on its next connection.
    pub fn publish(&self, event: impl Into<String>) {
        self.state.lock().unwrap().pending.push_back(event.into());
        self.published.notify_waiters();
    }

    /// The query strings of the handshakes so far.
    pub fn queries(&self) -> Vec<String> {
        self.state.lock().unwrap().queries.clone()
    }

    pub fn open_connections(&self) -> usize {
        self.state.lock().unwrap().open
    }

    /// Events published but not yet sent.
    pub fn unsent(&self) -> usize {
        self.state.lock().unwrap().pending.len()
    }
}

async fn serve(stream: TcpStream, state: Arc<Mutex<State>>, published: Arc<Notify>) {
    let (mut path, mut query) = (String::new(), String::new());
    #[allow(clippy::result_large_err)] // tungstenite's callback shape
    let callback = |request: &Request, response: Response| {
        path = request.uri().path().to_owned();
        query = request.uri().query().unwrap_or("").to_owned();
        Ok(response)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    // v2 wraps each event in an xrpc message and names its dictionary by id.
    let v2 = path.ends_with(V2_PATH);
    let compress = if v2 {
        query.split('&').any(|p| p.starts_with("zstdDictionary="))
    } else {
        query.split('&').any(|p| p == "compress=true")
    };
    {
        let mut s = state.lock().unwrap();
        s.queries.push(query);
        s.open += 1;
    }
    let dictionary = if v2 { V2_DICTIONARY } else { V1_DICTIONARY };
    let mut encoder = compress.then(|| FrameEncoder::with_dictionary(dictionary));
    let (mut sink, mut incoming) = ws.split();
    loop {
        let wake = published.notified();
        let next = state.lock().unwrap().pending.pop_front();
        if let Some(event) = next {
            let frame = if v2 {
                format!(r#"{{"$type":"message","payload":{event}}}"#)
            } else {
                event.clone()
            };
            let message = match &mut encoder {
                Some(encoder) => Message::Binary(encoder.encode(frame.as_bytes()).into()),
                None => Message::Text(frame.into()),
            };
            if sink.send(message).await.is_err() {
                // Not delivered: the next connection gets it.
                state.lock().unwrap().pending.push_front(event);
                break;
            }
            continue;
        }
        tokio::select! {
            () = wake => {}
            message = incoming.next() => match message {
                Some(Ok(Message::Ping(data))) => {
                    if sink.send(Message::Pong(data)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    state.lock().unwrap().open -= 1;
}

/// Jetstream v1's framing: one zstd frame per event, compressed with the v1
/// dictionary. One compression context with the dictionary loaded once
/// serves every frame, as on a Jetstream connection; loading the 110 KiB
/// dictionary per frame would cost more than compressing the event.
pub struct FrameEncoder(zstd::bulk::Compressor<'static>);

impl FrameEncoder {
    pub fn new() -> Self {
        Self::with_dictionary(V1_DICTIONARY)
    }

    fn with_dictionary(dictionary: &[u8]) -> Self {
        Self(
            zstd::bulk::Compressor::with_dictionary(zstd::DEFAULT_COMPRESSION_LEVEL, dictionary)
                .expect("zstd loads the dictionary"),
        )
    }

    /// One event's JSON as the frame Jetstream would send.
    pub fn encode(&mut self, event: &[u8]) -> Vec<u8> {
        self.0
            .compress(event)
            .expect("zstd compresses into a buffer it sizes itself")
    }
}

impl Default for FrameEncoder {
    fn default() -> Self {
        Self::new()
    }
}
