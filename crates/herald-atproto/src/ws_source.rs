//! What the Jetstream and firehose sources share: one WebSocket at a time
//! to one of several servers, read in order, every event handed on with
//! its position; the wire itself (URL, frame format, cursor) is a [`Wire`].
//!
//! - **Back-pressure, never loss.** Events go to a bounded channel. When it
//!   is full the source stops reading the socket and TCP pushes back on the
//!   server; no event is dropped for lack of room.
//! - **Reconnects.** Exponential backoff with equal jitter (half fixed, half
//!   random, as for deliveries), so a server restart does not bring every
//!   client back at the same instant. The backoff resets once a connection
//!   has stayed up for `healthy_after`, unlike the Go gateway's, which never
//!   resets (atproto.md §14). Every reconnect goes to the next URL of the
//!   list, so one dead server never takes all the retries.
//! - **Hostile frames.** A frame the wire refuses is counted and skipped;
//!   the connection stays up.
//! - **Liveness.** The source pings every [`PING_INTERVAL`] and drops a
//!   connection that carried nothing, not even a pong, for [`IDLE_TIMEOUT`]:
//!   a half-open TCP connection would otherwise pass for a quiet network.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use herald_core::retry::ReconnectPolicy;
use herald_core::time::now_ms;
use herald_http::http_client::CONNECT_TIMEOUT;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};
use url::Url;

/// Interval of the source's own pings. Well inside any proxy's idle timeout
/// (commonly 60 s), and the pongs prove the server alive on a quiet stream.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);

/// A connection that carried nothing for this long is dropped: three pings
/// went unanswered, and the network never goes quiet for that long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The window over which `events_per_second` is measured: long enough to
/// smooth the network's bursts, short enough to show a stall within seconds.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// Server messages quoted in logs and status are cut to this many characters.
pub(crate) const REASON_PREVIEW_CHARS: usize = 200;

const USER_AGENT: &str = concat!("herald/", env!("CARGO_PKG_VERSION"));

type WebSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Where an event stands in its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// What to store and resume from.
    pub cursor: u64,
    /// When the event happened, in microseconds since the Unix epoch: how
    /// far behind the source is.
    pub time_us: u64,
}

/// What one data frame turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Received<T> {
    Event(T),
    /// An advisory (such as `OutdatedCursor`): logged, not an event.
    Info(String),
    /// An error frame; the server closes the connection after it.
    ServerError(String),
    /// The server refused the cursor as ahead of its stream (the firehose's
    /// `FutureCursor`): the next connection starts at the live tip.
    CursorRefused(String),
}

/// One kind of stream: how to ask for it and how to read its frames.
pub trait Wire: Send {
    type Event: Send;
    /// For logs: "Jetstream", "firehose".
    const NAME: &'static str;

    /// The URL to connect to for one configured base URL.
    fn endpoint(&self, base: &Url, cursor: Option<u64>) -> Url;
    /// The largest WebSocket message the socket admits.
    fn max_message_bytes(&self) -> usize;
    /// Reads one binary or text message; `Err` says why it was refused.
    fn read(&mut self, message: Message) -> Result<Received<Self::Event>, String>;
    fn position(event: &Self::Event) -> Position;
    /// Where a reconnect starts, given the newest cursor handed on.
    fn resume_from(cursor: u64) -> u64;
}

/// What `/health` shows about a source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceStatus {
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

/// A shared view of a source's status; cheap to clone and to read.
#[derive(Debug, Clone, Default)]
pub struct StatusHandle(Arc<Mutex<StatusState>>);

