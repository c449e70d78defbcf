//! A relay's or PDS's firehose (`com.atproto.sync.subscribeRepos`), as
//! herald's source meets it: binary frames streamed in `seq` order, with
//! the event-stream spec's cursor rules (atproto.md §9):
//!
//! - no cursor: only frames published after the handshake;
//! - a cursor inside the window: every kept frame with a greater `seq`,
//!   then live ones;
//! - a cursor older than the window: an `#info OutdatedCursor` frame, then
//!   the whole window;
//! - a cursor ahead of the newest `seq`: a `FutureCursor` error frame, and
//!   the connection closes.
//!
//! Frames are given as bytes with their `seq` (tests build them); the
//! stand-in never decodes them, so it cannot agree with herald's decoder
//! by sharing its mistakes. Every handshake's query is recorded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

use crate::ws_server::{self, Shared};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

pub const PATH: &str = "/xrpc/com.atproto.sync.subscribeRepos";

#[derive(Default)]
struct State {
    /// The window: every frame kept, by `seq`.
    frames: BTreeMap<u64, Vec<u8>>,
    queries: Vec<String>,
    open: usize,
}

pub struct FirehoseService {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    published: Arc<Notify>,
}

impl FirehoseService {
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

    /// Adds `frame` to the window under `seq` and sends it to every open
    /// connection. `seq`s must grow, as a relay's do.
    pub fn publish(&self, seq: u64, frame: Vec<u8>) {
        let mut state = self.state.lock().unwrap();
        if let Some((&last, _)) = state.frames.last_key_value() {
            assert!(
                seq > last,
                "seq {seq} after {last}: a firehose's seq only grows"
            );
        }
        state.frames.insert(seq, frame);
        drop(state);
        self.published.notify_waiters();
    }

    /// Forgets the frames before `seq`: they fell out of the window.
    pub fn trim_before(&self, seq: u64) {
        let mut state = self.state.lock().unwrap();
        state.frames = state.frames.split_off(&seq);
    }

    /// The query strings of the handshakes so far.
    pub fn queries(&self) -> Vec<String> {
        self.state.lock().unwrap().queries.clone()
    }

    pub fn open_connections(&self) -> usize {
        self.state.lock().unwrap().open
    }
}

/// Where a connection starts, by the spec's cursor rules.
enum Start {
    /// After this `seq` (live: after the newest one at the handshake).
    After(u64),
    /// Cursor older than the window: say so, then send all of it.
    Outdated,
    Future,
}

fn start_of(query: &str, frames: &BTreeMap<u64, Vec<u8>>) -> Start {
    let newest = frames.last_key_value().map_or(0, |(&seq, _)| seq);
    let cursor = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("cursor="))
        .and_then(|c| c.parse::<u64>().ok());
    let Some(cursor) = cursor else {
        return Start::After(newest);
    };
    let oldest = frames.first_key_value().map_or(0, |(&seq, _)| seq);
    if cursor > newest {
        Start::Future
    } else if cursor + 1 < oldest {
        Start::Outdated
    } else {
        Start::After(cursor)
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
    let (mut sink, mut incoming) = ws.split();
    if !path.ends_with(PATH) {
        let _ = sink
            .send(Message::Binary(error_frame("MethodNotImplemented").into()))
            .await;
        return;
    }
    let start = {
        let mut s = state.lock().unwrap();
        s.queries.push(query.clone());
        s.open += 1;
        start_of(&query, &s.frames)
    };
    let mut after = match start {
        Start::After(seq) => seq,
        Start::Future => {
            let _ = sink
                .send(Message::Binary(error_frame("FutureCursor").into()))
                .await;
            let _ = sink.close().await;
            state.lock().unwrap().open -= 1;
            return;
        }
        Start::Outdated => {
            if sink
                .send(Message::Binary(info_frame("OutdatedCursor").into()))
                .await
                .is_err()
            {
                state.lock().unwrap().open -= 1;
                return;
            }
            0
        }
    };
    loop {
        let wake = published.notified();
        let next = {
            let s = state.lock().unwrap();
            s.frames
                .range(after + 1..)
                .next()
                .map(|(&seq, frame)| (seq, frame.clone()))
        };
        if let Some((seq, frame)) = next {
            if sink.send(Message::Binary(frame.into())).await.is_err() {
                break;
            }
            after = seq;
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

/// `{op: -1}` and `{error}`: an error frame, as DAG-CBOR.
pub fn error_frame(error: &str) -> Vec<u8> {
    let mut frame = vec![0xa1];
    text(&mut frame, "op");
    frame.push(0x20); // -1
    frame.push(0xa1);
    text(&mut frame, "error");
    text(&mut frame, error);
    frame
}

/// `{op: 1, t: "#info"}` and `{name}`: an info frame, as DAG-CBOR (keys in
/// canonical order: shorter first).
pub fn info_frame(name: &str) -> Vec<u8> {
    let mut frame = vec![0xa2];
    text(&mut frame, "t");
    text(&mut frame, "#info");
    text(&mut frame, "op");
    frame.push(0x01);
    frame.push(0xa1);
    text(&mut frame, "name");
    text(&mut frame, name);
    frame
}

/// A CBOR text string of fewer than 256 bytes.
fn text(out: &mut Vec<u8>, s: &str) {
    let len = u8::try_from(s.len()).expect("short strings only");
    if len < 24 {
        out.push(0x60 | len);
    } else {
        out.extend([0x78, len]);
    }
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_and_info_frames_are_the_specs_bytes() {
        // {"op":-1}{"error":"FutureCursor"}
        let mut expected = vec![0xa1, 0x62, b'o', b'p', 0x20, 0xa1, 0x65];
        expected.extend_from_slice(b"error");
        expected.push(0x6c);
        expected.extend_from_slice(b"FutureCursor");
        assert_eq!(error_frame("FutureCursor"), expected);
        // Real #commit frames start a2 61 74 …: "t" sorts before "op".
        assert_eq!(&info_frame("OutdatedCursor")[..3], &[0xa2, 0x61, b't']);
    }

    #[test]
    fn cursors_follow_the_event_stream_rules() {
        let frames: BTreeMap<u64, Vec<u8>> = (10..=20).map(|s| (s, vec![])).collect();
        assert!(matches!(start_of("", &frames), Start::After(20)));
        assert!(matches!(start_of("cursor=15", &frames), Start::After(15)));
        assert!(matches!(start_of("cursor=9", &frames), Start::After(9)));
        assert!(matches!(start_of("cursor=3", &frames), Start::Outdated));
        assert!(matches!(start_of("cursor=21", &frames), Start::Future));
    }
}
