//! `herald bench`: programs that measure herald and print figures.
//!
//! Each scenario is self-contained on loopback, runs the code a user runs
//! (the real pipeline, HTTP server and providers), and prints a table or,
//! with `--json`, one JSON object. Figures are measured, never asserted.

mod apns;
mod deliver;
mod end_to_end;
mod firehose;
mod jetstream;
mod nostr;
mod process;
mod register;
mod status;
mod synthetic_jetstream;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Subcommand;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

#[derive(Subcommand)]
pub enum Scenario {
    /// Deliveries per second from the admin pipeline through the queue to a local push service.
    Deliver(deliver::Args),
    /// Verified registerPush calls per second through the HTTP server, DID documents cached.
    Register(register::Args),
    /// Pushes per second from the APNs provider to a local APNs stand-in (HTTP/2, TLS).
    Apns(apns::Args),
    /// Jetstream events per second through decode, parse, rules and the SQLite queue.
    Jetstream(jetstream::Args),
    /// Nostr events per second through id and signature checks, rules and the SQLite queue.
    Nostr(nostr::Args),
    /// Firehose frames per second through decoding, commit verification and Jetstream events.
    Firehose(firehose::Args),
    /// Event in, push out: latency percentiles at a steady rate of Jetstream events.
    EndToEnd(end_to_end::Args),
    /// Status registrations and notification requests handled per second, in process.
    Status(status::Args),
}

pub async fn run(scenario: Scenario) -> ExitCode {
    let (name, json, result) = match scenario {
        Scenario::Deliver(args) => ("deliver", args.json, deliver::run(args).await),
        Scenario::Register(args) => ("register", args.json, register::run(args).await),
        Scenario::Apns(args) => ("apns", args.json, apns::run(args).await),
        Scenario::Jetstream(args) => ("jetstream", args.json, jetstream::run(args).await),
        Scenario::Nostr(args) => ("nostr", args.json, nostr::run(args).await),
        Scenario::Firehose(args) => ("firehose", args.json, firehose::run(args).await),
        Scenario::EndToEnd(args) => ("end-to-end", args.json, end_to_end::run(args).await),
        Scenario::Status(args) => ("status", args.json, status::run(args).await),
    };
    match result {
        Ok(report) => {
            report.print(json);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("herald bench {name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What a scenario measured.
pub struct Report {
    pub title: String,
    /// What was counted ("deliveries", "calls").
    pub unit: &'static str,
    pub count: usize,
    pub elapsed: Duration,
    /// Latency of each operation, in microseconds; none for a scenario
    /// that measures throughput alone.
    pub latencies_us: Vec<u64>,
    /// Parameters and further figures, printed as given.
    pub facts: Vec<(&'static str, Value)>,
}

impl Report {
    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[i] as f64 / 1000.0
    }

    fn print(&self, as_json: bool) {
        let rate = self.count as f64 / self.elapsed.as_secs_f64();
        let [p50, p90, p99, max] = [0.5, 0.9, 0.99, 1.0].map(|p| self.percentile_ms(p));
        let timed = !self.latencies_us.is_empty();
        if as_json {
            let mut out = json!({
                "scenario": self.title, "count": self.count, "seconds": self.elapsed.as_secs_f64(),
                format!("{}_per_second", self.unit): rate,
            });
            if timed {
                out["latency_ms"] = json!({"p50": p50, "p90": p90, "p99": p99, "max": max});
            }
            for (k, v) in &self.facts {
                out[*k] = v.clone();
            }
            println!("{out}");
            return;
        }
        let width = self
            .facts
            .iter()
            .map(|(k, _)| k.len())
            .max()
            .unwrap_or(0)
            .max(12);
        let row = |label: &str, value: String| println!("{label:<width$}  {value}");
        row("scenario", self.title.clone());
        for (k, v) in &self.facts {
            row(k, v.to_string());
        }
        row(self.unit, self.count.to_string());
        row("elapsed", format!("{:.2} s", self.elapsed.as_secs_f64()));
        row("throughput", format!("{rate:.0} {}/s", self.unit));
        if timed {
            row(
                "latency, ms",
                format!("p50 {p50:.2}   p90 {p90:.2}   p99 {p99:.2}   max {max:.2}"),
            );
        }
    }
}

/// Runs the `calls`, at most `concurrency` at once, and returns each one's
/// latency in microseconds and the time they all took; an error if any failed.
async fn run_concurrently<Fut>(
    calls: impl IntoIterator<Item = Fut>,
    concurrency: usize,
) -> Result<(Vec<u64>, Duration), String>
where
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut running = tokio::task::JoinSet::new();
    let started = Instant::now();
    for call in calls {
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        running.spawn(async move {
            let begun = Instant::now();
            let ok = call.await;
            drop(permit);
            (ok, begun.elapsed())
        });
    }
    let mut latencies_us = Vec::new();
    let mut failed = 0;
    while let Some(done) = running.join_next().await {
        let (ok, took) = done.map_err(|e| e.to_string())?;
        failed += usize::from(!ok);
        latencies_us.push(took.as_micros() as u64);
    }
    let elapsed = started.elapsed();
    if failed > 0 {
        return Err(format!("{failed} of {} calls failed", latencies_us.len()));
    }
    Ok((latencies_us, elapsed))
}

/// A runtime on a fresh SQLite file in a scratch directory, with one app
/// (`app`) that pushes through UnifiedPush; the directory is returned for
/// the scenario to remove.
async fn unifiedpush_runtime(
    name: &str,
    app: &str,
) -> Result<(crate::runtime::Runtime, std::path::PathBuf), String> {
    use crate::config::{AppConfig, Config, UnifiedPushConfig};
    let dir = scratch_dir(name)?;
    let mut config = Config {
        database_url: format!("sqlite://{}/bench.db", dir.display()),
        ..Config::default()
    };
    config.apps.insert(
        app.into(),
        AppConfig {
            unifiedpush: Some(UnifiedPushConfig::default()),
            ..AppConfig::default()
        },
    );
    let runtime = crate::runtime::Runtime::start(config)
        .await
        .map_err(|e| e.to_string())?;
    Ok((runtime, dir))
}

/// Now, in microseconds since the Unix epoch: what the scenarios stamp on
/// what they send, to time it on arrival.
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Serves `app` on a free loopback port, in the background: the local
/// push receivers the scenarios deliver to.
async fn serve_on_loopback(app: axum::Router) -> Result<std::net::SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(address)
}

/// A fresh directory under the system temp dir for a scenario's database.
fn scratch_dir(name: &str) -> Result<std::path::PathBuf, String> {
    // Unique within the process too: tests run scenarios side by side.
    static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "herald-bench-{name}-{}-{}-{serial}",
        std::process::id(),
        herald_core::time::now_ms()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
}
