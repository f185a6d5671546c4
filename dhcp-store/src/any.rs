//! Choosing a store by URL, as a config file names it.

// A build without any store still compiles (every URL is refused); the forwarding methods then
// have nothing to forward their arguments to.
#![cfg_attr(
    not(any(feature = "memory", feature = "journal", feature = "sqlite", feature = "postgres", feature = "redis")),
    allow(unused_variables)
)]

use core::net::Ipv4Addr;

use dhcp_core::{ClientId, HostQuery, Lease, LeaseState, LeaseStore, PoolRef, StoreError, StoreHost, Timestamp};

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
    /// The URL names a supported store, but its parameters are wrong.
    #[error("store URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store could not be opened (its file, its server).
    #[error("store {url:?} cannot be opened: {reason}")]
    Open {
        /// The URL as given.
        url: String,
        /// Why.
        reason: String,
    },
}

/// Any store this build supports, chosen at run time from a URL by [`open`].
///
/// Servers that pick their store from a config file hold this; code that knows its store at
/// compile time can use the store type directly and skip the dispatch.
#[derive(Debug)]
#[non_exhaustive]
// One is made per server and lives as long as it: the variants' sizes (a few hundred bytes for
// Redis's connection state) cost nothing worth a box, and a box would change the variants'
// public types.
#[allow(clippy::large_enum_variant)]
pub enum AnyStore {
    /// `memory:` — [`MemoryStore`].
    #[cfg(feature = "memory")]
    Memory(MemoryStore),
    /// `memory:?journal=PATH` — [`JournalStore`](crate::JournalStore).
    #[cfg(feature = "journal")]
    Journal(crate::JournalStore),
    /// `sqlite://PATH` — [`SqliteStore`](crate::SqliteStore).
    #[cfg(feature = "sqlite")]
    Sqlite(crate::SqliteStore),
    /// `postgres://...` — [`PostgresStore`](crate::PostgresStore).
    #[cfg(feature = "postgres")]
    Postgres(crate::PostgresStore),
    /// `redis://...`, `redis+sentinel://...` — [`RedisStore`](crate::RedisStore).
    #[cfg(feature = "redis")]
    Redis(crate::RedisStore),
}

impl AnyStore {
    /// The Redis store, when this is one: for the host and group entries it keeps beside the
    /// leases ([`RedisStore::host_entries`](crate::RedisStore::host_entries)).
    #[cfg(feature = "redis")]
    pub fn redis(&self) -> Option<&crate::RedisStore> {
        match self {
            AnyStore::Redis(store) => Some(store),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }
}

/// The schemes [`open`] accepts in this build.
pub fn supported_schemes() -> &'static [&'static str] {
    &[
        #[cfg(feature = "memory")]
        "memory:",
        #[cfg(feature = "sqlite")]
        "sqlite:",
        #[cfg(feature = "postgres")]
        "postgres:",
        #[cfg(feature = "postgres")]
        "postgresql:",
        #[cfg(feature = "redis")]
        "redis:",
        #[cfg(feature = "redis")]
        "rediss:",
        #[cfg(feature = "redis")]
        "redis+unix:",
        #[cfg(feature = "redis")]
        "redis+sentinel:",
    ]
}

