//! The Jetstream source: one WebSocket to a Jetstream server, read in order,
//! every event handed on with its cursor (atproto.md §7, §8).
//!
//! - **Raw events out.** The source decompresses a frame and reads its cursor,
//!   nothing more: it yields the event's JSON bytes ([`RawEvent`]). Parsing
//!   belongs to the rules side (`jetstream_event`), so the reader stays cheap
//!   and a record it never looks at cannot stall it.
//! - **Back-pressure, never loss.** Events go to a bounded channel. When it is
//!   full the source stops reading the socket and TCP pushes back on the
//!   server; no event is dropped for lack of room. (A v2 server may drop a
//!   reader that stays too slow, `ConsumerTooSlow`; the source then resumes
//!   from its cursor like after any other drop.)
//! - **One cursor for both wires: microseconds.** v1 events carry `time_us`;
//!   v2 events carry `witnessedAt` (older servers: `time`; RFC 3339,
//!   microsecond precision) beside a `seq`.
//!   A v2 `seq` is one server's own counter, so it means nothing to the next
//!   URL of the list, and a stored `seq` older than the server's retention is
//!   refused (`CursorTooOld`), where a timestamp is clamped to the oldest
//!   event kept. Both servers read a cursor of 10¹⁵ or more as a timestamp,
//!   so the source always resumes by time, on either wire and any server.
//! - **Resume a little early.** Whether the event at the cursor comes again is
//!   unconfirmed, and events arrive out of time order (the golden fixture's
//!   are up to 1.5 s apart), so the source resumes [`CURSOR_REWIND`] before
//!   the newest time it handed on. The duplicates this brings are absorbed by
//!   the dedupe keys downstream; a gap would be a missed push.
//! - **Reconnects.** Exponential backoff with equal jitter (half fixed, half
//!   random, as for deliveries), so a Jetstream restart does not bring every
//!   client back at the same instant. The backoff resets once a connection
//!   has stayed up for `healthy_after`, unlike the Go gateway's, which never
//!   resets (§14). Every reconnect goes to the next URL of the list, so one
//!   dead server never takes all the retries.
//! - **Hostile frames.** Frames are capped before and after decompression
//!   (`jetstream_frame`), and the server is asked to skip larger events
//!   (`maxMessageSizeBytes`). A refused frame is counted and skipped; the
//!   connection stays up.
//! - **Liveness.** The source pings every [`PING_INTERVAL`] and drops a
//!   connection that carried nothing, not even a pong, for [`IDLE_TIMEOUT`]:
//!   a half-open TCP connection would otherwise pass for a quiet network.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
pub use herald_core::retry::ReconnectPolicy;
use herald_core::time::now_ms;
use herald_http::http_client::CONNECT_TIMEOUT;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};
use url::Url;

use crate::jetstream_frame::{Dictionary, FrameDecoder, FrameError, FrameLimits};

/// How far before the newest cursor handed on a reconnect resumes: "a few
/// seconds" (atproto.md §7), above the 1.5 s disorder seen in real events.
pub const CURSOR_REWIND: Duration = Duration::from_secs(5);

/// Interval of the source's own pings. Well inside any proxy's idle timeout
/// (commonly 60 s), and the pongs prove the server alive on a quiet stream.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);

/// A connection that carried nothing for this long is dropped: three pings
/// went unanswered, and the network never goes quiet for that long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Jetstream refuses more collections than this in one subscription
/// (atproto.md §7, §8).
pub const MAX_COLLECTIONS: usize = 100;

/// The window over which `events_per_second` is measured: long enough to
/// smooth the network's bursts, short enough to show a stall within seconds.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// Server messages quoted in logs and status are cut to this many characters.
const REASON_PREVIEW_CHARS: usize = 200;

const USER_AGENT: &str = concat!("herald/", env!("CARGO_PKG_VERSION"));

type WebSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Which Jetstream wire to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JetstreamApi {
    /// `/subscribe`: the original wire, served by v1 and v2 servers alike.
    V1,
    /// `/xrpc/network.bsky.jetstream.subscribeEvents`.
    V2,
}

impl JetstreamApi {
    /// The endpoint's path, appended to each configured base URL.
    pub fn path(self) -> &'static str {
        match self {
            JetstreamApi::V1 => "/subscribe",
            JetstreamApi::V2 => "/xrpc/network.bsky.jetstream.subscribeEvents",
        }
    }

    pub fn dictionary(self) -> Dictionary {
        match self {
            JetstreamApi::V1 => Dictionary::V1,
            JetstreamApi::V2 => Dictionary::V2,
        }
    }

    /// v2 rejects the v1 parameter names (atproto.md §8).
    fn collections_parameter(self) -> &'static str {
        match self {
            JetstreamApi::V1 => "wantedCollections",
            JetstreamApi::V2 => "collections",
        }
    }
}

/// What the source connects to and asks for.
#[derive(Debug, Clone)]
pub struct JetstreamConfig {
    /// Base URLs (`wss://host`, optionally with a path prefix or query) to
    /// fail over between, in order; the endpoint's path is appended.
    pub urls: Vec<Url>,
    pub api: JetstreamApi,
    /// Collection NSIDs (or `prefix.*`) to receive commits of; identity and
    /// account events come regardless. Empty: every collection.
    pub collections: Vec<String>,
    /// Ask for dictionary-compressed frames (about 2.3 times less traffic).
    pub compress: bool,
    pub limits: FrameLimits,
    pub reconnect: ReconnectPolicy,
}

impl JetstreamConfig {
    /// Compressed, default limits and reconnect policy.
    pub fn new(urls: Vec<Url>, api: JetstreamApi, collections: Vec<String>) -> Self {
        Self {
            urls,
            api,
            collections,
            compress: true,
            limits: FrameLimits::default(),
            reconnect: ReconnectPolicy::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JetstreamError {
    #[error("no Jetstream URL configured")]
    NoUrls,
    #[error("Jetstream URL {0} is not ws:// or wss://")]
    NotWebSocket(Url),
    #[error("{0} collections; Jetstream accepts at most {MAX_COLLECTIONS}")]
    TooManyCollections(usize),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("the receiver of Jetstream events is gone")]
    SinkClosed,
}

/// One event as the server sent it, decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    /// When Jetstream saw the event, in microseconds since the Unix epoch:
    /// the position to store and resume from.
    pub cursor: u64,
    /// The event's JSON: a v1 event as is; of a v2 frame, its `payload`.
    pub json: Vec<u8>,
}

impl RawEvent {
    /// A decompressed v1 event with its `time_us` as the cursor, the only
    /// field the source reads; `Err` says why it is not a v1 event.
    pub fn from_v1(json: Vec<u8>) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Envelope {
            time_us: u64,
        }
        let envelope: Envelope =
            serde_json::from_slice(&json).map_err(|e| format!("not a v1 event: {e}"))?;
        Ok(Self {
            cursor: envelope.time_us,
            json,
        })
    }
}

/// What `/health` shows about the source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JetstreamStatus {
    /// The base URL of the open connection; `None` while disconnected.
    pub connected_url: Option<String>,
    /// The newest cursor handed on (the start cursor until then).
    pub cursor: Option<u64>,
    /// How far the newest event handed on is behind now.
    pub lag: Option<Duration>,
    pub events_received: u64,
    /// Over the last completed measuring window.
    pub events_per_second: f64,
    /// Frames refused: over a size cap, undecodable, or not an event.
    pub frames_refused: u64,
    /// Connections that failed or ended.
    pub disconnects: u64,
    /// Why the last connection failed or ended.
    pub last_error: Option<String>,
}

/// A shared view of the source's status; cheap to clone and to read.
#[derive(Debug, Clone, Default)]
pub struct StatusHandle(Arc<Mutex<StatusState>>);

