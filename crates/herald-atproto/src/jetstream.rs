//! The Jetstream source: one WebSocket to a Jetstream server, read in order,
//! every event handed on with its cursor (atproto.md §7, §8). The socket,
//! reconnects, back-pressure and liveness are `ws_source`'s; this module is
//! the Jetstream wire.
//!
//! - **Raw events out.** The source decompresses a frame and reads its cursor,
//!   nothing more: it yields the event's JSON bytes ([`RawEvent`]). Parsing
//!   belongs to the rules side (`jetstream_event`), so the reader stays cheap
//!   and a record it never looks at cannot stall it. (A v2 server may drop a
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
//! - **Hostile frames.** Frames are capped before and after decompression
//!   (`jetstream_frame`), and the server is asked to skip larger events
//!   (`maxMessageSizeBytes`).

use std::time::Duration;

pub use herald_core::retry::ReconnectPolicy;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use url::Url;

use crate::jetstream_frame::{Dictionary, FrameDecoder, FrameError, FrameLimits};
use crate::time::unix_micros;
use crate::ws_source::{
    Position, Received, UrlError, WebSocketSource, Wire, check_websocket_urls, preview,
};
pub use crate::ws_source::{SinkClosed, SourceStatus, StatusHandle};

/// How far before the newest cursor handed on a reconnect resumes: "a few
/// seconds" (atproto.md §7), above the 1.5 s disorder seen in real events.
pub const CURSOR_REWIND: Duration = Duration::from_secs(5);

/// Jetstream refuses more collections than this in one subscription
/// (atproto.md §7, §8).
pub const MAX_COLLECTIONS: usize = 100;

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
    #[error("Jetstream: {0}")]
    Urls(#[from] UrlError),
    #[error("{0} collections; Jetstream accepts at most {MAX_COLLECTIONS}")]
    TooManyCollections(usize),
    #[error(transparent)]
    Frame(#[from] FrameError),
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

/// The Jetstream wire: URL parameters and frame reading.
struct JetstreamWire {
    config: JetstreamConfig,
    decoder: FrameDecoder,
}

impl Wire for JetstreamWire {
    type Event = RawEvent;
    const NAME: &'static str = "Jetstream";

    fn endpoint(&self, base: &Url, cursor: Option<u64>) -> Url {
        subscribe_url(&self.config, base, cursor)
    }

    /// Text frames are uncompressed events, binary frames compressed ones:
    /// the socket admits the larger of the two caps, and the wire holds
    /// each kind to its own, so an oversized frame is skipped rather than
    /// ending the connection.
    fn max_message_bytes(&self) -> usize {
        let limits = self.config.limits;
        limits
            .max_compressed_bytes
            .max(limits.max_decompressed_bytes)
    }

    fn read(&mut self, message: Message) -> Result<Received<RawEvent>, String> {
        let json = match message {
            Message::Binary(frame) => self
                .decoder
                .decode(&frame)
                .map_err(|e| e.to_string())?
                .to_vec(),
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
            _ => return Err("not a data frame".into()),
        };
        match self.config.api {
            JetstreamApi::V1 => read_v1(json),
            JetstreamApi::V2 => read_v2(&json),
        }
    }

    fn position(event: &RawEvent) -> Position {
        Position {
            cursor: event.cursor,
            time_us: event.cursor,
        }
    }

    fn resume_from(cursor: u64) -> u64 {
        let rewind = u64::try_from(CURSOR_REWIND.as_micros()).unwrap_or(u64::MAX);
        cursor.saturating_sub(rewind)
    }
}

/// Reads one Jetstream feed; see the module documentation.
pub struct JetstreamSource(WebSocketSource<JetstreamWire>);

impl JetstreamSource {
    /// A source that will start from `cursor` (microseconds, as stored), or
    /// at the live tip without one.
    pub fn new(config: JetstreamConfig, cursor: Option<u64>) -> Result<Self, JetstreamError> {
        check_websocket_urls(&config.urls)?;
        if config.collections.len() > MAX_COLLECTIONS {
            return Err(JetstreamError::TooManyCollections(config.collections.len()));
        }
        let decoder = FrameDecoder::new(config.api.dictionary(), config.limits)?;
        let (urls, reconnect) = (config.urls.clone(), config.reconnect.clone());
        let wire = JetstreamWire { config, decoder };
        Ok(Self(WebSocketSource::new(wire, urls, reconnect, cursor)))
    }

    pub fn status(&self) -> StatusHandle {
        self.0.status()
    }

    /// Where the next connection starts: a little before the newest cursor.
    pub fn resume_cursor(&self) -> Option<u64> {
        self.0.resume_cursor()
    }

    /// Reads until `stop` turns true (or its sender is dropped), handing
    /// every event to `sink`. Ends with an error only when the sink's
    /// receiver is gone.
    pub async fn run(
        self,
        sink: mpsc::Sender<RawEvent>,
        stop: watch::Receiver<bool>,
    ) -> Result<(), SinkClosed> {
        self.0.run(sink, stop).await
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

fn read_v1(json: Vec<u8>) -> Result<Received<RawEvent>, String> {
    RawEvent::from_v1(json).map(Received::Event)
}

/// Reads an `xrpc.v1.json` frame: `{"$type":"message","payload":{…}}` or
/// `{"$type":"error","error":…,"message":…}`.
fn read_v2(json: &[u8]) -> Result<Received<RawEvent>, String> {
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
        preview(text.trim_end())
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
            preview(kind)
        )),
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
            Err(JetstreamError::Urls(UrlError::NoUrls))
        ));
        let https = config(JetstreamApi::V1, "https://jetstream.example");
        assert!(matches!(
            JetstreamSource::new(https, None),
            Err(JetstreamError::Urls(UrlError::NotWebSocket(_)))
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
        use crate::time::unix_micros;
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
