//! The Jetstream source against a local Jetstream: a WebSocket server in the
//! test that speaks v1 or v2, compresses with the published dictionaries (the
//! fixtures, not the crate's embedded copies), records what each client asked
//! for, and drops, refuses or misbehaves on cue.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use herald_atproto::jetstream::{
    CURSOR_REWIND, JetstreamApi, JetstreamConfig, JetstreamSource, RawEvent, ReconnectPolicy,
    SinkClosed, StatusHandle,
};
use herald_atproto::jetstream_frame::FrameLimits;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http;
use url::Url;

const GOLDEN: &str = include_str!("../../../../shared/fixtures/atproto/jetstream_golden_v1.jsonl");
const V1_DICTIONARY: &[u8] =
    include_bytes!("../../../../shared/fixtures/atproto/jetstream_v1.zdict");
const V2_DICTIONARY: &[u8] = include_bytes!(
    "../../../../shared/fixtures/atproto/jetstream_v2_subscribe_events_20260811.zdict"
);

/// Long enough for a loaded CI machine; the source answers in milliseconds.
const PATIENCE: Duration = Duration::from_secs(10);
const COLLECTIONS: [&str; 3] = [
    "app.bsky.feed.like",
    "app.bsky.feed.post",
    "app.bsky.graph.block",
];
const REWIND_US: u64 = CURSOR_REWIND.as_micros() as u64;
/// 2026-05-25T14:23:00Z, the minute of the golden events.
const MINUTE_US: u64 = 1_779_718_980_000_000;

/// What one client asked for.
#[derive(Debug, Clone)]
struct Asked {
    path: String,
    query: Vec<(String, String)>,
}

impl Asked {
    fn all(&self, key: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.all(key).first().copied()
    }

    fn cursor(&self) -> Option<u64> {
        self.get("cursor").map(|c| c.parse().unwrap())
    }
}

/// The server's answer to one connection.
enum Reply {
    /// Refuse the upgrade with this status and body, as Jetstream v2 does
    /// for a bad parameter.
    Refuse(u16, &'static str),
    /// Send these messages, then close the TCP connection without a close
    /// frame (a crash, a proxy timeout) or hold it open.
    Serve {
        messages: Vec<Message>,
        then_drop: bool,
    },
}

type Plan = dyn Fn(usize, &Asked) -> Reply + Send + Sync;

struct Jetstream {
    addr: SocketAddr,
    asked: Arc<Mutex<Vec<Asked>>>,
}

impl Jetstream {
    /// Serves each connection as `plan` says, given its 0-based index.
    async fn start(plan: impl Fn(usize, &Asked) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let plan: Arc<Plan> = Arc::new(plan);
        let log = Arc::clone(&asked);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (plan, log) = (Arc::clone(&plan), Arc::clone(&log));
                tokio::spawn(async move { serve(stream, &*plan, &log).await });
            }
        });
        Self { addr, asked }
    }

    fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    fn asked(&self) -> Vec<Asked> {
        self.asked.lock().unwrap().clone()
    }
}

async fn serve(stream: TcpStream, plan: &Plan, log: &Mutex<Vec<Asked>>) {
    let mut reply = None;
    // The shape of tungstenite's handshake callback, large error and all.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| {
        let uri = request.uri();
        let asked = Asked {
            path: uri.path().to_owned(),
            query: url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        };
        let index = {
            let mut log = log.lock().unwrap();
            log.push(asked.clone());
            log.len() - 1
        };
        match plan(index, &asked) {
            Reply::Refuse(status, body) => {
                let refusal: ErrorResponse = http::Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Some(body.to_owned()))
                    .unwrap();
                Err(refusal)
            }
            serve => {
                reply = Some(serve);
                Ok(response)
            }
        }
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let Some(Reply::Serve {
        messages,
        then_drop,
    }) = reply
    else {
        return;
    };
    for message in messages {
        if ws.send(message).await.is_err() {
            return;
        }
    }
    if !then_drop {
        // Hold the connection until the client leaves.
        while let Some(Ok(_)) = ws.next().await {}
    }
}

