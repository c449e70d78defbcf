//! One NIP-01 relay connection: subscriptions for the registered keys,
//! every event verified and handed on (reference nostr.md §2, §12).
//!
//! - **What is asked for.** The registered keys are split into batches of
//!   [`KEYS_PER_SUBSCRIPTION`], one subscription each, with up to two
//!   filters: gift wraps (kind 1059) with `since` = now − [`GIFT_WRAP_WINDOW`],
//!   because their `created_at` is back-dated up to two days on purpose
//!   (NIP-59) and a relay applies `since` to live events too (NIP-01); a
//!   short window, as Mostro's push server used, loses most wraps. The
//!   other kinds are honestly dated, so they start where herald stopped
//!   watching this relay (a little before), at most that same window back.
//!   A third filter asks for the keys' own mute lists (kind 10000 by
//!   `authors`), which the pipeline keeps to honour them.
//! - **Registrations change the subscriptions.** A new key goes into a
//!   batch with room, a removed one leaves its batch, and only the batches
//!   that changed are asked for again (a `REQ` with the same id replaces the
//!   subscription, NIP-01), after [`RESUBSCRIBE_DELAY`], so a burst of
//!   registrations is one `REQ` per batch.
//! - **History of a new key is not pushed.** Until a batch's `EOSE`, its
//!   events are stored ones. For a key subscribed here for the first time
//!   they happened before it registered: the arrival names those keys in
//!   `history_for`, and the pipeline marks the event seen without telling
//!   them. Keys the connection watched before (in this run, or in the run
//!   before a restart) get stored events pushed unless already seen: they
//!   arrived while herald was away.
//! - **Verified, size-capped, back-pressured.** A message is capped at
//!   [`MAX_MESSAGE_BYTES`] by the WebSocket itself; an event is accepted only
//!   through `Event::from_json` (id and signature checked) and only of a
//!   kind herald asked for. Arrivals go to a bounded channel: when it is full
//!   the connection stops reading and TCP pushes back on the relay.
//! - **Reconnects** with `herald_core::retry::ReconnectPolicy` (exponential,
//!   equal jitter, reset after a healthy connection); the subscriptions are
//!   sent again with freshly computed `since` values, never the old ones.
//!   Pings every [`PING_INTERVAL`]; a connection silent for [`IDLE_TIMEOUT`]
//!   is dropped as half-open.
//! - **NIP-42 `AUTH` with herald's own key.** A relay that sends a
//!   challenge gets a kind 22242 event signed with `RelayConfig::auth_key`
//!   (`nip42`). Relays refuse subscriptions before that with a `CLOSED`
//!   whose reason starts `auth-required:`; once the relay answers `OK` to
//!   the `AUTH`, exactly those batches are asked for again, with the
//!   session's `since` values, since nothing of theirs was seen yet.
//!   Without a key a challenge is logged and ignored, and the refused
//!   subscriptions stay closed.
//! - **Gift wraps only for their recipient.** A relay that serves kind
//!   1059 only to the authenticated `p` (NIP-17's advice) refuses herald's
//!   gift-wrap filter with `restricted:`, since herald signs in as itself.
//!   That batch is asked for again once without gift wraps, so the relay's
//!   other kinds are still watched; `RelayStatus::gift_wraps_restricted`
//!   says so. The wraps themselves reach herald only through the
//!   sender-triggered notify path.
//! - **Two kinds of relay.** A watched relay (`Watch::Mentions`) is asked
//!   as above. An index relay (`Watch::OwnLists`) is asked for the keys'
//!   own lists instead (`authors` = the keys; kinds 10050, 10002 and
//!   10000), which `account_relays` and `mute_list` keep; with
//!   `RelayConfig::refresh` it asks again that often, in case a relay
//!   dropped the subscription without a word. An account's own relay,
//!   named by someone's list rather than the operator, is reached only at
//!   the public addresses its name resolves to (`RelayConfig::public_only`).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use herald_core::retry::ReconnectPolicy;
use herald_core::time::now_secs;
use herald_http::http_client::CONNECT_TIMEOUT;
use herald_http::public_endpoint::is_public;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, client_async_tls_with_config, connect_async_with_config,
};
use url::{Host, Url};

use crate::event::{Event, EventId, MAX_EVENT_JSON_BYTES, kind};
use crate::nip42;
use crate::pubkey::PublicKey;
use crate::recipients::RecipientIndex;
use crate::secret_key::SecretKey;

/// Keys in one subscription's `#p`. 250 hex keys make a filter of about
/// 17 KB, so a `REQ` with both filters stays well under the 64 KiB message
/// and the few hundred values per filter public relays commonly accept
/// (limits vary per relay, nostr.md §12).
pub const KEYS_PER_SUBSCRIPTION: usize = 250;

/// How far back gift wraps are asked for: NIP-59 back-dates them by up to
/// two days (rust-nostr and nostr-tools both use 172,800 s).
pub const GIFT_WRAP_WINDOW: Duration = Duration::from_secs(2 * 24 * 60 * 60);

