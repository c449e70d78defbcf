//! Running the AT Protocol source inside `serve`: the Jetstream reader and
//! the pipeline behind it, started lazily and stopped in order.
//!
//! Lazy: nothing connects to Jetstream until some AT Protocol account has a
//! device, because with no recipient every event would be read for nothing.
//! The source resumes from the cursor stored with the last deliveries it
//! produced. On shutdown the reader stops first, then the pipeline stores
//! the cursor of the last event it handled, before the store closes.
//! Actors are named through the DID resolver of herald's AT Protocol
//! identity, so registrations and names share one document cache.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use herald_atproto::actor_names::{ActorNames, ActorNamesConfig, PdsNames};
use herald_atproto::jetstream::{JetstreamSource, StatusHandle};
use herald_atproto::jetstream_pipeline::{JetstreamPipeline, PipelineStats, SOURCE_NAME};
use herald_core::store::Store;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::server::AppState;

/// Events read ahead of the pipeline: enough to ride out a slow store
/// write, small enough that back-pressure reaches the socket quickly.
const EVENTS_IN_FLIGHT: usize = 4096;

/// The running source's figures, for `/health`.
pub struct JetstreamHealth {
    status: StatusHandle,
    stats: Arc<PipelineStats>,
}

impl JetstreamHealth {
    pub fn json(&self) -> Value {
        let s = self.status.snapshot();
        let count = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "connected": s.connected_url,
            "cursor": s.cursor,
            "lag_seconds": s.lag.map(|l| l.as_secs_f64()),
            "events_per_second": s.events_per_second,
            "events": count(&self.stats.events),
            "unreadable": count(&self.stats.unreadable),
            "too_old": count(&self.stats.too_old),
            "rate_limited": count(&self.stats.rate_limited),
            "notifications": count(&self.stats.notifications),
            "frames_refused": s.frames_refused,
            "disconnects": s.disconnects,
            "last_error": s.last_error,
        })
    }
}

/// Runs the source until `stop`; returns at once when it is switched off.
pub async fn run(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let runtime = &state.runtime;
    let (Some(config), Some(atproto)) = (runtime.jetstream_config.clone(), &runtime.atproto) else {
        return;
    };
    tokio::select! {
        () = runtime.recipients.wait_for_someone() => {}
        _ = stop.wait_for(|s| *s) => return,
    }
    let cursor = match runtime.store.cursor(SOURCE_NAME).await {
        Ok(cursor) => cursor.and_then(|c| c.parse::<u64>().ok()),
        Err(e) => {
            // The pipeline would fail the same way; better to say so and
            // start from the live tip than to push nothing at all.
            tracing::error!(error = %e, "cannot read the Jetstream cursor; starting at the live tip");
            None
        }
    };
    let api = config.api;
    let source = match JetstreamSource::new(config, cursor) {
        Ok(source) => source,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the Jetstream source");
            return;
        }
    };
    let max_event_age = Duration::from_secs(runtime.config.atproto.jetstream.max_event_age_secs);
    let pipeline = JetstreamPipeline::new(
        Arc::clone(&runtime.recipients),
        runtime.fan_out.clone(),
        max_event_age,
    )
    .with_names(Arc::new(ActorNames::new(
        ActorNamesConfig::default(),
        Arc::new(PdsNames::new(Arc::clone(&atproto.resolver))),
    )))
    .with_rate_limit(runtime.config.atproto.rate_limit.limit())
    .with_api(api);
    let _ = runtime.jetstream_health.set(JetstreamHealth {
        status: source.status(),
        stats: pipeline.stats(),
    });
    tracing::info!(?cursor, "Jetstream source starting");
    let (events_tx, events_rx) = mpsc::channel(EVENTS_IN_FLIGHT);
    let reader = tokio::spawn(source.run(events_tx, stop.clone()));
    pipeline.run(events_rx, stop).await;
    if let Ok(Err(e)) = reader.await {
        tracing::warn!(error = %e, "Jetstream source ended");
    }
}
