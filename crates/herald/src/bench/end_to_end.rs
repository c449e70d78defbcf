//! `end-to-end`: event in, push out. A local Jetstream stand-in streams
//! events at a steady rate over a real WebSocket, dictionary-compressed;
//! herald's source, pipeline, SQLite queue, dispatcher and UnifiedPush
//! provider run as `serve` runs them; a local receiver takes the pushes.
//! The latency of each push is from the moment its event was handed to the
//! stand-in to the moment the receiver accepted the push.
//!
//! The stream is the synthetic network's (`synthetic_jetstream`, with no
//! registered account in it, so it is pure load), with probe events mixed
//! in: likes of registered accounts' posts, each with a record key that
//! carries its publication time, so the receiver can time each push by its
//! `uri` alone. The per-recipient rate limit is off (probes would hit it);
//! the actor of every probe has a profile on a local PDS, so after the first
//! push names come from the cache, as for an active account.
//!
//! The stand-in compresses each frame on this machine, taking CPU the real
//! Jetstream spends elsewhere; the figures are therefore a little worse than
//! herald alone would give.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use herald_atproto::did::Did;
use herald_core::model::{Account, AppId, NewDevice, Platform, Transport};
use herald_standins::jetstream::JetstreamService;
use herald_standins::pds::PdsService;
use herald_standins::plc::PlcDirectory;
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::json;
use tokio::sync::{Notify, watch};

use super::synthetic_jetstream::SyntheticNetwork;
use super::{Report, now_us, scratch_dir, serve_on_loopback};
use crate::config::{AppConfig, Config, UnifiedPushConfig};
use crate::runtime::Runtime;
use crate::server::AppState;

#[derive(clap::Args)]
pub struct Args {
    /// Events per second on the stream, probes included.
    #[arg(long, default_value_t = 2_000)]
    rate: usize,
    /// How long the stream runs.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// One event in this many is a probe that pushes.
    #[arg(long, default_value_t = 100)]
    probe_every: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

const APP: &str = "bench";
/// Registered accounts the probes like posts of, in turn.
const RECIPIENTS: usize = 100;
/// The stream is published in slices this often.
const TICK: Duration = Duration::from_millis(5);
/// Longest wait for the last pushes after the stream ends.
const DRAIN: Duration = Duration::from_secs(60);

/// What the receiver saw.
#[derive(Default)]
struct Receiver {
    received: AtomicUsize,
    expected: AtomicUsize,
    latencies_us: Mutex<Vec<u64>>,
    done: Notify,
}

/// A push's publication time, from its like's record key `p<time>x<n>`.
fn published_us(body: &[u8]) -> Option<u64> {
    let message: serde_json::Value = serde_json::from_slice(body).ok()?;
    let uri = message["data"]["uri"].as_str()?;
    let rkey = uri.rsplit('/').next()?;
    rkey.strip_prefix('p')?.split('x').next()?.parse().ok()
}

async fn receive(State(r): State<Arc<Receiver>>, body: Bytes) -> StatusCode {
    let Some(sent_us) = published_us(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    r.latencies_us
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(now_us().saturating_sub(sent_us));
    if r.received.fetch_add(1, Ordering::SeqCst) + 1 == r.expected.load(Ordering::SeqCst) {
        r.done.notify_one();
    }
    StatusCode::CREATED
}

/// The local network: Jetstream, PLC and the probes' actor on a PDS.
struct Network {
    jetstream: JetstreamService,
    plc: PlcDirectory,
    pds: PdsService,
    actor: String,
}

impl Network {
    async fn start() -> Self {
        let (jetstream, plc, pds) = (
            JetstreamService::start().await,
            PlcDirectory::start().await,
            PdsService::start().await,
        );
        let actor = plc.create_account();
        plc.set_identity(&actor, "probe.example.com", &pds.url());
        pds.put_record(
            &actor,
            "app.bsky.actor.profile",
            "self",
            json!({"$type": "app.bsky.actor.profile", "displayName": "Probe"}),
        );
        Self {
            jetstream,
            plc,
            pds,
            actor,
        }
    }

    /// A like by the probe actor of recipient `to`'s post, timed now.
    fn probe(&self, n: usize, to: &str) -> String {
        let now = now_us();
        json!({
            "did": self.actor, "time_us": now, "kind": "commit",
            "commit": {
                "rev": "3mmoojp7vgo2g", "operation": "create", "collection": "app.bsky.feed.like",
                "rkey": format!("p{now}x{n}"),
                "record": {
                    "$type": "app.bsky.feed.like", "createdAt": "2026-12-01T10:00:00.000Z",
                    // A post of its own: a repeated like of one post is pushed once.
                    "subject": {"uri": format!("at://{to}/app.bsky.feed.post/post{n}"), "cid": "bafyreiaxf7tgbfydx3465sckitq6v564thxe2wwydbi7cwxbxvgssje3em"},
                },
                "cid": "bafyreidqpc7si3dbimffi64lz3xsx2qt45ip7rpna2qpslcddp23itjjzm",
            },
        })
        .to_string()
    }
}

pub async fn run(args: Args) -> Result<Report, String> {
    if args.rate == 0 || args.seconds == 0 || args.probe_every == 0 {
        return Err("--rate, --seconds and --probe-every must be at least 1".into());
    }
    let total = args.rate * args.seconds as usize;
    let probes = total.div_ceil(args.probe_every);
    let receiver = Arc::new(Receiver::default());
    receiver.expected.store(probes, Ordering::SeqCst);
    let endpoint = start_receiver(Arc::clone(&receiver)).await?;
    let network = Network::start().await;
    let dir = scratch_dir("end-to-end")?;
    let state = Arc::new(AppState {
        runtime: runtime(&dir, &network).await?,
        admin_token: None,
        gorush_token: None,
        metrics: PrometheusBuilder::new().build_recorder().handle(),
    });
    let recipients = register(&state.runtime, &network, &endpoint).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let dispatcher = tokio::spawn(Arc::clone(&state.runtime.dispatcher).run(stop_rx.clone()));
    let source = tokio::spawn(crate::atproto_source::run(Arc::clone(&state), stop_rx));

    let mut load = SyntheticNetwork::new(1, 1_000, 0.0);
    let background = load.events(total);
    let started = Instant::now();
    let mut published = 0usize;
    let mut tick = tokio::time::interval(TICK);
    while published < total {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * args.rate as f64) as usize).min(total);
        while published < due {
            let event = if published.is_multiple_of(args.probe_every) {
                let to = &recipients[(published / args.probe_every) % recipients.len()];
                network.probe(published, to)
            } else {
                background[published].clone()
            };
            network.jetstream.publish(event);
            published += 1;
        }
    }
    let streamed = started.elapsed();
    let waited = tokio::time::timeout(DRAIN, receiver.done.notified()).await;
    let elapsed = started.elapsed();
    let _ = stop_tx.send(true);
    let _ = dispatcher.await;
    let _ = source.await;
    state.runtime.store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    let arrived = receiver.received.load(Ordering::SeqCst);
    if waited.is_err() {
        return Err(format!(
            "only {arrived} of {probes} pushes arrived within {DRAIN:?} of the stream's end \
             ({} events still unsent by the stand-in)",
            network.jetstream.unsent()
        ));
    }
    let latencies_us = std::mem::take(
        &mut *receiver
            .latencies_us
            .lock()
            .unwrap_or_else(|p| p.into_inner()),
    );
    Ok(Report {
        title: "end-to-end (Jetstream stand-in -> source -> rules -> SQLite queue -> UnifiedPush -> receiver)".into(),
        unit: "pushes",
        count: probes,
        elapsed,
        latencies_us,
        facts: vec![
            ("events_per_second_offered", json!(args.rate)),
            ("events", json!(total)),
            ("stream_seconds", json!(streamed.as_secs_f64())),
            ("probe_every", json!(args.probe_every)),
            ("store", json!("sqlite")),
        ],
    })
}

