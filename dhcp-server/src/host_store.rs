//! Hosts and groups read from a Redis of their own (`host-store` in `[server]`) rather than
//! from the lease store: a standby's local read-only replica, as the Go Redis DHCP server's
//! standby runs (see `dhcp_store::RedisHostSource`).

use std::net::Ipv4Addr;

use dhcp_core::{HostQuery, StoreError, StoreHost};

/// The host store, when the build has Redis.
#[derive(Debug, Clone)]
pub struct HostStore {
    #[cfg(feature = "redis")]
    inner: std::sync::Arc<dhcp_store::RedisHostSource>,
}

impl HostStore {
    /// Connects to the host store `url` names.
    pub async fn connect(url: &str) -> Result<HostStore, StoreError> {
        #[cfg(feature = "redis")]
        return Ok(HostStore { inner: std::sync::Arc::new(dhcp_store::RedisHostSource::connect(url).await?) });
        #[cfg(not(feature = "redis"))]
        Err(StoreError::Backend(format!("host-store {url:?}: this build has no Redis (the redis feature)")))
    }

    /// The Redis the hosts are read from (for the API's entries and the cache's counts).
    #[cfg(feature = "redis")]
    pub fn reader(&self) -> &dhcp_store::RedisStore {
        self.inner.reader()
    }

    /// The client's entry and groups.
    pub async fn host(&self, query: &HostQuery<'_>) -> Result<Option<StoreHost>, StoreError> {
        #[cfg(feature = "redis")]
        return self.inner.host(query).await;
        #[cfg(not(feature = "redis"))]
        {
            let _ = query;
            Ok(None)
        }
    }

    /// Takes an address of the store's `pool` hash for the client, on the master.
    pub async fn take_pool_address(&self, query: &HostQuery<'_>, addr: Ipv4Addr) -> Result<bool, StoreError> {
        #[cfg(feature = "redis")]
        return self.inner.take_pool_address(query, addr).await;
        #[cfg(not(feature = "redis"))]
        {
            let _ = (query, addr);
            Ok(false)
        }
    }
}
