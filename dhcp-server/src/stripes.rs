//! State kept by key behind a stripe of locks, so that the packet path takes no lock that every
//! datagram shares: datagrams of different clients seldom wait on each other.

use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Stripes per table: twice and more the threads a server runs on a large machine, so that
/// two threads seldom want one stripe at once.
pub(crate) const STRIPES: usize = 64;

/// `STRIPES` values of `T`, each behind its own lock, chosen by a key's hash.
#[derive(Debug)]
pub(crate) struct Striped<T> {
    stripes: Box<[Mutex<T>]>,
    /// Keyed per process, so that a client cannot choose a crowded stripe on purpose.
    hasher: RandomState,
}

impl<T> Striped<T> {
    /// Stripes made by `make`.
    pub(crate) fn new(mut make: impl FnMut() -> T) -> Self {
        Striped { stripes: (0..STRIPES).map(|_| Mutex::new(make())).collect(), hasher: RandomState::new() }
    }

    /// The stripe of `key`, locked. A panic while holding a stripe leaves a map whose every
    /// entry is whole, so a poisoned lock is used as it is.
    pub(crate) fn lock(&self, key: &(impl Hash + ?Sized)) -> MutexGuard<'_, T> {
        let stripe = (self.hasher.hash_one(key) % STRIPES as u64) as usize;
        self.stripes[stripe].lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A bound on entries kept across all stripes, split between them (rounded up, at least 1).
pub(crate) fn per_stripe(total: usize) -> usize {
    total.div_ceil(STRIPES).max(1)
}