/// Opens the store a URL names: `memory:` (the in-memory store), `memory:?journal=PATH` (the
/// same with a lease journal, replayed now), `sqlite://PATH` (a SQLite file, created when
/// missing; `sqlite:///abs/path` or `sqlite://relative/path`), `postgres://USER@HOST/DB` (a pool
/// of 16 connections; the schema is created or migrated; libpq's `sslmode` and `sslrootcert`
/// for TLS; several hosts with `target_session_attrs=read-write` to follow a promoted standby),
/// `redis://HOST[:PORT][/DB][?prefix=P&hosts=H]`, `rediss://...[&tls-ca=PATH]` (TLS),
/// `redis+unix:///SOCKET[?prefix=P]` or `redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER[?db=N]`
/// (the master Sentinel names, followed through its failovers).
///
/// Async because network stores connect here; the memory store's future is ready at once, so
/// `dhcp_core::block_on(open("memory:"))` works without a runtime.
pub async fn open(url: &str) -> Result<AnyStore, OpenError> {
    let (scheme, rest) = url.split_once(':').unwrap_or((url, ""));
    let bad = |reason: &str| OpenError::BadUrl { url: url.to_owned(), reason: reason.to_owned() };
    // Only the local stores read `rest` and `bad`; a build with network stores alone does not.
    let _ = (&rest, &bad);
    match scheme {
        #[cfg(feature = "memory")]
        "memory" => match rest {
            "" => Ok(AnyStore::Memory(MemoryStore::new())),
            #[cfg(feature = "journal")]
            _ => {
                let query = rest.strip_prefix('?').ok_or_else(|| bad("expected memory: or memory:?journal=PATH"))?;
                let path = query
                    .strip_prefix("journal=")
                    .filter(|p| !p.is_empty() && !p.contains('&'))
                    .ok_or_else(|| bad("the only parameter is journal=PATH"))?;
                let (store, _report) = crate::JournalStore::open(path)
                    .map_err(|e| OpenError::Open { url: url.to_owned(), reason: e.to_string() })?;
                Ok(AnyStore::Journal(store))
            }
            #[cfg(not(feature = "journal"))]
            _ => Err(bad("this build has no journal (cargo feature `journal`)")),
        },
        #[cfg(feature = "sqlite")]
        "sqlite" => {
            // sqlite://PATH: an absolute path keeps its leading slash (sqlite:///var/lib/x.db).
            let path =
                rest.strip_prefix("//").filter(|p| !p.is_empty()).ok_or_else(|| bad("expected sqlite://PATH"))?;
            let store = crate::SqliteStore::open(path)
                .map_err(|e| OpenError::Open { url: url.to_owned(), reason: e.to_string() })?;
            Ok(AnyStore::Sqlite(store))
        }
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => {
            let store = crate::PostgresStore::connect(url, 16)
                .await
                .map_err(|e| OpenError::Open { url: url.to_owned(), reason: e.to_string() })?;
            Ok(AnyStore::Postgres(store))
        }
        #[cfg(feature = "redis")]
        "redis" | "rediss" | "redis+unix" | "redis+sentinel" => {
            let store = crate::RedisStore::connect(url)
                .await
                .map_err(|e| OpenError::Open { url: url.to_owned(), reason: e.to_string() })?;
            Ok(AnyStore::Redis(store))
        }
        _ => Err(OpenError::Unsupported {
            url: url.to_owned(),
            reason: unsupported_reason(url).unwrap_or_else(|| "unsupported".to_owned()),
        }),
    }
}

/// The cargo feature (of `dhcp-store`, passed through by `dhcp-server`) that brings the store a
/// URL names, whether or not this build has it; `None` for a scheme no feature knows.
pub fn feature_for(url: &str) -> Option<&'static str> {
    let (scheme, rest) = url.split_once(':').unwrap_or((url, ""));
    Some(match scheme {
        "memory" if !rest.is_empty() => "journal",
        "memory" => "memory",
        "sqlite" => "sqlite",
        "postgres" | "postgresql" => "postgres",
        "redis" | "rediss" | "redis+unix" | "redis+sentinel" => "redis",
        _ => return None,
    })
}

/// Why this build cannot open the store `url` names, or `None` when it can (as far as the
/// scheme goes: the rest of the URL is checked by [`open`]). A store compiled out is named with
/// the feature to turn on.
pub fn unsupported_reason(url: &str) -> Option<String> {
    let scheme_known = supported_schemes().iter().any(|s| url.starts_with(s.trim_end_matches(':')));
    let supported = || supported_schemes().join(", ");
    match feature_for(url) {
        Some(feature) if !compiled_in(feature) => Some(format!(
            "this build was compiled without the `{feature}` cargo feature (of dhcp-store, or dhcp-server, which \
             passes it on); it supports {}",
            supported()
        )),
        Some(_) if scheme_known => None,
        _ => Some(format!("this build supports {}", supported())),
    }
}

/// The store features this build has.
const COMPILED_IN: &[&str] = &[
    #[cfg(feature = "memory")]
    "memory",
    #[cfg(feature = "journal")]
    "journal",
    #[cfg(feature = "sqlite")]
    "sqlite",
    #[cfg(feature = "postgres")]
    "postgres",
    #[cfg(feature = "redis")]
    "redis",
];

