//! Prometheus metrics at `/metrics`, all prefixed `herald_`.
//!
//! Counters and histograms are recorded where things happen (the dispatcher
//! counts outcomes per app and transport); gauges that describe the store
//! (queue depth, devices) are read from it at scrape time, so they are right
//! on every node even when another node did the work.

use herald_core::store::{Queue, Store};
use metrics::gauge;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

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
}

/// Refreshes the store gauges and renders the text exposition.
pub async fn render(handle: &PrometheusHandle, store: &(impl Store + Queue)) -> String {
    if let Ok(depth) = store.depth().await {
        gauge!("herald_queue_depth").set(depth as f64);
    }
    if let Ok(devices) = store.count_devices().await {
        gauge!("herald_devices").set(devices as f64);
    }
    handle.render()
}
