//! Hosts and groups read from a Redis of their own (`host-store` in `[server]`) rather than
//! from the lease store: a standby's local read-only replica, as the Go Redis DHCP server's
//! standby runs (see `dhcp_store::RedisHostSource`).

use dhcp_core::{HwAddr, StoreError, StoreHost, Timestamp};

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
    pub async fn host(
        &self,
        hw: &HwAddr,
        client_id: Option<&[u8]>,
        now: Timestamp,
    ) -> Result<Option<StoreHost>, StoreError> {
        #[cfg(feature = "redis")]
        return self.inner.host(hw, client_id, now).await;
        #[cfg(not(feature = "redis"))]
        {
            let _ = (hw, client_id, now);
            Ok(None)
        }
    }
}
