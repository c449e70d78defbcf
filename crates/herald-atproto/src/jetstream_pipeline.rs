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
//!   [`CURSOR_SAVE_INTERVAL`], not once per event.
//! - **Nothing dropped on a store error.** The same write is retried with
//!   backoff until it succeeds or herald stops; meanwhile the source's
//!   bounded channel fills and the source stops reading, so the backlog
//!   waits in Jetstream, not in memory.
//! - **Replay window.** An event older than `max_event_age` (a long outage,
//!   a cursor far behind) still updates the state but pushes nothing: a
//!   "new like" hours late is noise.
//! - **Names.** The actor's display name and handle are not looked up yet;
//!   the text says "Someone" and the data fields are empty, which apps that
//!   localise from `actorDid` can fill in themselves.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald_core::fan_out::FanOut;
use herald_core::model::Notification;
use herald_core::time::now_ms;
use tokio::sync::{mpsc, watch};

use crate::jetstream::RawEvent;
use crate::jetstream_event::parse_event;
use crate::recipients::RecipientIndex;
use crate::render::{ActorName, notification};
use crate::rule_state::MemoryState;
use crate::rules::notifications;

/// The cursor's name in the store.
pub const SOURCE_NAME: &str = "atproto.jetstream";
/// How often a cursor with no notifications is stored: a crash replays at
/// most this much more than the source's rewind, and the store sees one
/// write a second instead of thousands.
pub const CURSOR_SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// Events older than this push nothing (the default).
pub const DEFAULT_MAX_EVENT_AGE: Duration = Duration::from_secs(10 * 60);
/// First wait after a failed store write; doubles up to the cap.
const STORE_RETRY_BASE: Duration = Duration::from_millis(100);
const STORE_RETRY_MAX: Duration = Duration::from_secs(10);

/// Counters for `/health` and `/metrics`.
#[derive(Debug, Default)]
pub struct PipelineStats {
    pub events: AtomicU64,
    pub unreadable: AtomicU64,
    pub too_old: AtomicU64,
    pub notifications: AtomicU64,
    pub store_retries: AtomicU64,
}

pub struct JetstreamPipeline {
    state: MemoryState,
    fan_out: FanOut,
    max_event_age: Duration,
    stats: Arc<PipelineStats>,
}

impl JetstreamPipeline {
    pub fn new(recipients: Arc<RecipientIndex>, fan_out: FanOut, max_event_age: Duration) -> Self {
        Self {
            state: MemoryState::with_recipients(recipients),
            fan_out,
            max_event_age,
            stats: Arc::default(),
        }
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
        let mut unsaved: Option<u64> = None;
        loop {
            let raw = tokio::select! {
                raw = events.recv() => raw,
                _ = stop.wait_for(|s| *s) => None,
            };
            let Some(raw) = raw else { break };
            let batch = self.handle(&raw);
            unsaved = Some(raw.cursor);
            if !batch.is_empty() || last_saved.elapsed() >= CURSOR_SAVE_INTERVAL {
                if !self.commit(raw.cursor, &batch, &mut stop).await {
                    return;
                }
                last_saved = Instant::now();
                unsaved = None;
            }
        }
        if let Some(cursor) = unsaved {
            self.commit(cursor, &[], &mut stop).await;
        }
    }

    /// The notifications one event causes; the state learns from it either way.
    fn handle(&mut self, raw: &RawEvent) -> Vec<Notification> {
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        let event = match parse_event(&raw.json) {
            Ok(event) => event,
            Err(e) => {
                self.stats.unreadable.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, cursor = raw.cursor, "unreadable Jetstream event skipped");
                return Vec::new();
            }
        };
        let age_us = (now_ms() as u64 * 1000).saturating_sub(event.time_us);
        let fresh = Duration::from_micros(age_us) <= self.max_event_age;
        let batch: Vec<Notification> = if fresh {
            notifications(&event, &self.state)
                .iter()
                .map(|c| notification(c, &ActorName::default()))
                .collect()
        } else {
            self.stats.too_old.fetch_add(1, Ordering::Relaxed);
            Vec::new()
        };
        self.state.apply(&event);
        batch
    }

    /// Queues `batch` with `cursor`, retrying until stored; `false` if
    /// herald is stopping and it was not.
    async fn commit(
        &self,
        cursor: u64,
        batch: &[Notification],
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let cursor = cursor.to_string();
        let mut delay = STORE_RETRY_BASE;
        loop {
            match self
                .fan_out
                .submit_with_cursor(SOURCE_NAME, &cursor, batch, now_ms())
                .await
            {
                Ok(_) => {
                    self.stats
                        .notifications
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    return true;
                }
                Err(e) => {
                    self.stats.store_retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, ?delay, "cannot store Jetstream notifications; retrying");
                }
            }
            if *stop.borrow() {
                return false;
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(|s| *s) => return false,
            }
            delay = (delay * 2).min(STORE_RETRY_MAX);
        }
    }
}
