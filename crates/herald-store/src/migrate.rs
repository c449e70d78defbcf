//! Schema migrations, embedded in the binary and applied at start-up.
//!
//! A small runner of our own rather than `sqlx::migrate!`: it needs no
//! proc-macro build and works the same through the Any driver on both backends.

use sqlx::AnyPool;

use crate::backend::Backend;
use crate::map_err;
use herald_core::StoreError;
use herald_core::time::now_ms;

/// Applies every migration not yet recorded; returns the versions applied.
pub async fn run(pool: &AnyPool, backend: Backend) -> Result<Vec<i64>, StoreError> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS herald_schema (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .execute(pool)
    .await
    .map_err(map_err)?;

    let mut applied = Vec::new();
    for &(version, sql) in backend.migrations() {
        let mut tx = pool.begin().await.map_err(map_err)?;
        if let Some(lock) = backend.migration_lock() {
            sqlx::query(lock).execute(&mut *tx).await.map_err(map_err)?;
        }
        let done: Option<i64> =
            sqlx::query_scalar("SELECT version FROM herald_schema WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
        if done.is_some() {
            continue;
        }
        sqlx::raw_sql(sql)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::Backend(format!("migration {version} failed: {e}")))?;
        sqlx::query("INSERT INTO herald_schema (version, applied_at) VALUES ($1, $2)")
            .bind(version)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        applied.push(version);
    }
    Ok(applied)
}

/// The newest schema version recorded in the database.
pub async fn current_version(pool: &AnyPool) -> Result<Option<i64>, StoreError> {
    sqlx::query_scalar("SELECT MAX(version) FROM herald_schema")
        .fetch_one(pool)
        .await
        .map_err(map_err)
}
