//! From the Jetstream source's raw events to queued deliveries: parse, the
//! rules, the replay window, rendering, and the queue with the cursor.
//!
//! - **One writer, in order.** Events are handled one at a time in the
//!   order the source read them, so the state the rules read is the state
//!   the stream built, and the cursor only moves forward.
//! - **Cursor and deliveries together.** An event's notifications are
//!   queued in the same transaction that stores its cursor, so a crash
//!   neither loses them nor queues them twice (beyond the source's small
//!   rewind, which the dedupe keys absorb). Events that notify nobody, the
//!   vast majority, only move the cursor, and it is stored at most every
//!   [`CURSOR_SAVE_INTERVAL`], not once per event. When an event notifies
//!   someone, the events already waiting behind it (up to
//!   [`MAX_EVENTS_PER_COMMIT`]) are handled into the same commit, state
//!   learned meanwhile applied between them as it would be one by one.
//! - **Nothing dropped on a store error.** The same write is retried with
//!   backoff until it succeeds or herald stops (`FanOut::commit_until_stored`);
//!   meanwhile the source's bounded channel fills and the source stops
//!   reading, so the backlog waits in Jetstream, not in memory.
//! - **Replay window.** An event older than `max_event_age` (a long outage,
//!   a cursor far behind) still updates the state but pushes nothing: a
//!   "new like" hours late is noise.
//! - **Rate limit.** Likes, reposts and follows beyond a recipient's limit
//!   (`recipient_rate`) are counted and not pushed; conversation always is.
//! - **Names.** Every event goes past the names source first, so profile
//!   and identity changes reach its cache. Only events that notify someone
//!   look a name up (once per actor), and a lookup holds the pipeline for
//!   a short budget at most (`actor_names`); without a names source
//!   ([`JetstreamPipeline::with_names`]) every push says "Someone".

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald_core::fan_out::FanOut;
use herald_core::model::Notification;
use herald_core::store::StateChange;
use herald_core::time::now_ms;
use tokio::sync::{mpsc, watch};

use crate::actor_names::{ActorNameSource, NoNames};
use crate::block_backfill::{StateUpdate, backfilled_account, backfilled_marker};
use crate::block_graph;
use crate::did::Did;
use crate::jetstream::{JetstreamApi, RawEvent};
use crate::jetstream_event::{JetstreamEvent, parse_event, parse_v2_event};
use crate::recipient_rate::{DEFAULT_RATE_LIMIT, RateLimit, RecipientRates};
use crate::recipients::RecipientIndex;
use crate::render::{ActorName, notification};
use crate::rule_state::MemoryState;
use crate::rules::{Candidate, notifications};

/// The cursor's name in the store when the events come from Jetstream.
pub const SOURCE_NAME: &str = "atproto.jetstream";
/// The cursor's name in the store when the events come from the firehose:
/// its cursor is a `seq`, which means nothing to Jetstream, and the other
/// way round.
pub const FIREHOSE_SOURCE_NAME: &str = "atproto.firehose";
/// How often a cursor with no notifications is stored: a crash replays at
/// most this much more than the source's rewind, and the store sees one
/// write a second instead of thousands.
pub const CURSOR_SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// Events handled into one commit at most: a surge's notifying events
/// share commits instead of each waiting for its own.
pub const MAX_EVENTS_PER_COMMIT: usize = 64;
/// Events older than this push nothing (the default).
pub const DEFAULT_MAX_EVENT_AGE: Duration = Duration::from_secs(10 * 60);

/// Counters for `/health` and `/metrics`.
#[derive(Debug, Default)]
pub struct PipelineStats {
    pub events: AtomicU64,
    pub unreadable: AtomicU64,
    pub too_old: AtomicU64,
    /// Likes, reposts and follows not pushed: their recipient was over the limit.
    pub rate_limited: AtomicU64,
    /// Block records read from PDSes and applied to the state.
    pub backfilled_records: AtomicU64,
    pub notifications: AtomicU64,
    pub store_retries: AtomicU64,
}

