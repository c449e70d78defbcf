//! The statements of each write, run by the group commit inside a
//! transaction it owns. Each takes an owned input so a failed group can run
//! it again alone.

use std::collections::{HashMap, HashSet};

use herald_core::model::{AppId, Delivery, Device, NewDelivery, NewDevice, Transport};
use herald_core::store::{EnqueueReport, Settlement, StateChange, StoreError};
use herald_core::time::{UnixMillis, now_ms};
use sqlx::AnyConnection;

use crate::backend::Backend;
use crate::group_commit::WorkFuture;
use crate::map_err;
use crate::rows::{DeliveryRow, DeviceRow, to_json};

/// The columns a `DeviceRow` reads, as a literal so queries stay `&'static str`.
macro_rules! device_columns {
    () => {
        "id, account, app_id, platform, transport, token, options, created_at, updated_at"
    };
}
pub(crate) use device_columns;

pub fn upsert_device<'c>(
    (device, now): &'c (NewDevice, UnixMillis),
    conn: &'c mut AnyConnection,
) -> WorkFuture<'c, Device> {
    Box::pin(async move {
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
            .bind(*now)
            .fetch_one(&mut *conn)
            .await
            .map_err(map_err)?;
        Ok(stored)
    })
}

pub fn remove_device<'c>(
    (app_id, token): &'c (AppId, String),
    conn: &'c mut AnyConnection,
) -> WorkFuture<'c, bool> {
    Box::pin(async move {
        let removed = sqlx::query("DELETE FROM devices WHERE app_id = $1 AND token = $2")
            .bind(app_id.as_str())
            .bind(token.as_str())
            .execute(&mut *conn)
            .await
            .map_err(map_err)?
            .rows_affected();
        Ok(removed > 0)
    })
}

pub fn remove_device_by_id<'c>(id: &'c i64, conn: &'c mut AnyConnection) -> WorkFuture<'c, bool> {
    Box::pin(async move {
        let removed = sqlx::query("DELETE FROM devices WHERE id = $1")
            .bind(*id)
            .execute(&mut *conn)
            .await
            .map_err(map_err)?
            .rows_affected();
        Ok(removed > 0)
    })
}

/// Devices of an app whose account starts with a prefix of the given length,
/// last registered before a time.
pub struct Expiry {
    pub app_id: AppId,
    pub prefix_length: i32,
    pub prefix: String,
    pub registered_before: UnixMillis,
}

pub fn expire_devices<'c>(e: &'c Expiry, conn: &'c mut AnyConnection) -> WorkFuture<'c, u64> {
    Box::pin(async move {
        // Queued deliveries and dedupe keys go with their device (ON DELETE CASCADE).
        let removed = sqlx::query(
            "DELETE FROM devices \
             WHERE app_id = $1 AND substr(account, 1, $2) = $3 AND updated_at < $4",
        )
        .bind(e.app_id.as_str())
        .bind(e.prefix_length)
        .bind(e.prefix.as_str())
        .bind(e.registered_before)
        .execute(&mut *conn)
        .await
        .map_err(map_err)?
        .rows_affected();
        Ok(removed)
    })
}

pub fn enqueue<'c>(
    (backend, deliveries): &'c (Backend, Vec<NewDelivery>),
    conn: &'c mut AnyConnection,
) -> WorkFuture<'c, EnqueueReport> {
    Box::pin(insert_deliveries(conn, *backend, deliveries))
}

/// Deliveries with the source cursor and state they advance.
pub struct Advance {
    pub backend: Backend,
    pub source: String,
    pub cursor: String,
    pub deliveries: Vec<NewDelivery>,
    pub state: Vec<StateChange>,
}

pub fn enqueue_and_advance<'c>(
    a: &'c Advance,
    conn: &'c mut AnyConnection,
) -> WorkFuture<'c, EnqueueReport> {
    Box::pin(async move {
        let report = insert_deliveries(conn, a.backend, &a.deliveries).await?;
        write_state(conn, a.backend, &a.source, &a.state).await?;
        sqlx::query(
            "INSERT INTO cursors (source, cursor, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
        )
        .bind(a.source.as_str())
        .bind(a.cursor.as_str())
        .bind(now_ms())
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
        Ok(report)
    })
}

/// Applies `changes` to `source`'s state, the last change of a key
/// winning, in at most two statements however many there are: a busy
/// source changes a key (a seen event id) for every event it handles.
async fn write_state(
    conn: &mut AnyConnection,
    backend: Backend,
    source: &str,
    changes: &[StateChange],
) -> Result<(), StoreError> {
    let last: HashMap<&str, Option<&str>> = changes
        .iter()
        .map(|c| (c.key.as_str(), c.value.as_deref()))
        .collect();
    let (set, forgotten): (Vec<_>, Vec<_>) = last.into_iter().partition(|(_, v)| v.is_some());
    let pairs: Vec<[&str; 2]> = set
        .into_iter()
        .map(|(key, value)| [key, value.unwrap_or_default()])
        .collect();
    let keys: Vec<&str> = forgotten.into_iter().map(|(key, _)| key).collect();
    for (sql, empty, list) in [
        (backend.set_state_sql(), pairs.is_empty(), to_json(&pairs)?),
        (backend.forget_state_sql(), keys.is_empty(), to_json(&keys)?),
    ] {
        if !empty {
            sqlx::query(sql)
                .bind(source)
                .bind(list)
                .execute(&mut *conn)
                .await
                .map_err(map_err)?;
        }
    }
    Ok(())
}

