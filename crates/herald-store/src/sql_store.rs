//! `SqlStore`: the `Store` and `Queue` traits on SQLite or PostgreSQL.

use async_trait::async_trait;
use herald_core::model::{
    Account, AppId, Delivery, Device, NewDelivery, NewDevice, Platform, Transport,
};
use herald_core::store::{EnqueueReport, Queue, Settlement, StateChange, Store, StoreError};
use herald_core::time::{UnixMillis, now_ms};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{Any, AnyPool, Executor, Transaction};
use std::sync::Arc;
use tokio::sync::{Mutex, MutexGuard};

use crate::backend::{ACQUIRE_TIMEOUT, Backend, redact_url};
use crate::map_err;
use crate::migrate;
use crate::rows::{DeliveryRow, DeviceRow, to_json};

/// The columns a `DeviceRow` reads, as a literal so queries stay `&'static str`.
macro_rules! device_columns {
    () => {
        "id, account, app_id, platform, transport, token, options, created_at, updated_at"
    };
}

#[derive(Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// SQLite has one writer at a time, and a connection that finds the lock
    /// taken sleeps in its busy handler (1, 2, 5, … ms), which under load
    /// costs more than the write. Queuing writers here instead hands the lock
    /// over without sleeping. PostgreSQL locks rows and needs none of this.
    write_lock: Arc<Mutex<()>>,
}

