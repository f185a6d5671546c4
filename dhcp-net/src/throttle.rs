//! Warnings a flood can set off (a store that fails every request, an exhausted pool, replies
//! that cannot be sent) are logged at most once per period, with how many were held back: the
//! log stays readable, and the disk full, under a flood.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often one kind of warning is logged at most.
pub(crate) const PERIOD: Duration = Duration::from_secs(10);

/// One kind of warning's limit (the operated server's rate limits use one too).
#[derive(Debug, Default)]
pub struct Throttle {
    last: Mutex<Option<Instant>>,
    held_back: AtomicU64,
}

impl Throttle {
    /// Whether a warning may be logged at `now`: `Some(n)` with the `n` held back since the
    /// last one, `None` (counted) when one was logged less than ten seconds ([`Throttle`]'s period) ago.
    pub fn allow(&self, now: Instant) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|at| now.saturating_duration_since(at) < PERIOD) {
            self.held_back.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.held_back.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_a_period_with_the_count_held_back() {
        let throttle = Throttle::default();
        let t0 = Instant::now();
        assert_eq!(throttle.allow(t0), Some(0));
        for _ in 0..99 {
            assert_eq!(throttle.allow(t0 + Duration::from_secs(1)), None);
        }
        assert_eq!(throttle.allow(t0 + PERIOD), Some(99));
        assert_eq!(throttle.allow(t0 + PERIOD), None);
    }
}
