//! Running the Nostr source inside `serve`: one connection per configured
//! relay, per index relay, and per account relay (`relay_set`, as the
//! accounts' lists from the index relays name them), all feeding one
//! pipeline, started lazily and stopped in order.
//!
//! Lazy, as the Jetstream source: nothing connects until some Nostr key has
//! a device. The seen-set, the mute lists and the cursor (when herald last
//! watched) come back from the store, and the keys registered before this
//! start count as watched only if the source ran before: on the very first
//! start their stored events are history, not news. On shutdown the
//! connections stop first, then the pipeline stores its cursor, seen-set
//! and mute lists, before the store closes. Each app's kinds and alert
//! style and the rate limit come from the configuration. The accounts'
//! relay lists come back from the store too, so their relays are watched
//! from the start, whether or not the index relays answer.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use herald_core::store::Store;
use herald_nostr::account_relays::AccountRelays;
use herald_nostr::relay::{RelayConfig, RelayConnection, RelayStatus, StatusHandle};
use herald_nostr::relay_pipeline::{PipelineStats, RelayPipeline, SOURCE_NAME};
use herald_nostr::relay_set::{AccountRelaySet, RelaySetHandle};
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
    index_relays: Vec<(String, StatusHandle)>,
    account_relays: RelaySetHandle,
    relay_lists: Arc<AccountRelays>,
    stats: Arc<PipelineStats>,
}

impl RelaysHealth {
    /// Every connection's status: configured, index and account relays.
    fn snapshots(&self) -> Vec<RelayStatus> {
        let fixed = self.relays.iter().chain(&self.index_relays);
        fixed
            .map(|(_, s)| s.snapshot())
            .chain(self.account_relays.snapshot().into_iter().map(|a| a.status))
            .collect()
    }

    pub fn figures(&self) -> crate::metrics::SourceFigures {
        let count = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let snapshots = self.snapshots();
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
        let fixed = |relays: &[(String, StatusHandle)]| -> Vec<Value> {
            relays
                .iter()
                .map(|(url, status)| relay_json(url, &status.snapshot()))
                .collect()
        };
        let account_relays: Vec<Value> = self
            .account_relays
            .snapshot()
            .iter()
            .map(|a| {
                let mut relay = relay_json(&a.url, &a.status);
                relay["accounts"] = json!(a.accounts);
                relay
            })
            .collect();
        json!({
            "relays": fixed(&self.relays),
            "index_relays": fixed(&self.index_relays),
            "account_relays": account_relays,
            "relay_lists_held": self.relay_lists.len(),
            "relay_lists": count(&self.stats.relay_lists),
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

/// One relay connection as `/health` shows it.
fn relay_json(url: &str, s: &RelayStatus) -> Value {
    json!({
        "url": url,
        "connected": s.connected,
        "authenticated": s.authenticated,
        "gift_wraps_restricted": s.gift_wraps_restricted,
        "subscriptions": s.subscriptions,
        "events": s.events,
        "refused": s.refused,
        "notices": s.notices,
        "closed_subscriptions": s.closed,
        "disconnects": s.disconnects,
        "last_error": s.last_error,
    })
}

/// Runs the source until `stop`; returns at once when neither relays nor
/// index relays are configured.
pub async fn run(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let runtime = &state.runtime;
    let config = &runtime.config;
    // Checked when the configuration loaded; empty means off.
    let configs = config.nostr.relay_configs(&config.apps).unwrap_or_default();
    let index_configs = config
        .nostr
        .index_relay_configs(&config.apps)
        .unwrap_or_default();
    let Ok(template) = config.nostr.account_relay_template(&config.apps) else {
        return;
    };
    if configs.is_empty() && index_configs.is_empty() {
        return;
    }
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
    let relay_lists = Arc::new(AccountRelays::new(config.nostr.account_relay_limits()));
    relay_lists.restore(&kept);
    let pipeline = RelayPipeline::new(
        Arc::clone(&runtime.nostr_recipients),
        runtime.fan_out.clone(),
        &kept,
    )
    .with_apps(config.nostr.app_rules(&config.apps))
    .with_rate_limit(config.nostr.rate_limit.limit())
    .with_account_relays(Arc::clone(&relay_lists));
    let (events_tx, events_rx) = mpsc::channel(EVENTS_IN_FLIGHT);
    let configured: HashSet<url::Url> = configs.iter().map(|c| c.url.clone()).collect();
    let mut readers = Vec::new();
    let mut open = |configs: Vec<RelayConfig>, known: &HashSet<_>| {
        let mut statuses = Vec::new();
        for config in configs {
            let url = config.url.to_string();
            let connection = RelayConnection::new(
                config,
                Arc::clone(&runtime.nostr_recipients),
                known.clone(),
                cursor,
            );
            statuses.push((url, connection.status()));
            readers.push(tokio::spawn(
                connection.run(events_tx.clone(), stop.clone()),
            ));
        }
        statuses
    };
    let relays = open(configs, &known);
    // Lists are state, never history: nothing on an index relay is pushed.
    let with_lists = !index_configs.is_empty();
    let index_relays = open(index_configs, &HashSet::new());
    let account_relays = AccountRelaySet::new(
        Arc::clone(&relay_lists),
        Arc::clone(&runtime.nostr_recipients),
        template,
        configured,
        known,
        cursor,
    );
    let account_relays_handle = account_relays.handle();
    if with_lists {
        readers.push(tokio::spawn(
            account_relays.run(events_tx.clone(), stop.clone()),
        ));
    }
    drop(events_tx);
    let _ = runtime.nostr_relays_health.set(RelaysHealth {
        relays,
        index_relays,
        account_relays: account_relays_handle,
        relay_lists: Arc::clone(&relay_lists),
        stats: pipeline.stats(),
    });
    tracing::info!(
        connections = readers.len(),
        ?cursor,
        seen = pipeline.seen_len(),
        mute_lists = pipeline.mute_lists_len(),
        relay_lists = relay_lists.len(),
        "Nostr relay source starting"
    );
    pipeline.run(events_rx, stop).await;
    for reader in readers {
        let _ = reader.await;
    }
}
