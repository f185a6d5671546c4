//! Choosing a store by URL, as a config file names it.

use core::net::Ipv4Addr;

use dhcp_core::{ClientId, Lease, LeaseState, LeaseStore, PoolRef, StoreError, Timestamp};

#[cfg(feature = "memory")]
use crate::MemoryStore;

/// A store URL that could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The URL's scheme names no store, or one this build was compiled without.
    #[error("unsupported store URL {url:?}: {reason}")]
    Unsupported {
        /// The URL as given.
        url: String,
        /// Which schemes this build supports.
        reason: String,
    },
}

/// Any store this build supports, chosen at run time from a URL by [`open`].
///
/// Servers that pick their store from a config file hold this; code that knows its store at
/// compile time can use the store type directly and skip the dispatch.
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyStore {
    /// `memory:` — [`MemoryStore`].
    #[cfg(feature = "memory")]
    Memory(MemoryStore),
}

/// The schemes [`open`] accepts in this build.
pub fn supported_schemes() -> &'static [&'static str] {
    &[
        #[cfg(feature = "memory")]
        "memory:",
    ]
}

/// Opens the store a URL names: `memory:` (the in-memory store).
pub fn open(url: &str) -> Result<AnyStore, OpenError> {
    let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
    match scheme {
        #[cfg(feature = "memory")]
        "memory" => Ok(AnyStore::Memory(MemoryStore::new())),
        _ => Err(OpenError::Unsupported {
            url: url.to_owned(),
            reason: format!("this build supports {}", supported_schemes().join(", ")),
        }),
    }
}

/// Forwards a call to whichever store the enum holds.
macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            #[cfg(feature = "memory")]
            AnyStore::Memory($store) => $call,
        }
    };
}

impl LeaseStore for AnyStore {
    async fn lease_by_client(&self, subnet: u32, client: &ClientId) -> Result<Option<Lease>, StoreError> {
        dispatch!(self, s => s.lease_by_client(subnet, client).await)
    }

    async fn lease_by_addr(&self, addr: Ipv4Addr) -> Result<Option<Lease>, StoreError> {
        dispatch!(self, s => s.lease_by_addr(addr).await)
    }

    async fn claim(&self, lease: &Lease, now: Timestamp) -> Result<Option<Lease>, StoreError> {
        dispatch!(self, s => s.claim(lease, now).await)
    }

    async fn allocate(&self, pool: PoolRef<'_>, lease: &Lease, now: Timestamp) -> Result<Option<Lease>, StoreError> {
        dispatch!(self, s => s.allocate(pool, lease, now).await)
    }

    async fn update_state(
        &self,
        addr: Ipv4Addr,
        client: &ClientId,
        state: LeaseState,
    ) -> Result<Option<Lease>, StoreError> {
        dispatch!(self, s => s.update_state(addr, client, state).await)
    }

    async fn reclaim_expired(&self, now: Timestamp, limit: usize) -> Result<Vec<Lease>, StoreError> {
        dispatch!(self, s => s.reclaim_expired(now, limit).await)
    }

    async fn delete(&self, addr: Ipv4Addr) -> Result<bool, StoreError> {
        dispatch!(self, s => s.delete(addr).await)
    }

    async fn list(&self, subnet: Option<u32>) -> Result<Vec<Lease>, StoreError> {
        dispatch!(self, s => s.list(subnet).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_memory_and_refuses_unknown_schemes() {
        assert!(matches!(open("memory:"), Ok(AnyStore::Memory(_))));
        let err = open("mongodb://localhost").expect_err("no such store");
        assert!(err.to_string().contains("memory:"), "{err}");
    }
}
