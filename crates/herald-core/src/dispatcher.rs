//! The dispatcher: takes deliveries off the queue and hands them to providers.
//!
//! Each transport has its own loop and its own semaphore (a bulkhead): a
//! provider that hangs or fails can only ever hold its own permits, so APNs
//! being down never slows Web Push. A loop claims no more deliveries than it
//! has free permits, which bounds both the spawned tasks and the leases held,
//! the defence Sygnal had to add after one dead route grew to 5 GB
//! (push-providers.md §6).
//!
//! A loop sleeps until it is woken by an enqueue (`Wake`), until the next
//! delivery falls due, or for at most `poll_interval` — the last so that
//! deliveries enqueued by other nodes are seen.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::model::{Delivery, Transport};
use crate::provider::{Outcome, Provider};
use crate::retry::{RetryDecision, RetryPolicy};
use crate::store::{Queue, Settlement, Store};
use crate::time::{millis, now_ms};

/// Concurrent sends per transport unless configured: enough to keep an HTTP/2
/// connection's streams busy, few enough that a stalled provider holds little.
pub const DEFAULT_CONCURRENCY: usize = 64;

#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    pub concurrency: HashMap<Transport, usize>,
    pub retry: RetryPolicy,
    /// How long a claimed delivery is reserved for its attempt; a process
    /// that dies mid-attempt releases it when this runs out.
    pub lease: Duration,
    /// Longest sleep between looks at the queue.
    pub poll_interval: Duration,
    /// How long shutdown waits for attempts in flight.
    pub drain_timeout: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            concurrency: HashMap::new(),
            retry: RetryPolicy::default(),
            // Longer than any provider request may take (HTTP timeouts are 30 s).
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

impl DispatcherConfig {
    pub fn concurrency_for(&self, transport: Transport) -> usize {
        self.concurrency
            .get(&transport)
            .copied()
            .unwrap_or(DEFAULT_CONCURRENCY)
            .max(1)
    }
}

/// Wakes the dispatcher loops of transports that just got deliveries.
#[derive(Clone, Default)]
pub struct Wake(Arc<HashMap<Transport, Notify>>);

impl Wake {
    pub fn new(transports: impl IntoIterator<Item = Transport>) -> Self {
        Self(Arc::new(
            transports.into_iter().map(|t| (t, Notify::new())).collect(),
        ))
    }

    pub fn notify(&self, transports: impl IntoIterator<Item = Transport>) {
        for t in transports {
            if let Some(n) = self.0.get(&t) {
                // notify_one stores a permit when nobody waits, so a wake that
                // lands while the loop is busy claiming is not lost.
                n.notify_one();
            }
        }
    }

    async fn wait(&self, transport: Transport) {
        match self.0.get(&transport) {
            Some(n) => n.notified().await,
            None => std::future::pending().await,
        }
    }
}

