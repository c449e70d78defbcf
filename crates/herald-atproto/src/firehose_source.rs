//! The firehose source: `com.atproto.sync.subscribeRepos` from a relay or a
//! PDS (atproto.md §9), verified, and handed to the same pipeline as
//! Jetstream's events.
//!
//! - **Two stages.** The socket side ([`FirehoseWire`] under `ws_source`)
//!   decodes each frame and reads its `seq`, nothing more, so the socket is
//!   never held up by a DID lookup. [`FirehoseVerifier`] then checks every
//!   commit (signature against the repo's `#atproto` key, `repo`/`rev`
//!   consistency, record CIDs; `firehose::verify`) and turns what passes
//!   into Jetstream v1 events: the pipeline, the rules and the state stay
//!   one code path for both sources.
//! - **Cursor = `seq`.** A commit of several operations becomes several
//!   events with one `seq`, and the pipeline may store that `seq` after the
//!   first of them; so a reconnect or a restart resumes one `seq` early and
//!   the whole commit comes again. Its pushes were already queued under the
//!   same dedupe keys, so nothing goes twice, and nothing is skipped.
//! - **Cursor errors.** `#info OutdatedCursor` (the cursor fell out of the
//!   server's window, which it then replays whole) is logged; a
//!   `FutureCursor` error (a cursor ahead of the server: another server, or
//!   one that was reset) makes the next connection start at the live tip.
//! - **Failed verification** drops the commit and counts it per reason
//!   ([`VerifyStats`], shown in `/health` and `/metrics`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use url::Url;

use crate::firehose::{
    CommitVerifier, FirehoseMessage, MAX_FRAME_BYTES, decode_frame, jetstream_events,
};
use crate::jetstream::RawEvent;
use crate::time::unix_micros;
use crate::ws_source::{
    Position, Received, UrlError, WebSocketSource, Wire, check_websocket_urls, preview,
};
pub use crate::ws_source::{SinkClosed, StatusHandle};
pub use herald_core::retry::ReconnectPolicy;

/// Frames verified at once, in order: enough to overlap DID lookups of
/// repositories not yet in the cache, few enough to keep memory small
/// (a frame is at most 5 MB; real ones about 5 KB).
pub const VERIFY_AHEAD: usize = 32;

/// The endpoint, appended to each configured base URL.
pub const SUBSCRIBE_REPOS_PATH: &str = "/xrpc/com.atproto.sync.subscribeRepos";

/// What the source connects to.
#[derive(Debug, Clone)]
pub struct FirehoseConfig {
    /// Base URLs of relays or PDSes (`wss://bsky.network`) to fail over
    /// between, in order. A relay's `seq` is its own: failing over between
    /// different relays restarts at the live tip of the next one
    /// (`FutureCursor`) or replays its window (`OutdatedCursor`).
    pub urls: Vec<Url>,
    pub reconnect: ReconnectPolicy,
}

/// One decoded frame with its place in the stream.
#[derive(Debug)]
pub struct SequencedMessage {
    pub seq: u64,
    /// The frame's `time`, in microseconds since the Unix epoch.
    pub time_us: u64,
    pub message: FirehoseMessage,
}

/// The firehose wire: frames of two DAG-CBOR values, cursor = `seq`.
struct FirehoseWire;

impl Wire for FirehoseWire {
    type Event = SequencedMessage;
    const NAME: &'static str = "firehose";

    fn endpoint(&self, base: &Url, cursor: Option<u64>) -> Url {
        let mut url = base.clone();
        url.set_path(&format!(
            "{}{SUBSCRIBE_REPOS_PATH}",
            base.path().trim_end_matches('/')
        ));
        if let Some(cursor) = cursor {
            url.query_pairs_mut()
                .append_pair("cursor", &cursor.to_string());
        }
        url
    }

    fn max_message_bytes(&self) -> usize {
        MAX_FRAME_BYTES
    }