/// How far before the moment herald stopped watching a relay the other
/// kinds are asked for again: clocks differ, and an event reaches a relay
/// some time after its author dated it.
pub const RESUME_SLACK: Duration = Duration::from_secs(5 * 60);

/// Registrations arriving within this delay are one re-subscription.
pub const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// The largest relay message accepted: an event at `Event`'s own cap plus
/// the `["EVENT","<id>",…]` around it, with room to spare. Larger ones end
/// the connection (tungstenite refuses them before buffering them whole).
pub const MAX_MESSAGE_BYTES: usize = 2 * MAX_EVENT_JSON_BYTES;

/// Interval of the connection's own pings, well inside common proxy idle
/// timeouts (60 s).
pub const PING_INTERVAL: Duration = Duration::from_secs(20);

/// A connection that carried nothing, not even a pong, for this long is
/// dropped: three pings went unanswered.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Relay messages quoted in logs and status are cut to this many characters.
const REASON_PREVIEW_CHARS: usize = 200;

/// Subscription ids are this prefix and the batch's number.
const SUBSCRIPTION_PREFIX: &str = "herald-";

/// NIP-42's machine-readable prefix of a `CLOSED` (or `OK`) reason that
/// asks the client to authenticate first.
const AUTH_REQUIRED_PREFIX: &str = "auth-required:";

/// NIP-42's prefix of a refusal to a client that authenticated but whose
/// key may not have what it asked for.
const RESTRICTED_PREFIX: &str = "restricted:";

type WebSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What one connection asks a relay for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Watch {
    /// Events of `RelayConfig::kinds` that `p`-tag the keys, and the
    /// keys' mute lists.
    #[default]
    Mentions,
    /// The keys' own relay lists (kinds 10050, 10002) and mute lists: an
    /// index relay.
    OwnLists,
}

/// The lists an index relay is asked for, by author.
const OWN_LIST_KINDS: [u16; 3] = [kind::DM_RELAY_LIST, kind::RELAY_LIST, kind::MUTE_LIST];

/// What one connection watches.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub url: Url,
    /// The kinds to subscribe to.
    pub kinds: Vec<u16>,
    pub reconnect: ReconnectPolicy,
    /// herald's own key, answering NIP-42 challenges; `None` ignores them.
    pub auth_key: Option<Arc<SecretKey>>,
    pub watch: Watch,
    /// Every subscription is asked for again this often; `None`, only
    /// when its keys change or the connection is new.
    pub refresh: Option<Duration>,
    /// Connect only to public addresses of the host (`public_tcp`): for
    /// relays named by other people's lists, not the operator.
    pub public_only: bool,
}

impl RelayConfig {
    /// Whether herald asked this relay for events of `kind`.
    fn asked_for(&self, event_kind: u16) -> bool {
        match self.watch {
            Watch::Mentions => self.kinds.contains(&event_kind) || event_kind == kind::MUTE_LIST,
            Watch::OwnLists => OWN_LIST_KINDS.contains(&event_kind),
        }
    }
}

/// One verified event, as a relay served it.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub event: Event,
    /// The relay it came from: the app's hint where to fetch it.
    pub relay: Arc<str>,
    /// Keys for whom it is history: stored before their first
    /// subscription here, so they are not told.
    pub history_for: Vec<PublicKey>,
}

/// What `/health` shows about one relay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayStatus {
    pub connected: bool,
    pub subscriptions: usize,
    pub events: u64,
    /// Messages refused: unreadable, unverifiable, or of a kind not asked for.
    pub refused: u64,
    pub notices: u64,
    /// Subscriptions the relay closed (`CLOSED`), auth-required ones included.
    pub closed: u64,
    /// The relay accepted herald's NIP-42 `AUTH` on this connection.
    pub authenticated: bool,
    /// The relay refused gift wraps (`restricted:`): it serves them only to
    /// their recipient, so herald watches it for the other kinds alone.
    pub gift_wraps_restricted: bool,
    pub disconnects: u64,
    pub last_error: Option<String>,
}

/// A shared view of one connection's status.
#[derive(Debug, Clone, Default)]
pub struct StatusHandle(Arc<Mutex<RelayStatus>>);

impl StatusHandle {
    pub fn snapshot(&self) -> RelayStatus {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RelayStatus> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, change: impl FnOnce(&mut RelayStatus)) {
        change(&mut self.lock());
    }
}

/// A key's place in this connection's subscriptions.
#[derive(Debug, Clone, Copy)]
struct Slot {
    batch: usize,
    /// Subscribed here before (or before the restart): stored events are news.
    known: bool,
}