#[derive(Debug, Default)]
struct StatusState {
    status: JetstreamStatus,
    window_started: Option<Instant>,
    window_events: u64,
}

impl StatusState {
    /// Closes the measuring window once it is complete.
    fn roll_window(&mut self, now: Instant) {
        let started = *self.window_started.get_or_insert(now);
        let elapsed = now - started;
        if elapsed >= RATE_WINDOW {
            self.status.events_per_second = self.window_events as f64 / elapsed.as_secs_f64();
            self.window_started = Some(now);
            self.window_events = 0;
        }
    }
}

impl StatusHandle {
    pub fn snapshot(&self) -> JetstreamStatus {
        let mut state = self.lock();
        state.roll_window(Instant::now());
        let mut status = state.status.clone();
        let now_us = u64::try_from(now_ms()).unwrap_or(0).saturating_mul(1000);
        status.lag = status
            .cursor
            .map(|cursor| Duration::from_micros(now_us.saturating_sub(cursor)));
        status
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StatusState> {
        // A panic while holding the lock leaves plain counters behind; still
        // worth showing.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn update(&self, change: impl FnOnce(&mut JetstreamStatus)) {
        change(&mut self.lock().status);
    }

    fn event(&self, cursor: u64) {
        let mut state = self.lock();
        state.status.events_received += 1;
        state.status.cursor = Some(cursor);
        state.window_events += 1;
        state.roll_window(Instant::now());
    }

    fn disconnected(&self, reason: &str) {
        self.update(|status| {
            status.connected_url = None;
            status.disconnects += 1;
            status.last_error = Some(reason.to_owned());
        });
    }
}

/// What one frame turned out to be.
#[derive(Debug, PartialEq, Eq)]
enum Received {
    Event(RawEvent),
    /// A v2 `#info` advisory (such as `OutdatedCursor`): logged, not an event.
    Info(String),
    /// A v2 error frame; the server closes the connection after it.
    ServerError(String),
    /// Ping, pong: proof of life only.
    Control,
    Closed(String),
}

/// How one connection ended.
enum SessionEnd {
    /// It never opened.
    Refused(String),
    /// It opened, and later ended.
    Dropped {
        lasted: Duration,
        reason: String,
    },
    SinkClosed,
}

/// Reads one Jetstream feed; see the module documentation.
pub struct JetstreamSource {
    config: JetstreamConfig,
    /// The newest cursor handed on, or the one to start from.
    cursor: Option<u64>,
    decoder: FrameDecoder,
    status: StatusHandle,
}

impl JetstreamSource {
    /// A source that will start from `cursor` (microseconds, as stored), or
    /// at the live tip without one.
    pub fn new(config: JetstreamConfig, cursor: Option<u64>) -> Result<Self, JetstreamError> {
        if config.urls.is_empty() {
            return Err(JetstreamError::NoUrls);
        }
        if let Some(url) = config
            .urls
            .iter()
            .find(|url| !matches!(url.scheme(), "ws" | "wss"))
        {
            return Err(JetstreamError::NotWebSocket(url.clone()));
        }
        if config.collections.len() > MAX_COLLECTIONS {
            return Err(JetstreamError::TooManyCollections(config.collections.len()));
        }
        let decoder = FrameDecoder::new(config.api.dictionary(), config.limits)?;
        let status = StatusHandle::default();
        status.update(|status| status.cursor = cursor);
        Ok(Self {
            config,
            cursor,
            decoder,
            status,
        })
    }

    pub fn status(&self) -> StatusHandle {
        self.status.clone()
    }

