//! From one notification to one queued delivery per device of the recipient.
//!
//! `FanOut` is the single entrance to the queue for every producer (the admin
//! API now, the network sources later): it looks up the recipient's devices,
//! keeps only those a running provider can reach, enqueues, and wakes the
//! dispatcher so a push does not wait for the next poll.
//!
//! A source may narrow the devices further with a [`DeviceFilter`]: a
//! device can ask its source for less than its app gets (the event kinds
//! it wants, kept in its options), and only the source knows how to read
//! that. The filter is the source's, so this module stays free of any
//! network's words.
//!
//! A network source commits through `commit_until_stored`: its
//! notifications, state and cursor in one transaction, retried with backoff
//! until the store takes them. Nothing is dropped on a store error; the
//! source's bounded channel fills meanwhile and the backlog waits in the
//! network, not in memory.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::dispatcher::Wake;
use crate::model::{Account, Device, NewDelivery, Notification, Transport};
use crate::store::{EnqueueReport, Queue, StateChange, Store, StoreError};
use crate::time::{UnixMillis, millis, now_ms};

/// First wait after a failed source commit; doubles up to the cap.
const COMMIT_RETRY_BASE: Duration = Duration::from_millis(100);
/// A store back after an outage is written to within this long.
const COMMIT_RETRY_MAX: Duration = Duration::from_secs(10);

/// Builds the deliveries of one notification for the given devices. Pure, so
/// rules and sources can be tested without a store.
pub fn deliveries_for(
    notification: &Notification,
    devices: Vec<Device>,
    dedupe_window: Duration,
    now: UnixMillis,
) -> Vec<NewDelivery> {
    devices
        .into_iter()
        .filter(|d| {
            notification
                .app_id
                .as_ref()
                .is_none_or(|app| *app == d.registration.app_id)
        })
        .map(|device| NewDelivery {
            device,
            message: notification.message.clone(),
            dedupe_key: notification.dedupe_key.clone(),
            dedupe_window_ms: millis(dedupe_window),
            created_at: now,
        })
        .collect()
}

/// Whether a device of the recipient gets the notification, beyond its
/// app; a source's reading of what the device asked for.
pub type DeviceFilter = Arc<dyn Fn(&Notification, &Device) -> bool + Send + Sync>;

/// The producers' handle on the delivery pipeline.
#[derive(Clone)]
pub struct FanOut {
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    /// Transports a provider is running for; devices on others are not queued.
    transports: Arc<HashSet<Transport>>,
    dedupe_window: Duration,
    wake: Wake,
    /// The source's say over which devices are queued for; every device without one.
    device_filter: Option<DeviceFilter>,
}

impl FanOut {
    pub fn new(
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        transports: HashSet<Transport>,
        dedupe_window: Duration,
        wake: Wake,
    ) -> Self {
        Self {
            store,
            queue,
            transports: Arc::new(transports),
            dedupe_window,
            wake,
            device_filter: None,
        }
    }

    /// This fan-out, queueing only for the devices `filter` accepts.
    pub fn with_device_filter(mut self, filter: DeviceFilter) -> Self {
        self.device_filter = Some(filter);
        self
    }

    /// Queues `notification` for every reachable device of its account.
    pub async fn submit(
        &self,
        notification: &Notification,
        now: UnixMillis,
    ) -> Result<EnqueueReport, StoreError> {
        let deliveries = self.deliveries(notification, now).await?;
        if deliveries.is_empty() {
            return Ok(EnqueueReport::default());
        }
        let report = self.queue.enqueue(&deliveries).await?;
        self.wake
            .notify(deliveries.iter().map(|d| d.device.registration.transport));
        Ok(report)
    }

