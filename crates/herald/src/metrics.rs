//! Prometheus metrics at `/metrics`, all prefixed `herald_`.
//!
//! Counters and histograms are recorded where things happen (the dispatcher
//! counts outcomes per app and transport); gauges that describe the store
//! (queue depth, devices) are read from it at scrape time, so they are right
//! on every node even when another node did the work.

use herald_core::store::{Queue, Store};
use metrics::{counter, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::runtime::Runtime;

/// Provider latency buckets in seconds: APNs answers in tens of
/// milliseconds, a slow push service in seconds, the client gives up at 30.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Installs the process-wide recorder; call once.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("herald_provider_latency_seconds".into()),
            LATENCY_BUCKETS,
        )
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    describe();
    Ok(handle)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "herald_deliveries_total",
        "Deliveries finished, by app, transport and outcome (delivered, token_dead, rejected, expired)"
    );
    describe_counter!(
        "herald_delivery_retries_total",
        "Attempts that failed and were scheduled again, by app and transport"
    );
    describe_histogram!(
        "herald_provider_latency_seconds",
        Unit::Seconds,
        "Time from a provider request to its answer, by transport"
    );
    describe_gauge!("herald_queue_depth", "Deliveries waiting in the queue");
    describe_gauge!("herald_devices", "Registered devices");
    describe_gauge!(
        "herald_dispatcher_in_flight",
        "Provider requests under way, by transport"
    );
    describe_counter!(
        "herald_notifications_total",
        "Notifications accepted through the admin API"
    );
    describe_counter!(
        "herald_source_events_total",
        "Events a network source handed to its rules, by source (jetstream, firehose, nostr)"
    );
    describe_counter!(
        "herald_source_notifications_total",
        "Notifications a source queued, by source"
    );
    describe_counter!(
        "herald_source_unreadable_total",
        "Events a source skipped as unreadable, by source"
    );
    describe_counter!(
        "herald_source_rate_limited_total",
        "Pushes a source held back by the per-recipient rate limit, by source"
    );
    describe_counter!(
        "herald_firehose_commits_verified_total",
        "Firehose commits whose signature, repo, rev and record CIDs checked out"
    );
    describe_counter!(
        "herald_firehose_commits_rejected_total",
        "Firehose commits dropped, by reason (bad_signature, stale_rev, cid_mismatch, ...)"
    );
    describe_gauge!(
        "herald_source_connections",
        "Open connections of a source (Jetstream: 0 or 1; Nostr: relays; Status: nwaku, 0 or 1)"
    );
    describe_counter!(
        "herald_status_messages_total",
        "Status registrations, queries and notification requests handled"
    );
    describe_counter!(
        "herald_status_ignored_total",
        "Messages on the Status server's topics dropped unanswered, by reason \
         (payload, unsigned, wrapper, message_type, protobuf, duplicate)"
    );
    describe_gauge!(
        "herald_source_lag_seconds",
        Unit::Seconds,
        "How far the newest event a source handled is behind now"
    );
}

/// Refreshes the store and source gauges and renders the text exposition.
pub async fn render(handle: &PrometheusHandle, runtime: &Runtime) -> String {
    let store = runtime.store.as_ref();
    if let Ok(depth) = store.depth().await {
        gauge!("herald_queue_depth").set(depth as f64);
    }
    if let Ok(devices) = store.count_devices().await {
        gauge!("herald_devices").set(devices as f64);
    }
    if let Some(source) = runtime.source_health.get() {
        record_source(source.name, source.figures());
        if let Some(verify) = source.verify_stats() {
            counter!("herald_firehose_commits_verified_total").absolute(verify.verified());
            for (reason, count) in verify.rejected() {
                counter!("herald_firehose_commits_rejected_total", "reason" => reason)
                    .absolute(count);
            }
        }
    }
    if let Some(relays) = runtime.nostr_relays_health.get() {
        record_source("nostr", relays.figures());
    }
    handle.render()
}

/// A running source's counters, as its pipeline keeps them.
pub struct SourceFigures {
    pub events: u64,
    pub notifications: u64,
    pub unreadable: u64,
    pub rate_limited: u64,
    /// Connections open now.
    pub connected: u64,
    /// How far the newest event handled is behind now, where known.
    pub lag_seconds: Option<f64>,
}

/// The pipelines count with atomics of their own (they know nothing of
/// metrics); the counters are copied at scrape time, as the store gauges are.
fn record_source(source: &'static str, f: SourceFigures) {
    counter!("herald_source_events_total", "source" => source).absolute(f.events);
    counter!("herald_source_notifications_total", "source" => source).absolute(f.notifications);
    counter!("herald_source_unreadable_total", "source" => source).absolute(f.unreadable);
    counter!("herald_source_rate_limited_total", "source" => source).absolute(f.rate_limited);
    gauge!("herald_source_connections", "source" => source).set(f.connected as f64);
    if let Some(lag) = f.lag_seconds {
        gauge!("herald_source_lag_seconds", "source" => source).set(lag);
    }
}
