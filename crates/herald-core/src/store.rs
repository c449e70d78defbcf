//! The persistence traits: `Store` for devices and source cursors, `Queue`
//! for deliveries waiting for a provider.
//!
//! They are separate because they scale separately (DESIGN.md, "Scale"): one
//! SQLite file holds both on one machine, while a cluster may keep devices in
//! PostgreSQL and deliveries in NATS JetStream. Every backend passes the same
//! conformance suite in `herald-store`.

use async_trait::async_trait;

use crate::model::{Account, AppId, Delivery, Device, NewDelivery, NewDevice, Platform, Transport};
use crate::time::UnixMillis;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached (connection refused, pool timed out).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend answered with an error.
    #[error("store error: {0}")]
    Backend(String),
    /// A stored row could not be read back into a domain type.
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
}

/// Devices and source cursors.
#[async_trait]
pub trait Store: Send + Sync {
    /// Answers when the backend is reachable; `/ready` depends on it.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Registers a device. Idempotent; the same `(app_id, token)` registered
    /// again updates the existing device, moving it to the new account if the
    /// account changed (a phone that switched users).
    async fn upsert_device(
        &self,
        device: &NewDevice,
        now: UnixMillis,
    ) -> Result<Device, StoreError>;

    /// Removes the device with this token; `false` if there was none.
    async fn remove_device(&self, app_id: &AppId, token: &str) -> Result<bool, StoreError>;

    /// Removes a device and every delivery still queued for it.
    async fn remove_device_by_id(&self, id: i64) -> Result<bool, StoreError>;

    async fn devices_for_account(&self, account: &Account) -> Result<Vec<Device>, StoreError>;

    async fn count_devices(&self) -> Result<u64, StoreError>;

    /// Every account of `namespace` (`atproto`, `nostr`, …) with at least one
    /// device: what a source's recipient index starts from.
    async fn accounts_in(&self, namespace: &str) -> Result<Vec<Account>, StoreError>;

    /// The devices of `app_id` whose account is in `namespace`, counted per
    /// platform (platforms without a device are left out).
    async fn count_devices_by_platform(
        &self,
        app_id: &AppId,
        namespace: &str,
    ) -> Result<Vec<(Platform, u64)>, StoreError>;

    /// Removes, with what is queued for them, the devices of `app_id` in
    /// `namespace` last registered before `registered_before`: registrations
    /// with a time to live. Returns how many.
    async fn expire_devices(
        &self,
        app_id: &AppId,
        namespace: &str,
        registered_before: UnixMillis,
    ) -> Result<u64, StoreError>;

    /// The last cursor a source committed, if any.
    async fn cursor(&self, source: &str) -> Result<Option<String>, StoreError>;

    /// Everything a source has kept beside its cursor, as `(key, value)`.
    async fn source_state(&self, source: &str) -> Result<Vec<(String, String)>, StoreError>;
}

/// What an enqueue did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnqueueReport {
    /// Deliveries added to the queue.
    pub queued: u64,
    /// Deliveries skipped because the same dedupe key already went to that device.
    pub deduplicated: u64,
}

impl std::ops::AddAssign for EnqueueReport {
    fn add_assign(&mut self, other: Self) {
        self.queued += other.queued;
        self.deduplicated += other.deduplicated;
    }
}

/// How a claimed delivery leaves the dispatcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Finished (delivered, dead, rejected or given up): remove it from the queue.
    Remove,
    /// Try again once `due_at` has passed.
    RetryAt { due_at: UnixMillis, error: String },
}

/// One change to what a source keeps beside its cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub key: String,
    /// `None` forgets the key.
    pub value: Option<String>,
}

/// Deliveries waiting for a provider.
///
/// A delivery is claimed under a lease: if the claiming process dies, the
/// lease runs out and another claim picks it up, so nothing enqueued is lost
/// (at-least-once; dedupe keys absorb what a crash repeats).
#[async_trait]
pub trait Queue: Send + Sync {
    async fn enqueue(&self, deliveries: &[NewDelivery]) -> Result<EnqueueReport, StoreError>;

    /// Enqueues deliveries, applies `state` changes and advances a source's
    /// cursor in one transaction, so a crash keeps all or none of them.
    async fn enqueue_and_advance(
        &self,
        source: &str,
        cursor: &str,
        deliveries: &[NewDelivery],
        state: &[StateChange],
    ) -> Result<EnqueueReport, StoreError>;

    /// Leases up to `limit` deliveries for `transport` that are due at `now`,
    /// oldest due first, and counts the attempt.
    async fn claim(
        &self,
        transport: Transport,
        limit: usize,
        now: UnixMillis,
        lease_until: UnixMillis,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// Settles claimed deliveries, each by its id, in one write: a
    /// dispatcher settles what finished together, so a busy queue pays one
    /// commit for many attempts (issue 8).
    async fn settle(&self, settlements: &[(i64, Settlement)]) -> Result<(), StoreError>;

    /// Deliveries waiting, leased or not.
    async fn depth(&self) -> Result<u64, StoreError>;

    /// When the next delivery for `transport` becomes due (or its lease ends).
    async fn next_due(&self, transport: Transport) -> Result<Option<UnixMillis>, StoreError>;

    /// Forgets dedupe keys whose window has passed; returns how many.
    async fn purge_dedupe(&self, now: UnixMillis) -> Result<u64, StoreError>;
}
