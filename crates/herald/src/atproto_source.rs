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
use herald_atproto::block_backfill::{self, BackfillQueue, BackfillStats};
use herald_atproto::jetstream::{JetstreamSource, StatusHandle};
use herald_atproto::jetstream_pipeline::{JetstreamPipeline, PipelineStats, SOURCE_NAME};
use herald_core::store::Store;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::server::AppState;

/// Events read ahead of the pipeline: enough to ride out a slow store
/// write, small enough that back-pressure reaches the socket quickly.
pub(crate) const EVENTS_IN_FLIGHT: usize = 4096;

/// Block records read from PDSes waiting for the pipeline; the backfill
/// waits when it is full.
const BACKFILL_IN_FLIGHT: usize = 1024;

/// The running source's figures, for `/health`.
pub struct JetstreamHealth {
    status: StatusHandle,
    stats: Arc<PipelineStats>,
    backfill: Arc<BackfillStats>,
    backfill_queue: Arc<BackfillQueue>,
}

impl JetstreamHealth {
    pub fn figures(&self) -> crate::metrics::SourceFigures {
        let s = self.status.snapshot();
        let count = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        crate::metrics::SourceFigures {
            events: count(&self.stats.events),
            notifications: count(&self.stats.notifications),
            unreadable: count(&self.stats.unreadable),
            rate_limited: count(&self.stats.rate_limited),
            connected: u64::from(s.connected_url.is_some()),
            lag_seconds: s.lag.map(|l| l.as_secs_f64()),
        }
    }

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
            "block_backfill": {
                "waiting": self.backfill_queue.len(),
                "accounts_done": count(&self.backfill.accounts_done),
                "records": count(&self.stats.backfilled_records),
                "failures": count(&self.backfill.failures),
                "abandoned": count(&self.backfill.abandoned),
            },
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
    let mut pipeline = JetstreamPipeline::new(
        Arc::clone(&runtime.recipients),
        runtime.fan_out.clone(),
        max_event_age,
    )
    .with_names(Arc::new(ActorNames::new(
        ActorNamesConfig::default(),
        Arc::new(PdsNames::new(Arc::clone(&atproto.resolver))),
    )))
    .with_rate_limit(runtime.config.atproto.rate_limit.limit());
    // The blocks kept in the store; past blocks are read only for the
    // accounts registered before this start whose reading was not kept.
    let kept = match runtime.store.source_state(SOURCE_NAME).await {
        Ok(kept) => kept,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the kept blocks; reading every account's again");
            Vec::new()
        }
    };
    let backfilled = pipeline.restore(&kept);
    let at_start = std::mem::take(
        &mut *runtime
            .accounts_at_start
            .lock()
            .unwrap_or_else(|p| p.into_inner()),
    );
    for did in at_start.into_iter().filter(|d| !backfilled.contains(d)) {
        runtime.backfill.push(did);
    }
    let (updates_tx, updates_rx) = mpsc::channel(BACKFILL_IN_FLIGHT);
    let pipeline = pipeline
        .with_api(api)
        .with_state_updates(updates_rx)
        .starting_at(cursor);
    let backfill_stats = Arc::new(BackfillStats::default());
    let _ = runtime.jetstream_health.set(JetstreamHealth {
        status: source.status(),
        stats: pipeline.stats(),
        backfill: Arc::clone(&backfill_stats),
        backfill_queue: Arc::clone(&runtime.backfill),
    });
    tracing::info!(?cursor, "Jetstream source starting");
    let backfill = tokio::spawn(block_backfill::run(
        Arc::clone(&runtime.backfill),
        Arc::clone(&atproto.resolver),
        updates_tx,
        backfill_stats,
        stop.clone(),
    ));
    let (events_tx, events_rx) = mpsc::channel(EVENTS_IN_FLIGHT);
    let reader = tokio::spawn(source.run(events_tx, stop.clone()));
    pipeline.run(events_rx, stop).await;
    if let Ok(Err(e)) = reader.await {
        tracing::warn!(error = %e, "Jetstream source ended");
    }
    let _ = backfill.await;
}