#[derive(Debug, Default)]
struct Batch {
    keys: Vec<PublicKey>,
    /// The relay has sent `EOSE` for the current `REQ`.
    eose: bool,
    /// Changed since it was last asked for.
    dirty: bool,
    /// The relay closed it until herald authenticates (NIP-42).
    awaiting_auth: bool,
    /// The relay refused it (`restricted:`) with gift wraps in it, as
    /// relays that serve kind 1059 only to its recipient do: it is asked
    /// for without them.
    without_gift_wraps: bool,
}

/// The batches of keys this connection subscribes to.
#[derive(Debug, Default)]
struct Subscriptions {
    slots: HashMap<PublicKey, Slot>,
    batches: Vec<Batch>,
}

impl Subscriptions {
    /// Brings the batches in line with `keys`; keys added are `known` as
    /// given. Marks the batches that changed.
    fn sync(&mut self, keys: &[PublicKey], known: impl Fn(&PublicKey) -> bool) {
        let wanted: HashSet<&PublicKey> = keys.iter().collect();
        let gone: Vec<PublicKey> = self
            .slots
            .keys()
            .filter(|k| !wanted.contains(k))
            .copied()
            .collect();
        for key in gone {
            if let Some(slot) = self.slots.remove(&key) {
                let batch = &mut self.batches[slot.batch];
                batch.keys.retain(|k| *k != key);
                batch.dirty = true;
            }
        }
        let mut open = self
            .batches
            .iter()
            .position(|b| b.keys.len() < KEYS_PER_SUBSCRIPTION);
        for key in keys {
            if self.slots.contains_key(key) {
                continue;
            }
            let index = match open.filter(|&i| self.batches[i].keys.len() < KEYS_PER_SUBSCRIPTION) {
                Some(i) => i,
                None => match self
                    .batches
                    .iter()
                    .position(|b| b.keys.len() < KEYS_PER_SUBSCRIPTION)
                {
                    Some(i) => i,
                    None => {
                        self.batches.push(Batch::default());
                        self.batches.len() - 1
                    }
                },
            };
            open = Some(index);
            let batch = &mut self.batches[index];
            batch.keys.push(*key);
            batch.dirty = true;
            self.slots.insert(
                *key,
                Slot {
                    batch: index,
                    known: known(key),
                },
            );
        }
    }

    /// The relay finished sending batch `index`'s stored events: its keys
    /// are watched from now on.
    fn end_of_stored(&mut self, index: usize) {
        let Some(batch) = self.batches.get_mut(index) else {
            return;
        };
        batch.eose = true;
        for key in &batch.keys {
            if let Some(slot) = self.slots.get_mut(key) {
                slot.known = true;
            }
        }
    }