/// One zstd frame with the dictionary, as a binary message: Jetstream's framing.
fn compressed(dictionary: &[u8], json: &str) -> Message {
    let frame =
        zstd::bulk::Compressor::with_dictionary(zstd::DEFAULT_COMPRESSION_LEVEL, dictionary)
            .unwrap()
            .compress(json.as_bytes())
            .unwrap();
    Message::Binary(frame.into())
}

fn v1_frames(events: &[String]) -> Vec<Message> {
    events
        .iter()
        .map(|event| compressed(V1_DICTIONARY, event))
        .collect()
}

fn golden() -> Vec<String> {
    GOLDEN.lines().map(str::to_owned).collect()
}

fn time_us(event: &str) -> u64 {
    serde_json::from_str::<Value>(event).unwrap()["time_us"]
        .as_u64()
        .unwrap()
}

/// `count` golden events, re-timed one second apart from `first_us`.
fn one_per_second(count: usize, first_us: u64) -> Vec<String> {
    golden()
        .iter()
        .cycle()
        .take(count)
        .zip(0u64..)
        .map(|(line, i)| {
            let mut event: Value = serde_json::from_str(line).unwrap();
            event["time_us"] = (first_us + i * 1_000_000).into();
            event.to_string()
        })
        .collect()
}

fn config(api: JetstreamApi, urls: &[String]) -> JetstreamConfig {
    let mut config = JetstreamConfig::new(
        urls.iter().map(|url| Url::parse(url).unwrap()).collect(),
        api,
        COLLECTIONS.map(String::from).to_vec(),
    );
    config.reconnect = ReconnectPolicy {
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        healthy_after: Duration::from_secs(60),
    };
    config
}

struct Running {
    events: mpsc::Receiver<RawEvent>,
    status: StatusHandle,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), SinkClosed>>,
}

impl Running {
    fn start(config: JetstreamConfig, cursor: Option<u64>, capacity: usize) -> Self {
        let source = JetstreamSource::new(config, cursor).unwrap();
        let status = source.status();
        let (sink, events) = mpsc::channel(capacity);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(source.run(sink, stopped));
        Self {
            events,
            status,
            stop,
            task,
        }
    }

    async fn next(&mut self) -> RawEvent {
        tokio::time::timeout(PATIENCE, self.events.recv())
            .await
            .expect("no event in time")
            .expect("the source ended")
    }

    async fn take(&mut self, count: usize) -> Vec<RawEvent> {
        let mut events = Vec::with_capacity(count);
        for _ in 0..count {
            events.push(self.next().await);
        }
        events
    }

    /// Waits until the source has handed on `count` events, then a little
    /// longer, so that a source that would take more has had time to.
    async fn settle_at(&self, count: u64) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.status.snapshot().events_received < count {
            assert!(tokio::time::Instant::now() < deadline, "no event in time");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    /// Stops the source and returns how `run` ended.
    async fn stop(
        self,
    ) -> (
        Result<(), SinkClosed>,
        StatusHandle,
        mpsc::Receiver<RawEvent>,
    ) {
        self.stop.send(true).unwrap();
        let ended = tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the source did not stop")
            .expect("the source panicked");
        (ended, self.status, self.events)
    }
}

fn json(event: &RawEvent) -> &str {
    std::str::from_utf8(&event.json).unwrap()
}

#[tokio::test]
async fn streams_every_golden_event_decompressed_and_subscribes_as_asked() {
    let events = golden();
    let frames = v1_frames(&events);
    let server = Jetstream::start(move |_, _| Reply::Serve {
        messages: frames.clone(),
        then_drop: false,
    })
    .await;
    let mut source = Running::start(config(JetstreamApi::V1, &[server.url()]), None, 64);

    let received = source.take(events.len()).await;
    for (event, line) in received.iter().zip(&events) {
        assert_eq!(json(event), line);
        assert_eq!(event.cursor, time_us(line));
    }

    let asked = server.asked();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].path, "/subscribe");
    assert_eq!(asked[0].all("wantedCollections"), COLLECTIONS);
    assert_eq!(asked[0].get("compress"), Some("true"));
    assert_eq!(asked[0].get("maxMessageSizeBytes"), Some("8388608"));
    assert_eq!(asked[0].cursor(), None, "no stored cursor: live tail");

    let status = source.status.snapshot();
    assert_eq!(
        status.connected_url.as_deref(),
        Some(format!("{}/", server.url()).as_str())
    );
    assert_eq!(status.events_received, events.len() as u64);
    assert_eq!(
        status.cursor,
        events.iter().map(|e| time_us(e)).max(),
        "the newest time, though the events arrive out of order"
    );
    assert!(status.lag.is_some());
    assert_eq!((status.frames_refused, status.disconnects), (0, 0));

    let (ended, status, _) = source.stop().await;
    assert!(ended.is_ok(), "{ended:?}");
    assert_eq!(status.snapshot().connected_url, None);
}

