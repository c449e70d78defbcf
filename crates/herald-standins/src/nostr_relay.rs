//! A Nostr relay, as herald's relay connections meet it: NIP-01 over a
//! WebSocket, written from the NIP's text and independent of herald-nostr.
//!
//! - `REQ` replaces the connection's subscription of that id, sends the
//!   stored events matching any of its filters (newest first, at most
//!   `limit` per filter), then `EOSE`; afterwards each published event
//!   matching it is sent live. `CLOSE` ends a subscription.
//! - Filters are applied as NIP-01 says, to stored and live events alike:
//!   `ids`, `authors`, `kinds`, `#<letter>` tags, and `since <= created_at
//!   <= until`. So a client asking for gift wraps with a short `since`
//!   misses back-dated ones here, as it would on a compliant relay.
//! - Every `REQ` is recorded for the test to check, and `drop_connections`
//!   closes every open connection, as a relay restart would.
//! - Signatures are not checked: herald's own tests send it what they
//!   signed, and the point here is the protocol.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio_tungstenite::tungstenite::Message;

/// Live events buffered per connection before a slow reader loses some.
const LIVE_BUFFER: usize = 1024;

#[derive(Default)]
struct State {
    events: Vec<Value>,
    requests: Vec<Value>,
    open: usize,
}

pub struct NostrRelay {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    live: broadcast::Sender<Value>,
    /// Bumped to close every open connection.
    drops: watch::Sender<u64>,
}

impl NostrRelay {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(State::default()));
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        let drops = watch::Sender::new(0);
        let (s, l, d) = (Arc::clone(&state), live.clone(), drops.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&s), l.subscribe(), d.subscribe()));
            }
        });
        Self {
            addr,
            state,
            live,
            drops,
        }
    }

    /// The URL to configure (`ws://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Stores `event` and sends it to every subscription it matches.
    pub fn publish(&self, event: Value) {
        self.state.lock().unwrap().events.push(event.clone());
        let _ = self.live.send(event);
    }

    /// Every `REQ` received, in order, as JSON arrays.
    pub fn requests(&self) -> Vec<Value> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn open_connections(&self) -> usize {
        self.state.lock().unwrap().open
    }

    /// Closes every open connection; the relay keeps accepting new ones.
    pub fn drop_connections(&self) {
        self.drops.send_modify(|n| *n += 1);
    }
}

async fn serve(
    stream: TcpStream,
    state: Arc<Mutex<State>>,
    mut live: broadcast::Receiver<Value>,
    mut drops: watch::Receiver<u64>,
) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    drops.mark_unchanged();
    state.lock().unwrap().open += 1;
    let (mut sink, mut incoming) = ws.split();
    let mut subscriptions: HashMap<String, Vec<Value>> = HashMap::new();
    loop {
        let outgoing: Vec<String> = tokio::select! {
            _ = drops.changed() => break,
            event = live.recv() => match event {
                Ok(event) => subscriptions
                    .iter()
                    .filter(|(_, filters)| filters.iter().any(|f| matches(f, &event)))
                    .map(|(id, _)| json!(["EVENT", id, event]).to_string())
                    .collect(),
                Err(_) => break,
            },
            message = incoming.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    handle(&text, &mut subscriptions, &state)
                }
                Some(Ok(Message::Ping(data))) => {
                    if sink.send(Message::Pong(data)).await.is_err() {
                        break;
                    }
                    Vec::new()
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => Vec::new(),
            },
        };
        for text in outgoing {
            if sink.send(Message::text(text)).await.is_err() {
                break;
            }
        }
    }
    state.lock().unwrap().open -= 1;
}

/// The answers to one client message.
fn handle(
    text: &str,
    subscriptions: &mut HashMap<String, Vec<Value>>,
    state: &Mutex<State>,
) -> Vec<String> {
    let Ok(Value::Array(message)) = serde_json::from_str::<Value>(text) else {
        return vec![json!(["NOTICE", "invalid: not a JSON array"]).to_string()];
    };
    match (
        message.first().and_then(Value::as_str),
        message.get(1).and_then(Value::as_str),
    ) {
        (Some("REQ"), Some(id)) => {
            let filters: Vec<Value> = message[2..].to_vec();
            let mut state = state.lock().unwrap();
            state.requests.push(Value::Array(message.clone()));
            let mut answers = Vec::new();
            for filter in &filters {
                let mut stored: Vec<&Value> = state
                    .events
                    .iter()
                    .filter(|event| matches(filter, event))
                    .collect();
                stored.sort_by_key(|event| std::cmp::Reverse(event["created_at"].as_u64()));
                let limit = filter["limit"].as_u64().map_or(usize::MAX, |l| l as usize);
                answers.extend(
                    stored
                        .into_iter()
                        .take(limit)
                        .map(|event| json!(["EVENT", id, event]).to_string()),
                );
            }
            answers.push(json!(["EOSE", id]).to_string());
            subscriptions.insert(id.to_owned(), filters);
            answers
        }
        (Some("CLOSE"), Some(id)) => {
            subscriptions.remove(id);
            Vec::new()
        }
        _ => vec![json!(["NOTICE", "invalid: unsupported message"]).to_string()],
    }
}

/// Whether `event` matches `filter` (NIP-01; `limit` is not a condition).
fn matches(filter: &Value, event: &Value) -> bool {
    let Some(filter) = filter.as_object() else {
        return false;
    };
    let created_at = event["created_at"].as_u64().unwrap_or(0);
    filter.iter().all(|(name, wanted)| match name.as_str() {
        "ids" => listed(wanted, &event["id"]),
        "authors" => listed(wanted, &event["pubkey"]),
        "kinds" => listed(wanted, &event["kind"]),
        "since" => wanted.as_u64().is_some_and(|since| created_at >= since),
        "until" => wanted.as_u64().is_some_and(|until| created_at <= until),
        "limit" => true,
        tag if tag.len() == 2 && tag.starts_with('#') => {
            let letter = &tag[1..];
            event["tags"].as_array().is_some_and(|tags| {
                tags.iter().any(|t| {
                    t.get(0).and_then(Value::as_str) == Some(letter)
                        && t.get(1).is_some_and(|value| listed(wanted, value))
                })
            })
        }
        _ => false,
    })
}

fn listed(wanted: &Value, value: &Value) -> bool {
    wanted
        .as_array()
        .is_some_and(|values| values.iter().any(|w| w == value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u64, created_at: u64, p: &str) -> Value {
        json!({"id": "00", "pubkey": "aa", "kind": kind, "created_at": created_at, "tags": [["p", p]], "content": "", "sig": ""})
    }

    #[test]
    fn applies_every_nip01_condition() {
        let dm = event(4, 100, "bob");
        assert!(matches(
            &json!({"kinds": [4, 1059], "#p": ["bob"], "since": 100}),
            &dm
        ));
        assert!(!matches(&json!({"kinds": [1059]}), &dm));
        assert!(!matches(&json!({"#p": ["carol"]}), &dm));
        assert!(!matches(&json!({"since": 101}), &dm));
        assert!(!matches(&json!({"until": 99}), &dm));
        assert!(matches(&json!({"authors": ["aa"], "limit": 0}), &dm));
        assert!(!matches(&json!({"#e": ["bob"]}), &dm));
    }
}