    /// The keys `event`, served on batch `index`, is history for.
    fn history_for(&self, index: usize, event: &Event) -> Vec<PublicKey> {
        match self.batches.get(index) {
            Some(batch) if !batch.eose => event
                .p_tags()
                .filter(|key| {
                    self.slots
                        .get(key)
                        .is_some_and(|slot| slot.batch == index && !slot.known)
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// The two `since` values of a `REQ`, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Since {
    gift_wraps: u64,
    others: u64,
}

impl Since {
    /// At `now`, for a connection that last watched until `watched_until`.
    fn at(now: u64, watched_until: Option<u64>) -> Self {
        let window_start = now.saturating_sub(GIFT_WRAP_WINDOW.as_secs());
        let resume = watched_until.unwrap_or(now);
        Self {
            gift_wraps: window_start,
            others: resume
                .saturating_sub(RESUME_SLACK.as_secs())
                .max(window_start),
        }
    }
}

/// The `REQ` for one batch: the kinds asked for that `p`-tag its keys,
/// and the keys' mute lists (kind 10000, NIP-51); on an index relay, the
/// keys' own lists.
fn request(index: usize, batch: &Batch, config: &RelayConfig, since: Since) -> String {
    let p: Vec<String> = batch.keys.iter().map(PublicKey::to_hex).collect();
    if config.watch == Watch::OwnLists {
        // Replaceable: each relay holds the latest of each, whatever its date.
        let filter = json!({"kinds": OWN_LIST_KINDS, "authors": p});
        return json!(["REQ", subscription_id(index), filter]).to_string();
    }
    let kinds = &config.kinds;
    let others: Vec<u16> = kinds
        .iter()
        .copied()
        .filter(|k| *k != kind::GIFT_WRAP)
        .collect();
    let mut message = vec![json!("REQ"), json!(subscription_id(index))];
    if kinds.contains(&kind::GIFT_WRAP) && !batch.without_gift_wraps {
        message.push(json!({"kinds": [kind::GIFT_WRAP], "#p": p, "since": since.gift_wraps}));
    }
    if !others.is_empty() {
        message.push(json!({"kinds": others, "#p": p, "since": since.others}));
    }
    // The keys' own mute lists: replaceable, so each relay holds the
    // latest alone, whatever its date.
    message.push(json!({"kinds": [kind::MUTE_LIST], "authors": p}));
    serde_json::Value::Array(message).to_string()
}

fn subscription_id(index: usize) -> String {
    format!("{SUBSCRIPTION_PREFIX}{index}")
}

fn batch_index(subscription: &str) -> Option<usize> {
    subscription.strip_prefix(SUBSCRIPTION_PREFIX)?.parse().ok()
}

/// One message from the relay, as far as herald cares.
#[derive(Debug)]
enum RelayMessage {
    Event {
        batch: usize,
        event: Box<Event>,
    },
    EndOfStored(usize),
    Closed {
        batch: usize,
        reason: String,
    },
    Notice(String),
    /// A NIP-42 challenge.
    Auth(String),
    /// The relay's verdict on an event herald sent (its `AUTH`).
    Ok {
        event_id: Option<EventId>,
        accepted: bool,
        reason: String,
    },
    /// Anything else herald did not ask for.
    Other,
}

/// Reads one relay message; `Err` says why it was refused.
fn read_message(text: &str) -> Result<RelayMessage, String> {
    let parts: Vec<&RawValue> =
        serde_json::from_str(text).map_err(|e| format!("not a relay message: {e}"))?;
    let string = |i: usize| -> Option<String> { serde_json::from_str(parts.get(i)?.get()).ok() };
    let label = string(0).ok_or("a relay message starts with its type")?;
    let batch = || {
        string(1)
            .as_deref()
            .and_then(batch_index)
            .ok_or("a subscription herald did not open")
    };
    match label.as_str() {
        "EVENT" => {
            let batch = batch()?;
            let raw = parts.get(2).ok_or("EVENT without an event")?;
            let event = Event::from_json(raw.get()).map_err(|e| e.to_string())?;
            Ok(RelayMessage::Event {
                batch,
                event: Box::new(event),
            })
        }
        "EOSE" => Ok(RelayMessage::EndOfStored(batch()?)),
        "CLOSED" => Ok(RelayMessage::Closed {
            batch: batch()?,
            reason: preview(&string(2).unwrap_or_default()),
        }),
        "NOTICE" => Ok(RelayMessage::Notice(preview(
            &string(1).unwrap_or_default(),
        ))),
        "AUTH" => Ok(RelayMessage::Auth(
            string(1).ok_or("AUTH without a challenge")?,
        )),
        "OK" => Ok(RelayMessage::Ok {
            event_id: string(1).as_deref().and_then(EventId::parse_hex),
            accepted: parts.get(2).is_some_and(|raw| raw.get() == "true"),
            reason: preview(&string(3).unwrap_or_default()),
        }),
        _ => Ok(RelayMessage::Other),
    }
}

fn preview(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(REASON_PREVIEW_CHARS)
        .collect()
}

/// How one connection ended.
enum SessionEnd {
    Refused(String),
    Dropped { lasted: Duration, reason: String },
    SinkClosed,
}

/// One relay, watched until told to stop; see the module documentation.
pub struct RelayConnection {
    config: RelayConfig,
    relay: Arc<str>,
    index: Arc<RecipientIndex>,
    subscriptions: Subscriptions,
    /// Keys watched before this run: their stored events are news.
    known_at_start: HashSet<PublicKey>,
    /// When herald last stopped watching this relay (Unix seconds).
    watched_until: Option<u64>,
    status: StatusHandle,
}

impl RelayConnection {
    /// A connection for `config`. `known_at_start` are the keys herald
    /// watched before it last stopped, at `watched_until`.
    pub fn new(
        config: RelayConfig,
        index: Arc<RecipientIndex>,
        known_at_start: HashSet<PublicKey>,
        watched_until: Option<u64>,
    ) -> Self {
        let relay = Arc::from(config.url.as_str());
        Self {
            config,
            relay,
            index,
            subscriptions: Subscriptions::default(),
            known_at_start,
            watched_until,
            status: StatusHandle::default(),
        }
    }

    pub fn status(&self) -> StatusHandle {
        self.status.clone()
    }

    /// Watches the relay until `stop` turns true or `sink`'s receiver is gone.
    pub async fn run(mut self, sink: mpsc::Sender<Arrival>, mut stop: watch::Receiver<bool>) {
        herald_http::install_crypto_provider();
        let mut failures = 0u32;
        loop {
            let end = tokio::select! {
                end = self.session(&sink) => end,
                _ = stop.wait_for(|s| *s) => break,
            };
            let relay = Arc::clone(&self.relay);
            let reason = match end {
                SessionEnd::SinkClosed => break,
                SessionEnd::Refused(reason) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%relay, %reason, failures, "cannot connect to the relay");
                    reason
                }
                SessionEnd::Dropped { lasted, reason } => {
                    failures = self.config.reconnect.failures_after(failures, lasted);
                    tracing::warn!(%relay, %reason, ?lasted, "relay connection ended");
                    reason
                }
            };
            self.status.update(|s| {
                s.connected = false;
                s.disconnects += 1;
                s.last_error = Some(reason);
            });
            let delay = self.config.reconnect.delay(failures);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        self.status.update(|s| s.connected = false);
    }

    async fn session(&mut self, sink: &mpsc::Sender<Arrival>) -> SessionEnd {
        let mut ws = match self.connect().await {
            Ok(ws) => ws,
            Err(reason) => return SessionEnd::Refused(reason),
        };
        let connected_at = Instant::now();
        tracing::info!(relay = %self.relay, "connected to the relay");
        self.status.update(|s| {
            s.connected = true;
            s.authenticated = false;
        });
        let mut changes = self.index.changes();
        changes.mark_unchanged();
        self.sync();
        // A new connection has no subscription: ask for every batch, and
        // close none.
        for batch in &mut self.subscriptions.batches {
            batch.dirty = !batch.keys.is_empty();
        }
        let since = Since::at(now_secs(), self.watched_until);
        let reason = match self.subscribe(&mut ws, since).await {
            Err(reason) => reason,
            Ok(()) => match self.read(&mut ws, sink, &mut changes, since).await {
                Some(reason) => reason,
                None => return SessionEnd::SinkClosed,
            },
        };
        // Everything up to now was seen live; the next connection resumes here.
        self.watched_until = Some(now_secs());
        SessionEnd::Dropped {
            lasted: connected_at.elapsed(),
            reason,
        }
    }

    async fn connect(&self) -> Result<WebSocket, String> {
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_MESSAGE_BYTES));
        let url = self.config.url.as_str();
        let connect = async {
            if self.config.public_only {
                let tcp = public_tcp(&self.config.url).await?;
                client_async_tls_with_config(url, tcp, Some(ws_config), None).await
            } else {
                connect_async_with_config(url, Some(ws_config), false).await
            }
            .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Err(_) => Err(format!("no connection within {CONNECT_TIMEOUT:?}")),
            Ok(Err(e)) => Err(e),
            Ok(Ok((ws, _response))) => Ok(ws),
        }
    }

    /// The batches as the index says now; keys new to this connection
    /// are known if herald watched them before it started.
    fn sync(&mut self) {
        let keys = self.index.keys();
        let known = &self.known_at_start;
        self.subscriptions.sync(&keys, |k| known.contains(k));
    }

    /// Sends `REQ` (or `CLOSE`, for an emptied batch) for every changed batch.
    async fn subscribe(&mut self, ws: &mut WebSocket, since: Since) -> Result<(), String> {
        let mut open = 0;
        for (index, batch) in self.subscriptions.batches.iter_mut().enumerate() {
            if !batch.keys.is_empty() {
                open += 1;
            }
            if !std::mem::take(&mut batch.dirty) {
                continue;
            }
            batch.eose = false;
            let message = if batch.keys.is_empty() {
                json!(["CLOSE", subscription_id(index)]).to_string()
            } else {
                request(index, batch, &self.config, since)
            };
            ws.send(Message::text(message))
                .await
                .map_err(|e| format!("cannot subscribe: {e}"))?;
        }
        self.status.update(|s| s.subscriptions = open);
        Ok(())
    }

    /// Reads until the connection ends (`Some(reason)`) or the sink's
    /// receiver is gone (`None`). `since` is what the session first asked
    /// for, asked again for subscriptions refused until herald authenticated.
    async fn read(
        &mut self,
        ws: &mut WebSocket,
        sink: &mpsc::Sender<Arrival>,
        changes: &mut watch::Receiver<u64>,
        since: Since,
    ) -> Option<String> {
        // The id of the `AUTH` event awaiting the relay's `OK`.
        let mut auth_sent: Option<EventId> = None;
        let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let mut resubscribe_at: Option<Instant> = None;
        let mut refresh_at = self.config.refresh.map(|every| Instant::now() + every);
        loop {
            let message = tokio::select! {
                message = ws.next() => message,
                _ = ping.tick() => {
                    if let Err(e) = ws.send(Message::Ping(Default::default())).await {
                        return Some(format!("cannot ping: {e}"));
                    }
                    continue;
                }
                () = tokio::time::sleep_until(last_heard + IDLE_TIMEOUT) => {
                    return Some(format!("nothing received for {IDLE_TIMEOUT:?}"));
                }
                Ok(()) = changes.changed(), if resubscribe_at.is_none() => {
                    resubscribe_at = Some(Instant::now() + RESUBSCRIBE_DELAY);
                    continue;
                }
                () = sleep_until_some(refresh_at) => {
                    refresh_at = self.config.refresh.map(|every| Instant::now() + every);
                    for batch in &mut self.subscriptions.batches {
                        batch.dirty = !batch.keys.is_empty();
                    }
                    let since = Since::at(now_secs(), Some(now_secs()));
                    if let Err(reason) = self.subscribe(ws, since).await {
                        return Some(reason);
                    }
                    continue;
                }
                () = sleep_until_some(resubscribe_at) => {
                    resubscribe_at = None;
                    changes.mark_unchanged();
                    self.sync();
                    // Live until now: the changed batches resume from here.
                    let since = Since::at(now_secs(), Some(now_secs()));
                    if let Err(reason) = self.subscribe(ws, since).await {
                        return Some(reason);
                    }
                    continue;
                }
            };
            last_heard = Instant::now();
            let text = match message {
                None => return Some("connection closed".into()),
                Some(Err(e)) => return Some(e.to_string()),
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    return Some(match frame {
                        Some(f) => {
                            format!("closed by the relay: {} {}", f.code, preview(&f.reason))
                        }
                        None => "closed by the relay".into(),
                    });
                }
                Some(Ok(_)) => continue,
            };
            match read_message(&text) {
                Ok(RelayMessage::Event { batch, event }) => {
                    if !self.config.asked_for(event.kind()) {
                        self.refused("an event of a kind herald did not ask for");
                        continue;
                    }
                    let history_for = self.subscriptions.history_for(batch, &event);
                    let arrival = Arrival {
                        event: *event,
                        relay: Arc::clone(&self.relay),
                        history_for,
                    };
                    sink.send(arrival).await.ok()?;
                    self.status.update(|s| s.events += 1);
                }
                Ok(RelayMessage::EndOfStored(batch)) => self.subscriptions.end_of_stored(batch),
                Ok(RelayMessage::Closed { batch, reason }) => {
                    self.status.update(|s| s.closed += 1);
                    if self.closed(batch, &reason)
                        && let Err(reason) = self.subscribe(ws, since).await
                    {
                        return Some(reason);
                    }
                }
                Ok(RelayMessage::Notice(notice)) => {
                    tracing::info!(relay = %self.relay, %notice, "relay notice");
                    self.status.update(|s| s.notices += 1);
                }
                Ok(RelayMessage::Auth(challenge)) => match &self.config.auth_key {
                    Some(key) => {
                        let event =
                            nip42::auth_event(key, &self.config.url, &challenge, now_secs());
                        auth_sent = Some(*event.id());
                        let message = json!(["AUTH", event.to_json()]).to_string();
                        if let Err(e) = ws.send(Message::text(message)).await {
                            return Some(format!("cannot authenticate: {e}"));
                        }
                    }
                    None => {
                        tracing::debug!(relay = %self.relay, "the relay offers NIP-42 AUTH; no nostr.key_file to answer with");
                    }
                },
                Ok(RelayMessage::Ok {
                    event_id,
                    accepted,
                    reason,
                }) if event_id.is_some() && event_id == auth_sent => {
                    auth_sent = None;
                    if !accepted {
                        tracing::warn!(relay = %self.relay, %reason, "the relay refused herald's NIP-42 AUTH");
                        continue;
                    }
                    tracing::info!(relay = %self.relay, "authenticated to the relay (NIP-42)");
                    self.status.update(|s| s.authenticated = true);
                    for batch in &mut self.subscriptions.batches {
                        if std::mem::take(&mut batch.awaiting_auth) && !batch.keys.is_empty() {
                            batch.dirty = true;
                        }
                    }
                    if let Err(reason) = self.subscribe(ws, since).await {
                        return Some(reason);
                    }
                }
                Ok(RelayMessage::Ok { .. } | RelayMessage::Other) => {}
                Err(reason) => self.refused(&reason),
            }
        }
    }

