//! `deliver`: notifications through the whole pipeline a user runs —
//! fan-out into the queue (SQLite or PostgreSQL), the dispatcher, a
//! provider configured as a user configures it — to a local stand-in for
//! the push service: deliveries per second and the latency from just
//! before enqueue to the service accepting the push.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use herald_core::model::{Account, AppId, Message, NewDevice, Notification, Platform, Transport};
use herald_core::store::Queue;
use herald_core::time::now_ms;
use herald_standins::apns::{ApnsService, KEY_ID, TEAM_ID};
use herald_standins::fcm::FcmService;
use herald_standins::webpush::WebPushService;
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, watch};

use super::{Report, now_us, scratch_dir, serve_on_loopback};
use crate::config::{AppConfig, Config};
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
    /// The push service the device is reached through, each a local
    /// stand-in: a plain UnifiedPush receiver, APNs (HTTP/2, TLS), FCM
    /// (OAuth2) or a Web Push service that decrypts every push.
    #[arg(long, value_enum, default_value_t = Via::UnifiedPush)]
    transport: Via,
    /// The store to queue in (`postgres://…`; an empty database): by
    /// default a fresh SQLite file.
    #[arg(long)]
    database_url: Option<String>,
    /// Queue every notification first, untimed, then start the
    /// dispatcher: deliveries/s from the queue alone, without producers
    /// sharing the cores. No latencies (each would be mostly its wait in
    /// the backlog).
    #[arg(long)]
    backlog: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The push service the deliveries go to.
#[derive(Clone, Copy, clap::ValueEnum)]
#[value(rename_all = "lower")]
enum Via {
    UnifiedPush,
    Apns,
    Fcm,
    WebPush,
}

/// What the push service saw.
#[derive(Default)]
struct Receiver {
    received: AtomicUsize,
    expected: AtomicUsize,
    latencies_us: Mutex<Vec<u64>>,
    done: Notify,
}

impl Receiver {
    /// Times an accepted push by the send time `t` its data carries (a
    /// number, or the string FCM makes of it); false if it carries none.
    fn accept(&self, t: &Value) -> bool {
        let Some(sent_us) = t.as_u64().or_else(|| t.as_str()?.parse().ok()) else {
            return false;
        };
        self.latencies_us
            .lock()
            .unwrap()
            .push(now_us().saturating_sub(sent_us));
        if self.received.fetch_add(1, Ordering::SeqCst) + 1 == self.expected.load(Ordering::SeqCst)
        {
            self.done.notify_one();
        }
        true
    }
}

async fn receive_unifiedpush(State(r): State<Arc<Receiver>>, body: Bytes) -> StatusCode {
    let message: Value = serde_json::from_slice(&body).unwrap_or_default();
    if r.accept(&message["data"]["t"]) {
        StatusCode::CREATED
    } else {
        StatusCode::BAD_REQUEST
    }
}

/// A started stand-in and what herald needs to reach it.
struct Service {
    transport: Transport,
    name: &'static str,
    /// The app's transport table, as a user writes it in herald.toml.
    table: Value,
    extra_ca_file: Option<PathBuf>,
    device: (Platform, String, Map<String, Value>),
}

const APNS_TOPIC: &str = "org.example.bench";
/// A production APNs device token: 64 hex digits.
const APNS_TOKEN: &str = "740f4707bebcf74f9b7c25d48e3358945f6aa01da5ddb387462c7eaf61bb78ad";
/// An FCM registration token as the Firebase SDK hands it out: the
/// installation id, `:APA91b` and the 134-character rest.
const FCM_TOKEN: &str = "R4e_CbTMN-RLJ2kfUoSdDw:APA91bhRwAkvp3rmM5BhMM15x8ptgFG0N9I6Gf3AW-oAT85bDsN4z62Rxb_0uhr3d-3meb6lPBi50C9DDAXvSXmi9GV8OCEAdVUdkoGNsFfJKi22Q4yGNdNbTNsr7yRGD6oHEdD0RKAD";

/// Starts the stand-in for `via`, reporting each push it accepts to `receiver`.
async fn start(via: Via, dir: &Path, receiver: &Arc<Receiver>) -> Result<Service, String> {
    let r = Arc::clone(receiver);
    let no_options = Map::new();
    Ok(match via {
        Via::UnifiedPush => {
            let app = Router::new()
                .route("/up", post(receive_unifiedpush))
                .with_state(r);
            let addr = serve_on_loopback(app).await?;
            Service {
                transport: Transport::UnifiedPush,
                name: "local receiver",
                table: json!({"unifiedpush": {}}),
                extra_ca_file: None,
                device: (Platform::Android, format!("http://{addr}/up"), no_options),
            }
        }
        Via::Apns => {
            let apns = ApnsService::start(dir, APNS_TOPIC).await;
            apns.on_accept(move |a| {
                r.accept(&a.payload["t"]);
            });
            Service {
                transport: Transport::Apns,
                name: "APNs stand-in",
                table: json!({"apns": {
                    "team_id": TEAM_ID, "key_id": KEY_ID, "key_file": apns.key_path,
                    "topic": APNS_TOPIC, "production_url": apns.url(),
                }}),
                extra_ca_file: Some(apns.ca_pem_path.clone()),
                device: (Platform::Ios, APNS_TOKEN.into(), no_options),
            }
        }
        Via::Fcm => {
            let fcm = FcmService::start(dir).await;
            fcm.on_accept(move |m| {
                r.accept(&m["data"]["t"]);
            });
            Service {
                transport: Transport::Fcm,
                name: "FCM stand-in",
                table: json!({"fcm": {
                    "service_account_file": fcm.service_account_file(),
                    "base_url": fcm.base_url(),
                }}),
                extra_ca_file: None,
                device: (Platform::Android, FCM_TOKEN.into(), no_options),
            }
        }
        Via::WebPush => {
            let service = WebPushService::start().await;
            service.on_accept(move |m| {
                let message: Value = serde_json::from_slice(&m.plaintext).unwrap_or_default();
                r.accept(&message["data"]["t"]);
            });
            let vapid_key = dir.join("vapid.pem");
            std::fs::write(&vapid_key, herald_push::vapid::generate_keypair().0)
                .map_err(|e| e.to_string())?;
            let subscription = service.subscribe();
            let keys = json!({"p256dh": subscription.p256dh, "auth": subscription.auth});
            Service {
                transport: Transport::WebPush,
                name: "Web Push stand-in",
                table: json!({"webpush": {
                    "vapid_private_key_file": vapid_key, "subject": "mailto:bench@example.com",
                }}),
                extra_ca_file: None,
                device: (
                    Platform::Web,
                    subscription.endpoint,
                    keys.as_object().cloned().unwrap_or_default(),
                ),
            }
        }
    })
}