pub struct JetstreamPipeline {
    state: MemoryState,
    fan_out: FanOut,
    max_event_age: Duration,
    stats: Arc<PipelineStats>,
    names: Arc<dyn ActorNameSource>,
    rates: RecipientRates,
    /// Which wire the events come from: v1 and v2 shape them differently.
    api: JetstreamApi,
    /// Where the cursor and the kept state are stored.
    source_name: &'static str,
    updates: Option<mpsc::Receiver<StateUpdate>>,
    /// State changes not yet written; they go with the next cursor.
    to_keep: Vec<StateChange>,
    start_cursor: Option<u64>,
}

/// What the pipeline does next.
enum Step {
    Stop,
    Learn(StateUpdate),
    Event(RawEvent),
}

/// The next state update, or never when there is no source of them.
async fn next_update(updates: &mut Option<mpsc::Receiver<StateUpdate>>) -> Option<StateUpdate> {
    match updates {
        Some(updates) => updates.recv().await,
        None => std::future::pending().await,
    }
}

impl JetstreamPipeline {
    pub fn new(recipients: Arc<RecipientIndex>, fan_out: FanOut, max_event_age: Duration) -> Self {
        Self {
            state: MemoryState::with_recipients(recipients),
            fan_out,
            max_event_age,
            stats: Arc::default(),
            names: Arc::new(NoNames),
            rates: RecipientRates::new(DEFAULT_RATE_LIMIT),
            api: JetstreamApi::V1,
            source_name: SOURCE_NAME,
            updates: None,
            to_keep: Vec::new(),
            start_cursor: None,
        }
    }

    /// Limits the likes, reposts and follows pushed to one account.
    pub fn with_rate_limit(mut self, limit: RateLimit) -> Self {
        self.rates = RecipientRates::new(limit);
        self
    }

    /// Applies what `updates` brings to the state, without pushing: blocks
    /// read from new accounts' PDSes (`block_backfill`).
    pub fn with_state_updates(mut self, updates: mpsc::Receiver<StateUpdate>) -> Self {
        self.updates = Some(updates);
        self
    }

    /// Rebuilds the blocks from what the store kept (`source_state`);
    /// returns the accounts whose past blocks were already read.
    pub fn restore(&mut self, kept: &[(String, String)]) -> HashSet<Did> {
        let mut backfilled = HashSet::new();
        for (key, value) in kept {
            if let Some(did) = backfilled_account(key) {
                backfilled.insert(did);
            } else if let Some(event) = block_graph::restore(key, value) {
                // Already kept: nothing to write again.
                let _ = self.state.apply(&event);
            }
        }
        backfilled
    }

    /// The cursor the source starts from, stored by an earlier run.
    pub fn starting_at(mut self, cursor: Option<u64>) -> Self {
        self.start_cursor = cursor;
        self
    }

    /// Reads events as `api` shapes them (v1 unless told).
    /// Stores the cursor and the kept state under `name` (the default is
    /// [`SOURCE_NAME`]).
    pub fn with_source_name(mut self, name: &'static str) -> Self {
        self.source_name = name;
        self
    }

    pub fn with_api(mut self, api: JetstreamApi) -> Self {
        self.api = api;
        self
    }

    /// Names the actors in the pushes' text from `names`.
    pub fn with_names(mut self, names: Arc<dyn ActorNameSource>) -> Self {
        self.names = names;
        self
    }

    pub fn stats(&self) -> Arc<PipelineStats> {
        Arc::clone(&self.stats)
    }

