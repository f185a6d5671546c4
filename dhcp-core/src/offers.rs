//! Counting the addresses held by outstanding offers, cheaply and without the store.
//!
//! An offer holds its address for `offer-hold-time` seconds, so every offer alive at `now` was
//! made in the current or the previous window of that length. [`OfferCount`] keeps the offers
//! made in those two windows (three atomics, no lock, no scan): an upper bound on the offers
//! alive, taken down again when an offer ends early (bound by its REQUEST, withdrawn, or moved).
//! Offers that simply lapse age out with their window. The bound is conservative: it can count
//! an offer for up to two hold times, never miss one.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::time::Timestamp;

/// Offers made in the current and the previous window.
#[derive(Debug, Default)]
pub(crate) struct OfferCount {
    epoch: AtomicU64,
    current: AtomicU64,
    previous: AtomicU64,
}

/// The window `at` falls in, for a hold of `hold` seconds.
pub(crate) fn window(at: Timestamp, hold: u32) -> u64 {
    at.as_secs() / u64::from(hold.max(1))
}

/// The window an offer held until `until` was made in.
pub(crate) fn made_in(until: Timestamp, hold: u32) -> u64 {
    until.as_secs().saturating_sub(u64::from(hold)) / u64::from(hold.max(1))
}

fn take_one(counter: &AtomicU64) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
}

impl OfferCount {
    /// Moves the windows on to `epoch`. Concurrent callers race only for the rotation itself;
    /// an offer counted in the instant of a rotation may land in either window.
    fn roll(&self, epoch: u64) {
        let seen = self.epoch.load(Ordering::Acquire);
        if seen >= epoch {
            return;
        }
        if self.epoch.compare_exchange(seen, epoch, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            let current = self.current.swap(0, Ordering::Relaxed);
            self.previous.store(if seen + 1 == epoch { current } else { 0 }, Ordering::Relaxed);
        }
    }

    /// Offers that may still be held in window `epoch`.
    pub(crate) fn held(&self, epoch: u64) -> u64 {
        self.roll(epoch);
        self.current.load(Ordering::Relaxed) + self.previous.load(Ordering::Relaxed)
    }

    /// Counts an offer made in window `epoch`.
    pub(crate) fn add(&self, epoch: u64) {
        self.roll(epoch);
        self.current.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes back an offer made in window `made` that ended early, in window `epoch`.
    pub(crate) fn remove(&self, epoch: u64, made: u64) {
        self.roll(epoch);
        if made == epoch {
            take_one(&self.current);
        } else if made + 1 == epoch {
            take_one(&self.previous);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_age_out_after_two_windows() {
        let c = OfferCount::default();
        c.add(10);
        c.add(10);
        assert_eq!(c.held(10), 2);
        c.add(11);
        assert_eq!(c.held(11), 3);
        c.remove(11, 10);
        assert_eq!(c.held(11), 2);
        assert_eq!(c.held(12), 1, "window 10's offers are gone");
        assert_eq!(c.held(14), 0);
        c.remove(14, 14);
        assert_eq!(c.held(14), 0, "never below zero");
    }

    #[test]
    fn windows() {
        assert_eq!(window(Timestamp::from_secs(95), 30), 3);
        assert_eq!(made_in(Timestamp::from_secs(95 + 30), 30), 3);
        assert_eq!(window(Timestamp::from_secs(5), 0), 5);
    }
}
