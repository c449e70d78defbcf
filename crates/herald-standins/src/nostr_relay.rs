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
//! - Published events' signatures are not checked: herald's own tests send
//!   it what they signed, and the point here is the protocol.
//! - `start_requiring_auth` makes it a relay that serves only authenticated
//!   clients (NIP-42): each connection gets a fresh challenge at once, and
//!   every `REQ` before a valid `AUTH` is answered `CLOSED` with
//!   `auth-required:`. An `AUTH` event is checked as such a relay checks
//!   it, here with its own code rather than herald-nostr's, so a wrong id
//!   or signature from herald's signer shows: kind 22242, the id the
//!   SHA-256 of NIP-01's serialisation (serde_json's escaping, which is
//!   NIP-01's), a valid BIP-340 signature, this connection's challenge, this
//!   relay's URL (a trailing `/` aside) and a `created_at` within
//!   [`AUTH_MAX_AGE_SECS`]. The answer is `OK` true, or false with the
//!   reason.
//! - `start_serving_gift_wraps_to_recipient_only` makes it a DM inbox relay
//!   as NIP-17 advises (and as nostr-relay-builder's `auth_dm` is): the
//!   challenge comes at once, anything but gift wraps is served to anyone,
//!   and a filter asking for kind 1059 is served only to the client
//!   authenticated as the one key its `#p` names. Otherwise the `REQ` is
//!   answered `CLOSED` with `auth-required:` before `AUTH` and
//!   `restricted:` after it, NIP-42's two prefixes for those cases.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use k256::schnorr::signature::hazmat::PrehashVerifier;
use k256::schnorr::{Signature, VerifyingKey};
use rand::RngExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio_tungstenite::tungstenite::Message;

/// Live events buffered per connection before a slow reader loses some.
const LIVE_BUFFER: usize = 1024;

/// How far an `AUTH` event's `created_at` may be from the relay's clock:
/// NIP-42's "about 10 minutes".
pub const AUTH_MAX_AGE_SECS: u64 = 600;

/// NIP-42's kind for a client's `AUTH` event.
const CLIENT_AUTH_KIND: u64 = 22242;

/// NIP-59's gift wrap.
const GIFT_WRAP_KIND: u64 = 1059;

/// Whom the relay serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Anyone,
    Authenticated,
    GiftWrapsToRecipient,
}

#[derive(Default)]
struct State {
    events: Vec<Value>,
    requests: Vec<Value>,
    open: usize,
    /// Pubkeys (hex) of the `AUTH` events accepted, in order.
    authenticated: Vec<String>,
}

pub struct NostrRelay {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    live: broadcast::Sender<Value>,
    /// Bumped to close every open connection.
    drops: watch::Sender<u64>,
}

impl NostrRelay {
    /// A relay that serves anyone.
    pub async fn start() -> Self {
        Self::start_with(Access::Anyone).await
    }

    /// A relay that serves only clients that authenticated (NIP-42).
    pub async fn start_requiring_auth() -> Self {
        Self::start_with(Access::Authenticated).await
    }

    /// A relay that serves gift wraps only to their authenticated recipient.
    pub async fn start_serving_gift_wraps_to_recipient_only() -> Self {
        Self::start_with(Access::GiftWrapsToRecipient).await
    }

    async fn start_with(access: Access) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(State::default()));
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        let drops = watch::Sender::new(0);
        let (s, l, d) = (Arc::clone(&state), live.clone(), drops.clone());
        let url = format!("ws://{addr}");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let auth = (access != Access::Anyone).then(|| Auth::new(&url, access));
                tokio::spawn(serve(
                    stream,
                    Arc::clone(&s),
                    l.subscribe(),
                    d.subscribe(),
                    auth,
                ));
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

    /// The pubkeys (hex) whose `AUTH` this relay accepted, in order.
    pub fn authenticated(&self) -> Vec<String> {
        self.state.lock().unwrap().authenticated.clone()
    }

    pub fn open_connections(&self) -> usize {
        self.state.lock().unwrap().open
    }

    /// Closes every open connection; the relay keeps accepting new ones.
    pub fn drop_connections(&self) {
        self.drops.send_modify(|n| *n += 1);
    }
}

/// One connection's NIP-42 state, on a relay that requires it.
struct Auth {
    relay_url: String,
    challenge: String,
    access: Access,
    /// The client's accepted pubkey.
    pubkey: Option<String>,
}

impl Auth {
    fn new(relay_url: &str, access: Access) -> Self {
        let challenge: [u8; 16] = rand::rng().random();
        Self {
            relay_url: relay_url.to_owned(),
            challenge: challenge.iter().map(|b| format!("{b:02x}")).collect(),
            access,
            pubkey: None,
        }
    }