pub async fn run(args: Args) -> Result<Report, String> {
    let Args {
        count,
        producers,
        concurrency,
        transport,
        database_url,
        backlog,
        ..
    } = args;
    if count == 0 {
        return Err("--count must be at least 1".into());
    }
    let producers = producers.max(1);
    let receiver = Arc::new(Receiver::default());
    receiver.expected.store(count, Ordering::SeqCst);
    let dir = scratch_dir("deliver")?;
    let service = start(transport, &dir, &receiver).await?;
    let store = if database_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let mut config = Config {
        database_url: database_url
            .unwrap_or_else(|| format!("sqlite://{}/bench.db", dir.display())),
        allow_private_endpoints: true,
        extra_ca_file: service.extra_ca_file,
        ..Config::default()
    };
    config
        .delivery
        .concurrency
        .insert(service.transport, concurrency);
    let app: AppConfig = serde_json::from_value(service.table).map_err(|e| e.to_string())?;
    config.apps.insert("bench".into(), app);
    let runtime = Runtime::start(config).await.map_err(|e| e.to_string())?;
    let waiting = runtime.store.depth().await.map_err(|e| e.to_string())?;
    if waiting > 0 {
        return Err(format!(
            "the database already holds {waiting} queued deliveries; give an empty one"
        ));
    }
    let account = Account::parse("bench:alice").expect("valid literal");
    let (platform, token, options) = service.device;
    // Registered as the HTTP API registers it, so the provider checks the
    // token's shape and stores it in its own form.
    let device = runtime
        .accept_registration(NewDevice {
            account: account.clone(),
            app_id: AppId::parse("bench").expect("valid literal"),
            platform,
            transport: service.transport,
            token,
            options,
        })
        .await
        .map_err(|e| e.to_string())?;
    runtime
        .store_device(&device)
        .await
        .map_err(|e| e.to_string())?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let dispatch = || tokio::spawn(Arc::clone(&runtime.dispatcher).run(stop_rx.clone()));
    let (dispatcher, started) = if backlog {
        produce(&runtime, &account, count, producers).await?;
        (dispatch(), Instant::now())
    } else {
        let (dispatcher, started) = (dispatch(), Instant::now());
        produce(&runtime, &account, count, producers).await?;
        (dispatcher, started)
    };
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
    let mut latencies_us = std::mem::take(&mut *receiver.latencies_us.lock().unwrap());
    if backlog {
        latencies_us.clear();
    }
    Ok(Report {
        title: format!(
            "deliver ({store} queue -> {} -> {})",
            service.transport, service.name
        ),
        unit: "deliveries",
        count,
        elapsed,
        latencies_us,
        facts: vec![
            ("store", json!(store)),
            ("transport", json!(service.transport.as_str())),
            ("producers", json!(producers)),
            ("backlog", json!(backlog)),
            ("concurrency", json!(concurrency)),
        ],
    })
}

/// Submits `count` notifications for `account` through the fan-out, from
/// `producers` tasks at once, each stamped with its send time.
async fn produce(
    runtime: &Runtime,
    account: &Account,
    count: usize,
    producers: usize,
) -> Result<(), String> {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::*;

    #[tokio::test]
    async fn every_transport_delivers_and_times_every_notification() {
        for &transport in Via::value_variants() {
            let report = run(Args {
                count: 50,
                producers: 2,
                concurrency: 8,
                transport,
                database_url: None,
                backlog: false,
                json: false,
            })
            .await
            .unwrap_or_else(|e| {
                panic!("{}: {e}", transport.to_possible_value().unwrap().get_name())
            });
            assert_eq!(report.latencies_us.len(), 50, "{}", report.title);
        }
    }

    #[tokio::test]
    async fn a_backlog_is_drained_whole_and_reports_no_latencies() {
        let report = run(Args {
            count: 40,
            producers: 3,
            concurrency: 8,
            transport: Via::Apns,
            database_url: None,
            backlog: true,
            json: false,
        })
        .await
        .unwrap();
        // `run` is Ok only once the stand-in accepted all 40.
        assert!(report.latencies_us.is_empty());
    }
}