#[tokio::test]
async fn resumes_from_the_rewound_cursor_after_a_drop_with_nothing_lost() {
    let events = one_per_second(20, MINUTE_US);
    let served = events.clone();
    // Like Jetstream, serve every event at or after the cursor; the first
    // connection breaks after ten events.
    let server = Jetstream::start(move |index, asked| {
        let from = asked.cursor().unwrap_or(0);
        let mut due: Vec<String> = served
            .iter()
            .filter(|e| time_us(e) >= from)
            .cloned()
            .collect();
        if index == 0 {
            due.truncate(10);
        }
        Reply::Serve {
            messages: v1_frames(&due),
            then_drop: index == 0,
        }
    })
    .await;
    // Restarted with a stored cursor: the third event's time.
    let stored = MINUTE_US + 2_000_000;
    let mut source = Running::start(config(JetstreamApi::V1, &[server.url()]), Some(stored), 64);

    // First connection: all ten (the rewind reaches back before the first
    // event). Second: from the tenth event's time less the rewind, so the
    // fifth event onwards: sixteen.
    let mut received = source.take(10).await;
    received.extend(source.take(16).await);
    let resumed_from = MINUTE_US + 9_000_000 - REWIND_US;

    let asked = server.asked();
    assert_eq!(asked.len(), 2);
    assert_eq!(asked[0].cursor(), Some(stored - REWIND_US));
    assert_eq!(asked[1].cursor(), Some(resumed_from));

    let mut seen: Vec<&str> = received.iter().map(json).collect();
    seen.sort_unstable();
    let replayed = received.len() - events.len();
    seen.dedup();
    assert_eq!(seen.len(), events.len(), "every event, once at least");
    assert_eq!(replayed, 6, "the five rewound seconds, both ends included");

    let status = source.status.snapshot();
    assert_eq!(status.cursor, Some(MINUTE_US + 19_000_000));
    assert_eq!(status.disconnects, 1);
    assert!(status.last_error.is_some());
    let (ended, _, _) = source.stop().await;
    assert!(ended.is_ok());
}

#[tokio::test]
async fn fails_over_to_the_next_url_when_the_first_ones_refuse() {
    // A port nobody listens on, then a server refusing the upgrade.
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("ws://{}", listener.local_addr().unwrap())
    };
    let refusing = Jetstream::start(|_, _| {
        Reply::Refuse(
            400,
            r#"{"error":"InvalidRequest","message":"too many collections"}"#,
        )
    })
    .await;
    let events = golden();
    let frames = v1_frames(&events);
    let working = Jetstream::start(move |_, _| Reply::Serve {
        messages: frames.clone(),
        then_drop: false,
    })
    .await;
    let urls = [closed, refusing.url(), working.url()];
    let mut source = Running::start(config(JetstreamApi::V1, &urls), None, 64);

    let received = source.take(events.len()).await;
    assert_eq!(json(&received[0]), events[0]);
    let status = source.status.snapshot();
    assert_eq!(
        status.connected_url.as_deref(),
        Some(format!("{}/", working.url()).as_str())
    );
    assert_eq!(status.disconnects, 2);
    let reason = status.last_error.unwrap();
    assert!(
        reason.contains("400") && reason.contains("InvalidRequest too many collections"),
        "{reason}"
    );
    assert_eq!(refusing.asked().len(), 1);
    let (ended, _, _) = source.stop().await;
    assert!(ended.is_ok());
}