    /// Why this connection may not have what `filters` ask for, as the
    /// `CLOSED` reason; `None` when it may.
    fn refusal(&self, filters: &[Value]) -> Option<&'static str> {
        match (self.access, &self.pubkey) {
            (Access::Anyone, _) => None,
            (Access::Authenticated, Some(_)) => None,
            (Access::Authenticated, None) => {
                Some("auth-required: this relay serves authenticated clients")
            }
            (Access::GiftWrapsToRecipient, pubkey) => {
                let asks_wraps = |f: &&Value| {
                    f["kinds"]
                        .as_array()
                        .is_some_and(|k| k.contains(&json!(GIFT_WRAP_KIND)))
                };
                let own = |f: &&Value| pubkey.as_ref().is_some_and(|me| f["#p"] == json!([me]));
                match filters.iter().filter(asks_wraps).find(|f| !own(f)) {
                    None => None,
                    Some(_) if pubkey.is_none() => {
                        Some("auth-required: we can't serve DMs to unauthenticated users")
                    }
                    Some(_) => Some("restricted: we only serve gift wraps to their recipient"),
                }
            }
        }
    }

    /// Checks a client's `AUTH` event; the error is the `OK` reason.
    fn check(&self, event: &Value) -> Result<String, String> {
        if event["kind"].as_u64() != Some(CLIENT_AUTH_KIND) {
            return Err("invalid: not a kind 22242 event".into());
        }
        let pubkey = verified_author(event)?;
        let tag = |name: &str| {
            event["tags"].as_array().and_then(|tags| {
                tags.iter()
                    .find(|t| t.get(0).and_then(Value::as_str) == Some(name))
                    .and_then(|t| t.get(1).and_then(Value::as_str))
            })
        };
        if tag("challenge") != Some(self.challenge.as_str()) {
            return Err("invalid: not this connection's challenge".into());
        }
        let ours = self.relay_url.trim_end_matches('/');
        if tag("relay").map(|r| r.trim_end_matches('/')) != Some(ours) {
            return Err("invalid: not this relay's URL".into());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let created_at = event["created_at"].as_u64().unwrap_or(0);
        if created_at.abs_diff(now) > AUTH_MAX_AGE_SECS {
            return Err("invalid: created_at too far from now".into());
        }
        Ok(pubkey)
    }
}

/// The event's pubkey if its id is the hash of its NIP-01 serialisation and
/// its BIP-340 signature verifies.
fn verified_author(event: &Value) -> Result<String, String> {
    let field = |name: &str| event[name].as_str().unwrap_or_default();
    let serialised = json!([
        0,
        event["pubkey"],
        event["created_at"],
        event["kind"],
        event["tags"],
        event["content"]
    ])
    .to_string();
    let id: [u8; 32] = Sha256::digest(serialised.as_bytes()).into();
    let hex_id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    if field("id") != hex_id {
        return Err("invalid: the id is not the event's hash".into());
    }
    let bytes = |text: &str| -> Option<Vec<u8>> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
            .collect()
    };
    let key = bytes(field("pubkey")).and_then(|b| VerifyingKey::from_slice(&b).ok());
    let sig = bytes(field("sig")).and_then(|b| Signature::from_slice(&b).ok());
    match (key, sig) {
        (Some(key), Some(sig)) if key.verify_prehash(&id, &sig).is_ok() => {
            Ok(field("pubkey").to_owned())
        }
        _ => Err("invalid: bad signature".into()),
    }
}

async fn serve(
    stream: TcpStream,
    state: Arc<Mutex<State>>,
    mut live: broadcast::Receiver<Value>,
    mut drops: watch::Receiver<u64>,
    mut auth: Option<Auth>,
) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    drops.mark_unchanged();
    state.lock().unwrap().open += 1;
    let (mut sink, mut incoming) = ws.split();
    let mut subscriptions: HashMap<String, Vec<Value>> = HashMap::new();
    if let Some(auth) = &auth {
        let challenge = json!(["AUTH", auth.challenge]).to_string();
        if sink.send(Message::text(challenge)).await.is_err() {
            state.lock().unwrap().open -= 1;
            return;
        }
    }
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
                    handle(&text, &mut subscriptions, &state, auth.as_mut())
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
    auth: Option<&mut Auth>,
) -> Vec<String> {
    let Ok(Value::Array(message)) = serde_json::from_str::<Value>(text) else {
        return vec![json!(["NOTICE", "invalid: not a JSON array"]).to_string()];
    };
    let refusal = auth
        .as_ref()
        .and_then(|a| a.refusal(message.get(2..).unwrap_or_default()));
    match (
        message.first().and_then(Value::as_str),
        message.get(1).and_then(Value::as_str),
    ) {
        (Some("AUTH"), _) => match (auth, message.get(1)) {
            (Some(auth), Some(event)) => {
                let id = event["id"].clone();
                match auth.check(event) {
                    Ok(pubkey) => {
                        state.lock().unwrap().authenticated.push(pubkey.clone());
                        auth.pubkey = Some(pubkey);
                        vec![json!(["OK", id, true, ""]).to_string()]
                    }
                    Err(reason) => vec![json!(["OK", id, false, reason]).to_string()],
                }
            }
            _ => vec![json!(["NOTICE", "invalid: no AUTH expected"]).to_string()],
        },
        (Some("REQ"), Some(id)) if refusal.is_some() => {
            state
                .lock()
                .unwrap()
                .requests
                .push(Value::Array(message.clone()));
            subscriptions.remove(id);
            vec![json!(["CLOSED", id, refusal]).to_string()]
        }
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
    fn gift_wraps_are_served_only_to_the_authenticated_recipient() {
        let mut auth = Auth::new("ws://127.0.0.1:1", Access::GiftWrapsToRecipient);
        let wraps_for = |p: &str| json!({"kinds": [4, 1059], "#p": [p]});
        let dms = json!({"kinds": [4], "#p": ["bob", "carol"]});
        assert_eq!(auth.refusal(std::slice::from_ref(&dms)), None);
        assert!(
            auth.refusal(&[wraps_for("bob")])
                .unwrap()
                .starts_with("auth-required:")
        );
        auth.pubkey = Some("bob".into());
        assert_eq!(auth.refusal(&[wraps_for("bob"), dms]), None);
        assert!(
            auth.refusal(&[wraps_for("carol")])
                .unwrap()
                .starts_with("restricted:")
        );
        let both = json!({"kinds": [1059], "#p": ["bob", "carol"]});
        assert!(auth.refusal(&[both]).unwrap().starts_with("restricted:"));
        let unfiltered = json!({"kinds": [1059]});
        assert!(
            auth.refusal(&[unfiltered])
                .unwrap()
                .starts_with("restricted:")
        );
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