    /// Handles events until the source hangs up or `stop` turns true; the
    /// newest cursor is stored before it returns.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<RawEvent>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut last_saved = Instant::now();
        // The newest cursor handled (the stored one until an event comes):
        // state learned from a PDS is written with it, so it never moves back.
        let mut cursor = self.start_cursor;
        let mut unsaved = false;
        loop {
            let step = tokio::select! {
                // Learned state first: a block read from a PDS should hide
                // the very next event's push.
                biased;
                _ = stop.wait_for(|s| *s) => Step::Stop,
                Some(update) = next_update(&mut self.updates) => Step::Learn(update),
                raw = events.recv() => raw.map_or(Step::Stop, Step::Event),
            };
            let batch = match step {
                Step::Stop => break,
                Step::Learn(update) => {
                    self.learn(update);
                    Vec::new()
                }
                Step::Event(raw) => {
                    cursor = Some(raw.cursor);
                    let mut batch = self.handle(&raw).await;
                    if !batch.is_empty() {
                        self.handle_waiting(&mut events, &mut cursor, &mut batch, &stop)
                            .await;
                    }
                    batch
                }
            };
            unsaved |= cursor.is_some() || !self.to_keep.is_empty();
            let due = last_saved.elapsed() >= CURSOR_SAVE_INTERVAL;
            if let Some(at) = cursor
                && unsaved
                && (!batch.is_empty() || due)
            {
                if !self.commit(at, &batch, &mut stop).await {
                    return;
                }
                last_saved = Instant::now();
                unsaved = false;
            }
        }
        // With no cursor at all (no event ever, none stored) there is nothing
        // to write state beside: the next start reads the PDSes again.
        if let Some(at) = cursor
            && unsaved
        {
            self.commit(at, &[], &mut stop).await;
        }
    }

    /// Adds to `batch` the notifications of the events already waiting,
    /// up to [`MAX_EVENTS_PER_COMMIT`] in all, applying before each the
    /// state updates already waiting (learned state first, as in `run`).
    async fn handle_waiting(
        &mut self,
        events: &mut mpsc::Receiver<RawEvent>,
        cursor: &mut Option<u64>,
        batch: &mut Vec<Notification>,
        stop: &watch::Receiver<bool>,
    ) {
        for _ in 1..MAX_EVENTS_PER_COMMIT {
            while let Some(update) = self.updates.as_mut().and_then(|u| u.try_recv().ok()) {
                self.learn(update);
            }
            if *stop.borrow() {
                return;
            }
            let Ok(raw) = events.try_recv() else {
                return;
            };
            *cursor = Some(raw.cursor);
            batch.extend(self.handle(&raw).await);
        }
    }

    fn learn(&mut self, update: StateUpdate) {
        match update {
            StateUpdate::Event(event) => {
                self.stats
                    .backfilled_records
                    .fetch_add(1, Ordering::Relaxed);
                self.keep(&event);
            }
            StateUpdate::Backfilled(did) => self.to_keep.push(backfilled_marker(&did)),
        }
    }

    /// Applies `event` to the state, noting what the store must keep of it.
    fn keep(&mut self, event: &JetstreamEvent) {
        if let Some(change) = self.state.apply(event) {
            self.to_keep.push(change);
        }
    }

    /// The notifications one event causes; the state learns from it either way.
    async fn handle(&mut self, raw: &RawEvent) -> Vec<Notification> {
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        let parsed = match self.api {
            JetstreamApi::V1 => parse_event(&raw.json),
            JetstreamApi::V2 => parse_v2_event(&raw.json, raw.cursor),
        };
        let event = match parsed {
            Ok(event) => event,
            Err(e) => {
                self.stats.unreadable.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, cursor = raw.cursor, "unreadable Jetstream event skipped");
                return Vec::new();
            }
        };
        self.names.observe(&event);
        let age_us = (now_ms() as u64 * 1000).saturating_sub(event.time_us);
        let fresh = Duration::from_micros(age_us) <= self.max_event_age;
        let mut candidates = if fresh {
            notifications(&event, &self.state)
        } else {
            self.stats.too_old.fetch_add(1, Ordering::Relaxed);
            Vec::new()
        };
        self.keep(&event);
        // Before naming: a push not sent costs no lookup.
        let now = Instant::now();
        let before = candidates.len();
        candidates.retain(|c| self.rates.allow(&c.recipient, c.reason, now));
        let limited = (before - candidates.len()) as u64;
        self.stats
            .rate_limited
            .fetch_add(limited, Ordering::Relaxed);
        named(&candidates, self.names.as_ref()).await
    }

    /// Queues `batch` with `cursor`, retrying until stored; `false` if
    /// herald is stopping and it was not.
    async fn commit(
        &mut self,
        cursor: u64,
        batch: &[Notification],
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let stats = &self.stats;
        let stored = self
            .fan_out
            .commit_until_stored(
                self.source_name,
                &cursor.to_string(),
                batch,
                &self.to_keep,
                stop,
                |e, delay| {
                    stats.store_retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, ?delay, "cannot store Jetstream notifications; retrying");
                },
            )
            .await
            .is_some();
        if stored {
            self.stats
                .notifications
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            self.to_keep.clear();
        }
        stored
    }
}