    /// Takes note of the relay closing batch `index`; `true` if it is to
    /// be asked for again at once: without gift wraps, when the relay
    /// restricts them to their recipient (NIP-42's `restricted:`).
    /// `auth-required:` ones wait for the relay to accept herald's `AUTH`.
    fn closed(&mut self, index: usize, reason: &str) -> bool {
        let asks_gift_wraps =
            self.config.watch == Watch::Mentions && self.config.kinds.contains(&kind::GIFT_WRAP);
        let for_auth = reason.starts_with(AUTH_REQUIRED_PREFIX);
        let Some(batch) = self.subscriptions.batches.get_mut(index) else {
            return false;
        };
        batch.awaiting_auth = for_auth;
        if reason.starts_with(RESTRICTED_PREFIX) && asks_gift_wraps && !batch.without_gift_wraps {
            tracing::warn!(relay = %self.relay, batch = index, %reason, "the relay restricts gift wraps to their recipient; watching it for the other kinds");
            batch.without_gift_wraps = true;
            batch.dirty = !batch.keys.is_empty();
            self.status.update(|s| s.gift_wraps_restricted = true);
            return batch.dirty;
        }
        if for_auth && self.config.auth_key.is_none() {
            tracing::warn!(relay = %self.relay, batch = index, %reason, "the relay requires NIP-42 AUTH; set nostr.key_file to authenticate");
        } else {
            tracing::warn!(relay = %self.relay, batch = index, %reason, "the relay closed a subscription");
        }
        false
    }

