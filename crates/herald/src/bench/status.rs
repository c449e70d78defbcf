//! `status`: the Status push-notification server's handling, in process
//! and without a network: Waku messages as nwaku hands them over, opened,
//! unwrapped, validated and answered by the code `serve` runs
//! (`StatusHandler`), with every effect made durable in SQLite before the
//! reply is sealed.
//!
//! First `--registrations` clients register, each from its own key (ECIES
//! and two signature checks to open, an ECDH and AES-GCM for the
//! registration, a grant recovered, the device and the state stored, the
//! answer signed twice and ECIES-sealed); then `--requests` notification
//! requests, each from an ephemeral key for one registered client, each
//! queueing one FCM delivery with its request id in one transaction. The
//! messages are built and sealed before anything is timed; no dispatcher
//! runs, so the queue only fills.

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_core::store::Queue;
use herald_status::crypto::keccak256;
use herald_status::nwaku::WakuMessage;
use herald_status::proto::{PushNotificationRegistration, TokenType};
use herald_status::test_support::{registration, request_payload, seal_registration};
use herald_status::topics::{partitioned_topic, personal_topic};
use herald_status::waku_payload::seal_asymmetric;
use herald_status::wrapper::{MessageType, wrap_message};
use k256::{PublicKey, SecretKey};
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::json;
use tokio::sync::watch;

use super::{Report, scratch_dir};
use crate::config::{AppConfig, Config};
use crate::runtime::Runtime;
use crate::server::AppState;
use crate::status::StatusHandler;