    fn read(&mut self, message: Message) -> Result<Received<SequencedMessage>, String> {
        let Message::Binary(frame) = message else {
            return Err("a text frame on the firehose, which sends only binary ones".into());
        };
        let message = decode_frame(&frame).map_err(|e| e.to_string())?;
        let described = |name: &str, message: &Option<String>| {
            preview(format!("{name} {}", message.as_deref().unwrap_or("")).trim_end())
        };
        match &message {
            FirehoseMessage::Info { name, message } => {
                return Ok(Received::Info(described(name, message)));
            }
            FirehoseMessage::Error { error, message } if error == "FutureCursor" => {
                return Ok(Received::CursorRefused(described(error, message)));
            }
            FirehoseMessage::Error { error, message } => {
                return Ok(Received::ServerError(described(error, message)));
            }
            FirehoseMessage::Unknown { t } => {
                return Err(format!("unknown message type {:?}", preview(t)));
            }
            _ => {}
        }
        let seq = message
            .seq()
            .and_then(|seq| u64::try_from(seq).ok())
            .ok_or("a message without a valid seq")?;
        let time_us = time_of(&message)
            .and_then(unix_micros)
            .ok_or("a message without a readable time")?;
        Ok(Received::Event(SequencedMessage {
            seq,
            time_us,
            message,
        }))
    }

    fn position(event: &SequencedMessage) -> Position {
        Position {
            cursor: event.seq,
            time_us: event.time_us,
        }
    }

    fn resume_from(cursor: u64) -> u64 {
        cursor.saturating_sub(1)
    }
}

/// The `time` of a message that has one: when the relay received it.
fn time_of(message: &FirehoseMessage) -> Option<&str> {
    match message {
        FirehoseMessage::Commit(commit) => Some(&commit.time),
        FirehoseMessage::Sync(sync) => Some(&sync.time),
        FirehoseMessage::Identity(identity) => Some(&identity.time),
        FirehoseMessage::Account(account) => Some(&account.time),
        _ => None,
    }
}

/// Reads one firehose; see the module documentation.
pub struct FirehoseSource(WebSocketSource<FirehoseWire>);

impl FirehoseSource {
    /// A source that will start after `cursor` (a stored `seq`), or at the
    /// live tip without one.
    pub fn new(config: FirehoseConfig, cursor: Option<u64>) -> Result<Self, UrlError> {
        check_websocket_urls(&config.urls)?;
        Ok(Self(WebSocketSource::new(
            FirehoseWire,
            config.urls,
            config.reconnect,
            cursor,
        )))
    }

    pub fn status(&self) -> StatusHandle {
        self.0.status()
    }

    /// Reads until `stop` turns true, handing every decoded frame to `sink`.
    pub async fn run(
        self,
        sink: mpsc::Sender<SequencedMessage>,
        stop: watch::Receiver<bool>,
    ) -> Result<(), SinkClosed> {
        self.0.run(sink, stop).await
    }
}

/// Commits dropped by verification, by reason.
#[derive(Debug, Default)]
pub struct VerifyStats {
    commits_verified: std::sync::atomic::AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
}

