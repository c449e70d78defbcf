//! herald's `Store` and `Queue` backends.
//!
//! SQLite (the embedded default: devices, queue and cursors in one WAL-mode
//! file) and PostgreSQL (for several nodes sharing one queue) share one SQL
//! code path through sqlx's Any driver with runtime-checked queries, so no
//! database is needed at build time. What differs between them — connection
//! set-up, DDL, and row locking in the claim — lives in `backend`.

mod backend;
mod group_commit;
mod migrate;
mod rows;
mod sql_store;
mod writes;

pub use backend::{Backend, redact_url};
pub use sql_store::SqlStore;

use herald_core::StoreError;

/// Opens the store at `url` (`sqlite://herald.db`, `postgres://…`) and brings
/// its schema up to date.
pub async fn open(url: &str) -> Result<SqlStore, StoreError> {
    SqlStore::open(url).await
}

fn map_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::Decode(_)
        | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt(e.to_string()),
        other => StoreError::Backend(other.to_string()),
    }
}