fn compiled_in(feature: &str) -> bool {
    COMPILED_IN.contains(&feature)
}

/// Awaits a call on whichever store the enum holds. The calls of the stores that go to a
/// database (SQLite on its thread, PostgreSQL, Redis) are boxed: their futures are kilobytes,
/// and unboxed they would make every caller's future as large, the in-memory path included
/// (a future is the size of the largest it may hold); next to a database round trip, one
/// allocation is nothing.
macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            #[cfg(feature = "memory")]
            AnyStore::Memory($store) => $call.await,
            // Boxed: a journaled call's future holds the lease across the wait for the sync,
            // and an unboxed arm would make every memory-store call's future as large (it is
            // moved a few times per call on the hot path).
            #[cfg(feature = "journal")]
            AnyStore::Journal($store) => Box::pin($call).await,
            #[cfg(feature = "sqlite")]
            AnyStore::Sqlite($store) => Box::pin($call).await,
            #[cfg(feature = "postgres")]
            AnyStore::Postgres($store) => Box::pin($call).await,
            #[cfg(feature = "redis")]
            AnyStore::Redis($store) => Box::pin($call).await,
            // A build without any store: the enum has no values, so this is never reached.
            #[cfg(not(any(
                feature = "memory",
                feature = "journal",
                feature = "sqlite",
                feature = "postgres",
                feature = "redis"
            )))]
            _ => match *$self {},
        }
    };
}

impl LeaseStore for AnyStore {
    async fn host(&self, query: &HostQuery<'_>) -> Result<Option<StoreHost>, StoreError> {
        dispatch!(self, s => s.host(query))
    }

    async fn take_pool_address(&self, query: &HostQuery<'_>, addr: Ipv4Addr) -> Result<bool, StoreError> {
        dispatch!(self, s => s.take_pool_address(query, addr))
    }

    async fn lease_by_client(&self, subnet: u32, client: &ClientId) -> Result<Option<Lease>, StoreError> {
        dispatch!(self, s => s.lease_by_client(subnet, client))
    }

    async fn lease_by_addr(&self, addr: Ipv4Addr) -> Result<Option<Lease>, StoreError> {
        dispatch!(self, s => s.lease_by_addr(addr))
    }

    async fn lease_by_addr_and_client(
        &self,
        addr: Ipv4Addr,
        subnet: u32,
        client: &ClientId,
    ) -> Result<(Option<Lease>, Option<Lease>), StoreError> {
        dispatch!(self, s => s.lease_by_addr_and_client(addr, subnet, client))
    }

    async fn claim(&self, lease: &Lease, now: Timestamp) -> Result<Option<Lease>, StoreError> {
        dispatch!(self, s => s.claim(lease, now))
    }

    async fn allocate(&self, pool: PoolRef<'_>, lease: &Lease, now: Timestamp) -> Result<Option<Lease>, StoreError> {
        dispatch!(self, s => s.allocate(pool, lease, now))
    }

    async fn allocate_replacing(
        &self,
        pool: PoolRef<'_>,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Option<(Lease, Option<Lease>)>, StoreError> {
        dispatch!(self, s => s.allocate_replacing(pool, lease, now))
    }

    async fn update_state(
        &self,
        addr: Ipv4Addr,
        client: &ClientId,
        state: LeaseState,
    ) -> Result<Option<Lease>, StoreError> {
        dispatch!(self, s => s.update_state(addr, client, state))
    }

    async fn reclaim_expired(&self, now: Timestamp, limit: usize) -> Result<Vec<Lease>, StoreError> {
        dispatch!(self, s => s.reclaim_expired(now, limit))
    }

    async fn delete(&self, addr: Ipv4Addr) -> Result<bool, StoreError> {
        dispatch!(self, s => s.delete(addr))
    }

    async fn list(&self, subnet: Option<u32>) -> Result<Vec<Lease>, StoreError> {
        dispatch!(self, s => s.list(subnet))
    }

