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

    /// Counts an offer made in window `epoch` if fewer than `max` are held, and says whether it
    /// did: the check and the count in one step, so that requests answered at the same moment
    /// cannot together pass `max` (each sees the others' counts).
    pub(crate) fn add_below(&self, epoch: u64, max: u64) -> bool {
        self.roll(epoch);
        let previous = self.previous.load(Ordering::Relaxed);
        self.current
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n.saturating_add(previous) < max).then_some(n + 1))
            .is_ok()
    }

    /// Takes back an offer counted in window `made`, in whichever window the count is in now.
    pub(crate) fn take_back(&self, made: u64) {
        let epoch = self.epoch.load(Ordering::Acquire);
        self.remove(epoch, made);
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

/// Offers counted against the bounds before the store is asked for an address (the subnet's,
/// and the relay's when the request came through one): given back when dropped, unless
/// [`keep`](Self::keep) says the request made its offer.
pub(crate) struct OfferSlot<'a> {
    counts: [Option<&'a OfferCount>; 2],
    made: u64,
    kept: bool,
}

impl<'a> OfferSlot<'a> {
    /// Counts one offer in window `epoch` in each of `counts` that is below its bound (`None`:
    /// no bound), or in none of them when one is at its bound.
    pub(crate) fn take(epoch: u64, counts: [Option<(&'a OfferCount, Option<u64>)>; 2]) -> Option<OfferSlot<'a>> {
        let mut slot = OfferSlot { counts: [None, None], made: epoch, kept: false };
        for (place, entry) in slot.counts.iter_mut().zip(counts) {
            let Some((count, bound)) = entry else { continue };
            match bound {
                Some(max) if !count.add_below(epoch, max) => return None,
                Some(_) => {}
                None => count.add(epoch),
            }
            *place = Some(count);
        }
        Some(slot)
    }

    /// The request made its offer: the counts stay.
    pub(crate) fn keep(&mut self) {
        self.kept = true;
    }
}

impl Drop for OfferSlot<'_> {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        for count in self.counts.iter().flatten() {
            count.take_back(self.made);
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

    #[test]
    fn a_slot_counts_below_the_bound_and_gives_back_what_it_did_not_keep() {
        let (subnet, relay) = (OfferCount::default(), OfferCount::default());
        let take = || OfferSlot::take(10, [Some((&subnet, Some(2))), Some((&relay, None))]);
        let mut kept = take().expect("below the bound");
        kept.keep();
        drop(kept);
        let given_back = take().expect("below the bound");
        assert_eq!((subnet.held(10), relay.held(10)), (2, 2));
        drop(given_back);
        assert_eq!((subnet.held(10), relay.held(10)), (1, 1), "not kept: given back");
        let mut second = take().expect("one held, bound two");
        second.keep();
        assert!(take().is_none(), "two held: at the bound");
        assert_eq!((subnet.held(10), relay.held(10)), (2, 2), "a refused slot counts nothing");
        // A relay at its bound refuses the slot and the subnet's count is given back.
        let tight = OfferCount::default();
        assert!(OfferSlot::take(10, [Some((&relay, None)), Some((&tight, Some(0)))]).is_none());
        assert_eq!(relay.held(10), 2);
    }

    #[test]
    fn counting_below_a_bound_at_once_never_passes_it() {
        let count = std::sync::Arc::new(OfferCount::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let count = std::sync::Arc::clone(&count);
                std::thread::spawn(move || (0..1000).filter(|_| count.add_below(5, 40)).count())
            })
            .collect();
        let counted: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
        assert_eq!(counted, 40);
        assert_eq!(count.held(5), 40);
    }
}
