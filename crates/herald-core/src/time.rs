//! Wall-clock time as the store keeps it: milliseconds since the Unix epoch.
//!
//! One integer type on every backend keeps SQL portable between SQLite and
//! PostgreSQL and makes due-time comparisons cheap.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub type UnixMillis = i64;

/// The current time in milliseconds since the Unix epoch.
pub fn now_ms() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as UnixMillis)
        .unwrap_or(0)
}

/// `duration` as whole milliseconds, saturating rather than wrapping.
pub fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The current time in whole seconds since the Unix epoch, as Nostr's
/// `created_at` and `since` count it.
pub fn now_secs() -> u64 {
    u64::try_from(now_ms() / 1000).unwrap_or(0)
}