/// The notifications for `candidates`, each naming its actor; a name is
/// looked up once for a run of candidates with the same actor (all of one
/// event's candidates have its author as actor).
async fn named(candidates: &[Candidate], names: &dyn ActorNameSource) -> Vec<Notification> {
    let mut batch = Vec::with_capacity(candidates.len());
    let mut known: Option<(&Did, ActorName)> = None;
    for candidate in candidates {
        let name = match known.take() {
            Some((actor, name)) if *actor == candidate.actor => name,
            _ => names.name(&candidate.actor).await,
        };
        batch.push(notification(candidate, &name));
        known = Some((&candidate.actor, name));
    }
    batch
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use serde_json::json;

    use super::*;
    use crate::jetstream_event::{JetstreamEvent, nsid};
    use crate::test_support::{ALICE, BOB, CAROL, DAVE, create, did, post_uri, strong_ref};

    /// Names every actor after their DID and counts the lookups.
    #[derive(Default)]
    struct Directory {
        lookups: Mutex<Vec<Did>>,
    }

    #[async_trait]
    impl ActorNameSource for Directory {
        async fn name(&self, actor: &Did) -> ActorName {
            self.lookups.lock().unwrap().push(actor.clone());
            ActorName {
                display_name: Some(format!("name of {actor}")),
                handle: None,
            }
        }

        fn observe(&self, _event: &JetstreamEvent) {}
    }

    fn candidates(event: &JetstreamEvent) -> Vec<Candidate> {
        let mut state = MemoryState::new();
        state.register(did(BOB));
        state.register(did(CAROL));
        notifications(event, &state)
    }

    #[tokio::test]
    async fn each_push_names_its_actor_from_one_lookup_per_event() {
        let reply_mentioning_carol = create(
            ALICE,
            nsid::FEED_POST,
            "3reply",
            json!({
                "text": "hi @carol",
                "createdAt": "2026-05-25T14:23:28.778Z",
                "reply": {"root": strong_ref(&post_uri(BOB, "3root")), "parent": strong_ref(&post_uri(BOB, "3root"))},
                "facets": [{"index": {"byteStart": 3, "byteEnd": 9}, "features": [{"$type": "app.bsky.richtext.facet#mention", "did": CAROL}]}],
            }),
        );
        let candidates = candidates(&reply_mentioning_carol);
        assert_eq!(candidates.len(), 2, "{candidates:?}");
        let directory = Directory::default();
        let batch = named(&candidates, &directory).await;
        for n in &batch {
            assert_eq!(
                n.message.data["actorDisplayName"],
                format!("name of {ALICE}")
            );
            assert!(
                n.message
                    .body
                    .as_deref()
                    .unwrap()
                    .starts_with(&format!("name of {ALICE} ")),
                "{:?}",
                n.message.body
            );
        }
        assert_eq!(*directory.lookups.lock().unwrap(), [did(ALICE)]);
    }

    #[tokio::test]
    async fn an_event_that_notifies_nobody_looks_nothing_up() {
        let like_of_an_unregistered_post = create(
            ALICE,
            nsid::FEED_LIKE,
            "3like",
            json!({"subject": strong_ref(&post_uri(DAVE, "3post")), "createdAt": "2026-05-25T14:23:28.778Z"}),
        );
        let directory = Directory::default();
        assert!(
            named(&candidates(&like_of_an_unregistered_post), &directory)
                .await
                .is_empty()
        );
        assert!(directory.lookups.lock().unwrap().is_empty());
    }
}
