//! What differs between the SQL backends.

use std::time::Duration;

use herald_core::StoreError;

/// The database behind a `SqlStore`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Connections in the SQLite pool for reads. SQLite has one writer at a
/// time, which gets a connection of its own; in WAL mode these let reads
/// (device look-ups) proceed beside a write.
const SQLITE_READ_POOL_SIZE: u32 = 3;
/// Connections in the PostgreSQL pool per process.
const POSTGRES_POOL_SIZE: u32 = 16;
/// How long a request waits for a pooled connection before the store reports unavailable.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// Recognises the backend from the URL scheme and returns the URL the
    /// driver should be given.
    pub fn from_url(url: &str) -> Result<(Backend, String), StoreError> {
        if let Some(rest) = url.strip_prefix("sqlite:") {
            if rest.contains(":memory:") || rest.contains("mode=memory") {
                return Err(StoreError::Backend(
                    "an in-memory SQLite database would lose the queue on restart; give a file, such as sqlite://herald.db".into(),
                ));
            }
            // sqlx opens an existing file only unless told to create it.
            let url = if rest.contains("mode=") {
                url.to_owned()
            } else if rest.contains('?') {
                format!("{url}&mode=rwc")
            } else {
                format!("{url}?mode=rwc")
            };
            Ok((Backend::Sqlite, url))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok((Backend::Postgres, url.to_owned()))
        } else {
            Err(StoreError::Backend(format!(
                "unsupported database URL {:?}: use sqlite://FILE or postgres://…",
                redact_url(url)
            )))
        }
    }

    /// Connections of a pool for reads alone, or `None` where reads share
    /// the writers' pool (PostgreSQL, whose connections all read and write).
    pub fn read_pool_size(self) -> Option<u32> {
        match self {
            Backend::Sqlite => Some(SQLITE_READ_POOL_SIZE),
            Backend::Postgres => None,
        }
    }

    /// Connections for writes: SQLite's one writer, or PostgreSQL's shared pool.
    pub fn writer_pool_size(self) -> u32 {
        match self {
            Backend::Sqlite => 1,
            Backend::Postgres => POSTGRES_POOL_SIZE,
        }
    }

    /// Group commits in flight at once: SQLite has one writer; PostgreSQL
    /// commits in parallel, and a few groups in flight overlap their log
    /// flushes while leaving most of the pool to reads.
    pub fn committers(self) -> usize {
        match self {
            Backend::Sqlite => 1,
            Backend::Postgres => 4,
        }
    }

    /// Statements run on every new connection.
    pub fn connection_setup(self) -> Option<&'static str> {
        match self {
            // WAL lets readers run beside the writer. synchronous=NORMAL keeps
            // every commit across a process crash (the WAL is written before
            // COMMIT returns); only a power loss can take the last commits.
            // busy_timeout: a write waits up to 5 s for the lock before failing
            // (only another process can hold it; this one writes through one
            // connection).
            Backend::Sqlite => Some(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
            ),
            Backend::Postgres => None,
        }
    }

    /// The schema migrations, in order.
    pub fn migrations(self) -> &'static [(i64, &'static str)] {
        match self {
            Backend::Sqlite => &[
                (1, include_str!("../migrations/sqlite/0001_init.sql")),
                (
                    2,
                    include_str!("../migrations/sqlite/0002_source_state.sql"),
                ),
                (
                    3,
                    include_str!("../migrations/sqlite/0003_moved_device_trigger.sql"),
                ),
            ],
            Backend::Postgres => &[
                (1, include_str!("../migrations/postgres/0001_init.sql")),
                (
                    2,
                    include_str!("../migrations/postgres/0002_source_state.sql"),
                ),
                (
                    3,
                    include_str!("../migrations/postgres/0003_moved_device_trigger.sql"),
                ),
            ],
        }
    }

    /// Serialises concurrent migrations from several nodes (PostgreSQL only;
    /// SQLite's write lock already does).
    pub fn migration_lock(self) -> Option<&'static str> {
        match self {
            Backend::Sqlite => None,
            // An arbitrary constant naming "herald schema migration".
            Backend::Postgres => Some("SELECT pg_advisory_xact_lock(7252410491)"),
        }
    }

    /// Leases due deliveries: `$1` lease end, `$2` transport, `$3` now, `$4` limit.
    pub fn claim_sql(self) -> &'static str {
        match self {
            // One writer at a time: the UPDATE is atomic without row locks.
            Backend::Sqlite => {
                "UPDATE deliveries SET due_at = $1, leased = 1, attempts = attempts + 1 \
                 WHERE id IN (SELECT id FROM deliveries WHERE transport = $2 AND due_at <= $3 \
                              ORDER BY due_at LIMIT $4) \
                 RETURNING id, device_id, account, app_id, platform, transport, token, options, \
                           message, created_at, attempts"
            }
            // SKIP LOCKED lets dispatchers on several nodes claim side by side
            // without waiting on, or double-claiming, each other's rows.
            Backend::Postgres => {
                "UPDATE deliveries SET due_at = $1, leased = 1, attempts = attempts + 1 \
                 WHERE id IN (SELECT id FROM deliveries WHERE transport = $2 AND due_at <= $3 \
                              ORDER BY due_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
                 RETURNING id, device_id, account, app_id, platform, transport, token, options, \
                           message, created_at, attempts"
            }
        }
    }

    /// Queues the deliveries of `$1`, a JSON array of
    /// `[device_id, account, app_id, platform, transport, token, options,
    /// message, created_at]` rows (options and message as JSON text), in one
    /// statement: one round trip to the database however many there are.
    /// A row whose device was removed meanwhile is skipped, not an error.
    pub fn insert_deliveries_sql(self) -> &'static str {
        match self {
            Backend::Sqlite => {
                "INSERT INTO deliveries (device_id, account, app_id, platform, transport, token, \
                                         options, message, created_at, due_at) \
                 SELECT d.value ->> 0, d.value ->> 1, d.value ->> 2, d.value ->> 3, d.value ->> 4, \
                        d.value ->> 5, d.value ->> 6, d.value ->> 7, d.value ->> 8, d.value ->> 8 \
                 FROM json_each($1) AS d \
                 WHERE EXISTS (SELECT 1 FROM devices WHERE id = d.value ->> 0)"
            }
            Backend::Postgres => {
                "INSERT INTO deliveries (device_id, account, app_id, platform, transport, token, \
                                         options, message, created_at, due_at) \
                 SELECT (d ->> 0)::bigint, d ->> 1, d ->> 2, d ->> 3, d ->> 4, d ->> 5, d ->> 6, \
                        d ->> 7, (d ->> 8)::bigint, (d ->> 8)::bigint \
                 FROM json_array_elements($1::json) AS d \
                 WHERE EXISTS (SELECT 1 FROM devices WHERE id = (d ->> 0)::bigint)"
            }
        }
    }

    /// Claims the dedupe keys `$1` lists as a JSON array of `[device id,
    /// key, expires at]` (each pair once) for deliveries created at `$2`:
    /// free ones, and those whose claim expired by then. Returns the pairs
    /// claimed; a device that no longer exists claims nothing.
    pub fn claim_dedupe_sql(self) -> &'static str {
        match self {
            Backend::Sqlite => {
                "INSERT INTO dedupe (device_id, dedupe_key, expires_at) \
                 SELECT c.value ->> 0, c.value ->> 1, c.value ->> 2 FROM json_each($1) AS c \
                 WHERE EXISTS (SELECT 1 FROM devices WHERE id = c.value ->> 0) \
                 ON CONFLICT (device_id, dedupe_key) DO UPDATE SET expires_at = excluded.expires_at \
                 WHERE dedupe.expires_at <= $2 \
                 RETURNING device_id, dedupe_key"
            }
            Backend::Postgres => {
                "INSERT INTO dedupe (device_id, dedupe_key, expires_at) \
                 SELECT (c ->> 0)::bigint, c ->> 1, (c ->> 2)::bigint \
                 FROM json_array_elements($1::json) AS c \
                 WHERE EXISTS (SELECT 1 FROM devices WHERE id = (c ->> 0)::bigint) \
                 ON CONFLICT (device_id, dedupe_key) DO UPDATE SET expires_at = excluded.expires_at \
                 WHERE dedupe.expires_at <= $2 \
                 RETURNING device_id, dedupe_key"
            }
        }
    }

    /// Sets source `$1`'s keys to values from `$2`, a JSON array of
    /// `[key, value]` pairs whose keys differ.
    pub fn set_state_sql(self) -> &'static str {
        match self {
            // `WHERE true`: without it SQLite reads ON CONFLICT as a join's.
            Backend::Sqlite => {
                "INSERT INTO source_state (source, key, value) \
                 SELECT $1, s.value ->> 0, s.value ->> 1 FROM json_each($2) AS s WHERE true \
                 ON CONFLICT (source, key) DO UPDATE SET value = excluded.value"
            }
            Backend::Postgres => {
                "INSERT INTO source_state (source, key, value) \
                 SELECT $1, s ->> 0, s ->> 1 FROM json_array_elements($2::json) AS s \
                 ON CONFLICT (source, key) DO UPDATE SET value = excluded.value"
            }
        }
    }

    /// Forgets source `$1`'s keys that `$2` lists as a JSON array.
    pub fn forget_state_sql(self) -> &'static str {
        match self {
            Backend::Sqlite => {
                "DELETE FROM source_state WHERE source = $1 \
                 AND key IN (SELECT value FROM json_each($2))"
            }
            Backend::Postgres => {
                "DELETE FROM source_state WHERE source = $1 \
                 AND key IN (SELECT json_array_elements_text($2::json))"
            }
        }
    }

    /// Removes the deliveries whose ids `$1` lists as a JSON array.
    pub fn remove_deliveries_sql(self) -> &'static str {
        match self {
            Backend::Sqlite => {
                "DELETE FROM deliveries WHERE id IN (SELECT value FROM json_each($1))"
            }
            Backend::Postgres => {
                "DELETE FROM deliveries \
                 WHERE id IN (SELECT json_array_elements_text($1::json)::bigint)"
            }
        }
    }

    /// Whether the pool checks a connection before lending it. A SQLite
    /// connection is a file handle in this process and cannot go stale, and
    /// the check is a round trip to its worker thread on every query; a
    /// PostgreSQL connection can be cut by the server or the network.
    pub fn test_before_acquire(self) -> bool {
        self == Backend::Postgres
    }

    /// Releases every lease at start-up. Only SQLite: its file belongs to one
    /// process, so any lease in it was left by a run that died. PostgreSQL
    /// leases may belong to live nodes and are left to expire.
    pub fn release_leases_sql(self) -> Option<&'static str> {
        match self {
            Backend::Sqlite => {
                Some("UPDATE deliveries SET due_at = $1, leased = 0 WHERE leased = 1")
            }
            Backend::Postgres => None,
        }
    }
}

/// The URL without its password, for error messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{user}:***@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_are_opened_for_creation() {
        assert_eq!(
            Backend::from_url("sqlite://herald.db").unwrap(),
            (Backend::Sqlite, "sqlite://herald.db?mode=rwc".into())
        );
        assert_eq!(
            Backend::from_url("sqlite://a.db?mode=ro").unwrap().1,
            "sqlite://a.db?mode=ro"
        );
    }

    #[test]
    fn refuses_memory_and_unknown_databases() {
        assert!(Backend::from_url("sqlite::memory:").is_err());
        let err = Backend::from_url("mysql://u:secret@h/db")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://me:pw@127.0.0.1/test"),
            "postgres://me:***@127.0.0.1/test"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
