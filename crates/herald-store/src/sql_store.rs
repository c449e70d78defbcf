//! `SqlStore`: the `Store` and `Queue` traits on SQLite or PostgreSQL.

use async_trait::async_trait;
use herald_core::model::{
    Account, AppId, Delivery, Device, NewDelivery, NewDevice, Platform, Transport,
};
use herald_core::store::{EnqueueReport, Queue, Settlement, StateChange, Store, StoreError};
use herald_core::time::{UnixMillis, now_ms};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};

use crate::backend::{ACQUIRE_TIMEOUT, Backend, redact_url};
use crate::group_commit::GroupCommit;
use crate::map_err;
use crate::migrate;
use crate::rows::DeviceRow;
use crate::writes::{self, device_columns};

#[derive(Clone)]
pub struct SqlStore {
    /// Reads.
    pool: AnyPool,
    /// The connections writes go through. On SQLite one: SQLite has one
    /// writer at a time, and one connection keeps its page cache, which
    /// SQLite drops whenever another connection has written. On
    /// PostgreSQL the same pool as `pool`.
    writer: AnyPool,
    /// Every write, committed in groups through `writer`.
    writes: GroupCommit,
    backend: Backend,
}

impl SqlStore {
    /// Connects, applies migrations and, on SQLite, releases leases a dead run left.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        install_default_drivers();
        let (backend, url) = Backend::from_url(url)?;
        let writer = connect(backend, &url, backend.writer_pool_size()).await?;
        migrate::run(&writer, backend).await?;
        let pool = match backend.read_pool_size() {
            Some(size) => connect(backend, &url, size).await?,
            None => writer.clone(),
        };
        if let Some(sql) = backend.release_leases_sql() {
            let released = sqlx::query(sql)
                .bind(now_ms())
                .execute(&writer)
                .await
                .map_err(map_err)?
                .rows_affected();
            if released > 0 {
                tracing::info!(released, "released deliveries leased by a previous run");
            }
        }
        Ok(Self {
            pool,
            writes: GroupCommit::start(writer.clone(), backend.committers()),
            writer,
            backend,
        })
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
        self.writer.close().await;
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
        self.writes
            .write_statement((device.clone(), now), writes::upsert_device)
            .await
    }

    async fn remove_device(&self, app_id: &AppId, token: &str) -> Result<bool, StoreError> {
        self.writes
            .write_statement((app_id.clone(), token.to_owned()), writes::remove_device)
            .await
    }

    async fn remove_device_by_id(&self, id: i64) -> Result<bool, StoreError> {
        self.writes
            .write_statement(id, writes::remove_device_by_id)
            .await
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
        let (prefix_length, prefix) = namespace_prefix(namespace);
        let expiry = writes::Expiry {
            app_id: app_id.clone(),
            prefix_length,
            prefix,
            registered_before,
        };
        self.writes
            .write_statement(expiry, writes::expire_devices)
            .await
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
        if deliveries.is_empty() {
            return Ok(EnqueueReport::default());
        }
        let input = (self.backend, deliveries.to_vec());
        // Without dedupe keys an enqueue is one INSERT.
        if deliveries.iter().all(|d| d.dedupe_key.is_none()) {
            self.writes.write_statement(input, writes::enqueue).await
        } else {
            self.writes.write(input, writes::enqueue).await
        }
    }

    async fn enqueue_and_advance(
        &self,
        source: &str,
        cursor: &str,
        deliveries: &[NewDelivery],
        state: &[StateChange],
    ) -> Result<EnqueueReport, StoreError> {
        let advance = writes::Advance {
            backend: self.backend,
            source: source.to_owned(),
            cursor: cursor.to_owned(),
            deliveries: deliveries.to_vec(),
            state: state.to_vec(),
        };
        self.writes
            .write(advance, writes::enqueue_and_advance)
            .await
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
        let claim = writes::Claim {
            backend: self.backend,
            transport,
            limit: i64::try_from(limit).unwrap_or(i64::MAX),
            now,
            lease_until,
        };
        self.writes.write_statement(claim, writes::claim).await
    }

    async fn settle(&self, settlements: &[(i64, Settlement)]) -> Result<(), StoreError> {
        if settlements.is_empty() {
            return Ok(());
        }
        let input = (self.backend, settlements.to_vec());
        // Removals alone are one DELETE; each retry is an UPDATE more.
        if settlements.iter().all(|(_, s)| *s == Settlement::Remove) {
            self.writes.write_statement(input, writes::settle).await
        } else {
            self.writes.write(input, writes::settle).await
        }
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
        self.writes.write_statement(now, writes::purge_dedupe).await
    }
}

/// The account prefix of `namespace` and its length in characters, for an
/// exact `substr(account, 1, length) = prefix` comparison.
fn namespace_prefix(namespace: &str) -> (i32, String) {
    let prefix = format!("{namespace}:");
    let length = i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX);
    (length, prefix)
}

/// A pool of `size` connections, each set up for the backend.
async fn connect(backend: Backend, url: &str, size: u32) -> Result<AnyPool, StoreError> {
    let setup = backend.connection_setup();
    AnyPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(backend.test_before_acquire())
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if let Some(setup) = setup {
                    conn.execute(sqlx::raw_sql(setup)).await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", redact_url(url))))
}

async fn count(pool: &AnyPool, sql: &'static str) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .map_err(map_err)?;
    Ok(u64::try_from(n).unwrap_or(0))
}
