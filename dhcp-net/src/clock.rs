//! Time for the engine, which never reads a clock itself: Unix seconds that advance with the
//! monotonic clock.
//!
//! The wall clock is read once, at the first call, and only the monotonic clock after that: a
//! step of the wall clock (a host that booted with a wrong clock and is set right, an
//! operator's `date -s`) neither expires live leases early nor stretches them. NTP's gradual
//! corrections reach the monotonic clock too, so servers sharing a store keep agreeing. A step
//! is noticed by [`check_wall_clock`] (the drivers call it on every timer run) and logged; the
//! server keeps its own time until it restarts. (The monotonic clock stops while a host
//! sleeps, which a server does not.)

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dhcp_core::Timestamp;
use tracing::warn;

/// A difference between the wall clock and [`now`] past this many seconds is a step.
const STEP_SECS: i64 = 5;

/// The instant and Unix time of the first reading.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    at: Instant,
    /// Since the Unix epoch, to the nanosecond: whole seconds then tick with the wall clock's.
    unix: Duration,
}

impl Anchor {
    fn now(self, at: Instant) -> u64 {
        (self.unix + at.saturating_duration_since(self.at)).as_secs()
    }

    /// Seconds the wall clock, reading `unix` at `at`, is ahead of this clock (behind: less
    /// than 0).
    fn offset(self, unix: u64, at: Instant) -> i64 {
        i64::try_from(unix).unwrap_or(i64::MAX) - i64::try_from(self.now(at)).unwrap_or(i64::MAX)
    }
}

fn since_epoch() -> Duration {
    // A clock before 1970 is a broken host; treat it as the epoch rather than fail.
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn anchor() -> Anchor {
    static ANCHOR: OnceLock<Anchor> = OnceLock::new();
    *ANCHOR.get_or_init(|| Anchor { at: Instant::now(), unix: since_epoch() })
}

/// Now, in whole seconds since the Unix epoch, on the monotonic clock from the first reading.
pub fn now() -> Timestamp {
    Timestamp::from_secs(anchor().now(Instant::now()))
}

/// How many seconds the wall clock is ahead of [`now`] (behind: below 0). A step of the wall
/// clock since the first reading shows here; it is logged once per step.
pub fn check_wall_clock() -> i64 {
    static LOGGED: AtomicI64 = AtomicI64::new(0);
    let offset = anchor().offset(since_epoch().as_secs(), Instant::now());
    if (offset - LOGGED.load(Ordering::Relaxed)).abs() > STEP_SECS {
        LOGGED.store(offset, Ordering::Relaxed);
        warn!(
            offset_secs = offset,
            "the wall clock stepped; lease times keep to the monotonic clock (restart to take the new time)"
        );
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_follows_the_monotonic_clock_and_a_wall_step_shows_as_an_offset() {
        let t0 = Instant::now();
        let anchor = Anchor { at: t0, unix: Duration::from_secs(1_800_000_000) };
        let later = t0 + Duration::from_secs(90);
        assert_eq!(anchor.now(later), 1_800_000_090);
        // The wall clock went on with it: no offset.
        assert_eq!(anchor.offset(1_800_000_090, later), 0);
        // Stepped a day ahead, and an hour back: leases keep their times, the step shows.
        assert_eq!(anchor.offset(1_800_086_490, later), 86_400);
        assert_eq!(anchor.offset(1_799_996_490, later), -3_600);
        // An instant before the anchor (another thread's reading) is the anchor's second.
        assert_eq!(anchor.now(t0.checked_sub(Duration::from_secs(5)).unwrap_or(t0)), 1_800_000_000);
    }

    #[test]
    fn now_is_close_to_the_wall_clock_on_a_steady_host() {
        let _ = now();
        assert!(check_wall_clock().abs() <= 1, "no step here");
    }
}
