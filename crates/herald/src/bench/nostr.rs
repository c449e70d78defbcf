//! `nostr`: the relay ingest path a user runs, on a synthetic stream of
//! signed events: each event's JSON parsed and its id and BIP-340
//! signature checked (`Event::from_json`, what a relay connection does
//! with every `EVENT`), then the seen-set, the rules, the policy and, for
//! the events that notify someone, the SQLite queue (`RelayPipeline`).
//!
//! The stream is built and signed before anything is timed: signing costs
//! about as much as verifying, so 50,000 events take several seconds on two
//! cores, which is why the default is 50,000 rather than the Jetstream
//! benchmark's 200,000. Its mix is what a watched key's subscription
//! brings ([`KIND_MIX`]): reactions and notes first, then gift wraps, zap
//! receipts, reposts and NIP-04 DMs, with their real tag shapes and sizes
//! (a gift wrap's content is a NIP-44 payload of about 1.4 KB, a zap
//! receipt carries its bolt11 invoice and zap request). Authors are drawn
//! from [`AUTHORS`] keys, gift wraps included: on the network each wrap
//! has a one-time key, which costs a verifier nothing more.
//!
//! Relays send only events whose `#p` names a subscribed key, so by
//! default every event tags a registered key; `--recipient-share` below 1
//! models a relay that ignores the filter (the rest tag unregistered keys).
//! Registered keys the stream tags are drawn from [`TARGETED_KEYS`] of
//! them, which get a device in SQLite; every registered key is in the
//! recipient index, which is all the rules read. Resident memory is read
//! before and after filling the index, with the keys already allocated, so
//! the difference over the keys added is the index's cost per key.
//!
//! Two measurements:
//!
//! - **The whole path**, wired as `serve` wires it: one task verifies
//!   events (a relay connection's work) and feeds the pipeline through a
//!   bounded channel; the pipeline marks them seen, applies the rules,
//!   mute lists and rate limit, and commits every event that notifies
//!   someone in one SQLite transaction with the cursor and the seen-set.
//!   WebSocket framing and the `["EVENT", <id>, …]` envelope are left out.
//! - **One core, no queue**: verification alone, and verification with the
//!   rules, in a tight loop on one thread.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_core::model::{AppId, NewDevice, Platform, Transport};
use herald_core::store::Queue;
use herald_nostr::event::{self, kind};
use herald_nostr::recipients::RecipientIndex;
use herald_nostr::relay::Arrival;
use herald_nostr::relay_pipeline::RelayPipeline;
use herald_nostr::rules::{self, AppRules};
use herald_nostr::{Event, PublicKey, SecretKey};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::process::{IndexMemory, peak_resident_bytes, process_cpu, resident_bytes, thread_cpu};
use super::{Report, unifiedpush_runtime};
use crate::runtime::Runtime;