    /// Reads until `stop` turns true (or its sender is dropped), handing
    /// every event to `sink`. Ends with an error only when the sink's
    /// receiver is gone.
    pub async fn run(
        mut self,
        sink: mpsc::Sender<RawEvent>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), JetstreamError> {
        herald_http::install_crypto_provider();
        let mut failures = 0u32;
        let mut url_index = 0usize;
        loop {
            let end = tokio::select! {
                end = self.session(url_index, &sink) => end,
                _ = stop.wait_for(|stopped| *stopped) => break,
            };
            let url = &self.config.urls[url_index];
            match end {
                SessionEnd::SinkClosed => {
                    self.status.disconnected("the receiver of events is gone");
                    return Err(JetstreamError::SinkClosed);
                }
                SessionEnd::Refused(reason) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%url, %reason, failures, "cannot connect to Jetstream");
                    self.status.disconnected(&reason);
                }
                SessionEnd::Dropped { lasted, reason } => {
                    failures = self.config.reconnect.failures_after(failures, lasted);
                    tracing::warn!(%url, %reason, ?lasted, "Jetstream connection ended");
                    self.status.disconnected(&reason);
                }
            }
            url_index = (url_index + 1) % self.config.urls.len();
            let delay = self.config.reconnect.delay(failures);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(|stopped| *stopped) => break,
            }
        }
        self.status.update(|status| status.connected_url = None);
        Ok(())
    }

    /// One connection, from the handshake until it ends.
    async fn session(&mut self, url_index: usize, sink: &mpsc::Sender<RawEvent>) -> SessionEnd {
        let base = &self.config.urls[url_index];
        let url = subscribe_url(&self.config, base, self.resume_cursor());
        let mut ws = match self.connect(&url).await {
            Ok(ws) => ws,
            Err(reason) => return SessionEnd::Refused(reason),
        };
        let connected_at = Instant::now();
        tracing::info!(url = %base, cursor = ?self.resume_cursor(), "connected to Jetstream");
        let base = base.to_string();
        self.status
            .update(|status| status.connected_url = Some(base));
        match self.read(&mut ws, sink).await {
            Some(reason) => SessionEnd::Dropped {
                lasted: connected_at.elapsed(),
                reason,
            },
            None => SessionEnd::SinkClosed,
        }
    }

    /// Where the next connection starts: a little before the newest cursor.
    fn resume_cursor(&self) -> Option<u64> {
        let rewind = u64::try_from(CURSOR_REWIND.as_micros()).unwrap_or(u64::MAX);
        self.cursor.map(|cursor| cursor.saturating_sub(rewind))
    }

    async fn connect(&self, url: &Url) -> Result<WebSocket, String> {
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| e.to_string())?;
        request
            .headers_mut()
            .insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        let limits = self.config.limits;
        // Text frames are uncompressed events, binary frames compressed ones:
        // the socket admits the larger of the two caps, and the source holds
        // each kind to its own, so an oversized frame is skipped rather than
        // ending the connection.
        let cap = limits
            .max_compressed_bytes
            .max(limits.max_decompressed_bytes);
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(cap))
            .max_frame_size(Some(cap));
        let connect = connect_async_with_config(request, Some(ws_config), true);
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Err(_) => Err(format!("no connection within {CONNECT_TIMEOUT:?}")),
            Ok(Err(e)) => Err(describe_connect_error(e)),
            Ok(Ok((ws, _response))) => Ok(ws),
        }
    }

    /// Reads frames until the connection ends (`Some(reason)`) or the sink's
    /// receiver is gone (`None`).
    async fn read(&mut self, ws: &mut WebSocket, sink: &mpsc::Sender<RawEvent>) -> Option<String> {
        let start = Instant::now() + PING_INTERVAL;
        let mut ping = tokio::time::interval_at(start, PING_INTERVAL);
        // After a long wait on a full sink, one ping is enough, not a burst.
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refused = 0u64;
        let mut last_heard = Instant::now();
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
            };
            let message = match message {
                None => return Some("connection closed".into()),
                Some(Err(e)) => return Some(e.to_string()),
                Some(Ok(message)) => message,
            };
            match self.receive(message) {
                Ok(Received::Event(event)) => {
                    let cursor = event.cursor;
                    sink.send(event).await.ok()?;
                    // Events arrive out of time order: the resume position is
                    // the newest seen, never an older one.
                    let newest = self.cursor.map_or(cursor, |c| c.max(cursor));
                    self.cursor = Some(newest);
                    self.status.event(newest);
                }
                Ok(Received::Info(info)) => tracing::warn!(%info, "Jetstream notice"),
                Ok(Received::ServerError(error)) => return Some(error),
                Ok(Received::Closed(reason)) => return Some(reason),
                Ok(Received::Control) => {}
                Err(reason) => {
                    refused += 1;
                    self.status.update(|status| status.frames_refused += 1);
                    // The first refusal of a connection is worth a warning;
                    // a server sending nothing else must not flood the log.
                    if refused == 1 {
                        tracing::warn!(%reason, "refused a Jetstream frame");
                    } else {
                        tracing::debug!(%reason, refused, "refused a Jetstream frame");
                    }
                }
            }
            last_heard = Instant::now();
        }
    }

    /// Decompresses and classifies one message; `Err` is why it was refused.
    fn receive(&mut self, message: Message) -> Result<Received, String> {
        let json = match message {
            Message::Binary(frame) => self.decoder.decode(&frame).map_err(|e| e.to_string())?,
            Message::Text(text) => {
                let max = self.decoder.limits().max_decompressed_bytes;
                if text.len() > max {
                    return Err(format!(
                        "text frame of {} bytes is over the {max}-byte cap",
                        text.len()
                    ));
                }
                text.as_bytes().to_vec()
            }
            Message::Close(frame) => {
                return Ok(Received::Closed(match frame {
                    Some(frame) => format!("closed by the server: {} {}", frame.code, frame.reason),
                    None => "closed by the server".into(),
                }));
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {
                return Ok(Received::Control);
            }
        };
        match self.config.api {
            JetstreamApi::V1 => read_v1(json),
            JetstreamApi::V2 => read_v2(&json),
        }
    }
}

