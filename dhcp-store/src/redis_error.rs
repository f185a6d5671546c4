//! How a Redis error reads to the engine: an outage (the store is away: try later) or a
//! backend failure.

use dhcp_core::StoreError;
use redis::{ErrorKind, RedisError};

/// Whether `e` means Redis cannot be reached now, or the server reached is not the master: a
/// failover in progress, which another try may get past.
pub(crate) fn is_outage(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(
            e.kind(),
            ErrorKind::ReadOnly
                | ErrorKind::MasterDown
                | ErrorKind::BusyLoadingError
                | ErrorKind::MasterNameNotFoundBySentinel
                | ErrorKind::EmptySentinelList
        )
        // A write inside a script on a replica: the script's error carries the reply's code.
        || e.to_string().contains("READONLY")
}

/// `e` as the engine's error: [`StoreError::Unavailable`] for an outage, else
/// [`StoreError::Backend`].
pub(crate) fn failed(e: redis::RedisError) -> StoreError {
    if is_outage(&e) {
        StoreError::Unavailable(format!("redis: {e}"))
    } else {
        StoreError::Backend(format!("redis: {e}"))
    }
}