#[derive(clap::Args)]
pub struct Args {
    /// Signed events in the stream (signed up front, untimed; 50,000 take
    /// several seconds).
    #[arg(long, default_value_t = 50_000)]
    events: usize,
    /// Registered Nostr keys (the recipient index's size).
    #[arg(long, default_value_t = 100_000)]
    accounts: usize,
    /// Share of events that tag a registered key; 1, as a relay's `#p`
    /// filter gives.
    #[arg(long, default_value_t = 1.0)]
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
/// The relay the events claim to come from.
const RELAY: &str = "wss://relay.bench.invalid/";

/// Kinds in the stream, with their weights out of 100: reactions and notes
/// are most of what tags a key, then gift wraps (NIP-17 DMs), zap
/// receipts, reposts and the older NIP-04 DMs.
const KIND_MIX: &[(u16, u32)] = &[
    (kind::REACTION, 30),
    (kind::TEXT_NOTE, 38),
    (kind::GIFT_WRAP, 12),
    (kind::ZAP_RECEIPT, 8),
    (kind::REPOST, 8),
    (kind::ENCRYPTED_DIRECT_MESSAGE, 4),
];

/// Signing keys of the stream's authors: enough that no author dominates,
/// few enough that deriving them is instant.
const AUTHORS: usize = 1_000;

/// Registered keys the stream tags, each with a device in SQLite.
/// Registering every key would take longer than the benchmark and measure
/// registration, not ingest; 2,000 recipients of 50,000 events keep most
/// of them under the rate limit, as real recipients are.
const TARGETED_KEYS: usize = 2_000;

/// How far back gift wraps are dated (NIP-59: up to two days).
const GIFT_WRAP_BACKDATE_SECS: u64 = 2 * 24 * 60 * 60;

/// The base64 alphabet of encrypted contents.
const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub async fn run(args: Args) -> Result<Report, String> {
    if args.events == 0 || args.accounts == 0 {
        return Err("--events and --accounts must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&args.recipient_share) {
        return Err("--recipient-share must be between 0 and 1".into());
    }
    let (runtime, dir) = unifiedpush_runtime("nostr", APP).await?;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(args.seed);
    let registered: Vec<PublicKey> = (0..args.accounts)
        .map(|_| PublicKey::from_bytes(rng.random()))
        .collect();
    let index = fill_index(&runtime.nostr_recipients, &registered)?;
    let targeted = &registered[..TARGETED_KEYS.min(registered.len())];
    for (n, key) in targeted.iter().enumerate() {
        runtime
            .store_device(&device(key, n)?)
            .await
            .map_err(|e| e.to_string())?;
    }

    let signing = Instant::now();
    let events = signed_stream(&mut rng, targeted, &args);
    let signing = signing.elapsed();
    let json_bytes: usize = events.iter().map(String::len).sum();
    let events: Arc<[String]> = events.into();

    let whole = whole_path(&runtime, Arc::clone(&events)).await?;
    let mut one_core = Vec::new();
    for with_rules in [false, true] {
        let events = Arc::clone(&events);
        let index = Arc::clone(&runtime.nostr_recipients);
        let pass = tokio::task::spawn_blocking(move || one_core_pass(&events, &index, with_rules))
            .await
            .map_err(|e| e.to_string())??;
        one_core.push(pass);
    }
    let rss_end = resident_bytes()?;
    let rss_peak = peak_resident_bytes()?;
    runtime.store.close().await;
    let _ = std::fs::remove_dir_all(&dir);

    let count = events.len();
    let elapsed = whole.elapsed.as_secs_f64();
    let per_event_us = |d: Duration| round2(d.as_secs_f64() * 1e6 / count as f64);
    let mib = |bytes: u64| round2(bytes as f64 / MIB);
    Ok(Report {
        title: "nostr (event JSON -> id + signature -> seen, rules, policy -> SQLite queue)".into(),
        unit: "events",
        count,
        elapsed: whole.elapsed,
        latencies_us: Vec::new(),
        facts: vec![
            ("accounts", json!(args.accounts)),
            ("recipient_share", json!(args.recipient_share)),
            ("seed", json!(args.seed)),
            ("devices", json!(targeted.len())),
            ("json_bytes_per_event", json!(json_bytes / count)),
            ("signing_seconds_untimed", round2(signing.as_secs_f64())),
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
            ("one_core_verify_per_second", one_core[0].rate()),
            ("one_core_verify_rules_per_second", one_core[1].rate()),
            (
                "one_core_verify_cpu_us_per_event",
                per_event_us(one_core[0].cpu),
            ),
            ("rss_mib_before_index", mib(index.rss_before)),
            ("rss_mib_after_index", mib(index.rss_after)),
            ("index_bytes_per_key", json!(index.bytes_per_entry())),
            ("rss_mib_end", mib(rss_end)),
            ("rss_mib_peak", mib(rss_peak)),
        ],
    })
}

/// A UnifiedPush device for a registered key the stream tags.
fn device(key: &PublicKey, n: usize) -> Result<NewDevice, String> {
    Ok(NewDevice {
        account: key.account(),
        app_id: AppId::parse(APP).map_err(|e| e.to_string())?,
        platform: Platform::Android,
        transport: Transport::UnifiedPush,
        token: format!("https://push.example.net/up/{n}"),
        options: Default::default(),
    })
}

fn fill_index(index: &RecipientIndex, keys: &[PublicKey]) -> Result<IndexMemory, String> {
    IndexMemory::measure(|| {
        let len_before = index.len();
        for key in keys {
            index.insert(*key);
        }
        Ok(index.len() - len_before)
    })
}

/// What one event will be, before it is signed.
struct Unsigned {
    author: usize,
    kind: u16,
    tags: Vec<Vec<String>>,
    content: String,
    created_at: u64,
}

/// The stream's events as JSON text, drawn from `rng` and signed on every
/// core.
fn signed_stream(rng: &mut Xoshiro256PlusPlus, targeted: &[PublicKey], args: &Args) -> Vec<String> {
    let authors: Vec<SecretKey> = (0..AUTHORS).map(|_| secret_key(rng)).collect();
    let now = herald_core::time::now_secs();
    let unsigned: Vec<Unsigned> = (0..args.events)
        .map(|_| {
            let recipient = if rng.random_bool(args.recipient_share) {
                targeted[rng.random_range(0..targeted.len())]
            } else {
                PublicKey::from_bytes(rng.random())
            };
            unsigned_event(rng, recipient, now)
        })
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = unsigned.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = unsigned
            .chunks(chunk)
            .map(|part| {
                let authors = &authors;
                scope.spawn(move || {
                    part.iter()
                        .map(|e| {
                            let signed = event::sign(
                                e.kind,
                                e.tags.clone(),
                                e.content.clone(),
                                e.created_at,
                                &authors[e.author],
                            );
                            signed.to_json().to_string()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a signing thread panicked"))
            .collect()
    })
}

fn secret_key(rng: &mut Xoshiro256PlusPlus) -> SecretKey {
    loop {
        let bytes: [u8; 32] = rng.random();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        // Fails only for zero or a value above the group order.
        if let Ok(key) = SecretKey::parse_hex(&hex) {
            return key;
        }
    }
}

fn unsigned_event(rng: &mut Xoshiro256PlusPlus, recipient: PublicKey, now: u64) -> Unsigned {
    let total: u32 = KIND_MIX.iter().map(|(_, w)| w).sum();
    let mut pick = rng.random_range(0..total);
    let kind = KIND_MIX
        .iter()
        .find(|(_, w)| {
            let here = pick < *w;
            pick = pick.saturating_sub(*w);
            here
        })
        .map_or(kind::TEXT_NOTE, |(k, _)| *k);
    let p = vec!["p".to_owned(), recipient.to_hex()];
    let e = |rng: &mut Xoshiro256PlusPlus| vec!["e".to_owned(), random_hex(rng, 32)];
    let (tags, content, created_at) = match kind {
        kind::REACTION => (vec![e(rng), p], "+".to_owned(), now),
        kind::TEXT_NOTE => {
            let mut tags = Vec::new();
            if rng.random_bool(0.5) {
                let mut root = e(rng);
                root.extend([String::new(), "root".to_owned()]);
                tags.push(root);
            }
            tags.push(p);
            // Others in the thread, not registered.
            for _ in 0..rng.random_range(0..3) {
                tags.push(vec!["p".to_owned(), random_hex(rng, 32)]);
            }
            let len = rng.random_range(40..280);
            (tags, random_text(rng, len), now)
        }
        kind::GIFT_WRAP => {
            let backdate = rng.random_range(0..GIFT_WRAP_BACKDATE_SECS);
            (vec![p], random_base64(rng, 1_400), now - backdate)
        }
        kind::ZAP_RECEIPT => {
            let bolt11 = format!("lnbc210n1{}", random_text(rng, 300).replace(' ', "x"));
            let request = json!({"kind": 9734, "content": "", "tags": [["p", p[1]]],
                "pubkey": random_hex(rng, 32), "id": random_hex(rng, 32), "sig": random_hex(rng, 64)});
            let tags = vec![
                p,
                e(rng),
                vec!["bolt11".to_owned(), bolt11],
                vec!["description".to_owned(), request.to_string()],
            ];
            (tags, String::new(), now)
        }
        kind::REPOST => {
            let reposted = json!({"kind": 1, "content": random_text(rng, 200),
                "pubkey": p[1], "id": random_hex(rng, 32), "sig": random_hex(rng, 64), "tags": []});
            (vec![e(rng), p], reposted.to_string(), now)
        }
        _ => {
            let len = rng.random_range(64..300);
            let content = format!("{}?iv={}", random_base64(rng, len), random_base64(rng, 24));
            (vec![p], content, now)
        }
    };
    Unsigned {
        author: rng.random_range(0..AUTHORS),
        kind,
        tags,
        content,
        created_at,
    }
}

fn random_hex(rng: &mut Xoshiro256PlusPlus, bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

fn random_base64(rng: &mut Xoshiro256PlusPlus, len: usize) -> String {
    (0..len)
        .map(|_| char::from(BASE64[rng.random_range(0..BASE64.len())]))
        .collect()
}

/// Lowercase words of 2 to 9 letters, as a note's text.
fn random_text(rng: &mut Xoshiro256PlusPlus, len: usize) -> String {
    let mut text = String::with_capacity(len + 10);
    while text.len() < len {
        if !text.is_empty() {
            text.push(' ');
        }
        for _ in 0..rng.random_range(2..10) {
            text.push(char::from(b'a' + rng.random_range(0..26u8)));
        }
    }
    text
}

/// What the whole path did.
struct Whole {
    elapsed: Duration,
    cpu: Duration,
    notifications: u64,
    rate_limited: u64,
}

async fn whole_path(runtime: &Runtime, events: Arc<[String]>) -> Result<Whole, String> {
    let config = &runtime.config;
    let pipeline = RelayPipeline::new(
        Arc::clone(&runtime.nostr_recipients),
        runtime.fan_out.clone(),
        &[],
    )
    .with_apps(config.nostr.app_rules(&config.apps))
    .with_rate_limit(config.nostr.rate_limit.limit());
    let stats = pipeline.stats();
    let (arrivals_tx, arrivals_rx) = mpsc::channel(crate::nostr_relays::EVENTS_IN_FLIGHT);
    // Never set: the pipeline ends when the producer hangs up.
    let (_stop_tx, stop_rx) = watch::channel(false);
    let relay: Arc<str> = Arc::from(RELAY);
    let cpu_before = process_cpu()?;
    let started = Instant::now();
    let producer = tokio::spawn(async move {
        for json in events.iter() {
            let arrival = Arrival {
                event: Event::from_json(json).map_err(|e| e.to_string())?,
                relay: Arc::clone(&relay),
                history_for: Vec::new(),
            };
            if arrivals_tx.send(arrival).await.is_err() {
                return Err("the pipeline stopped before the stream ended".to_owned());
            }
        }
        Ok(events.len())
    });
    pipeline.run(arrivals_rx, stop_rx).await;
    let elapsed = started.elapsed();
    let cpu = process_cpu()?.saturating_sub(cpu_before);
    let sent = producer.await.map_err(|e| e.to_string())??;
    let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let handled = count(&stats.events);
    if handled != sent as u64 {
        return Err(format!("of {sent} events the pipeline handled {handled}"));
    }
    // Each push goes to one device: the queue holds one delivery for each.
    let pushed = count(&stats.notifications);
    let queued = runtime.store.depth().await.map_err(|e| e.to_string())?;
    if queued != pushed {
        return Err(format!("of {pushed} pushes the queue holds {queued}"));
    }
    Ok(Whole {
        elapsed,
        cpu,
        notifications: pushed,
        rate_limited: count(&stats.rate_limited),
    })
}

/// One pass of the one-core loop.
struct Pass {
    events: usize,
    elapsed: Duration,
    cpu: Duration,
}

impl Pass {
    fn rate(&self) -> Value {
        json!((self.events as f64 / self.elapsed.as_secs_f64()).round() as u64)
    }
}

fn one_core_pass(
    events: &[String],
    index: &RecipientIndex,
    with_rules: bool,
) -> Result<Pass, String> {
    let apps = [AppRules::every_app(rules::DEFAULT_KINDS)];
    let cpu_before = thread_cpu()?;
    let started = Instant::now();
    for json in events {
        let event = Event::from_json(json).map_err(|e| e.to_string())?;
        if with_rules {
            for recipient in rules::recipients(&event, |key| index.contains(key)) {
                black_box(rules::notifications(&event, &recipient, RELAY, &apps));
            }
        } else {
            black_box(event);
        }
    }
    Ok(Pass {
        events: events.len(),
        elapsed: started.elapsed(),
        cpu: thread_cpu()?.saturating_sub(cpu_before),
    })
}

fn round2(x: f64) -> Value {
    json!((x * 100.0).round() / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_is_handled_whole_and_every_push_queued() {
        let report = run(Args {
            events: 400,
            accounts: 50,
            recipient_share: 1.0,
            seed: 1,
            json: false,
        })
        .await
        .unwrap();
        // `run` checked that all 400 were handled and each push queued;
        // every event tags a registered key, so each is pushed or limited.
        let fact = |name| {
            let (_, value) = report.facts.iter().find(|(n, _)| *n == name).unwrap();
            value.as_u64().unwrap()
        };
        assert_eq!(fact("notifications") + fact("rate_limited"), 400);
    }
}
