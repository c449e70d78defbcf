//! Running the Status push-notification server inside `serve`: poll the
//! nwaku node's relay cache, hand each message on a topic herald listens on
//! to `herald_status::server`, make what it decided durable, then reply.
//!
//! The order is the guarantee: a registration's state and device are stored
//! (retried until the store takes them) before the client is told it is
//! registered, and a request's id is stored with the pushes it queues, in
//! one transaction, so a crash neither loses nor repeats it. Only with
//! `gorush_url` are pushes POSTed after the id is stored, and a gorush that
//! cannot be reached loses that request, as status-go does; the client sees
//! no answer and the same as with status-go.
//!
//! When nwaku is down, polling backs off (`ReconnectPolicy`) and subscribes
//! again when it returns: a restarted node forgets its subscriptions. A
//! reply that cannot be published is retried the same way, holding the
//! loop: nothing else could be answered meanwhile either.

use std::sync::Arc;

use herald_core::fan_out::FanOut;
use herald_core::retry::ReconnectPolicy;
use herald_core::store::Store;
use herald_core::time::now_ms;
use herald_status::delivery;
use herald_status::gorush::Gorush;
use herald_status::nwaku::{NwakuClient, NwakuError, WakuMessage};
use herald_status::persistence::{self, Kept, SOURCE};
use herald_status::server::{Delivery, Outcome, StatusServer};
use herald_status::topics::STATUS_PUBSUB_TOPIC;
use k256::SecretKey;
use metrics::{counter, gauge};
use tokio::sync::watch;

use crate::config::{Config, StatusSettings};
use crate::server::AppState;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] herald_core::StoreError),
    #[error(transparent)]
    Gorush(#[from] herald_status::gorush::GorushError),
}

/// herald's Status identity: the configured key file's, else the one kept
/// in the store, else a new one, stored before it is used.
pub async fn identity(
    config: &Config,
    store: &herald_store::SqlStore,
) -> Result<SecretKey, StatusError> {
    if let Some(key) = config.status.key()? {
        return Ok(key);
    }
    if let Some(key) = Kept::restore(&store.source_state(SOURCE).await?).identity {
        return Ok(key);
    }
    let (key, change) = persistence::new_identity();
    herald_core::store::Queue::enqueue_and_advance(store, SOURCE, &cursor(), &[], &[change])
        .await?;
    Ok(key)
}

/// The source's cursor: Waku relay has no position to resume from, so it
/// records when the server last stored anything.
fn cursor() -> String {
    now_ms().to_string()
}

/// The server with what it needs to make its decisions durable.
pub struct StatusHandler {
    state: Arc<AppState>,
    server: StatusServer,
    fan_out: FanOut,
    gorush: Option<Gorush>,
}

impl StatusHandler {
    /// The server as the store left it.
    pub async fn start(
        state: Arc<AppState>,
        settings: &StatusSettings,
    ) -> Result<Self, StatusError> {
        let runtime = &state.runtime;
        let identity = identity(&runtime.config, &runtime.store).await?;
        let kept = Kept::restore(&runtime.store.source_state(SOURCE).await?);
        if !kept.unreadable.is_empty() {
            tracing::warn!(
                entries = kept.unreadable.len(),
                "unreadable Status state skipped"
            );
        }
        let (delivery, gorush) = match &settings.gorush_url {
            Some(url) => (Delivery::Gorush, Some(Gorush::new(url)?)),
            None => (Delivery::Providers(settings.apps.clone()), None),
        };
        let fan_out = runtime
            .fan_out
            .clone()
            .with_device_filter(Arc::new(delivery::device_filter));
        Ok(Self {
            server: StatusServer::new(identity, kept, delivery),
            state,
            fan_out,
            gorush,
        })
    }

    pub fn server(&self) -> &StatusServer {
        &self.server
    }

    /// Handles one Waku message and makes its effects durable; the reply
    /// to publish, if any. `None` also when herald stopped first.
    pub async fn handle(
        &mut self,
        message: &WakuMessage,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<WakuMessage> {
        let outcome = match self.server.receive(message, now_ms()) {
            Ok(None) => return None,
            Ok(Some(outcome)) => outcome,
            Err(ignored) => {
                counter!("herald_status_ignored_total", "reason" => ignored.reason()).increment(1);
                tracing::debug!(reason = %ignored, "Status message ignored");
                return None;
            }
        };
        counter!("herald_status_messages_total").increment(1);
        if !self.commit(&outcome, stop).await {
            return None;
        }
        let reply = outcome.reply?;
        match reply.seal(self.server.identity(), now_ns()) {
            Ok(sealed) => Some(sealed),
            Err(e) => {
                tracing::error!(error = %e, "cannot seal a Status reply");
                None
            }
        }
    }

    /// Stores devices, state and pushes, then POSTs to gorush; `false`
    /// when the reply must not be sent (herald stopping, gorush unreachable).
    async fn commit(&self, outcome: &Outcome, stop: &mut watch::Receiver<bool>) -> bool {
        let effects = &outcome.effects;
        let runtime = &self.state.runtime;
        for (app, token) in &effects.dropped_devices {
            let removed = until_done(stop, "remove a replaced Status device", || {
                runtime.store.remove_device(app, token)
            });
            if removed.await.is_none() {
                return false;
            }
        }
        for device in &effects.devices {
            let accepted = match runtime.accept_registration(device.clone()).await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Kept as status-go keeps it; herald just cannot push to it.
                    tracing::warn!(app = %device.app_id, error = %e, "Status device refused");
                    continue;
                }
            };
            let stored = until_done(stop, "store a Status device", || {
                runtime.store_device(&accepted)
            });
            if stored.await.is_none() {
                return false;
            }
        }
        let committed = self
            .fan_out
            .commit_until_stored(
                SOURCE,
                &cursor(),
                &effects.notifications,
                &effects.state,
                stop,
                |e, delay| tracing::warn!(error = %e, ?delay, "storing Status state failed; retrying"),
            )
            .await;
        if committed.is_none() {
            return false;
        }
        match (&effects.gorush, &self.gorush) {
            (Some(request), Some(gorush)) => match gorush.post(request).await {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "gorush unreachable; the request is lost, as with status-go");
                    false
                }
            },
            _ => true,
        }
    }
}

