//! From the relays' verified events to queued deliveries: the seen-set,
//! the rules, and the queue with the source's cursor.
//!
//! - **One writer.** Every relay connection feeds one bounded channel and
//!   this pipeline handles its events one at a time, so the seen-set needs
//!   no lock and an event served by two relays is handled by whichever
//!   came first, once.
//! - **Seen before pushed.** An event's id is marked seen (`seen`) whether
//!   it notifies anyone or not, and the mark is written in the transaction
//!   that queues its pushes, so a crash neither loses them nor, after the
//!   restart's re-subscription, pushes them again.
//! - **History is marked, not pushed.** The keys an arrival names in
//!   `history_for` (stored events from before their first subscription)
//!   are not told.
//! - **The cursor is a time.** Nostr has no global order, so the source's
//!   cursor is the Unix second up to which herald was watching, stored
//!   with every commit and at least every [`CURSOR_SAVE_INTERVAL`]. A
//!   restart asks each relay for the honestly-dated kinds from a little
//!   before it, and treats the keys registered before it as watched.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herald_core::fan_out::FanOut;
use herald_core::model::Notification;
use herald_core::time::now_secs;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::recipients::RecipientIndex;
use crate::relay::Arrival;
use crate::rules;
use crate::seen::SeenSet;

/// The source's name in the store (cursor and seen-set).
pub const SOURCE_NAME: &str = "nostr.relays";

/// How often the cursor and the seen-set's changes are stored when no
/// event pushed anything: a crash loses at most this much of either, and
/// the store sees one write a second at most.
pub const CURSOR_SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// How often the cursor alone is stored while nothing arrives, so that a
/// restart after a quiet spell does not ask the relays for more than it must.
pub const IDLE_CURSOR_SAVE_INTERVAL: Duration = Duration::from_secs(60);

/// Counters for `/health`.
#[derive(Debug, Default)]
pub struct PipelineStats {
    pub events: AtomicU64,
    /// Events already seen (another relay, a reconnect, a restart).
    pub duplicates: AtomicU64,
    /// Stored events of keys subscribed for the first time, not pushed.
    pub history: AtomicU64,
    pub notifications: AtomicU64,
    pub store_retries: AtomicU64,
}

pub struct RelayPipeline {
    index: Arc<RecipientIndex>,
    fan_out: FanOut,
    seen: SeenSet,
    stats: Arc<PipelineStats>,
}

impl RelayPipeline {
    /// A pipeline whose seen-set starts from what the store `kept`.
    pub fn new(index: Arc<RecipientIndex>, fan_out: FanOut, kept: &[(String, String)]) -> Self {
        let mut seen = SeenSet::default();
        seen.restore(kept);
        Self {
            index,
            fan_out,
            seen,
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> Arc<PipelineStats> {
        Arc::clone(&self.stats)
    }

    pub fn seen_len(&self) -> usize {
        self.seen.len()
    }

    /// Handles arrivals until every connection hung up or `stop` turns
    /// true; the cursor and the seen-set are stored before it returns.
    pub async fn run(
        mut self,
        mut arrivals: mpsc::Receiver<Arrival>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut last_saved = Instant::now();
        let mut unsaved = false;
        loop {
            let next_save = last_saved
                + if unsaved {
                    CURSOR_SAVE_INTERVAL
                } else {
                    IDLE_CURSOR_SAVE_INTERVAL
                };
            let batch = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => break,
                arrival = arrivals.recv() => match arrival {
                    Some(arrival) => {
                        unsaved = true;
                        self.handle(&arrival, now_secs())
                    }
                    None => break,
                },
                () = tokio::time::sleep_until(next_save) => Vec::new(),
            };
            if batch.is_empty() && Instant::now() < next_save {
                continue;
            }
            if !self.commit(&batch, &mut stop).await {
                return;
            }
            last_saved = Instant::now();
            unsaved = false;
        }
        // Even with nothing new: the cursor says herald watched until now.
        self.commit(&[], &mut stop).await;
    }

    /// The pushes one arrival causes; its id is marked seen either way.
    fn handle(&mut self, arrival: &Arrival, now: u64) -> Vec<Notification> {
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        let event = &arrival.event;
        if !self.seen.mark(*event.id(), now) {
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            return Vec::new();
        }
        let recipients = rules::recipients(event, |key| self.index.contains(key));
        let (history, news): (Vec<_>, Vec<_>) = recipients
            .into_iter()
            .partition(|key| arrival.history_for.contains(key));
        if !history.is_empty() {
            self.stats.history.fetch_add(1, Ordering::Relaxed);
        }
        news.iter()
            .filter_map(|key| rules::notification(event, key, &arrival.relay))
            .collect()
    }

    /// Queues `batch` with the cursor and the seen-set's changes, retrying
    /// until stored; `false` if herald is stopping and it was not.
    async fn commit(&mut self, batch: &[Notification], stop: &mut watch::Receiver<bool>) -> bool {
        let now = now_secs();
        self.seen.sweep(now);
        let changes = self.seen.take_changes();
        let stats = &self.stats;
        let stored = self
            .fan_out
            .commit_until_stored(SOURCE_NAME, &now.to_string(), batch, &changes, stop, |e, delay| {
                stats.store_retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, ?delay, "cannot store Nostr notifications; retrying");
            })
            .await
            .is_some();
        if stored {
            stats
                .notifications
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        stored
    }
}