impl VerifyStats {
    pub fn verified(&self) -> u64 {
        self.commits_verified
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `(reason, count)`, in reason order.
    pub fn rejected(&self) -> Vec<(&'static str, u64)> {
        let rejected = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        rejected.iter().map(|(r, n)| (*r, *n)).collect()
    }

    fn reject(&self, reason: &'static str) {
        let mut rejected = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        *rejected.entry(reason).or_default() += 1;
    }
}

/// The stage between the source and the pipeline: verifies commits (unless
/// switched off) and turns frames into Jetstream v1 events.
pub struct FirehoseVerifier {
    /// `None`: verification switched off by the operator.
    verifier: Option<CommitVerifier>,
    stats: Arc<VerifyStats>,
}

impl FirehoseVerifier {
    pub fn new(verifier: Option<CommitVerifier>) -> Self {
        Self {
            verifier,
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> Arc<VerifyStats> {
        Arc::clone(&self.stats)
    }

    /// Runs until the source's channel closes or the pipeline's receiver is
    /// gone.
    ///
    /// Up to [`VERIFY_AHEAD`] frames are verified at once and handed on in
    /// their order: a repository seen for the first time costs a DID
    /// lookup, which would otherwise hold every frame behind it.
    pub async fn run(
        self,
        frames: mpsc::Receiver<SequencedMessage>,
        events: mpsc::Sender<RawEvent>,
    ) {
        let frames = futures_util::stream::unfold(frames, |mut frames| async move {
            frames.recv().await.map(|frame| (frame, frames))
        });
        let verified = frames
            .map(|frame| {
                let this = &self;
                async move { this.events_of(&frame).await }
            })
            .buffered(VERIFY_AHEAD);
        futures_util::pin_mut!(verified);
        while let Some(batch) = verified.next().await {
            for event in batch {
                if events.send(event).await.is_err() {
                    return;
                }
            }
        }
    }

    /// The Jetstream events one frame stands for; none if it failed
    /// verification or says nothing the rules read.
    pub async fn events_of(&self, frame: &SequencedMessage) -> Vec<RawEvent> {
        if let (FirehoseMessage::Commit(commit), Some(verifier)) = (&frame.message, &self.verifier)
        {
            if let Err(failure) = verifier.verify(commit).await {
                self.stats.reject(failure.reason());
                tracing::debug!(seq = frame.seq, %failure, "firehose commit dropped");
                return Vec::new();
            }
            self.stats
                .commits_verified
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        match jetstream_events(&frame.message) {
            Ok(lines) => lines
                .into_iter()
                .map(|json| RawEvent {
                    cursor: frame.seq,
                    json,
                })
                .collect(),
            Err(e) => {
                self.stats.reject("unreadable");
                tracing::debug!(seq = frame.seq, error = %e, "firehose frame unreadable");
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_for_subscribe_repos_after_the_base_path_with_the_cursor() {
        let base = Url::parse("wss://relay.example/prefix/").unwrap();
        let url = FirehoseWire.endpoint(&base, Some(42));
        assert_eq!(
            url.as_str(),
            "wss://relay.example/prefix/xrpc/com.atproto.sync.subscribeRepos?cursor=42"
        );
        let live = FirehoseWire.endpoint(&Url::parse("ws://127.0.0.1:2583").unwrap(), None);
        assert_eq!(
            live.as_str(),
            "ws://127.0.0.1:2583/xrpc/com.atproto.sync.subscribeRepos"
        );
    }

    #[test]
    fn resumes_one_seq_early_so_a_commit_is_never_cut() {
        let source = FirehoseSource::new(
            FirehoseConfig {
                urls: vec![Url::parse("wss://relay.example").unwrap()],
                reconnect: ReconnectPolicy::default(),
            },
            Some(100),
        )
        .unwrap();
        assert_eq!(source.0.resume_cursor(), Some(99));
        assert_eq!(FirehoseWire::resume_from(0), 0);
    }

    #[test]
    fn refuses_text_frames_and_garbage_without_ending_anything() {
        let mut wire = FirehoseWire;
        assert!(wire.read(Message::Text("{}".into())).is_err());
        assert!(wire.read(Message::Binary(vec![0xff; 16].into())).is_err());
        assert!(wire.read(Message::Binary(Vec::new().into())).is_err());
    }

    #[test]
    fn refuses_configurations_without_websocket_urls() {
        let config = |urls: &[&str]| FirehoseConfig {
            urls: urls.iter().map(|u| Url::parse(u).unwrap()).collect(),
            reconnect: ReconnectPolicy::default(),
        };
        assert!(matches!(
            FirehoseSource::new(config(&[]), None),
            Err(UrlError::NoUrls)
        ));
        assert!(matches!(
            FirehoseSource::new(config(&["https://bsky.network"]), None),
            Err(UrlError::NotWebSocket(_))
        ));
    }
}
