//! `apns`: pushes per second from herald's APNs provider to the local APNs
//! stand-in, over TLS and HTTP/2, as Apple is reached: one multiplexed
//! connection, or a pool of them (`--connections`). Every push is checked
//! by the stand-in as Apple checks it (provider JWT signature, headers,
//! payload size). The queue is left out: this measures the provider and its
//! connections, which `deliver` measures together with the store.

use std::sync::Arc;

use herald_core::model::{Account, AppId, Delivery, Message, Platform, Priority, Transport};
use herald_core::provider::{Outcome, Provider};
use herald_push::HttpClientConfig;
use herald_push::apns::{Apns, ApnsConfig, ApnsEnvironment, ApnsPushType};
use herald_standins::apns::{ApnsService, KEY_ID, TEAM_ID};
use serde_json::json;

use super::{Report, run_concurrently, scratch_dir};

#[derive(clap::Args)]
pub struct Args {
    /// Pushes to send.
    #[arg(long, default_value_t = 50_000)]
    count: usize,
    /// HTTP/2 connections in the provider's pool.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Streams in flight per connection.
    #[arg(long, default_value_t = 1_000)]
    max_streams: usize,
    /// Pushes in flight at once (the dispatcher's concurrency for APNs).
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

const TOPIC: &str = "org.example.bench";
/// A well-formed production device token (64 hex digits).
const DEVICE_TOKEN: &str = "740f4707bebcf74f9b7c25d48e3358945f6aa01da5ddb387462c7eaf61bb78ad";

pub async fn run(args: Args) -> Result<Report, String> {
    if args.count == 0 || args.connections == 0 || args.max_streams == 0 {
        return Err("--count, --connections and --max-streams must be at least 1".into());
    }
    let dir = scratch_dir("apns")?;
    let service = ApnsService::start(&dir, TOPIC).await;
    let app = AppId::parse("bench").expect("valid literal");
    let config = ApnsConfig {
        enabled: true,
        team_id: TEAM_ID.into(),
        key_id: KEY_ID.into(),
        key_file: service.key_path.clone(),
        topic: TOPIC.into(),
        environment: ApnsEnvironment::Production,
        production_url: Some(service.url()),
        sandbox_url: Some(service.url()),
        push_type: ApnsPushType::Alert,
        connections: args.connections,
        max_streams: args.max_streams,
    };
    let http = HttpClientConfig {
        extra_ca_file: Some(service.ca_pem_path.clone()),
        resolver: None,
    };
    let apns = Arc::new(Apns::new(&http, vec![(app.clone(), config)]).map_err(|e| e.to_string())?);
    // Warm-up: every connection of the pool open and the provider JWT signed.
    let warm = (0..args.connections).map(|i| send(&apns, delivery(&app, i)));
    run_concurrently(warm, args.connections).await?;

    let pushes = (0..args.count).map(|i| send(&apns, delivery(&app, i)));
    let (latencies_us, elapsed) = run_concurrently(pushes, args.concurrency).await?;
    let connections = service.connections();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Report {
        title: "apns (provider -> APNs stand-in, HTTP/2 over TLS)".into(),
        unit: "pushes",
        count: args.count,
        elapsed,
        latencies_us,
        facts: vec![
            ("connections", json!(args.connections)),
            ("connections_accepted", json!(connections)),
            ("max_streams", json!(args.max_streams)),
            ("concurrency", json!(args.concurrency)),
        ],
    })
}

fn send(apns: &Arc<Apns>, delivery: Delivery) -> impl Future<Output = bool> + Send + 'static {
    let apns = Arc::clone(apns);
    async move { apns.send(&delivery).await == Outcome::Delivered }
}

fn delivery(app: &AppId, n: usize) -> Delivery {
    Delivery {
        id: n as i64,
        device_id: 1,
        account: Account::parse("bench:alice").expect("valid literal"),
        app_id: app.clone(),
        platform: Platform::Ios,
        transport: Transport::Apns,
        token: DEVICE_TOKEN.into(),
        options: Default::default(),
        message: Message {
            title: Some("Alice".into()),
            body: Some(format!("message {n}")),
            data: json!({"uri": "at://did:plc:alice/app.bsky.feed.post/3k"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            ttl: Some(3600),
            priority: Priority::High,
            ..Message::default()
        },
        created_at: 0,
        attempts: 1,
    }
}
