//! Running the Nostr source inside `serve`: one connection per configured
//! relay, all feeding one pipeline, started lazily and stopped in order.
//!
//! Lazy, as the Jetstream source: nothing connects until some Nostr key has
//! a device. The seen-set, the mute lists and the cursor (when herald last
//! watched) come back from the store, and the keys registered before this
//! start count as watched only if the source ran before: on the very first
//! start their stored events are history, not news. On shutdown the
//! connections stop first, then the pipeline stores its cursor, seen-set
//! and mute lists, before the store closes. Each app's kinds and alert
//! style and the rate limit come from the configuration.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use herald_core::store::Store;
use herald_nostr::relay::{RelayConnection, StatusHandle};
use herald_nostr::relay_pipeline::{PipelineStats, RelayPipeline, SOURCE_NAME};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::server::AppState;

/// Events read ahead of the pipeline, from all relays together: enough to
/// ride out a slow store write, small enough that back-pressure reaches the
/// sockets quickly.
pub(crate) const EVENTS_IN_FLIGHT: usize = 1024;

/// The running source's figures, for `/health`.
pub struct RelaysHealth {
    relays: Vec<(String, StatusHandle)>,
    stats: Arc<PipelineStats>,
}

impl RelaysHealth {
    pub fn figures(&self) -> crate::metrics::SourceFigures {
        let count = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let snapshots: Vec<_> = self.relays.iter().map(|(_, s)| s.snapshot()).collect();
        crate::metrics::SourceFigures {
            events: count(&self.stats.events),
            notifications: count(&self.stats.notifications),
            // Refused by the connections: malformed, forged, unasked-for.
            unreadable: snapshots.iter().map(|s| s.refused).sum(),
            rate_limited: count(&self.stats.rate_limited),
            connected: snapshots.iter().filter(|s| s.connected).count() as u64,
            // Relays carry no stream position to measure lag against.
            lag_seconds: None,
        }
    }

    pub fn json(&self) -> Value {
        let count = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let relays: Vec<Value> = self
            .relays
            .iter()
            .map(|(url, status)| {
                let s = status.snapshot();
                json!({
                    "url": url,
                    "connected": s.connected,
                    "authenticated": s.authenticated,
                    "subscriptions": s.subscriptions,
                    "events": s.events,
                    "refused": s.refused,
                    "notices": s.notices,
                    "closed_subscriptions": s.closed,
                    "disconnects": s.disconnects,
                    "last_error": s.last_error,
                })
            })
            .collect();
        json!({
            "relays": relays,
            "events": count(&self.stats.events),
            "duplicates": count(&self.stats.duplicates),
            "history": count(&self.stats.history),
            "muted": count(&self.stats.muted),
            "rate_limited": count(&self.stats.rate_limited),
            "mute_lists": count(&self.stats.mute_lists),
            "notifications": count(&self.stats.notifications),
            "store_retries": count(&self.stats.store_retries),
        })
    }
}

/// Runs the source until `stop`; returns at once when no relay is configured.
pub async fn run(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let runtime = &state.runtime;
    let config = &runtime.config;
    let configs = match config.nostr.relay_configs(&config.apps) {
        Ok(configs) if !configs.is_empty() => configs,
        // Checked when the configuration loaded; empty means off.
        _ => return,
    };
    tokio::select! {
        () = runtime.nostr_recipients.wait_for_someone() => {}
        _ = stop.wait_for(|s| *s) => return,
    }
    let (cursor, kept) = match (
        runtime.store.cursor(SOURCE_NAME).await,
        runtime.store.source_state(SOURCE_NAME).await,
    ) {
        (Ok(cursor), Ok(kept)) => (cursor.and_then(|c| c.parse::<u64>().ok()), kept),
        (Err(e), _) | (_, Err(e)) => {
            // Without them every stored event would look new, or every key
            // new: better to treat all as new (no push) than to push twice.
            tracing::error!(error = %e, "cannot read the Nostr source's state; starting afresh");
            (None, Vec::new())
        }
    };
    let at_start = std::mem::take(
        &mut *runtime
            .nostr_keys_at_start
            .lock()
            .unwrap_or_else(|p| p.into_inner()),
    );
    // Without a cursor the source never ran: nobody was watched yet.
    let known: HashSet<_> = if cursor.is_some() {
        at_start.into_iter().collect()
    } else {
        HashSet::new()
    };
    let pipeline = RelayPipeline::new(
        Arc::clone(&runtime.nostr_recipients),
        runtime.fan_out.clone(),
        &kept,
    )
    .with_apps(config.nostr.app_rules(&config.apps))
    .with_rate_limit(config.nostr.rate_limit.limit());
    let (events_tx, events_rx) = mpsc::channel(EVENTS_IN_FLIGHT);
    let mut relays = Vec::new();
    let mut readers = Vec::new();
    for config in configs {
        let url = config.url.to_string();
        let connection = RelayConnection::new(
            config,
            Arc::clone(&runtime.nostr_recipients),
            known.clone(),
            cursor,
        );
        relays.push((url, connection.status()));
        readers.push(tokio::spawn(
            connection.run(events_tx.clone(), stop.clone()),
        ));
    }
    drop(events_tx);
    let _ = runtime.nostr_relays_health.set(RelaysHealth {
        relays,
        stats: pipeline.stats(),
    });
    tracing::info!(
        relays = readers.len(),
        ?cursor,
        seen = pipeline.seen_len(),
        mute_lists = pipeline.mute_lists_len(),
        "Nostr relay source starting"
    );
    pipeline.run(events_rx, stop).await;
    for reader in readers {
        let _ = reader.await;
    }
}