/// Retries `attempt` with backoff until it succeeds; `None` if herald
/// stopped first.
async fn until_done<T, E: std::fmt::Display, F>(
    stop: &mut watch::Receiver<bool>,
    what: &str,
    mut attempt: impl FnMut() -> F,
) -> Option<T>
where
    F: std::future::Future<Output = Result<T, E>>,
{
    let policy = ReconnectPolicy::default();
    let mut failures = 0;
    loop {
        match attempt().await {
            Ok(done) => return Some(done),
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, failures, "cannot {what}; retrying");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(policy.delay(failures)) => {}
            _ = stop.wait_for(|s| *s) => return None,
        }
    }
}

fn now_ns() -> i64 {
    now_ms().saturating_mul(1_000_000)
}

/// Runs the server until `stop`; returns at once when `[status]` is off.
pub async fn run(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let config = &state.runtime.config;
    let settings = match config.status.settings(&config.apps) {
        Ok(Some(settings)) => settings,
        // Checked when the configuration loaded; `None` means off.
        _ => return,
    };
    let mut handler = match StatusHandler::start(Arc::clone(&state), &settings).await {
        Ok(handler) => handler,
        Err(e) => {
            tracing::error!(error = %e, "the Status server cannot start");
            return;
        }
    };
    if settings.gorush_url.is_none() && settings.apps == Default::default() {
        tracing::warn!(
            "the Status server registers devices but has no app to push through: \
             set status.apns_apps, status.fcm_app or status.gorush_url"
        );
    }
    let nwaku = NwakuClient::new(settings.nwaku_url.clone());
    tracing::info!(
        nwaku = %settings.nwaku_url,
        topics = handler.server().topic_count(),
        registrations = handler.server().registrations().len(),
        "Status push-notification server starting"
    );
    let policy = ReconnectPolicy::default();
    let mut failures = 0;
    let mut subscribed = false;
    loop {
        let polled = if subscribed {
            nwaku.poll(STATUS_PUBSUB_TOPIC).await
        } else {
            nwaku
                .subscribe(&[STATUS_PUBSUB_TOPIC])
                .await
                .map(|()| Vec::new())
        };
        let wait = match polled {
            Ok(messages) => {
                subscribed = true;
                failures = 0;
                gauge!("herald_source_connections", "source" => "status").set(1.0);
                for message in &messages {
                    if let Some(reply) = handler.handle(message, &mut stop).await
                        && !publish(&nwaku, &reply, &mut stop).await
                    {
                        return;
                    }
                }
                settings.poll_interval
            }
            Err(e) => {
                // A node that restarted forgot the subscription: renew it.
                subscribed = false;
                failures += 1;
                gauge!("herald_source_connections", "source" => "status").set(0.0);
                tracing::warn!(error = %e, failures, "nwaku unavailable");
                policy.delay(failures)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Publishes a reply, retrying with backoff while nwaku is away and
/// subscribing again when it forgot the shard (a restarted node); `false`
/// if herald stopped first. A reply nwaku refuses outright is dropped.
async fn publish(
    nwaku: &NwakuClient,
    reply: &WakuMessage,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let policy = ReconnectPolicy::default();
    let mut failures = 0;
    let mut resubscribed = false;
    loop {
        let error = match nwaku.publish(STATUS_PUBSUB_TOPIC, reply).await {
            Ok(()) => return true,
            Err(NwakuError::NotSubscribed(_)) if !resubscribed => {
                resubscribed = true;
                match nwaku.subscribe(&[STATUS_PUBSUB_TOPIC]).await {
                    Ok(()) => continue,
                    Err(e) => e,
                }
            }
            Err(NwakuError::Status { status, body }) if (400..500).contains(&status) => {
                tracing::warn!(status, body, "nwaku refused a Status reply; dropped");
                return true;
            }
            Err(e) => e,
        };
        failures += 1;
        tracing::warn!(error = %error, failures, "cannot publish a Status reply; retrying");
        tokio::select! {
            () = tokio::time::sleep(policy.delay(failures)) => {}
            _ = stop.wait_for(|s| *s) => return false,
        }
        resubscribed = false;
    }
}
