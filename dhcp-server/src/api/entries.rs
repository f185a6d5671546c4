//! The host and group entries a Redis store keeps beside the leases (the Go server's `mac:`,
//! `client:` and `group:` hashes), listed and edited through the API when the config reads
//! hosts from the store (`host-source = "store"`).

use std::collections::BTreeMap;

use axum::http::StatusCode;

use super::error::ApiError;
#[cfg(feature = "redis")]
use super::error::store_error;
use super::model::StoreEntry;

/// The entry kinds, by the names the API takes (`?kind=`) and their key prefixes.
pub(crate) const KINDS: [(&str, &str); 3] = [("mac", "mac:"), ("client", "client:"), ("group", "group:")];

/// The store's entries, when it keeps any: a Redis store.
#[derive(Debug, Clone, Default)]
pub(crate) struct StoreEntries {
    #[cfg(feature = "redis")]
    redis: Option<dhcp_store::RedisStore>,
}

/// Why the entries cannot be listed or edited on this server.
fn not_kept() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "hosts and groups are not kept in the store here (a Redis store and host-source = \"store\")",
    )
}

impl StoreEntries {
    /// The entries of `store`, when it is a Redis store.
    pub(crate) fn of(store: &dhcp_store::AnyStore) -> Self {
        #[cfg(feature = "redis")]
        return StoreEntries { redis: store.redis().cloned() };
        #[cfg(not(feature = "redis"))]
        {
            let _ = store;
            StoreEntries::default()
        }
    }

    /// The entries of a Redis store (the host store's, when hosts have one).
    #[cfg(feature = "redis")]
    pub(crate) fn of_redis(store: &dhcp_store::RedisStore) -> Self {
        StoreEntries { redis: Some(store.clone()) }
    }

    /// The host cache's lookups answered from memory and those that went to Redis, when the
    /// store has the cache on.
    pub(crate) fn cache_counts(&self) -> Option<(u64, u64)> {
        #[cfg(feature = "redis")]
        return self.redis.as_ref().and_then(dhcp_store::RedisStore::host_cache_counts);
        #[cfg(not(feature = "redis"))]
        None
    }

    /// Every entry of `kind` (`mac`, `client` or `group`), by key.
    pub(crate) async fn list(&self, kind: &str) -> Result<Vec<StoreEntry>, ApiError> {
        let Some((_, prefix)) = KINDS.iter().find(|(name, _)| *name == kind) else {
            return Err(ApiError::bad("kind", format!("{kind:?}: one of mac, client, group")));
        };
        #[cfg(feature = "redis")]
        if let Some(redis) = &self.redis {
            let entries = redis.host_entries(prefix).await.map_err(store_error)?;
            return Ok(entries.into_iter().map(|(key, fields)| StoreEntry { key, fields }).collect());
        }
        let _ = prefix;
        Err(not_kept())
    }

    /// Writes entry `key` with exactly `fields`.
    pub(crate) async fn put(&self, key: &str, fields: &BTreeMap<String, String>) -> Result<(), ApiError> {
        check_key(key)?;
        #[cfg(feature = "redis")]
        if let Some(redis) = &self.redis {
            return redis.put_host_entry(key, fields).await.map_err(store_error);
        }
        let _ = fields;
        Err(not_kept())
    }

    /// Deletes entry `key`; whether there was one.
    pub(crate) async fn delete(&self, key: &str) -> Result<bool, ApiError> {
        check_key(key)?;
        #[cfg(feature = "redis")]
        if let Some(redis) = &self.redis {
            return redis.delete_host_entry(key).await.map_err(store_error);
        }
        Err(not_kept())
    }
}

/// Refuses a key that is not a host or group entry's, naming the field.
fn check_key(key: &str) -> Result<(), ApiError> {
    if KINDS.iter().any(|(_, prefix)| key.len() > prefix.len() && key.starts_with(prefix)) {
        Ok(())
    } else {
        Err(ApiError::bad("key", format!("{key:?}: a key such as mac:aa:bb:cc:dd:ee:ff, client:ID or group:NAME")))
    }
}