#[derive(clap::Args)]
pub struct Args {
    /// Clients that register (each a key and a device).
    #[arg(long, default_value_t = 2_000)]
    registrations: usize,
    /// Notification requests, spread over the registered clients.
    #[arg(long, default_value_t = 5_000)]
    requests: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

const APP: &str = "bench";

pub async fn run(args: Args) -> Result<Report, String> {
    if args.registrations == 0 || args.requests == 0 {
        return Err("--registrations and --requests must be at least 1".into());
    }
    let dir = scratch_dir("status")?;
    // Its service account file only: no push leaves the process.
    let fcm = herald_standins::fcm::FcmService::start(&dir).await;
    let mut config = Config {
        database_url: format!("sqlite://{}/bench.db", dir.display()),
        ..Config::default()
    };
    config.apps.insert(
        APP.into(),
        AppConfig {
            fcm: Some(herald_push::fcm::FcmConfig {
                enabled: true,
                service_account_file: fcm.service_account_file().to_owned(),
                base_url: Some(fcm.base_url()),
                android_channel_id: None,
            }),
            ..AppConfig::default()
        },
    );
    // Never contacted: the benchmark hands messages to the handler itself.
    config.status.nwaku_url = Some("http://127.0.0.1:9".into());
    config.status.fcm_app = Some(APP.into());
    let settings = config
        .status
        .settings(&config.apps)
        .map_err(|e| e.to_string())?
        .ok_or("the status settings are off")?;
    let state = Arc::new(AppState {
        runtime: Runtime::start(config).await.map_err(|e| e.to_string())?,
        admin_token: None,
        gorush_token: None,
        metrics: PrometheusBuilder::new().build_recorder().handle(),
    });
    let mut handler = StatusHandler::start(Arc::clone(&state), &settings)
        .await
        .map_err(|e| e.to_string())?;
    let server = handler.server().public_key();

    let clients: Vec<SecretKey> = (0..args.registrations)
        .map(|i| bench_key("client", i))
        .collect();
    let registrations: Vec<WakuMessage> = clients
        .iter()
        .enumerate()
        .map(|(i, client)| registration_message(client, &server, i))
        .collect::<Result<_, _>>()?;
    let requests: Vec<WakuMessage> = (0..args.requests)
        .map(|i| request_message(&clients[i % clients.len()], &server, i))
        .collect::<Result<_, _>>()?;

    let (_stop_tx, mut stop) = watch::channel(false);
    let registering = time_handling(&mut handler, &registrations, &mut stop).await?;
    let requesting = time_handling(&mut handler, &requests, &mut stop).await?;
    let queued = state
        .runtime
        .store
        .depth()
        .await
        .map_err(|e| e.to_string())?;
    state.runtime.store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    if queued != args.requests as u64 {
        return Err(format!(
            "{queued} deliveries queued for {} requests",
            args.requests
        ));
    }
    let rate = |count: usize, took: Duration| count as f64 / took.as_secs_f64();
    Ok(Report {
        title: "Status server: registrations, then notification requests (SQLite)".into(),
        unit: "messages",
        count: args.registrations + args.requests,
        elapsed: registering + requesting,
        latencies_us: Vec::new(),
        facts: vec![
            ("registrations", json!(args.registrations)),
            (
                "registrations_per_second",
                json!(rate(args.registrations, registering).round()),
            ),
            ("requests", json!(args.requests)),
            (
                "requests_per_second",
                json!(rate(args.requests, requesting).round()),
            ),
            ("deliveries_queued", json!(queued)),
        ],
    })
}

/// Hands every message to the handler in turn; each must be answered.
async fn time_handling(
    handler: &mut StatusHandler,
    messages: &[WakuMessage],
    stop: &mut watch::Receiver<bool>,
) -> Result<Duration, String> {
    let started = Instant::now();
    for message in messages {
        if handler.handle(message, stop).await.is_none() {
            return Err("a message went unanswered".into());
        }
    }
    Ok(started.elapsed())
}

/// A distinct, reproducible key per `(role, i)`.
fn bench_key(role: &str, i: usize) -> SecretKey {
    let mut seed = format!("{role}-{i}").into_bytes();
    loop {
        let candidate = keccak256(&seed);
        if let Ok(key) = SecretKey::from_slice(&candidate) {
            return key;
        }
        seed = candidate.to_vec();
    }
}

/// A client's first registration, with an FCM token of its own, as nwaku
/// hands it over on the server's personal topic.
fn registration_message(
    client: &SecretKey,
    server: &PublicKey,
    i: usize,
) -> Result<WakuMessage, String> {
    let r = PushNotificationRegistration {
        token_type: TokenType::FirebaseToken as i32,
        device_token: format!("fcm-bench-token-{i:032}"),
        apn_topic: String::new(),
        ..registration(client, server, 1)
    };
    let wrapped = wrap_message(
        MessageType::Registration,
        seal_registration(client, server, &r),
        client,
    );
    waku_message(personal_topic(server), server, &wrapped, client)
}

/// A contact's request to wake `recipient`, signed by an ephemeral key.
fn request_message(
    recipient: &SecretKey,
    server: &PublicKey,
    i: usize,
) -> Result<WakuMessage, String> {
    let request = request_payload(
        &recipient.public_key(),
        &keccak256(format!("chat-{i}").as_bytes()),
        &keccak256(format!("message-{i}").as_bytes()),
    );
    let ephemeral = bench_key("ephemeral", i);
    let wrapped = wrap_message(MessageType::Request, request, &ephemeral);
    waku_message(partitioned_topic(server), server, &wrapped, &ephemeral)
}

fn waku_message(
    content_topic: String,
    server: &PublicKey,
    wrapped: &[u8],
    signer: &SecretKey,
) -> Result<WakuMessage, String> {
    Ok(WakuMessage {
        payload: seal_asymmetric(server, wrapped, signer).map_err(|e| e.to_string())?,
        content_topic,
        version: 1,
        timestamp: None,
        ephemeral: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_registration_and_request_is_answered_and_each_request_queues_a_push() {
        let report = run(Args {
            registrations: 3,
            requests: 5,
            json: true,
        })
        .await
        .unwrap();
        assert_eq!(report.count, 8);
        let fact = |name| {
            report
                .facts
                .iter()
                .find(|(k, _)| *k == name)
                .unwrap()
                .1
                .clone()
        };
        assert_eq!(fact("deliveries_queued"), json!(5));
        assert!(fact("requests_per_second").as_f64().unwrap() > 0.0);
        assert!(
            run(Args {
                registrations: 0,
                requests: 1,
                json: false
            })
            .await
            .is_err()
        );
    }
}