#[tokio::test]
async fn skips_hostile_frames_and_keeps_the_connection() {
    let events = golden();
    let limits = FrameLimits {
        max_compressed_bytes: 4 * 1024,
        max_decompressed_bytes: 64 * 1024,
    };
    let undeclared_bomb = {
        use std::io::Write;
        let mut encoder =
            zstd::stream::write::Encoder::with_dictionary(Vec::new(), 3, V1_DICTIONARY).unwrap();
        encoder.write_all(&vec![b'{'; 128 * 1024]).unwrap();
        Message::Binary(encoder.finish().unwrap().into())
    };
    let hostile = vec![
        // Over the compressed cap.
        Message::Binary(vec![0x28; 5 * 1024].into()),
        // Not zstd at all.
        Message::Binary(b"\x28\xb5\x2f\xfd garbage".to_vec().into()),
        // A zip bomb declaring 1 MiB, and one declaring nothing.
        compressed(V1_DICTIONARY, &" ".repeat(1024 * 1024)),
        undeclared_bomb,
        // The v2 dictionary on the v1 wire.
        compressed(V2_DICTIONARY, &events[1]),
        // Text that is no event, and an event without its time.
        Message::Text("not json".into()),
        Message::Text(r#"{"did":"did:plc:x","kind":"commit"}"#.into()),
    ];
    let refused = hostile.len() as u64;
    let mut messages = vec![compressed(V1_DICTIONARY, &events[0])];
    messages.extend(hostile);
    messages.push(compressed(V1_DICTIONARY, &events[2]));
    messages.push(Message::Text(events[3].clone().into()));
    let server = Jetstream::start(move |_, _| Reply::Serve {
        messages: messages.clone(),
        then_drop: false,
    })
    .await;
    let mut config = config(JetstreamApi::V1, &[server.url()]);
    config.limits = limits;
    let mut source = Running::start(config, None, 64);

    let received = source.take(3).await;
    let received: Vec<&str> = received.iter().map(json).collect();
    assert_eq!(received, [&events[0], &events[2], &events[3]]);
    let status = source.status.snapshot();
    assert_eq!(status.frames_refused, refused);
    assert_eq!(status.disconnects, 0, "the connection stays up");
    assert_eq!(server.asked().len(), 1);
    assert_eq!(server.asked()[0].get("maxMessageSizeBytes"), Some("65536"));
    let (ended, _, _) = source.stop().await;
    assert!(ended.is_ok());
}

/// A v2 `#commit` payload, `second` seconds into the golden minute.
fn v2_payload(seq: u64, second: u64) -> String {
    json!({
        "$type": "network.bsky.jetstream.subscribeEvents#commit",
        "seq": seq,
        "did": "did:plc:aliceeeeeeeeeeeeeeeeeeee",
        "time": format!("2026-05-25T14:23:{second:02}.250000Z"),
        "rev": "3mmoojp7vgo2g",
        "operation": "create",
        "collection": "app.bsky.feed.like",
        "rkey": format!("3mmoojp7etg{seq}"),
        "record": {"$type": "app.bsky.feed.like", "createdAt": "2026-05-25T14:23:29.000Z",
            "subject": {"cid": "bafyreib25swk3a6waplk2ie75u4a3qfejnkoiezfowuz7sa74i7tief3di",
                "uri": "at://did:plc:bobbbbbbbbbbbbbbbbbbbbbb/app.bsky.feed.post/3mmoodizfwc2j"}},
        "cid": "bafyreib25swk3a6waplk2ie75u4a3qfejnkoiezfowuz7sa74i7tief3di"
    })
    .to_string()
}

fn v2_message(payload: &str) -> Message {
    compressed(
        V2_DICTIONARY,
        &format!(r#"{{"$type":"message","payload":{payload}}}"#),
    )
}

#[tokio::test]
async fn v2_reads_payloads_and_resumes_by_time_on_the_next_server() {
    let payloads: Vec<String> = (0..6).map(|i| v2_payload(500 + i, 20 + i)).collect();
    let first = payloads[..3].to_vec();
    // Server A: an advisory, three events, then it drops a slow consumer.
    let a = Jetstream::start(move |_, _| {
        let mut messages = vec![v2_message(
            r#"{"$type":"network.bsky.jetstream.subscribeEvents#info","name":"OutdatedCursor"}"#,
        )];
        messages.extend(first.iter().map(|p| v2_message(p)));
        messages.push(compressed(
            V2_DICTIONARY,
            r#"{"$type":"error","error":"ConsumerTooSlow","message":"bye"}"#,
        ));
        Reply::Serve {
            messages,
            then_drop: true,
        }
    })
    .await;
    // Server B has its own seq numbers: only a time means anything to it.
    let rest = payloads[3..].to_vec();
    let b = Jetstream::start(move |_, _| Reply::Serve {
        messages: rest.iter().map(|p| v2_message(p)).collect(),
        then_drop: false,
    })
    .await;
    let mut source = Running::start(config(JetstreamApi::V2, &[a.url(), b.url()]), None, 64);

    let received = source.take(payloads.len()).await;
    for (i, (event, payload)) in received.iter().zip(&payloads).enumerate() {
        assert_eq!(json(event), payload);
        assert_eq!(
            event.cursor,
            MINUTE_US + (20 + i as u64) * 1_000_000 + 250_000
        );
    }

    let asked_a = &a.asked()[0];
    assert_eq!(asked_a.path, "/xrpc/network.bsky.jetstream.subscribeEvents");
    assert_eq!(asked_a.all("collections"), COLLECTIONS);
    assert_eq!(asked_a.get("zstdDictionary"), Some("20260811"));
    assert_eq!(
        asked_a.get("wantedCollections"),
        None,
        "v2 rejects v1 names"
    );
    assert_eq!(asked_a.get("compress"), None);
    assert_eq!(asked_a.cursor(), None);
    let asked_b = &b.asked()[0];
    assert_eq!(
        asked_b.cursor(),
        Some(received[2].cursor - REWIND_US),
        "a timestamp (≥ 10^15) the next server can read"
    );

    let status = source.status.snapshot();
    assert_eq!(status.frames_refused, 0, "an advisory is not a bad frame");
    assert_eq!(status.disconnects, 1);
    assert!(status.last_error.unwrap().contains("ConsumerTooSlow"));
    let (ended, _, _) = source.stop().await;
    assert!(ended.is_ok());
}

#[tokio::test]
async fn a_full_sink_pauses_reading_without_losing_events() {
    let events = golden();
    let frames = v1_frames(&events);
    let server = Jetstream::start(move |_, _| Reply::Serve {
        messages: frames.clone(),
        then_drop: false,
    })
    .await;
    let mut source = Running::start(config(JetstreamApi::V1, &[server.url()]), None, 1);

    source.settle_at(1).await;
    let status = source.status.snapshot();
    assert_eq!(status.events_received, 1, "one in the channel, one waiting");
    assert_eq!(status.cursor, Some(time_us(&events[0])));

    let received = source.take(events.len()).await;
    let received: Vec<&str> = received.iter().map(json).collect();
    assert_eq!(received, events);
    let (ended, _, _) = source.stop().await;
    assert!(ended.is_ok());
}

#[tokio::test]
async fn stop_ends_the_source_even_while_the_sink_is_full() {
    let frames = v1_frames(&golden());
    let server = Jetstream::start(move |_, _| Reply::Serve {
        messages: frames.clone(),
        then_drop: false,
    })
    .await;
    let source = Running::start(config(JetstreamApi::V1, &[server.url()]), None, 1);
    source.settle_at(1).await;

    let (ended, status, mut events) = source.stop().await;
    assert!(ended.is_ok(), "{ended:?}");
    assert_eq!(status.snapshot().events_received, 1);
    assert!(events.recv().await.is_some());
    assert!(events.recv().await.is_none(), "nothing after the stop");
}

#[tokio::test]
async fn ends_with_an_error_when_the_receiver_is_gone() {
    let frames = v1_frames(&golden());
    let server = Jetstream::start(move |_, _| Reply::Serve {
        messages: frames.clone(),
        then_drop: false,
    })
    .await;
    let Running {
        events, task, stop, ..
    } = Running::start(config(JetstreamApi::V1, &[server.url()]), None, 1);
    drop(events);
    let ended = tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
    assert!(matches!(ended, Err(SinkClosed)), "{ended:?}");
    drop(stop);
}