    /// Queues a source's notifications, keeps its `state` changes and
    /// advances its cursor atomically.
    pub async fn submit_with_cursor(
        &self,
        source: &str,
        cursor: &str,
        notifications: &[Notification],
        state: &[StateChange],
        now: UnixMillis,
    ) -> Result<EnqueueReport, StoreError> {
        let mut deliveries = Vec::new();
        // A source often tells one recipient several things in a row (one
        // per app it serves): their devices are looked up once.
        let mut devices: Option<(&Account, Vec<Device>)> = None;
        for notification in notifications {
            let account = &notification.account;
            let theirs = match devices.take() {
                Some((held, theirs)) if held == account => theirs,
                _ => self.reachable_devices(account).await?,
            };
            deliveries.extend(self.deliveries_to(notification, &theirs, now));
            devices = Some((account, theirs));
        }
        let report = self
            .queue
            .enqueue_and_advance(source, cursor, &deliveries, state)
            .await?;
        self.wake
            .notify(deliveries.iter().map(|d| d.device.registration.transport));
        Ok(report)
    }

    /// `submit_with_cursor`, retried with backoff until it succeeds;
    /// `None` if `stop` turned true first. `on_retry` hears each failure
    /// (for the source's counters and logs).
    pub async fn commit_until_stored(
        &self,
        source: &str,
        cursor: &str,
        notifications: &[Notification],
        state: &[StateChange],
        stop: &mut watch::Receiver<bool>,
        mut on_retry: impl FnMut(&StoreError, Duration),
    ) -> Option<EnqueueReport> {
        let mut delay = COMMIT_RETRY_BASE;
        loop {
            match self
                .submit_with_cursor(source, cursor, notifications, state, now_ms())
                .await
            {
                Ok(report) => return Some(report),
                Err(e) => on_retry(&e, delay),
            }
            if *stop.borrow() {
                return None;
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(|s| *s) => return None,
            }
            delay = (delay * 2).min(COMMIT_RETRY_MAX);
        }
    }

    async fn deliveries(
        &self,
        notification: &Notification,
        now: UnixMillis,
    ) -> Result<Vec<NewDelivery>, StoreError> {
        let devices = self.reachable_devices(&notification.account).await?;
        Ok(self.deliveries_to(notification, &devices, now))
    }

    /// The account's devices on a transport a provider is running for.
    async fn reachable_devices(&self, account: &Account) -> Result<Vec<Device>, StoreError> {
        Ok(self
            .store
            .devices_for_account(account)
            .await?
            .into_iter()
            .filter(|d| self.transports.contains(&d.registration.transport))
            .collect())
    }

    /// `notification`'s deliveries to those of `devices` the filter accepts.
    fn deliveries_to(
        &self,
        notification: &Notification,
        devices: &[Device],
        now: UnixMillis,
    ) -> Vec<NewDelivery> {
        let accepted = devices
            .iter()
            .filter(|d| {
                self.device_filter
                    .as_ref()
                    .is_none_or(|filter| filter(notification, d))
            })
            .cloned()
            .collect();
        deliveries_for(notification, accepted, self.dedupe_window, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AppId, Message, NewDevice, Platform};

    fn device(id: i64, app: &str) -> Device {
        Device {
            id,
            registration: NewDevice {
                account: Account::parse("test:alice").unwrap(),
                app_id: AppId::parse(app).unwrap(),
                platform: Platform::Android,
                transport: Transport::UnifiedPush,
                token: format!("https://push.example/{id}"),
                options: Default::default(),
            },
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn one_delivery_per_device_of_the_named_app() {
        let mut n = Notification {
            account: Account::parse("test:alice").unwrap(),
            app_id: None,
            message: Message {
                body: Some("hi".into()),
                ..Message::default()
            },
            dedupe_key: Some("evt-1".into()),
        };
        let devices = vec![device(1, "a"), device(2, "b"), device(3, "a")];
        let all = deliveries_for(&n, devices.clone(), Duration::from_secs(60), 5);
        assert_eq!(all.len(), 3);
        assert!(all.iter().all(|d| d.dedupe_window_ms == 60_000
            && d.created_at == 5
            && d.dedupe_key.as_deref() == Some("evt-1")));

        n.app_id = Some(AppId::parse("a").unwrap());
        let only_a = deliveries_for(&n, devices, Duration::from_secs(60), 5);
        let ids: Vec<i64> = only_a.iter().map(|d| d.device.id).collect();
        assert_eq!(ids, [1, 3]);
    }
}
