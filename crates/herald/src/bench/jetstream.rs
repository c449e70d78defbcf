//! `jetstream`: the AT Protocol ingest path a user runs, on a synthetic
//! stream shaped like the network's ([`super::synthetic_jetstream`]):
//! Jetstream's frames decompressed with the v1 dictionary, each event's
//! cursor read, parsed, run through the rules against the recipient index,
//! rendered, and queued in SQLite with the cursor.
//!
//! Every event is compressed up front, one zstd frame with the v1
//! dictionary as Jetstream sends it, so the timing holds only what herald
//! does with a frame once the socket has it. Two measurements:
//!
//! - **The whole path**, wired as `serve` wires it: a producer task decodes
//!   the frames (the source's work) and feeds the `JetstreamPipeline`
//!   through a bounded channel; the pipeline parses, applies the rules and
//!   the replay window, renders, and commits every event that notifies
//!   someone in one SQLite transaction with its cursor. Producer and
//!   pipeline run in parallel, so the CPU time per event counts both cores.
//!   The per-recipient rate limit is on, as `serve` configures it; actor
//!   names are not looked up (that goes to each actor's PDS, which a
//!   loopback benchmark does not have), so pushes say "Someone". WebSocket
//!   framing and the source's status bookkeeping are left out.
//! - **One core, no queue**: decode, parse, rules (with the state updates
//!   they depend on) in a tight loop on one thread, and the same loop
//!   stopped after decoding and after parsing. This is the part that runs
//!   for every event on the network, the figure issue 8's target is about;
//!   the queue only sees the few events that notify someone.
//!
//! Registered accounts: the accounts the stream points at get a device in
//! SQLite, as a registration would give them; every other registered account
//! is only put in the recipient index, which is all the rules read.
//! Registering a million devices would take longer than the benchmark and
//! measure registration, not ingest. Resident memory is read before and
//! after filling the index; the difference over the accounts added is the
//! index's cost per registered account.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_atproto::did::Did;
use herald_atproto::jetstream::RawEvent;
use herald_atproto::jetstream_event::parse_event;
use herald_atproto::jetstream_frame::{Dictionary, FrameDecoder, FrameLimits};
use herald_atproto::jetstream_pipeline::JetstreamPipeline;
use herald_atproto::recipients::RecipientIndex;
use herald_atproto::rule_state::MemoryState;
use herald_atproto::rules::notifications;
use herald_core::model::{Account, AppId, NewDevice, Platform, Transport};
use herald_standins::jetstream::FrameEncoder;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::process::{IndexMemory, peak_resident_bytes, process_cpu, resident_bytes, thread_cpu};
use super::synthetic_jetstream::SyntheticNetwork;
use super::{Report, unifiedpush_runtime};
use crate::runtime::Runtime;

