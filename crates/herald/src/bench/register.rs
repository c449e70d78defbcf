//! `register`: verified `registerPush` calls per second through the real
//! HTTP server, as a PDS forwards them: a fresh ES256K service token per
//! call (no replay), the issuers' DID documents already cached, each call
//! re-registering its account's device (apps register on every launch).
//! Also the verifier alone, without HTTP or the store, on one task.

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_atproto::did::Did;
use herald_atproto::registration::REGISTER_PUSH;
use herald_atproto::resolver::{DidResolver, ResolverConfig};
use herald_atproto::service_auth::{KeyResolver, ServiceAuthVerifier, VerifierConfig};
use herald_standins::plc::PlcDirectory;
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::json;

use super::{Report, run_concurrently, scratch_dir};
use crate::config::{AppConfig, Config, UnifiedPushConfig};
use crate::runtime::Runtime;
use crate::server::{AppState, router};

#[derive(clap::Args)]
pub struct Args {
    /// registerPush calls to make.
    #[arg(long, default_value_t = 20_000)]
    count: usize,
    /// Distinct accounts (DIDs) the calls come from.
    #[arg(long, default_value_t = 1_000)]
    accounts: usize,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

const APP: &str = "bench";

pub async fn run(args: Args) -> Result<Report, String> {
    if args.count == 0 || args.accounts == 0 {
        return Err("--count and --accounts must be at least 1".into());
    }
    let plc = PlcDirectory::start().await;
    let dids: Vec<String> = (0..args.accounts).map(|_| plc.create_account()).collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let service_did = format!("did:web:localhost%3A{port}");
    let dir = scratch_dir("register")?;
    let mut config = Config {
        database_url: format!("sqlite://{}/bench.db", dir.display()),
        allow_private_endpoints: true,
        ..Config::default()
    };
    config.atproto.service_did = Some(service_did.clone());
    config.atproto.public_url = Some(format!("http://localhost:{port}"));
    config.atproto.plc_url = plc.url();
    config.apps.insert(
        APP.into(),
        AppConfig {
            unifiedpush: Some(UnifiedPushConfig::default()),
            ..AppConfig::default()
        },
    );
    let state = Arc::new(AppState {
        runtime: Runtime::start(config).await.map_err(|e| e.to_string())?,
        admin_token: None,
        gorush_token: None,
        metrics: PrometheusBuilder::new().build_recorder().handle(),
    });
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    let url = format!("http://127.0.0.1:{port}/xrpc/{REGISTER_PUSH}");
    let client = reqwest::Client::new();

    let call = |did: &str, token: String| {
        let body = json!({"serviceDid": service_did, "token": format!("https://push.example.net/up/{did}"), "platform": "android", "appId": APP});
        client.post(&url).bearer_auth(token).json(&body).send()
    };
    // Warm-up: every DID document resolved and cached, every device created.
    for did in &dids {
        let r = call(did, plc.service_token(did, &service_did, REGISTER_PUSH))
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!(
                "warm-up registration answered {}: {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ));
        }
    }
    let tokens: Vec<(String, String)> = (0..args.count)
        .map(|i| {
            let did = &dids[i % dids.len()];
            (
                did.clone(),
                plc.service_token(did, &service_did, REGISTER_PUSH),
            )
        })
        .collect();

    let requests = tokens.into_iter().map(|(did, token)| {
        let request = call(&did, token);
        async move { request.await.is_ok_and(|r| r.status().is_success()) }
    });
    let (latencies_us, elapsed) = run_concurrently(requests, args.concurrency).await?;
    let verify_rate = verify_only(&plc, &dids, &service_did, args.count).await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Report {
        title: "register (verified registerPush over HTTP, DID documents cached, SQLite)".into(),
        unit: "calls",
        count: args.count,
        elapsed,
        latencies_us,
        facts: vec![
            ("accounts", json!(args.accounts)),
            ("concurrency", json!(args.concurrency)),
            ("verify_only_per_second", json!(verify_rate.round())),
        ],
    })
}

/// Tokens verified per second by the verifier alone, on one task.
async fn verify_only(
    plc: &PlcDirectory,
    dids: &[String],
    service_did: &str,
    count: usize,
) -> Result<f64, String> {
    let resolver = Arc::new(
        DidResolver::new(ResolverConfig {
            plc_url: plc.url(),
            allow_private: true,
            ..ResolverConfig::default()
        })
        .map_err(|e| e.to_string())?,
    );
    for did in dids {
        let did = Did::parse(did).map_err(|e| e.to_string())?;
        resolver
            .signing_key(&did, "atproto", false)
            .await
            .map_err(|e| e.to_string())?;
    }
    let verifier = ServiceAuthVerifier::new(
        VerifierConfig {
            service_did: service_did.into(),
            max_lifetime: Duration::from_secs(300),
            allow_high_s: false,
        },
        resolver,
    );
    let headers: Vec<String> = (0..count)
        .map(|i| {
            format!(
                "Bearer {}",
                plc.service_token(&dids[i % dids.len()], service_did, REGISTER_PUSH)
            )
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let started = Instant::now();
    for header in &headers {
        verifier
            .verify(Some(header), REGISTER_PUSH, now)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}