async fn start_receiver(receiver: Arc<Receiver>) -> Result<String, String> {
    let app = Router::new()
        .route("/up", post(receive))
        .with_state(receiver);
    let address = serve_on_loopback(app).await?;
    Ok(format!("http://{address}/up"))
}

/// herald as `serve` configures it, reading the local Jetstream.
async fn runtime(dir: &std::path::Path, network: &Network) -> Result<Runtime, String> {
    let mut config = Config {
        database_url: format!("sqlite://{}/bench.db", dir.display()),
        allow_private_endpoints: true,
        ..Config::default()
    };
    config.apps.insert(
        APP.into(),
        AppConfig {
            unifiedpush: Some(UnifiedPushConfig::default()),
            ..AppConfig::default()
        },
    );
    let atproto = &mut config.atproto;
    atproto.service_did = Some("did:web:localhost%3A1".into());
    atproto.public_url = Some("http://localhost:1".into());
    atproto.plc_url = network.plc.url();
    atproto.jetstream.urls = vec![network.jetstream.url()];
    atproto.rate_limit.pushes = 0;
    Runtime::start(config).await.map_err(|e| e.to_string())
}

/// Registers the probes' recipients, each with a device at the receiver.
async fn register(
    runtime: &Runtime,
    network: &Network,
    endpoint: &str,
) -> Result<Vec<String>, String> {
    let mut dids = Vec::new();
    for n in 0..RECIPIENTS {
        // On the PLC and a PDS, as real accounts: reading their past blocks
        // finds none.
        let did = network.plc.create_account();
        network
            .plc
            .set_identity(&did, &format!("r{n}.example.com"), &network.pds.url());
        let parsed = Did::parse(&did).map_err(|e| e.to_string())?;
        let device = NewDevice {
            account: Account::parse(&format!("atproto:{did}")).map_err(|e| e.to_string())?,
            app_id: AppId::parse(APP).map_err(|e| e.to_string())?,
            platform: Platform::Android,
            transport: Transport::UnifiedPush,
            // One receiver, one URL per device: the token is unique per app.
            token: format!("{endpoint}?d={n}"),
            options: Default::default(),
        };
        runtime
            .store_device(&device)
            .await
            .map_err(|e| e.to_string())?;
        runtime.recipients.insert(parsed);
        dids.push(did);
    }
    Ok(dids)
}