/// The endpoint URL for one base URL: path appended, query parameters added
/// to whatever query the base already has.
fn subscribe_url(config: &JetstreamConfig, base: &Url, cursor: Option<u64>) -> Url {
    let mut url = base.clone();
    let path = format!("{}{}", base.path().trim_end_matches('/'), config.api.path());
    url.set_path(&path);
    {
        let mut query = url.query_pairs_mut();
        for collection in &config.collections {
            query.append_pair(config.api.collections_parameter(), collection);
        }
        if config.compress {
            match config.api {
                JetstreamApi::V1 => query.append_pair("compress", "true"),
                JetstreamApi::V2 => {
                    query.append_pair("zstdDictionary", &config.api.dictionary().id().to_string())
                }
            };
        }
        // The server skips what the source would refuse anyway.
        query.append_pair(
            "maxMessageSizeBytes",
            &config.limits.max_decompressed_bytes.to_string(),
        );
        if let Some(cursor) = cursor {
            query.append_pair("cursor", &cursor.to_string());
        }
    }
    url
}

fn read_v1(json: Vec<u8>) -> Result<Received, String> {
    RawEvent::from_v1(json).map(Received::Event)
}

/// Reads an `xrpc.v1.json` frame: `{"$type":"message","payload":{…}}` or
/// `{"$type":"error","error":…,"message":…}`.
fn read_v2(json: &[u8]) -> Result<Received, String> {
    #[derive(Deserialize)]
    struct Frame<'a> {
        #[serde(rename = "$type")]
        kind: String,
        #[serde(borrow)]
        payload: Option<&'a RawValue>,
        error: Option<String>,
        message: Option<String>,
    }
    #[derive(Deserialize)]
    struct Payload {
        #[serde(rename = "$type")]
        kind: String,
        time: Option<String>,
        /// When this server saw the event: never changed by timestamp
        /// imports, so the position a timestamp cursor resumes from
        /// (subscribeEvents lexicon); older servers send only `time`.
        #[serde(rename = "witnessedAt")]
        witnessed_at: Option<String>,
        name: Option<String>,
        message: Option<String>,
    }
    let frame: Frame = serde_json::from_slice(json).map_err(|e| format!("not a v2 frame: {e}"))?;
    let described = |name: Option<String>, message: Option<String>| {
        let text = format!(
            "{} {}",
            name.as_deref().unwrap_or("(unnamed)"),
            message.as_deref().unwrap_or("")
        );
        text.trim_end().chars().take(REASON_PREVIEW_CHARS).collect()
    };
    match (frame.kind.as_str(), frame.payload) {
        ("error", _) => Ok(Received::ServerError(described(frame.error, frame.message))),
        ("message", Some(raw)) => {
            let payload: Payload =
                serde_json::from_str(raw.get()).map_err(|e| format!("not a v2 message: {e}"))?;
            if payload.kind.ends_with("#info") {
                return Ok(Received::Info(described(payload.name, payload.message)));
            }
            let cursor = payload
                .witnessed_at
                .or(payload.time)
                .as_deref()
                .and_then(unix_micros)
                .ok_or_else(|| format!("{} without a readable time", payload.kind))?;
            Ok(Received::Event(RawEvent {
                cursor,
                json: raw.get().as_bytes().to_vec(),
            }))
        }
        (kind, _) => Err(format!(
            "v2 frame of type {:?} without a payload",
            kind.chars().take(REASON_PREVIEW_CHARS).collect::<String>()
        )),
    }
}