/// Claims the dedupe keys of `deliveries`, then queues those that won their
/// key (or have none) in one statement.
async fn insert_deliveries(
    conn: &mut AnyConnection,
    backend: Backend,
    deliveries: &[NewDelivery],
) -> Result<EnqueueReport, StoreError> {
    let won = claim_dedupe_keys(conn, backend, deliveries).await?;
    // A key twice in one batch reaches its device once.
    let mut taken = HashSet::new();
    let kept: Vec<&NewDelivery> = deliveries
        .iter()
        .filter(|d| match &d.dedupe_key {
            None => true,
            Some(key) => {
                let claim = (d.device.id, key.as_str());
                won.contains(&claim) && taken.insert(claim)
            }
        })
        .collect();
    let mut report = EnqueueReport {
        deduplicated: (deliveries.len() - kept.len()) as u64,
        ..EnqueueReport::default()
    };
    if kept.is_empty() {
        return Ok(report);
    }
    let rows = kept
        .iter()
        .map(|d| {
            let r = &d.device.registration;
            Ok(serde_json::json!([
                d.device.id,
                r.account.as_str(),
                r.app_id.as_str(),
                r.platform.as_str(),
                r.transport.as_str(),
                r.token.as_str(),
                to_json(&r.options)?,
                to_json(&d.message)?,
                d.created_at,
            ]))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    // A delivery whose device was removed meanwhile is skipped.
    report.queued = sqlx::query(backend.insert_deliveries_sql())
        .bind(to_json(&rows)?)
        .execute(&mut *conn)
        .await
        .map_err(map_err)?
        .rows_affected();
    Ok(report)
}

/// Claims the dedupe keys of `deliveries`, one statement for each creation
/// time (one, for what a fan-out queues at once), and returns the (device,
/// key) pairs won: claims that were free or had expired. A device removed
/// meanwhile wins nothing, rather than failing the batch on the FK.
async fn claim_dedupe_keys<'d>(
    conn: &mut AnyConnection,
    backend: Backend,
    deliveries: &'d [NewDelivery],
) -> Result<HashSet<(i64, &'d str)>, StoreError> {
    let keyed: Vec<(&NewDelivery, &str)> = deliveries
        .iter()
        .filter_map(|d| Some((d, d.dedupe_key.as_deref()?)))
        .collect();
    let mut won = HashSet::new();
    for group in keyed.chunk_by(|(a, _), (b, _)| a.created_at == b.created_at) {
        let created_at = group[0].0.created_at;
        let mut asked = HashSet::new();
        let claims: Vec<_> = group
            .iter()
            .filter(|(d, key)| asked.insert((d.device.id, *key)))
            .map(|(d, key)| {
                serde_json::json!([
                    d.device.id,
                    key,
                    d.created_at.saturating_add(d.dedupe_window_ms)
                ])
            })
            .collect();
        let claimed: Vec<(i64, String)> = sqlx::query_as(backend.claim_dedupe_sql())
            .bind(to_json(&claims)?)
            .bind(created_at)
            .fetch_all(&mut *conn)
            .await
            .map_err(map_err)?;
        let mut keys_won: HashMap<i64, HashSet<String>> = HashMap::new();
        for (device, key) in claimed {
            keys_won.entry(device).or_default().insert(key);
        }
        won.extend(
            group
                .iter()
                .map(|(d, key)| (d.device.id, *key))
                .filter(|(device, key)| keys_won.get(device).is_some_and(|k| k.contains(*key))),
        );
    }
    Ok(won)
}

/// Due deliveries of one transport to lease.
pub struct Claim {
    pub backend: Backend,
    pub transport: Transport,
    pub limit: i64,
    pub now: UnixMillis,
    pub lease_until: UnixMillis,
}

pub fn claim<'c>(c: &'c Claim, conn: &'c mut AnyConnection) -> WorkFuture<'c, Vec<Delivery>> {
    Box::pin(async move {
        let rows = sqlx::query_as::<_, DeliveryRow>(c.backend.claim_sql())
            .bind(c.lease_until)
            .bind(c.transport.as_str())
            .bind(c.now)
            .bind(c.limit)
            .fetch_all(&mut *conn)
            .await
            .map_err(map_err)?;
        let mut claimed: Vec<Delivery> = rows.into_iter().map(|DeliveryRow(d)| d).collect();
        // RETURNING has no order; attempts go out oldest first.
        claimed.sort_by_key(|d| d.id);
        Ok(claimed)
    })
}

pub fn settle<'c>(
    (backend, settlements): &'c (Backend, Vec<(i64, Settlement)>),
    conn: &'c mut AnyConnection,
) -> WorkFuture<'c, ()> {
    Box::pin(async move {
        let removed: Vec<i64> = settlements
            .iter()
            .filter(|(_, s)| *s == Settlement::Remove)
            .map(|(id, _)| *id)
            .collect();
        if !removed.is_empty() {
            sqlx::query(backend.remove_deliveries_sql())
                .bind(to_json(&removed)?)
                .execute(&mut *conn)
                .await
                .map_err(map_err)?;
        }
        for (id, settlement) in settlements {
            if let Settlement::RetryAt { due_at, error } = settlement {
                sqlx::query(
                    "UPDATE deliveries SET due_at = $2, leased = 0, last_error = $3 WHERE id = $1",
                )
                .bind(*id)
                .bind(*due_at)
                .bind(truncate(error, MAX_ERROR_BYTES))
                .execute(&mut *conn)
                .await
                .map_err(map_err)?;
            }
        }
        Ok(())
    })
}

pub fn purge_dedupe<'c>(now: &'c UnixMillis, conn: &'c mut AnyConnection) -> WorkFuture<'c, u64> {
    Box::pin(async move {
        Ok(sqlx::query("DELETE FROM dedupe WHERE expires_at <= $1")
            .bind(*now)
            .execute(&mut *conn)
            .await
            .map_err(map_err)?
            .rows_affected())
    })
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