pub struct Dispatcher {
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    providers: HashMap<Transport, Arc<dyn Provider>>,
    config: DispatcherConfig,
    wake: Wake,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        providers: Vec<Arc<dyn Provider>>,
        config: DispatcherConfig,
    ) -> Self {
        let providers: HashMap<_, _> = providers.into_iter().map(|p| (p.transport(), p)).collect();
        let wake = Wake::new(providers.keys().copied());
        Self {
            store,
            queue,
            providers,
            config,
            wake,
        }
    }

    /// The handle producers use to wake this dispatcher.
    pub fn wake(&self) -> Wake {
        self.wake.clone()
    }

    pub fn transports(&self) -> impl Iterator<Item = Transport> + '_ {
        self.providers.keys().copied()
    }

    /// Runs until `shutdown` turns true, then lets attempts in flight finish
    /// (up to `drain_timeout`) before returning.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        let mut loops = JoinSet::new();
        for (&transport, provider) in &self.providers {
            let this = Arc::clone(&self);
            let provider = Arc::clone(provider);
            let shutdown = shutdown.clone();
            loops.spawn(async move { this.transport_loop(transport, provider, shutdown).await });
        }
        while loops.join_next().await.is_some() {}
    }

    async fn transport_loop(
        self: Arc<Self>,
        transport: Transport,
        provider: Arc<dyn Provider>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let limit = self.config.concurrency_for(transport);
        let permits = Arc::new(Semaphore::new(limit));
        let (finished, settling) = mpsc::unbounded_channel();
        tokio::spawn(Arc::clone(&self).write_settlements(settling, limit));
        while !*shutdown.borrow() {
            let first = tokio::select! {
                p = Arc::clone(&permits).acquire_owned() => p.expect("semaphore never closed"),
                _ = shutdown.changed() => break,
            };
            let free = 1 + permits.available_permits();
            let now = now_ms();
            let lease_until = now + millis(self.config.lease);
            let claimed = match self.queue.claim(transport, free, now, lease_until).await {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::warn!(%transport, error = %e, "claiming deliveries failed");
                    drop(first);
                    self.idle(transport, &mut shutdown, self.config.poll_interval)
                        .await;
                    continue;
                }
            };
            if claimed.is_empty() {
                drop(first);
                let sleep = self.time_until_next_due(transport).await;
                self.idle(transport, &mut shutdown, sleep).await;
                continue;
            }
            let mut first = Some(first);
            for delivery in claimed {
                let permit = match first.take() {
                    Some(p) => p,
                    None => Arc::clone(&permits)
                        .acquire_owned()
                        .await
                        .expect("semaphore never closed"),
                };
                let this = Arc::clone(&self);
                let provider = Arc::clone(&provider);
                let finished = finished.clone();
                gauge!("herald_dispatcher_in_flight", "transport" => transport.as_str())
                    .increment(1.0);
                tokio::spawn(async move {
                    let settlement = this.attempt(provider.as_ref(), &delivery).await;
                    gauge!("herald_dispatcher_in_flight", "transport" => transport.as_str())
                        .decrement(1.0);
                    // The permit travels with the settlement: it frees only
                    // once the settlement is written, so shutdown's drain
                    // waits for the write too.
                    let _ = finished.send(Finished {
                        id: delivery.id,
                        settlement,
                        permit,
                    });
                });
            }
        }
        drop(finished);
        self.drain(transport, &permits, limit).await;
    }

    /// Writes finished attempts' settlements, all that are waiting in one
    /// write, then frees their permits. Ends when the transport loop and
    /// every attempt it started have gone.
    async fn write_settlements(
        self: Arc<Self>,
        mut settling: mpsc::UnboundedReceiver<Finished>,
        limit: usize,
    ) {
        let mut batch = Vec::with_capacity(limit);
        while settling.recv_many(&mut batch, limit).await > 0 {
            let (settlements, permits): (Vec<_>, Vec<_>) = batch
                .drain(..)
                .map(|f| ((f.id, f.settlement), f.permit))
                .unzip();
            histogram!("herald_queue_settle_batch").record(settlements.len() as f64);
            if let Err(e) = self.queue.settle(&settlements).await {
                tracing::warn!(deliveries = settlements.len(), error = %e, "settling deliveries failed; they may be attempted again when their leases end");
            }
            drop(permits);
        }
    }

    async fn time_until_next_due(&self, transport: Transport) -> Duration {
        match self.queue.next_due(transport).await {
            Ok(Some(due)) => Duration::from_millis(due.saturating_sub(now_ms()).max(0) as u64)
                .min(self.config.poll_interval),
            _ => self.config.poll_interval,
        }
    }

    async fn idle(
        &self,
        transport: Transport,
        shutdown: &mut watch::Receiver<bool>,
        max: Duration,
    ) {
        tokio::select! {
            _ = self.wake.wait(transport) => {}
            _ = tokio::time::sleep(max) => {}
            _ = shutdown.changed() => {}
        }
    }

    async fn drain(&self, transport: Transport, permits: &Semaphore, limit: usize) {
        let all = u32::try_from(limit).unwrap_or(u32::MAX);
        if tokio::time::timeout(self.config.drain_timeout, permits.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!(%transport, "shutdown: attempts still in flight after the drain timeout; their leases will expire and another run retries them");
        }
    }

    /// One attempt: send, measure, and decide how the delivery leaves.
    async fn attempt(&self, provider: &dyn Provider, delivery: &Delivery) -> Settlement {
        let started = Instant::now();
        let outcome = provider.send(delivery).await;
        histogram!("herald_provider_latency_seconds", "transport" => delivery.transport.as_str())
            .record(started.elapsed().as_secs_f64());
        self.settlement(delivery, outcome).await
    }

    async fn settlement(&self, delivery: &Delivery, outcome: Outcome) -> Settlement {
        let label = match &outcome {
            Outcome::Delivered => "delivered",
            Outcome::TokenDead { reason } => {
                tracing::info!(delivery = delivery.id, device = delivery.device_id, transport = %delivery.transport, reason, "token dead; removing device");
                if let Err(e) = self.store.remove_device_by_id(delivery.device_id).await {
                    tracing::warn!(device = delivery.device_id, error = %e, "removing a dead device failed");
                }
                "token_dead"
            }
            Outcome::Rejected { reason } => {
                tracing::warn!(delivery = delivery.id, app = %delivery.app_id, transport = %delivery.transport, reason, "delivery rejected permanently");
                "rejected"
            }
            Outcome::Retry { after, reason } => {
                match self.config.retry.decide(
                    delivery.attempts,
                    delivery.created_at,
                    now_ms(),
                    *after,
                    delivery.message.ttl,
                ) {
                    RetryDecision::RetryAt(due_at) => {
                        counter!("herald_delivery_retries_total", "app" => delivery.app_id.to_string(), "transport" => delivery.transport.as_str()).increment(1);
                        tracing::debug!(
                            delivery = delivery.id,
                            reason,
                            due_in_ms = due_at - now_ms(),
                            "retrying later"
                        );
                        let error = reason.clone();
                        return Settlement::RetryAt { due_at, error };
                    }
                    RetryDecision::GiveUp(why) => {
                        tracing::warn!(delivery = delivery.id, app = %delivery.app_id, transport = %delivery.transport, reason, why, "giving up on delivery");
                        "expired"
                    }
                }
            }
        };
        counter!("herald_deliveries_total", "app" => delivery.app_id.to_string(), "transport" => delivery.transport.as_str(), "outcome" => label).increment(1);
        Settlement::Remove
    }
}

/// An attempt that is over, waiting for its settlement to be written.
struct Finished {
    id: i64,
    settlement: Settlement,
    permit: OwnedSemaphorePermit,
}