/// An RFC 3339 time (`2026-05-25T14:23:29.132431Z`, or with an offset) as
/// microseconds since the Unix epoch; `None` if it is not one or is before
/// 1970. Digits past the microsecond are dropped.
pub(crate) fn unix_micros(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = bytes.get(range)?;
        part.iter().all(u8::is_ascii_digit).then_some(())?;
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(at, c)| bytes.get(at) != Some(&c))
        || !matches!(bytes.get(10), Some(b'T' | b't' | b' '))
    {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // A leap second (:60) counts as the next second's start, as Unix time does.
    if second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut micros = 0i64;
    if let Some(fraction) = rest.strip_prefix('.') {
        let count = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if count == 0 {
            return None;
        }
        let kept = &fraction[..count.min(6)];
        micros = kept.parse::<i64>().ok()? * 10i64.pow(6 - kept.len() as u32);
        rest = &fraction[count..];
    }
    let offset_seconds = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let offset = &rest.as_bytes()[1..];
            if offset.len() != 5 || offset[2] != b':' {
                return None;
            }
            let hours = std::str::from_utf8(&offset[..2])
                .ok()?
                .parse::<i64>()
                .ok()?;
            let minutes = std::str::from_utf8(&offset[3..])
                .ok()?
                .parse::<i64>()
                .ok()?;
            sign * (hours * 3600 + minutes * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    u64::try_from(seconds.checked_mul(1_000_000)?.checked_add(micros)?).ok()
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// A refused handshake says why: an HTTP status and, from Jetstream v2, an
/// XRPC error body (`UnknownZstdDictionary`, `InvalidRequest`, …).
fn describe_connect_error(error: tungstenite::Error) -> String {
    #[derive(Deserialize)]
    struct XrpcError {
        error: String,
        message: Option<String>,
    }
    match error {
        tungstenite::Error::Http(response) => {
            let body = response
                .body()
                .as_deref()
                .and_then(|body| serde_json::from_slice::<XrpcError>(body).ok());
            let text = match body {
                Some(body) => format!(
                    "refused with HTTP {}: {} {}",
                    response.status(),
                    body.error,
                    body.message.unwrap_or_default()
                ),
                None => format!("refused with HTTP {}", response.status()),
            };
            text.trim_end().chars().take(REASON_PREVIEW_CHARS).collect()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN: &str =
        include_str!("../../../../shared/fixtures/atproto/jetstream_golden_v1.jsonl");

    fn config(api: JetstreamApi, base: &str) -> JetstreamConfig {
        JetstreamConfig::new(
            vec![Url::parse(base).unwrap()],
            api,
            vec!["app.bsky.feed.like".into(), "app.bsky.graph.*".into()],
        )
    }

    fn query(url: &Url) -> Vec<(String, String)> {
        url.query_pairs().into_owned().collect()
    }

    fn pair(key: &str, value: &str) -> (String, String) {
        (key.into(), value.into())
    }

    #[test]
    fn v1_url_asks_for_wanted_collections_compression_and_the_size_cap() {
        let config = config(JetstreamApi::V1, "wss://jetstream.example");
        let url = subscribe_url(&config, &config.urls[0], Some(1_779_719_009_132_431));
        assert_eq!(url.path(), "/subscribe");
        assert_eq!(
            query(&url),
            [
                pair("wantedCollections", "app.bsky.feed.like"),
                pair("wantedCollections", "app.bsky.graph.*"),
                pair("compress", "true"),
                pair("maxMessageSizeBytes", "8388608"),
                pair("cursor", "1779719009132431"),
            ]
        );
    }

    #[test]
    fn v2_url_uses_collections_and_the_dictionary_id() {
        let config = config(JetstreamApi::V2, "wss://jetstream.example/");
        let url = subscribe_url(&config, &config.urls[0], None);
        assert_eq!(url.path(), "/xrpc/network.bsky.jetstream.subscribeEvents");
        assert_eq!(
            query(&url),
            [
                pair("collections", "app.bsky.feed.like"),
                pair("collections", "app.bsky.graph.*"),
                pair("zstdDictionary", "20260811"),
                pair("maxMessageSizeBytes", "8388608"),
            ]
        );
    }

    #[test]
    fn url_keeps_the_base_path_and_query() {
        let mut config = config(JetstreamApi::V1, "wss://proxy.example/jetstream/?region=eu");
        config.compress = false;
        config.collections.clear();
        let url = subscribe_url(&config, &config.urls[0], None);
        assert_eq!(
            url.as_str(),
            "wss://proxy.example/jetstream/subscribe?region=eu&maxMessageSizeBytes=8388608"
        );
    }

    #[test]
    fn resumes_a_few_seconds_before_the_newest_cursor() {
        let config = config(JetstreamApi::V1, "wss://jetstream.example");
        let source = JetstreamSource::new(config, Some(1_779_719_009_132_431)).unwrap();
        assert_eq!(source.resume_cursor(), Some(1_779_719_004_132_431));
        assert_eq!(
            source.status().snapshot().cursor,
            Some(1_779_719_009_132_431)
        );
    }

    #[test]
    fn refuses_configurations_jetstream_would_refuse() {
        let mut no_urls = config(JetstreamApi::V1, "wss://jetstream.example");
        no_urls.urls.clear();
        assert!(matches!(
            JetstreamSource::new(no_urls, None),
            Err(JetstreamError::NoUrls)
        ));
        let https = config(JetstreamApi::V1, "https://jetstream.example");
        assert!(matches!(
            JetstreamSource::new(https, None),
            Err(JetstreamError::NotWebSocket(_))
        ));
        let mut many = config(JetstreamApi::V1, "wss://jetstream.example");
        many.collections = (0..=MAX_COLLECTIONS).map(|i| format!("a.b.c{i}")).collect();
        assert!(matches!(
            JetstreamSource::new(many, None),
            Err(JetstreamError::TooManyCollections(101))
        ));
    }

    #[test]
    fn reads_the_cursor_of_every_golden_v1_event() {
        for line in GOLDEN.lines() {
            let time_us = serde_json::from_str::<serde_json::Value>(line).unwrap()["time_us"]
                .as_u64()
                .unwrap();
            assert_eq!(
                read_v1(line.as_bytes().to_vec()),
                Ok(Received::Event(RawEvent {
                    cursor: time_us,
                    json: line.as_bytes().to_vec()
                }))
            );
        }
        assert!(read_v1(br#"{"did":"did:plc:x","kind":"commit"}"#.to_vec()).is_err());
        assert!(read_v1(b"not json".to_vec()).is_err());
    }

    #[test]
    fn hands_on_the_payload_of_a_v2_message_with_its_time_as_cursor() {
        let payload = r#"{"$type":"network.bsky.jetstream.subscribeEvents#commit","seq":31527015322,"did":"did:plc:aliceeeeeeeeeeeeeeeeeeee","time":"2026-05-25T14:23:29.132431Z","rev":"3mmoojp7vgo2g","operation":"delete","collection":"app.bsky.feed.like","rkey":"3mmoojp7etg2g"}"#;
        let frame = format!(r#"{{"$type":"message","payload":{payload}}}"#);
        assert_eq!(
            read_v2(frame.as_bytes()),
            Ok(Received::Event(RawEvent {
                cursor: 1_779_719_009_132_431,
                json: payload.as_bytes().to_vec()
            }))
        );
    }

    #[test]
    fn a_v2_witnessed_time_is_the_cursor_over_an_imported_display_time() {
        let payload = r#"{"$type":"network.bsky.jetstream.subscribeEvents#commit","seq":7,"did":"did:plc:aliceeeeeeeeeeeeeeeeeeee","time":"2023-01-01T00:00:00.000000Z","witnessedAt":"2026-05-25T14:23:29.132431Z","rev":"3mmoojp7vgo2g","operation":"delete","collection":"app.bsky.feed.like","rkey":"3mmoojp7etg2g"}"#;
        let frame = format!(r#"{{"$type":"message","payload":{payload}}}"#);
        let Ok(Received::Event(event)) = read_v2(frame.as_bytes()) else {
            panic!("not an event");
        };
        assert_eq!(event.cursor, 1_779_719_009_132_431);
    }

    #[test]
    fn tells_v2_notices_and_errors_from_events() {
        let info = br#"{"$type":"message","payload":{"$type":"network.bsky.jetstream.subscribeEvents#info","name":"OutdatedCursor","message":"resumed from seq 12"}}"#;
        assert_eq!(
            read_v2(info),
            Ok(Received::Info("OutdatedCursor resumed from seq 12".into()))
        );
        let error = br#"{"$type":"error","error":"ConsumerTooSlow"}"#;
        assert_eq!(
            read_v2(error),
            Ok(Received::ServerError("ConsumerTooSlow".into()))
        );
        let timeless = br#"{"$type":"message","payload":{"$type":"network.bsky.jetstream.subscribeEvents#account","seq":1}}"#;
        assert!(read_v2(timeless).is_err());
        assert!(read_v2(br#"{"$type":"surprise"}"#).is_err());
    }

    #[test]
    fn reads_rfc3339_times_to_the_microsecond() {
        assert_eq!(unix_micros("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            unix_micros("2026-05-25T14:23:29.132431Z"),
            Some(1_779_719_009_132_431)
        );
        assert_eq!(
            unix_micros("2026-05-25T16:23:29.1324319+02:00"),
            Some(1_779_719_009_132_431)
        );
        assert_eq!(
            unix_micros("2024-02-29T00:00:00.5Z"),
            Some(1_709_164_800_500_000)
        );
        for bad in [
            "",
            "2026-05-25",
            "2026-05-25T14:23:29",
            "2026-13-25T14:23:29Z",
            "2026-05-25T14:23:29.Z",
            "1969-12-31T23:59:59Z",
            "2026-05-25T14:23:29+0200",
            "２026-05-25T14:23:29Z",
        ] {
            assert_eq!(unix_micros(bad), None, "{bad}");
        }
    }
}
