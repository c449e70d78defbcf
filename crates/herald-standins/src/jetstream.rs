//! Jetstream v1, as herald's source meets it: a WebSocket at `/subscribe`
//! that streams events as they are published, each one zstd frame with the
//! v1 dictionary when the client asked for `compress=true`, raw JSON text
//! otherwise.
//!
//! Every handshake's query is recorded, so a test can check what the
//! client subscribed to and which cursor it resumed from. Events published
//! while nobody is connected are kept and sent to the next connection, the
//! way a real Jetstream replays from a cursor.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

/// Jetstream v1's dictionary (dictionary id 1612007021), the one herald embeds.
const V1_DICTIONARY: &[u8] = include_bytes!("../../herald-atproto/dictionaries/jetstream_v1.zdict");

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
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(State::default()));
        let published = Arc::new(Notify::new());
        let (s, p) = (Arc::clone(&state), Arc::clone(&published));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&s), Arc::clone(&p)));
            }
        });
        Self {
            addr,
            state,
            published,
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
    let mut query = String::new();
    #[allow(clippy::result_large_err)] // tungstenite's callback shape
    let callback = |request: &Request, response: Response| {
        query = request.uri().query().unwrap_or("").to_owned();
        Ok(response)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let compress = query.split('&').any(|p| p == "compress=true");
    {
        let mut s = state.lock().unwrap();
        s.queries.push(query);
        s.open += 1;
    }
    let (mut sink, mut incoming) = ws.split();
    loop {
        let wake = published.notified();
        let next = state.lock().unwrap().pending.pop_front();
        if let Some(event) = next {
            let message = if compress {
                Message::Binary(compressed(&event).into())
            } else {
                Message::Text(event.clone().into())
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

/// One zstd frame with the v1 dictionary: Jetstream's framing.
fn compressed(event: &str) -> Vec<u8> {
    zstd::bulk::Compressor::with_dictionary(zstd::DEFAULT_COMPRESSION_LEVEL, V1_DICTIONARY)
        .and_then(|mut c| c.compress(event.as_bytes()))
        .expect("zstd compresses with the v1 dictionary")
}