    async fn list_page(
        &self,
        subnet: Option<u32>,
        after: Option<Ipv4Addr>,
        limit: usize,
    ) -> Result<Vec<Lease>, StoreError> {
        dispatch!(self, s => s.list_page(subnet, after, limit))
    }

    fn list_page_native(&self) -> bool {
        match self {
            #[cfg(feature = "memory")]
            AnyStore::Memory(s) => s.list_page_native(),
            #[cfg(feature = "journal")]
            AnyStore::Journal(s) => s.list_page_native(),
            #[cfg(feature = "sqlite")]
            AnyStore::Sqlite(s) => s.list_page_native(),
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(s) => s.list_page_native(),
            #[cfg(feature = "redis")]
            AnyStore::Redis(s) => s.list_page_native(),
            #[cfg(not(any(
                feature = "memory",
                feature = "journal",
                feature = "sqlite",
                feature = "postgres",
                feature = "redis"
            )))]
            _ => match *self {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcp_core::HwAddr;

    fn open_now(url: &str) -> Result<AnyStore, OpenError> {
        dhcp_core::block_on(open(url)).expect("local stores open without waiting")
    }

    #[test]
    #[cfg(all(feature = "journal", feature = "sqlite"))]
    fn opens_memory_and_refuses_unknown_schemes() {
        assert!(matches!(open_now("memory:"), Ok(AnyStore::Memory(_))));
        assert!(matches!(open_now("memory:?journl=/tmp/x"), Err(OpenError::BadUrl { .. })));
        assert!(matches!(open_now("memory:?journal=/nonexistent-dir/leases"), Err(OpenError::Open { .. })));
        assert!(matches!(open_now("sqlite://"), Err(OpenError::BadUrl { .. })));
        let err = open_now("mongodb://localhost").expect_err("no such store");
        assert!(err.to_string().contains("memory:"), "{err}");
    }

    #[tokio::test]
    #[cfg(all(feature = "memory", feature = "sqlite"))]
    async fn pages_go_to_the_store_inside() {
        let dir = tempfile::tempdir().expect("tmp");
        let sqlite = format!("sqlite://{}", dir.path().join("leases.db").display());
        for url in ["memory:", sqlite.as_str()] {
            let store = open(url).await.expect("opens");
            assert!(store.list_page_native(), "{url}");
            let lease = |last: u8| Lease {
                addr: Ipv4Addr::new(10, 0, 0, last),
                client: ClientId::from_bytes(&[last]),
                hwaddr: HwAddr::default(),
                subnet: 1,
                state: LeaseState::Released,
                hostname: None,
            };
            for last in [9, 3, 5] {
                assert!(store.claim(&lease(last), Timestamp::from_secs(0)).await.expect("store").is_some());
            }
            let page = store.list_page(Some(1), Some(Ipv4Addr::new(10, 0, 0, 3)), 1).await.expect("store");
            assert_eq!(page, vec![lease(5)], "{url}");
        }
    }

    #[test]
    fn names_the_feature_of_a_store_compiled_out() {
        assert_eq!(feature_for("memory:?journal=/x"), Some("journal"));
        assert_eq!(feature_for("rediss://h"), Some("redis"));
        assert_eq!(feature_for("redis+sentinel://h:26379/m"), Some("redis"));
        assert_eq!(
            feature_for("postgresql://u@%2Fa:5432,%2Fb:5433/db?target_session_attrs=read-write"),
            Some("postgres")
        );
        assert_eq!(feature_for("mongodb://h"), None);
        if compiled_in("memory") {
            assert_eq!(unsupported_reason("memory:"), None);
        }
        if compiled_in("redis") {
            assert_eq!(unsupported_reason("redis+sentinel://h/m"), None);
        }
        let missing = ["memory", "journal", "sqlite", "postgres", "redis"].into_iter().find(|f| !compiled_in(f));
        if let Some(feature) = missing {
            let url = match feature {
                "memory" => "memory:",
                "journal" => "memory:?journal=/x",
                "sqlite" => "sqlite:///x",
                "postgres" => "postgres://h/db",
                _ => "redis://h",
            };
            let reason = unsupported_reason(url).expect("refused");
            assert!(reason.contains(&format!("`{feature}` cargo feature")), "{reason}");
        }
    }
}
