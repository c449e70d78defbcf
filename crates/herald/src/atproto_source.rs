//! Running the AT Protocol source inside `serve`: the Jetstream or firehose
//! reader (`[atproto] source`) and the pipeline behind it, started lazily
//! and stopped in order. The firehose's frames pass a verifying stage on
//! their way to the same pipeline.
//!
//! Lazy: nothing connects to the network until some AT Protocol account has
//! a device, because with no recipient every event would be read for nothing.
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
use herald_atproto::firehose::CommitVerifier;
use herald_atproto::firehose_source::{FirehoseSource, FirehoseVerifier, VerifyStats};
use herald_atproto::jetstream::{JetstreamSource, RawEvent, StatusHandle};
use herald_atproto::jetstream_pipeline::{
    FIREHOSE_SOURCE_NAME, JetstreamPipeline, PipelineStats, SOURCE_NAME,
};
use herald_atproto::service_auth::KeyResolver;
use herald_core::store::Store;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::server::AppState;

/// Events read ahead of the pipeline: enough to ride out a slow store
/// write, small enough that back-pressure reaches the socket quickly.
pub(crate) const EVENTS_IN_FLIGHT: usize = 4096;

/// Decoded firehose frames waiting for verification: a commit whose key is
/// being resolved holds the ones behind it, and the socket waits when full.
const FRAMES_IN_FLIGHT: usize = 1024;

/// Block records read from PDSes waiting for the pipeline; the backfill
/// waits when it is full.
const BACKFILL_IN_FLIGHT: usize = 1024;

/// The running source's figures, for `/health`.
pub struct SourceHealth {
    /// "jetstream" or "firehose": the key in `/health` and the metrics' label.
    pub name: &'static str,
    status: StatusHandle,
    /// The firehose's verification counts, when it verifies.
    verify: Option<Arc<VerifyStats>>,
    stats: Arc<PipelineStats>,
    backfill: Arc<BackfillStats>,
    backfill_queue: Arc<BackfillQueue>,
}

impl SourceHealth {
    pub fn verify_stats(&self) -> Option<&VerifyStats> {
        self.verify.as_deref()
    }

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
            "verification": self.verify.as_ref().map(|v| json!({
                "commits_verified": v.verified(),
                "rejected": v.rejected().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
            })),
            "frames_refused": s.frames_refused,
            "disconnects": s.disconnects,
            "last_error": s.last_error,
        })
    }
}

/// Which reader feeds the pipeline.
enum Reader {
    Jetstream(JetstreamSource),
    Firehose(FirehoseSource, FirehoseVerifier),
}

impl Reader {
    fn status(&self) -> StatusHandle {
        match self {
            Reader::Jetstream(source) => source.status(),
            Reader::Firehose(source, _) => source.status(),
        }
    }

    fn verify_stats(&self) -> Option<Arc<VerifyStats>> {
        match self {
            Reader::Jetstream(_) => None,
            Reader::Firehose(_, verifier) => Some(verifier.stats()),
        }
    }

    /// Reads until `stop`, handing Jetstream events to `events`.
    async fn run(self, events: mpsc::Sender<RawEvent>, stop: watch::Receiver<bool>) {
        let ended = match self {
            Reader::Jetstream(source) => source.run(events, stop).await,
            Reader::Firehose(source, verifier) => {
                let (frames_tx, frames_rx) = mpsc::channel(FRAMES_IN_FLIGHT);
                let verifying = tokio::spawn(verifier.run(frames_rx, events));
                let ended = source.run(frames_tx, stop).await;
                let _ = verifying.await;
                ended
            }
        };
        if let Err(e) = ended {
            tracing::warn!(error = %e, "AT Protocol source ended");
        }
    }
}

/// Which AT Protocol source the configuration runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Jetstream,
    Firehose,
}

impl SourceKind {
    /// `None` when no source is to run (no identity, or switched off).
    pub fn of(runtime: &crate::runtime::Runtime) -> Option<Self> {
        if runtime.jetstream_config.is_some() {
            Some(SourceKind::Jetstream)
        } else if runtime.firehose_config.is_some() {
            Some(SourceKind::Firehose)
        } else {
            None
        }
    }

    /// The key in `/health` and the metrics' `source` label.
    pub fn label(self) -> &'static str {
        match self {
            SourceKind::Jetstream => "jetstream",
            SourceKind::Firehose => "firehose",
        }
    }

    /// Where the cursor and the kept state are stored: a firehose `seq`
    /// must never be read as a Jetstream time.
    fn store_name(self) -> &'static str {
        match self {
            SourceKind::Jetstream => SOURCE_NAME,
            SourceKind::Firehose => FIREHOSE_SOURCE_NAME,
        }
    }
}