#[derive(Debug, Default)]
struct StatusState {
    status: SourceStatus,
    newest_time_us: Option<u64>,
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
    pub fn snapshot(&self) -> SourceStatus {
        let mut state = self.lock();
        state.roll_window(Instant::now());
        let mut status = state.status.clone();
        let now_us = u64::try_from(now_ms()).unwrap_or(0).saturating_mul(1000);
        status.lag = state
            .newest_time_us
            .map(|time| Duration::from_micros(now_us.saturating_sub(time)));
        status
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StatusState> {
        // A panic while holding the lock leaves plain counters behind; still
        // worth showing.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn update(&self, change: impl FnOnce(&mut SourceStatus)) {
        change(&mut self.lock().status);
    }

    fn event(&self, cursor: u64, time_us: u64) {
        let mut state = self.lock();
        state.status.events_received += 1;
        state.status.cursor = Some(cursor);
        state.newest_time_us = Some(state.newest_time_us.map_or(time_us, |t| t.max(time_us)));
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

/// Why a connection stopped reading.
enum ReadEnd {
    Dropped(String),
    SinkClosed,
}

/// The receiver of a source's events is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the receiver of the source's events is gone")]
pub struct SinkClosed;

/// Reads one stream of one [`Wire`]; see the module documentation.
pub struct WebSocketSource<W: Wire> {
    wire: W,
    urls: Vec<Url>,
    reconnect: ReconnectPolicy,
    /// The newest cursor handed on, or the one to start from.
    cursor: Option<u64>,
    status: StatusHandle,
}

impl<W: Wire> WebSocketSource<W> {
    /// A source over `urls` (already checked to be ws:// or wss://) that
    /// starts from `cursor`, or at the live tip without one.
    pub fn new(wire: W, urls: Vec<Url>, reconnect: ReconnectPolicy, cursor: Option<u64>) -> Self {
        let status = StatusHandle::default();
        status.update(|status| status.cursor = cursor);
        Self {
            wire,
            urls,
            reconnect,
            cursor,
            status,
        }
    }

    pub fn status(&self) -> StatusHandle {
        self.status.clone()
    }

    /// Where the next connection starts.
    pub fn resume_cursor(&self) -> Option<u64> {
        self.cursor.map(W::resume_from)
    }

    /// Reads until `stop` turns true (or its sender is dropped), handing
    /// every event to `sink`. Ends with an error only when the sink's
    /// receiver is gone.
    pub async fn run(
        mut self,
        sink: mpsc::Sender<W::Event>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), SinkClosed> {
        herald_http::install_crypto_provider();
        let mut failures = 0u32;
        let mut url_index = 0usize;
        loop {
            let end = tokio::select! {
                end = self.session(url_index, &sink) => end,
                _ = stop.wait_for(|stopped| *stopped) => break,
            };
            let url = &self.urls[url_index];
            match end {
                SessionEnd::SinkClosed => {
                    self.status.disconnected("the receiver of events is gone");
                    return Err(SinkClosed);
                }
                SessionEnd::Refused(reason) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(source = W::NAME, %url, %reason, failures, "cannot connect");
                    self.status.disconnected(&reason);
                }
                SessionEnd::Dropped { lasted, reason } => {
                    failures = self.reconnect.failures_after(failures, lasted);
                    tracing::warn!(source = W::NAME, %url, %reason, ?lasted, "connection ended");
                    self.status.disconnected(&reason);
                }
            }
            url_index = (url_index + 1) % self.urls.len();
            let delay = self.reconnect.delay(failures);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(|stopped| *stopped) => break,
            }
        }
        self.status.update(|status| status.connected_url = None);
        Ok(())
    }

    /// One connection, from the handshake until it ends.
    async fn session(&mut self, url_index: usize, sink: &mpsc::Sender<W::Event>) -> SessionEnd {
        let base = self.urls[url_index].clone();
        let url = self.wire.endpoint(&base, self.resume_cursor());
        let mut ws = match self.connect(&url).await {
            Ok(ws) => ws,
            Err(reason) => return SessionEnd::Refused(reason),
        };
        let connected_at = Instant::now();
        tracing::info!(source = W::NAME, url = %base, cursor = ?self.resume_cursor(), "connected");
        self.status
            .update(|status| status.connected_url = Some(base.to_string()));
        match self.read(&mut ws, sink).await {
            ReadEnd::Dropped(reason) => SessionEnd::Dropped {
                lasted: connected_at.elapsed(),
                reason,
            },
            ReadEnd::SinkClosed => SessionEnd::SinkClosed,
        }
    }

    async fn connect(&self, url: &Url) -> Result<WebSocket, String> {
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| e.to_string())?;
        request
            .headers_mut()
            .insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        let cap = self.wire.max_message_bytes();
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

    /// Reads frames until the connection ends or the sink's receiver is gone.
    async fn read(&mut self, ws: &mut WebSocket, sink: &mpsc::Sender<W::Event>) -> ReadEnd {
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
                        return ReadEnd::Dropped(format!("cannot ping: {e}"));
                    }
                    continue;
                }
                () = tokio::time::sleep_until(last_heard + IDLE_TIMEOUT) => {
                    return ReadEnd::Dropped(format!("nothing received for {IDLE_TIMEOUT:?}"));
                }
            };
            let message = match message {
                None => return ReadEnd::Dropped("connection closed".into()),
                Some(Err(e)) => return ReadEnd::Dropped(e.to_string()),
                Some(Ok(message)) => message,
            };
            last_heard = Instant::now();
            let received = match message {
                Message::Binary(_) | Message::Text(_) => self.wire.read(message),
                Message::Close(frame) => {
                    return ReadEnd::Dropped(match frame {
                        Some(frame) => {
                            format!("closed by the server: {} {}", frame.code, frame.reason)
                        }
                        None => "closed by the server".into(),
                    });
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
            match received {
                Ok(Received::Event(event)) => {
                    let position = W::position(&event);
                    if sink.send(event).await.is_err() {
                        return ReadEnd::SinkClosed;
                    }
                    // Jetstream's events arrive out of time order: the resume
                    // position is the newest seen, never an older one.
                    let newest = self
                        .cursor
                        .map_or(position.cursor, |c| c.max(position.cursor));
                    self.cursor = Some(newest);
                    self.status.event(newest, position.time_us);
                }
                Ok(Received::Info(info)) => tracing::warn!(source = W::NAME, %info, "notice"),
                Ok(Received::ServerError(error)) => return ReadEnd::Dropped(error),
                Ok(Received::CursorRefused(error)) => {
                    tracing::error!(
                        source = W::NAME,
                        %error,
                        cursor = ?self.cursor,
                        "the server refused the cursor; starting again at the live tip"
                    );
                    self.cursor = None;
                    return ReadEnd::Dropped(error);
                }
                Err(reason) => {
                    refused += 1;
                    self.status.update(|status| status.frames_refused += 1);
                    // The first refusal of a connection is worth a warning;
                    // a server sending nothing else must not flood the log.
                    if refused == 1 {
                        tracing::warn!(source = W::NAME, %reason, "refused a frame");
                    } else {
                        tracing::debug!(source = W::NAME, %reason, refused, "refused a frame");
                    }
                }
            }
        }
    }
}

/// A refused handshake says why: an HTTP status and, where the server sends
/// one, an XRPC error body (`UnknownZstdDictionary`, `InvalidRequest`, …).
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
            preview(text.trim_end())
        }
        other => other.to_string(),
    }
}

/// A server's text cut to [`REASON_PREVIEW_CHARS`].
pub(crate) fn preview(text: &str) -> String {
    text.chars().take(REASON_PREVIEW_CHARS).collect()
}

/// The URLs of a configuration, refused unless there is at least one and
/// each is ws:// or wss://.
pub fn check_websocket_urls(urls: &[Url]) -> Result<(), UrlError> {
    if urls.is_empty() {
        return Err(UrlError::NoUrls);
    }
    match urls.iter().find(|u| !matches!(u.scheme(), "ws" | "wss")) {
        Some(url) => Err(UrlError::NotWebSocket(url.clone())),
        None => Ok(()),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("no URL configured")]
    NoUrls,
    #[error("URL {0} is not ws:// or wss://")]
    NotWebSocket(Url),
}