    fn refused(&self, reason: &str) {
        tracing::debug!(relay = %self.relay, %reason, "refused a relay message");
        self.status.update(|s| s.refused += 1);
    }
}

/// A TCP connection to `url`'s host at one of its public addresses: the
/// name is resolved here and only addresses on the public Internet are
/// tried, so a relay list naming a host that resolves into the operator's
/// network (at once, or later by DNS rebinding) gets no connection.
async fn public_tcp(url: &Url) -> Result<TcpStream, String> {
    let port = url
        .port_or_known_default()
        .ok_or("a relay URL without a port")?;
    let host = match url.host() {
        Some(Host::Domain(name)) => name.to_owned(),
        Some(Host::Ipv4(ip)) => ip.to_string(),
        Some(Host::Ipv6(ip)) => ip.to_string(),
        None => return Err("a relay URL without a host".into()),
    };
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .filter(|a| is_public(a.ip()))
        .collect();
    let mut last = format!("{host} resolves to no public address");
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::test_support::TestKey;

    fn key(n: usize) -> PublicKey {
        PublicKey::parse_hex(&format!("{n:064x}")).unwrap()
    }

    fn batch(keys: &[PublicKey]) -> Batch {
        Batch {
            keys: keys.to_vec(),
            ..Batch::default()
        }
    }

    fn config(kinds: &[u16]) -> RelayConfig {
        RelayConfig {
            url: Url::parse("wss://relay.example").unwrap(),
            kinds: kinds.to_vec(),
            reconnect: ReconnectPolicy::default(),
            auth_key: None,
            watch: Watch::Mentions,
            refresh: None,
            public_only: false,
        }
    }

    #[tokio::test]
    async fn a_public_only_connection_never_reaches_a_private_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        for url in [
            format!("ws://127.0.0.1:{port}"),
            format!("ws://localhost:{port}"),
            format!("ws://[::ffff:127.0.0.1]:{port}"),
        ] {
            let url = Url::parse(&url).unwrap();
            let refused = public_tcp(&url).await.unwrap_err();
            assert!(refused.contains("no public address"), "{url}: {refused}");
        }
        // The same address is reachable when the operator configured it.
        assert!(TcpStream::connect(("127.0.0.1", port)).await.is_ok());
    }

    #[test]
    fn gift_wraps_are_asked_for_two_days_back_the_rest_from_where_herald_stopped() {
        let now = 1_780_000_000;
        let fresh = Since::at(now, None);
        assert_eq!(fresh.gift_wraps, now - 172_800);
        assert_eq!(fresh.others, now - 300);
        let after_an_hour_away = Since::at(now, Some(now - 3_600));
        assert_eq!(after_an_hour_away.others, now - 3_600 - 300);
        let after_a_week_away = Since::at(now, Some(now - 7 * 86_400));
        assert_eq!(after_a_week_away.others, now - 172_800);
    }

    #[test]
    fn a_request_asks_for_gift_wraps_the_other_kinds_and_the_keys_mute_lists() {
        let since = Since {
            gift_wraps: 10,
            others: 20,
        };
        let req: Value = serde_json::from_str(&request(
            3,
            &batch(&[key(1)]),
            &config(&[4, 1059, 1]),
            since,
        ))
        .unwrap();
        let p = json!([format!("{:064x}", 1)]);
        assert_eq!(
            req,
            json!(["REQ", "herald-3",
                {"kinds": [1059], "#p": p, "since": 10},
                {"kinds": [4, 1], "#p": p, "since": 20},
                {"kinds": [10000], "authors": p}])
        );
        let only_notes: Value =
            serde_json::from_str(&request(0, &batch(&[key(1)]), &config(&[1]), since)).unwrap();
        assert_eq!(only_notes.as_array().unwrap().len(), 4);
        let restricted = Batch {
            without_gift_wraps: true,
            ..batch(&[key(1)])
        };
        let req: Value =
            serde_json::from_str(&request(3, &restricted, &config(&[4, 1059, 1]), since)).unwrap();
        assert_eq!(
            req,
            json!(["REQ", "herald-3",
                {"kinds": [4, 1], "#p": p, "since": 20},
                {"kinds": [10000], "authors": p}]),
            "asked again without the gift wraps a relay restricts"
        );
    }

    #[test]
    fn an_index_relay_is_asked_for_the_keys_own_lists_and_serves_nothing_else() {
        let since = Since::at(1_780_000_000, None);
        let index = RelayConfig {
            watch: Watch::OwnLists,
            ..config(&[4, 1059])
        };
        let req: Value =
            serde_json::from_str(&request(0, &batch(&[key(1)]), &index, since)).unwrap();
        let p = json!([format!("{:064x}", 1)]);
        assert_eq!(
            req,
            json!(["REQ", "herald-0", {"kinds": [10050, 10002, 10000], "authors": p}])
        );
        assert!(index.asked_for(kind::DM_RELAY_LIST) && index.asked_for(kind::MUTE_LIST));
        assert!(
            !index.asked_for(kind::GIFT_WRAP),
            "no events on an index relay"
        );
        let watched = config(&[4, 1059]);
        assert!(watched.asked_for(kind::GIFT_WRAP) && watched.asked_for(kind::MUTE_LIST));
        assert!(
            !watched.asked_for(kind::RELAY_LIST),
            "lists come from index relays"
        );
    }

    #[test]
    fn keys_fill_batches_to_the_relay_friendly_size_and_only_changed_ones_are_asked_again() {
        let mut subs = Subscriptions::default();
        let keys: Vec<_> = (0..KEYS_PER_SUBSCRIPTION + 10).map(key).collect();
        subs.sync(&keys, |_| false);
        assert_eq!(subs.batches.len(), 2);
        assert_eq!(subs.batches[0].keys.len(), KEYS_PER_SUBSCRIPTION);
        for batch in &mut subs.batches {
            batch.dirty = false;
        }
        // One key leaves the first batch, two arrive: the freed place is reused.
        let mut changed: Vec<_> = keys[1..].to_vec();
        changed.push(key(9_000));
        changed.push(key(9_001));
        subs.sync(&changed, |_| false);
        assert!(subs.batches[0].dirty && subs.batches[1].dirty);
        assert_eq!(subs.batches[0].keys.len(), KEYS_PER_SUBSCRIPTION);
        assert_eq!(subs.batches[1].keys.len(), 11);
        for batch in &mut subs.batches {
            batch.dirty = false;
        }
        let more: Vec<_> = changed.iter().copied().chain([key(9_002)]).collect();
        subs.sync(&more, |_| false);
        assert!(!subs.batches[0].dirty && subs.batches[1].dirty);
    }

    #[test]
    fn stored_events_are_history_only_for_keys_new_to_the_connection_until_eose() {
        let (alice, bob, carol) = (
            TestKey::new("alice"),
            TestKey::new("bob"),
            TestKey::new("carol"),
        );
        let mut subs = Subscriptions::default();
        subs.sync(&[bob.public_key()], |_| true);
        subs.sync(&[bob.public_key(), carol.public_key()], |_| false);
        let tags: &[&[&str]] = &[&["p", &bob.pubkey_hex()], &["p", &carol.pubkey_hex()]];
        let json = alice.sign(1_780_000_000, 4, tags, "x").to_string();
        let event = Event::from_json(&json).unwrap();
        assert_eq!(subs.history_for(0, &event), [carol.public_key()]);
        subs.end_of_stored(0);
        assert!(subs.history_for(0, &event).is_empty());
    }

    #[test]
    fn reads_the_relay_messages_herald_acts_on() {
        let alice = TestKey::new("alice");
        let event = alice.sign(1_780_000_000, 1, &[], "hi");
        let text = json!(["EVENT", "herald-2", event]).to_string();
        let Ok(RelayMessage::Event { batch, event: e }) = read_message(&text) else {
            panic!("not an event");
        };
        assert_eq!((batch, e.kind()), (2, 1));
        assert!(matches!(
            read_message(r#"["EOSE","herald-0"]"#),
            Ok(RelayMessage::EndOfStored(0))
        ));
        assert!(matches!(
            read_message(r#"["CLOSED","herald-1","auth-required: sign in"]"#),
            Ok(RelayMessage::Closed { batch: 1, .. })
        ));
        assert!(matches!(
            read_message(r#"["NOTICE","slow down"]"#),
            Ok(RelayMessage::Notice(n)) if n == "slow down"
        ));
        assert!(matches!(
            read_message(r#"["AUTH","challenge"]"#),
            Ok(RelayMessage::Auth(c)) if c == "challenge"
        ));
        let id = "ab".repeat(32);
        let ok = json!(["OK", id, true, ""]).to_string();
        assert!(matches!(
            read_message(&ok),
            Ok(RelayMessage::Ok { event_id: Some(e), accepted: true, .. }) if e.to_hex() == id
        ));
        let refused = json!(["OK", id, false, "restricted: not on the list"]).to_string();
        assert!(matches!(
            read_message(&refused),
            Ok(RelayMessage::Ok { accepted: false, reason, .. }) if reason.starts_with("restricted:")
        ));
    }

    #[test]
    fn refuses_forged_events_and_subscriptions_it_never_opened() {
        let alice = TestKey::new("alice");
        let mut forged = alice.sign(1_780_000_000, 1, &[], "hi");
        forged["content"] = json!("changed");
        let text = json!(["EVENT", "herald-0", forged]).to_string();
        assert!(read_message(&text).is_err());
        let genuine = alice.sign(1_780_000_000, 1, &[], "hi");
        let text = json!(["EVENT", "someone-else", genuine]).to_string();
        assert!(read_message(&text).is_err());
        assert!(read_message("not json").is_err());
        assert!(read_message("[]").is_err());
    }
}