/// The reader `kind` needs and its replay window.
fn reader(
    kind: SourceKind,
    runtime: &crate::runtime::Runtime,
    atproto: &crate::atproto::AtprotoService,
    cursor: Option<u64>,
) -> Result<(Reader, Duration), String> {
    let settings = &runtime.config.atproto;
    let configured = |what: &str| format!("the {what} source is not configured");
    match kind {
        SourceKind::Jetstream => {
            let config = runtime
                .jetstream_config
                .clone()
                .ok_or_else(|| configured("Jetstream"))?;
            let source = JetstreamSource::new(config, cursor).map_err(|e| e.to_string())?;
            let age = Duration::from_secs(settings.jetstream.max_event_age_secs);
            Ok((Reader::Jetstream(source), age))
        }
        SourceKind::Firehose => {
            let config = runtime
                .firehose_config
                .clone()
                .ok_or_else(|| configured("firehose"))?;
            let source = FirehoseSource::new(config, cursor).map_err(|e| e.to_string())?;
            let keys = Arc::clone(&atproto.resolver) as Arc<dyn KeyResolver>;
            let verifier = settings.firehose.verify.then(|| CommitVerifier::new(keys));
            let age = Duration::from_secs(settings.firehose.max_event_age_secs);
            Ok((
                Reader::Firehose(source, FirehoseVerifier::new(verifier)),
                age,
            ))
        }
    }
}

