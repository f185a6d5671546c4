//! Wall-clock time as the engine sees it.

use core::fmt;
use core::ops::{Add, Sub};

/// A point in time, in whole seconds since the Unix epoch.
///
/// Leases are shared between servers through network stores, so their deadlines are wall-clock
/// times rather than monotonic instants. The engine never reads a clock: the caller passes `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The epoch itself; useful as "long ago".
    pub const ZERO: Timestamp = Timestamp(0);

    /// A timestamp `secs` seconds after the Unix epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Timestamp(secs)
    }

    /// Seconds since the Unix epoch.
    pub const fn as_secs(self) -> u64 {
        self.0
    }

    /// This time plus `secs` seconds, saturating instead of overflowing.
    pub const fn plus_secs(self, secs: u64) -> Self {
        Timestamp(self.0.saturating_add(secs))
    }

    /// Seconds from `earlier` to `self`, or zero when `earlier` is later.
    pub const fn secs_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<u64> for Timestamp {
    type Output = Timestamp;
    fn add(self, secs: u64) -> Timestamp {
        self.plus_secs(secs)
    }
}

impl Sub for Timestamp {
    type Output = u64;
    fn sub(self, earlier: Timestamp) -> u64 {
        self.secs_since(earlier)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}
