//! Wall-clock time for the engine, which never reads a clock itself.

use std::time::{SystemTime, UNIX_EPOCH};

use dhcp_core::Timestamp;

/// Now, in whole seconds since the Unix epoch.
pub fn now() -> Timestamp {
    // A clock before 1970 is a broken host; treat it as the epoch rather than fail.
    Timestamp::from_secs(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}
