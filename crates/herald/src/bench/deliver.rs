//! `deliver`: notifications through the whole pipeline a user runs —
//! fan-out into the SQLite queue, the dispatcher, the UnifiedPush provider's
//! HTTP client — to a local receiver on loopback: deliveries per second and
//! the latency from enqueue to the receiver's acceptance.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use herald_core::model::{Account, AppId, Message, NewDevice, Notification, Platform, Transport};
use herald_core::store::{Queue, Store};
use herald_core::time::now_ms;
use serde_json::json;
use tokio::sync::{Notify, watch};

use super::{Report, now_us, scratch_dir};
use crate::config::{AppConfig, Config, UnifiedPushConfig};
use crate::runtime::Runtime;

#[derive(clap::Args)]
pub struct Args {
    /// Notifications to push.
    #[arg(long, default_value_t = 20_000)]
    count: usize,
    /// Concurrent producers submitting notifications.
    #[arg(long, default_value_t = 4)]
    producers: usize,
    /// Concurrent sends allowed to the transport.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// The store to queue in (`postgres://…`; an empty database): by
    /// default a fresh SQLite file.
    #[arg(long)]
    database_url: Option<String>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: Args) -> Result<Report, String> {
    deliver(
        args.count,
        args.producers.max(1),
        args.concurrency,
        args.database_url,
    )
    .await
}

/// What the receiver saw.
#[derive(Default)]
struct Receiver {
    received: AtomicUsize,
    expected: AtomicUsize,
    latencies_us: Mutex<Vec<u64>>,
    done: Notify,
}

async fn receive(State(r): State<Arc<Receiver>>, body: Bytes) -> StatusCode {
    let sent_us = serde_json::from_slice::<Message>(&body)
        .ok()
        .and_then(|m| m.data.get("t").and_then(|t| t.as_u64()));
    let Some(sent_us) = sent_us else {
        return StatusCode::BAD_REQUEST;
    };
    r.latencies_us
        .lock()
        .unwrap()
        .push(now_us().saturating_sub(sent_us));
    if r.received.fetch_add(1, Ordering::SeqCst) + 1 == r.expected.load(Ordering::SeqCst) {
        r.done.notify_one();
    }
    StatusCode::CREATED
}

async fn deliver(
    count: usize,
    producers: usize,
    concurrency: usize,
    database_url: Option<String>,
) -> Result<Report, String> {
    if count == 0 {
        return Err("--count must be at least 1".into());
    }
    let receiver = Arc::new(Receiver::default());
    receiver.expected.store(count, Ordering::SeqCst);
    let app = Router::new()
        .route("/up", post(receive))
        .with_state(Arc::clone(&receiver));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let endpoint = format!(
        "http://{}/up",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = scratch_dir("deliver")?;
    let store = if database_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let mut config = Config {
        database_url: database_url
            .unwrap_or_else(|| format!("sqlite://{}/bench.db", dir.display())),
        allow_private_endpoints: true,
        ..Config::default()
    };
    config
        .delivery
        .concurrency
        .insert(Transport::UnifiedPush, concurrency);
    config.apps.insert(
        "bench".into(),
        AppConfig {
            unifiedpush: Some(UnifiedPushConfig::default()),
            ..AppConfig::default()
        },
    );
    let runtime = Runtime::start(config).await.map_err(|e| e.to_string())?;
    let waiting = runtime.store.depth().await.map_err(|e| e.to_string())?;
    if waiting > 0 {
        return Err(format!(
            "the database already holds {waiting} queued deliveries; give an empty one"
        ));
    }
    let account = Account::parse("bench:alice").expect("valid literal");
    runtime
        .store
        .upsert_device(
            &NewDevice {
                account: account.clone(),
                app_id: AppId::parse("bench").expect("valid literal"),
                platform: Platform::Android,
                transport: Transport::UnifiedPush,
                token: endpoint,
                options: Default::default(),
            },
            now_ms(),
        )
        .await
        .map_err(|e| e.to_string())?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let dispatcher = tokio::spawn(Arc::clone(&runtime.dispatcher).run(stop_rx));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..producers {
        let fan_out = runtime.fan_out.clone();
        let account = account.clone();
        let share = count / producers + usize::from(p < count % producers);
        tasks.push(tokio::spawn(async move {
            for i in 0..share {
                let n = Notification {
                    account: account.clone(),
                    app_id: None,
                    message: Message {
                        title: Some("bench".into()),
                        body: Some(format!("notification {p}-{i}")),
                        data: json!({"t": now_us()})
                            .as_object()
                            .cloned()
                            .unwrap_or_default(),
                        ..Message::default()
                    },
                    dedupe_key: None,
                };
                fan_out
                    .submit(&n, now_ms())
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let waited = tokio::time::timeout(Duration::from_secs(600), receiver.done.notified()).await;
    let elapsed = started.elapsed();
    let _ = stop_tx.send(true);
    let _ = dispatcher.await;
    runtime.store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    if waited.is_err() {
        return Err(format!(
            "only {} of {count} deliveries arrived within 600 s",
            receiver.received.load(Ordering::SeqCst)
        ));
    }
    let latencies_us = std::mem::take(&mut *receiver.latencies_us.lock().unwrap());
    Ok(Report {
        title: format!("deliver ({store} queue -> UnifiedPush -> local receiver)"),
        unit: "deliveries",
        count,
        elapsed,
        latencies_us,
        facts: vec![
            ("store", json!(store)),
            ("producers", json!(producers)),
            ("concurrency", json!(concurrency)),
        ],
    })
}