impl SqlStore {
    /// Connects, applies migrations and, on SQLite, releases leases a dead run left.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        install_default_drivers();
        let (backend, url) = Backend::from_url(url)?;
        let setup = backend.connection_setup();
        let pool = AnyPoolOptions::new()
            .max_connections(backend.pool_size())
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if let Some(setup) = setup {
                        conn.execute(sqlx::raw_sql(setup)).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot open {}: {e}", redact_url(&url)))
            })?;
        migrate::run(&pool, backend).await?;
        if let Some(sql) = backend.release_leases_sql() {
            let released = sqlx::query(sql)
                .bind(now_ms())
                .execute(&pool)
                .await
                .map_err(map_err)?
                .rows_affected();
            if released > 0 {
                tracing::info!(released, "released deliveries leased by a previous run");
            }
        }
        Ok(Self {
            pool,
            backend,
            write_lock: Arc::new(Mutex::new(())),
        })
    }

    /// Held for the duration of every write on SQLite; `None` on PostgreSQL.
    async fn writing(&self) -> Option<MutexGuard<'_, ()>> {
        match self.backend {
            Backend::Sqlite => Some(self.write_lock.lock().await),
            Backend::Postgres => None,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The newest schema version applied.
    pub async fn schema_version(&self) -> Result<Option<i64>, StoreError> {
        migrate::current_version(&self.pool).await
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn insert_deliveries(
        tx: &mut Transaction<'static, Any>,
        deliveries: &[NewDelivery],
    ) -> Result<EnqueueReport, StoreError> {
        let mut report = EnqueueReport::default();
        for d in deliveries {
            if let Some(key) = &d.dedupe_key {
                // Claims the key unless an unexpired claim exists. A device
                // removed meanwhile makes the EXISTS false and nothing is
                // written, rather than failing the whole batch on the FK.
                let claimed = sqlx::query(
                    "INSERT INTO dedupe (device_id, dedupe_key, expires_at) \
                     SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM devices WHERE id = $1) \
                     ON CONFLICT (device_id, dedupe_key) DO UPDATE SET expires_at = excluded.expires_at \
                     WHERE dedupe.expires_at <= $4",
                )
                .bind(d.device.id)
                .bind(key.as_str())
                .bind(d.created_at.saturating_add(d.dedupe_window_ms))
                .bind(d.created_at)
                .execute(&mut **tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                if claimed == 0 {
                    report.deduplicated += 1;
                    continue;
                }
            }
            let r = &d.device.registration;
            let inserted = sqlx::query(
                "INSERT INTO deliveries (device_id, account, app_id, platform, transport, token, \
                                         options, message, created_at, due_at) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $9 \
                 WHERE EXISTS (SELECT 1 FROM devices WHERE id = $1)",
            )
            .bind(d.device.id)
            .bind(r.account.as_str())
            .bind(r.app_id.as_str())
            .bind(r.platform.as_str())
            .bind(r.transport.as_str())
            .bind(r.token.as_str())
            .bind(to_json(&r.options)?)
            .bind(to_json(&d.message)?)
            .bind(d.created_at)
            .execute(&mut **tx)
            .await
            .map_err(map_err)?
            .rows_affected();
            report.queued += inserted;
        }
        Ok(report)
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(map_err)
    }

    async fn upsert_device(
        &self,
        device: &NewDevice,
        now: UnixMillis,
    ) -> Result<Device, StoreError> {
        let _writing = self.writing().await;
        // One statement: the trigger of migration 3 drops what was queued
        // for the account a token moved away from, inside this upsert.
        let sql = concat!(
            "INSERT INTO devices (account, app_id, platform, transport, token, options, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (app_id, token) DO UPDATE SET account = excluded.account, \
                 platform = excluded.platform, transport = excluded.transport, \
                 options = excluded.options, updated_at = excluded.updated_at \
             RETURNING ",
            device_columns!()
        );
        let DeviceRow(stored) = sqlx::query_as::<_, DeviceRow>(sql)
            .bind(device.account.as_str())
            .bind(device.app_id.as_str())
            .bind(device.platform.as_str())
            .bind(device.transport.as_str())
            .bind(device.token.as_str())
            .bind(to_json(&device.options)?)
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(stored)
    }

    async fn remove_device(&self, app_id: &AppId, token: &str) -> Result<bool, StoreError> {
        let _writing = self.writing().await;
        let removed = sqlx::query("DELETE FROM devices WHERE app_id = $1 AND token = $2")
            .bind(app_id.as_str())
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(map_err)?
            .rows_affected();
        Ok(removed > 0)
    }

    async fn remove_device_by_id(&self, id: i64) -> Result<bool, StoreError> {
        let _writing = self.writing().await;
        let removed = sqlx::query("DELETE FROM devices WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(map_err)?
            .rows_affected();
        Ok(removed > 0)
    }

    async fn devices_for_account(&self, account: &Account) -> Result<Vec<Device>, StoreError> {
        let sql = concat!(
            "SELECT ",
            device_columns!(),
            " FROM devices WHERE account = $1 ORDER BY id"
        );
        let rows = sqlx::query_as::<_, DeviceRow>(sql)
            .bind(account.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(rows.into_iter().map(|DeviceRow(d)| d).collect())
    }

    async fn count_devices(&self) -> Result<u64, StoreError> {
        count(&self.pool, "SELECT COUNT(*) FROM devices").await
    }

    async fn accounts_in(&self, namespace: &str) -> Result<Vec<Account>, StoreError> {
        // An exact prefix comparison rather than LIKE (no wildcard in the
        // namespace can widen it) or a range (a locale collation does not
        // order ':' and ';' bytewise). Run at start-up only, so no index.
        let (length, prefix) = namespace_prefix(namespace);
        let accounts: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT account FROM devices WHERE substr(account, 1, $1) = $2 ORDER BY account",
        )
        .bind(length)
        .bind(prefix)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        accounts
            .iter()
            .map(|a| {
                Account::parse(a).map_err(|e| StoreError::Corrupt(format!("account {a:?}: {e}")))
            })
            .collect()
    }

    async fn count_devices_by_platform(
        &self,
        app_id: &AppId,
        namespace: &str,
    ) -> Result<Vec<(Platform, u64)>, StoreError> {
        let (length, prefix) = namespace_prefix(namespace);
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT platform, COUNT(*) FROM devices \
             WHERE app_id = $1 AND substr(account, 1, $2) = $3 \
             GROUP BY platform ORDER BY platform",
        )
        .bind(app_id.as_str())
        .bind(length)
        .bind(prefix)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.into_iter()
            .map(|(platform, n)| {
                let platform = platform
                    .parse()
                    .map_err(|e| StoreError::Corrupt(format!("platform {platform:?}: {e}")))?;
                Ok((platform, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }

    async fn expire_devices(
        &self,
        app_id: &AppId,
        namespace: &str,
        registered_before: UnixMillis,
    ) -> Result<u64, StoreError> {
        let _writing = self.writing().await;
        let (length, prefix) = namespace_prefix(namespace);
        // Queued deliveries and dedupe keys go with their device (ON DELETE CASCADE).
        let removed = sqlx::query(
            "DELETE FROM devices \
             WHERE app_id = $1 AND substr(account, 1, $2) = $3 AND updated_at < $4",
        )
        .bind(app_id.as_str())
        .bind(length)
        .bind(prefix)
        .bind(registered_before)
        .execute(&self.pool)
        .await
        .map_err(map_err)?
        .rows_affected();
        Ok(removed)
    }

    async fn cursor(&self, source: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT cursor FROM cursors WHERE source = $1")
            .bind(source)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)
    }

    async fn source_state(&self, source: &str) -> Result<Vec<(String, String)>, StoreError> {
        sqlx::query_as("SELECT key, value FROM source_state WHERE source = $1 ORDER BY key")
            .bind(source)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)
    }
}

#[async_trait]
impl Queue for SqlStore {
    async fn enqueue(&self, deliveries: &[NewDelivery]) -> Result<EnqueueReport, StoreError> {
        let _writing = self.writing().await;
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let report = Self::insert_deliveries(&mut tx, deliveries).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(report)
    }

    async fn enqueue_and_advance(
        &self,
        source: &str,
        cursor: &str,
        deliveries: &[NewDelivery],
        state: &[StateChange],
    ) -> Result<EnqueueReport, StoreError> {
        let _writing = self.writing().await;
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let report = Self::insert_deliveries(&mut tx, deliveries).await?;
        for change in state {
            let query = match &change.value {
                Some(value) => sqlx::query(
                    "INSERT INTO source_state (source, key, value) VALUES ($1, $2, $3) \
                     ON CONFLICT (source, key) DO UPDATE SET value = excluded.value",
                )
                .bind(source)
                .bind(&change.key)
                .bind(value),
                None => sqlx::query("DELETE FROM source_state WHERE source = $1 AND key = $2")
                    .bind(source)
                    .bind(&change.key),
            };
            query.execute(&mut *tx).await.map_err(map_err)?;
        }
        sqlx::query(
            "INSERT INTO cursors (source, cursor, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
        )
        .bind(source)
        .bind(cursor)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(report)
    }

    async fn claim(
        &self,
        transport: Transport,
        limit: usize,
        now: UnixMillis,
        lease_until: UnixMillis,
    ) -> Result<Vec<Delivery>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let _writing = self.writing().await;
        let rows = sqlx::query_as::<_, DeliveryRow>(self.backend.claim_sql())
            .bind(lease_until)
            .bind(transport.as_str())
            .bind(now)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        let mut claimed: Vec<Delivery> = rows.into_iter().map(|DeliveryRow(d)| d).collect();
        // RETURNING has no order; attempts go out oldest first.
        claimed.sort_by_key(|d| d.id);
        Ok(claimed)
    }

    async fn settle(&self, id: i64, settlement: Settlement) -> Result<(), StoreError> {
        let query = match &settlement {
            Settlement::Remove => sqlx::query("DELETE FROM deliveries WHERE id = $1").bind(id),
            Settlement::RetryAt { due_at, error } => sqlx::query(
                "UPDATE deliveries SET due_at = $2, leased = 0, last_error = $3 WHERE id = $1",
            )
            .bind(id)
            .bind(*due_at)
            .bind(truncate(error, MAX_ERROR_BYTES)),
        };
        let _writing = self.writing().await;
        query.execute(&self.pool).await.map_err(map_err)?;
        Ok(())
    }

    async fn depth(&self) -> Result<u64, StoreError> {
        count(&self.pool, "SELECT COUNT(*) FROM deliveries").await
    }

    async fn next_due(&self, transport: Transport) -> Result<Option<UnixMillis>, StoreError> {
        sqlx::query_scalar("SELECT MIN(due_at) FROM deliveries WHERE transport = $1")
            .bind(transport.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)
    }

    async fn purge_dedupe(&self, now: UnixMillis) -> Result<u64, StoreError> {
        let _writing = self.writing().await;
        Ok(sqlx::query("DELETE FROM dedupe WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(map_err)?
            .rows_affected())
    }
}

/// Longest provider error kept with a delivery; enough to diagnose, bounded in size.
const MAX_ERROR_BYTES: usize = 512;

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The account prefix of `namespace` and its length in characters, for an
/// exact `substr(account, 1, length) = prefix` comparison.
fn namespace_prefix(namespace: &str) -> (i32, String) {
    let prefix = format!("{namespace}:");
    let length = i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX);
    (length, prefix)
}

async fn count(pool: &AnyPool, sql: &'static str) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .map_err(map_err)?;
    Ok(u64::try_from(n).unwrap_or(0))
}