/// Runs the source until `stop`; returns at once when it is switched off.
pub async fn run(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let runtime = &state.runtime;
    let (Some(atproto), Some(kind)) = (&runtime.atproto, SourceKind::of(runtime)) else {
        return;
    };
    tokio::select! {
        () = runtime.recipients.wait_for_someone() => {}
        _ = stop.wait_for(|s| *s) => return,
    }
    let source_name = kind.store_name();
    let cursor = match runtime.store.cursor(source_name).await {
        Ok(cursor) => cursor.and_then(|c| c.parse::<u64>().ok()),
        Err(e) => {
            // The pipeline would fail the same way; better to say so and
            // start from the live tip than to push nothing at all.
            tracing::error!(error = %e, "cannot read the source's cursor; starting at the live tip");
            None
        }
    };
    let (reader, max_event_age) = match reader(kind, runtime, atproto, cursor) {
        Ok(configured) => configured,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the AT Protocol source");
            return;
        }
    };
    let mut pipeline = JetstreamPipeline::new(
        Arc::clone(&runtime.recipients),
        runtime.fan_out.clone(),
        max_event_age,
    )
    .with_names(Arc::new(ActorNames::new(
        ActorNamesConfig::default(),
        Arc::new(PdsNames::new(Arc::clone(&atproto.resolver))),
    )))
    .with_rate_limit(runtime.config.atproto.rate_limit.limit())
    .with_source_name(source_name);
    // The blocks kept in the store; past blocks are read only for the
    // accounts registered before this start whose reading was not kept.
    let kept = match runtime.store.source_state(source_name).await {
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
    if let Some(config) = &runtime.jetstream_config {
        pipeline = pipeline.with_api(config.api);
    }
    let pipeline = pipeline.with_state_updates(updates_rx).starting_at(cursor);
    let backfill_stats = Arc::new(BackfillStats::default());
    let name = kind.label();
    let _ = runtime.source_health.set(SourceHealth {
        name,
        status: reader.status(),
        verify: reader.verify_stats(),
        stats: pipeline.stats(),
        backfill: Arc::clone(&backfill_stats),
        backfill_queue: Arc::clone(&runtime.backfill),
    });
    tracing::info!(source = name, ?cursor, "AT Protocol source starting");
    let backfill = tokio::spawn(block_backfill::run(
        Arc::clone(&runtime.backfill),
        Arc::clone(&atproto.resolver),
        updates_tx,
        backfill_stats,
        stop.clone(),
    ));
    let (events_tx, events_rx) = mpsc::channel(EVENTS_IN_FLIGHT);
    let reader = tokio::spawn(reader.run(events_tx, stop.clone()));
    pipeline.run(events_rx, stop).await;
    let _ = reader.await;
    let _ = backfill.await;
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use herald_atproto::actor_names::ActorNameSource;
    use herald_atproto::block_backfill::StateUpdate;
    use herald_atproto::did::Did;
    use herald_atproto::jetstream_event::{JetstreamEvent, nsid};
    use herald_atproto::jetstream_pipeline::JetstreamPipeline;
    use herald_atproto::render::ActorName;
    use herald_atproto::test_support::{
        ALICE, BOB, CAROL, DAVE, commit_json, create, post_uri, strong_ref,
    };
    use herald_core::model::{Account, AppId, NewDevice, Platform, Transport};
    use herald_core::store::Queue;

    use super::*;
    use crate::config::{AppConfig, Config, UnifiedPushConfig};
    use crate::runtime::Runtime;

    /// Hands the pipeline a state update the first time a name is looked
    /// up: while it handles the first event, with the others waiting.
    struct UpdateOnFirstLookup(Mutex<Option<(mpsc::Sender<StateUpdate>, StateUpdate)>>);

    #[async_trait]
    impl ActorNameSource for UpdateOnFirstLookup {
        async fn name(&self, _actor: &Did) -> ActorName {
            let pending = self.0.lock().unwrap().take();
            if let Some((updates, update)) = pending {
                updates.try_send(update).unwrap();
            }
            ActorName::default()
        }

        fn observe(&self, _event: &JetstreamEvent) {}
    }

    /// A like by `actor` of Bob's post, seen by Jetstream just now.
    fn like_of_bobs_post(actor: &str, rkey: &str) -> RawEvent {
        let record = json!({"subject": strong_ref(&post_uri(BOB, "3post")), "createdAt": "2026-05-25T14:23:28.778Z"});
        let mut event: Value = serde_json::from_str(&commit_json(
            actor,
            "create",
            nsid::FEED_LIKE,
            rkey,
            Some(record),
        ))
        .unwrap();
        event["time_us"] = json!(herald_core::time::now_ms() as u64 * 1000);
        RawEvent::from_v1(event.to_string().into_bytes()).unwrap()
    }

    #[tokio::test]
    async fn state_learned_while_an_event_is_handled_applies_to_the_events_waiting_behind_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            database_url: format!("sqlite://{}/herald.db", dir.path().display()),
            ..Config::default()
        };
        let app = AppConfig {
            unifiedpush: Some(UnifiedPushConfig::default()),
            ..AppConfig::default()
        };
        config.apps.insert("app".into(), app);
        let runtime = Runtime::start(config).await.unwrap();
        runtime
            .store_device(&NewDevice {
                account: Account::parse(&format!("atproto:{BOB}")).unwrap(),
                app_id: AppId::parse("app").unwrap(),
                platform: Platform::Android,
                transport: Transport::UnifiedPush,
                token: "https://push.example.net/up/bob".into(),
                options: Default::default(),
            })
            .await
            .unwrap();
        runtime.recipients.insert(Did::parse(BOB).unwrap());

        // Bob blocks Alice, learned (as from his PDS) while Carol's like,
        // the first event, is being handled.
        let block = create(
            BOB,
            nsid::GRAPH_BLOCK,
            "3block",
            json!({"subject": ALICE, "createdAt": "2026-05-25T14:23:28.778Z"}),
        );
        let (updates_tx, updates_rx) = mpsc::channel(4);
        let names = UpdateOnFirstLookup(Mutex::new(Some((updates_tx, StateUpdate::Event(block)))));
        let pipeline = JetstreamPipeline::new(
            Arc::clone(&runtime.recipients),
            runtime.fan_out.clone(),
            Duration::from_secs(600),
        )
        .with_names(Arc::new(names))
        .with_state_updates(updates_rx);
        let stats = pipeline.stats();
        let (events_tx, events_rx) = mpsc::channel(8);
        for (actor, rkey) in [(CAROL, "3c"), (ALICE, "3a"), (DAVE, "3d")] {
            events_tx
                .send(like_of_bobs_post(actor, rkey))
                .await
                .unwrap();
        }
        drop(events_tx);
        let (_stop_tx, stop_rx) = watch::channel(false);
        pipeline.run(events_rx, stop_rx).await;

        assert_eq!(stats.events.load(Ordering::Relaxed), 3);
        // Carol's and Dave's likes; Alice's is hidden by the block.
        assert_eq!(stats.notifications.load(Ordering::Relaxed), 2);
        assert_eq!(runtime.store.depth().await.unwrap(), 2);
        runtime.store.close().await;
    }
}
