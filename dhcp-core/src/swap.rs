//! A shared value that a reload replaces: behind std's `RwLock` where std exists, fixed
//! without it (a `no_std` engine keeps the config it was built with).

use alloc::sync::Arc;

/// An `Arc<T>` that readers clone and a reload swaps. Readers keep the value they took, so a
/// packet is handled under one config from start to end.
#[derive(Debug)]
pub(crate) struct Swap<T> {
    #[cfg(feature = "std")]
    current: std::sync::RwLock<Arc<T>>,
    #[cfg(not(feature = "std"))]
    current: Arc<T>,
}

impl<T> Swap<T> {
    pub(crate) fn new(value: Arc<T>) -> Self {
        #[cfg(feature = "std")]
        let current = std::sync::RwLock::new(value);
        #[cfg(not(feature = "std"))]
        let current = value;
        Swap { current }
    }

    pub(crate) fn get(&self) -> Arc<T> {
        // A poisoned lock still holds a whole Arc: a writer only ever replaces it.
        #[cfg(feature = "std")]
        return Arc::clone(&self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner));
        #[cfg(not(feature = "std"))]
        Arc::clone(&self.current)
    }

    #[cfg(feature = "std")]
    pub(crate) fn set(&self, value: Arc<T>) {
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = value;
    }
}