#[derive(clap::Args)]
pub struct Args {
    /// Events in the synthetic stream.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Registered AT Protocol accounts (the recipient index's size).
    #[arg(long, default_value_t = 10_000)]
    accounts: usize,
    /// Chance that an account a record points at (a liked post's author, a
    /// followed or mentioned account, …) is a registered one.
    #[arg(long, default_value_t = 0.01)]
    recipient_share: f64,
    /// Seed of the stream: the same seed gives the same events.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

const APP: &str = "bench";
const MIB: f64 = 1024.0 * 1024.0;

pub async fn run(args: Args) -> Result<Report, String> {
    if args.events == 0 || args.accounts == 0 {
        return Err("--events and --accounts must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&args.recipient_share) {
        return Err("--recipient-share must be between 0 and 1".into());
    }
    let (runtime, dir) = unifiedpush_runtime("jetstream", APP).await?;
    let mut network = SyntheticNetwork::new(args.seed, args.accounts, args.recipient_share);
    let index = fill_index(&runtime.recipients, network.registered())?;

    let events = network.events(args.events);
    let json_bytes: usize = events.iter().map(String::len).sum();
    let mut encoder = FrameEncoder::new();
    let frames: Arc<[Vec<u8>]> = events
        .iter()
        .map(|event| encoder.encode(event.as_bytes()))
        .collect();
    drop(events);
    let frame_bytes: usize = frames.iter().map(Vec::len).sum();
    let mut devices = 0;
    for (n, did) in network.targeted().enumerate() {
        runtime
            .store_device(&device(did, n)?)
            .await
            .map_err(|e| e.to_string())?;
        devices += 1;
    }
    drop(network);

    let whole = whole_path(&runtime, Arc::clone(&frames)).await?;
    let mut one_core = Vec::new();
    for stage in [Stage::Decode, Stage::Parse, Stage::Rules] {
        let frames = Arc::clone(&frames);
        let recipients = Arc::clone(&runtime.recipients);
        let pass = tokio::task::spawn_blocking(move || one_core_pass(&frames, recipients, stage))
            .await
            .map_err(|e| e.to_string())??;
        one_core.push(pass);
    }
    let rules = &one_core[2];
    if rules.notifications != whole.notifications + whole.rate_limited {
        return Err(format!(
            "the pipeline queued {} notifications and held back {}, the rules alone found {}",
            whole.notifications, whole.rate_limited, rules.notifications
        ));
    }
    let rss_end = resident_bytes()?;
    let rss_peak = peak_resident_bytes()?;
    runtime.store.close().await;
    let _ = std::fs::remove_dir_all(&dir);

    let count = frames.len();
    let per_event_us = |d: Duration| round2(d.as_secs_f64() * 1e6 / count as f64);
    let mib = |bytes: u64| round2(bytes as f64 / MIB);
    let elapsed = whole.elapsed.as_secs_f64();
    Ok(Report {
        title: "jetstream (v1 frames -> decode -> parse -> rules -> SQLite queue)".into(),
        unit: "events",
        count,
        elapsed: whole.elapsed,
        latencies_us: Vec::new(),
        facts: vec![
            ("accounts", json!(args.accounts)),
            ("recipient_share", json!(args.recipient_share)),
            ("seed", json!(args.seed)),
            ("devices", json!(devices)),
            ("json_bytes_per_event", json!(json_bytes / count)),
            ("frame_bytes_per_event", json!(frame_bytes / count)),
            ("notifications", json!(whole.notifications)),
            ("rate_limited", json!(whole.rate_limited)),
            (
                "notifications_per_second",
                json!((whole.notifications as f64 / elapsed).round() as u64),
            ),
            ("cpu_us_per_event", per_event_us(whole.cpu)),
            (
                "cores_busy",
                round2(whole.cpu.as_secs_f64() / elapsed.max(f64::EPSILON)),
            ),
            ("one_core_decode_per_second", one_core[0].rate()),
            ("one_core_decode_parse_per_second", one_core[1].rate()),
            ("one_core_decode_parse_rules_per_second", rules.rate()),
            ("one_core_rules_cpu_us_per_event", per_event_us(rules.cpu)),
            ("rss_mib_before_index", mib(index.rss_before)),
            ("rss_mib_after_index", mib(index.rss_after)),
            ("index_bytes_per_account", json!(index.bytes_per_entry())),
            ("rss_mib_end", mib(rss_end)),
            ("rss_mib_peak", mib(rss_peak)),
        ],
    })
}

/// A UnifiedPush device for a registered account the stream points at.
fn device(did: &str, n: usize) -> Result<NewDevice, String> {
    Ok(NewDevice {
        account: Account::parse(&format!("atproto:{did}")).map_err(|e| e.to_string())?,
        app_id: AppId::parse(APP).map_err(|e| e.to_string())?,
        platform: Platform::Android,
        transport: Transport::UnifiedPush,
        token: format!("https://push.example.net/up/{n}"),
        options: Default::default(),
    })
}

/// Puts every registered account in the index. Done before anything else
/// is allocated and freed (the stream), and with the DIDs' text still alive
/// after the second reading, so the allocator has no freed memory to hand
/// the index that would hide part of its cost.
fn fill_index(index: &RecipientIndex, registered: &[String]) -> Result<IndexMemory, String> {
    IndexMemory::measure(|| {
        let len_before = index.len();
        for did in registered {
            index.insert(Did::parse(did).map_err(|e| e.to_string())?);
        }
        Ok(index.len() - len_before)
    })
}

/// What the whole path did.
struct Whole {
    elapsed: Duration,
    cpu: Duration,
    notifications: u64,
    /// Candidates the per-recipient rate limit held back.
    rate_limited: u64,
}

async fn whole_path(runtime: &Runtime, frames: Arc<[Vec<u8>]>) -> Result<Whole, String> {
    let max_event_age = Duration::from_secs(runtime.config.atproto.jetstream.max_event_age_secs);
    let pipeline = JetstreamPipeline::new(
        Arc::clone(&runtime.recipients),
        runtime.fan_out.clone(),
        max_event_age,
    )
    .with_rate_limit(runtime.config.atproto.rate_limit.limit());
    let stats = pipeline.stats();
    let (events_tx, events_rx) = mpsc::channel(crate::atproto_source::EVENTS_IN_FLIGHT);
    // Never set: the pipeline ends when the producer hangs up.
    let (_stop_tx, stop_rx) = watch::channel(false);
    let cpu_before = process_cpu()?;
    let started = Instant::now();
    let producer = tokio::spawn(async move {
        let mut decoder = decoder()?;
        for frame in frames.iter() {
            let json = decoder.decode(frame).map_err(|e| e.to_string())?.to_vec();
            if events_tx.send(RawEvent::from_v1(json)?).await.is_err() {
                return Err("the pipeline stopped before the stream ended".to_owned());
            }
        }
        Ok(frames.len())
    });
    pipeline.run(events_rx, stop_rx).await;
    let elapsed = started.elapsed();
    let cpu = process_cpu()?.saturating_sub(cpu_before);
    let sent = producer.await.map_err(|e| e.to_string())??;

    let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let (handled, unreadable, too_old) = (
        count(&stats.events),
        count(&stats.unreadable),
        count(&stats.too_old),
    );
    if handled != sent as u64 || unreadable > 0 || too_old > 0 {
        return Err(format!(
            "of {sent} events the pipeline handled {handled}, {unreadable} unreadable, {too_old} too old"
        ));
    }
    Ok(Whole {
        elapsed,
        cpu,
        notifications: count(&stats.notifications),
        rate_limited: count(&stats.rate_limited),
    })
}

fn decoder() -> Result<FrameDecoder, String> {
    FrameDecoder::new(Dictionary::V1, FrameLimits::default()).map_err(|e| e.to_string())
}

/// How far the one-core loop takes each frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Decode,
    Parse,
    Rules,
}

/// One pass of the one-core loop.
struct Pass {
    events: usize,
    elapsed: Duration,
    cpu: Duration,
    notifications: u64,
}

impl Pass {
    fn rate(&self) -> Value {
        json!((self.events as f64 / self.elapsed.as_secs_f64()).round() as u64)
    }
}

fn one_core_pass(
    frames: &[Vec<u8>],
    recipients: Arc<RecipientIndex>,
    stage: Stage,
) -> Result<Pass, String> {
    let mut decoder = decoder()?;
    let mut state = MemoryState::with_recipients(recipients);
    let mut notified = 0;
    let cpu_before = thread_cpu()?;
    let started = Instant::now();
    for frame in frames {
        let json = decoder.decode(frame).map_err(|e| e.to_string())?;
        if stage == Stage::Decode {
            black_box(json);
            continue;
        }
        let event = parse_event(json).map_err(|e| e.to_string())?;
        if stage == Stage::Parse {
            black_box(event);
            continue;
        }
        notified += notifications(&event, &state).len() as u64;
        state.apply(&event);
    }
    Ok(Pass {
        events: frames.len(),
        elapsed: started.elapsed(),
        cpu: thread_cpu()?.saturating_sub(cpu_before),
        notifications: notified,
    })
}

fn round2(x: f64) -> Value {
    json!((x * 100.0).round() / 100.0)
}
