//! Lease stores for [`dhcp_core`]: where the engine keeps its leases.
//!
//! Each backend is behind its own cargo feature. `memory` (the default) is [`MemoryStore`]:
//! everything in one process's memory, with allocation cost independent of the pool's size
//! and reclamation proportional to what expired.
//!
//! ```
//! use core::net::Ipv4Addr;
//! use dhcp_core::{block_on, ClientId, HwAddr, Lease, LeaseState, LeaseStore, Timestamp};
//! use dhcp_store::MemoryStore;
//!
//! let store = MemoryStore::new();
//! let now = Timestamp::from_secs(1_000);
//! let lease = Lease {
//!     addr: Ipv4Addr::new(10, 0, 0, 7),
//!     client: ClientId::from_bytes(&[1, 2, 0, 0, 0, 0, 7]),
//!     hwaddr: HwAddr::mac([2, 0, 0, 0, 0, 7]),
//!     subnet: 1,
//!     state: LeaseState::Bound { expires: now + 3600 },
//!     hostname: None,
//! };
//! let granted = block_on(store.claim(&lease, now)).expect("ready").expect("store answers");
//! assert_eq!(granted, Some(lease.clone()));
//! // Another client cannot take the address while the lease runs.
//! let thief = Lease { client: ClientId::from_bytes(&[9, 9]), ..lease };
//! assert_eq!(block_on(store.claim(&thief, now)).expect("ready").expect("store answers"), None);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "memory")]
mod addr_index;
mod any;
#[cfg(any(feature = "memory", feature = "sqlite", feature = "postgres", feature = "redis"))]
mod codec;
#[cfg(feature = "journal")]
mod journal;
#[cfg(feature = "memory")]
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
mod postgres_tls;
#[cfg(feature = "redis")]
mod redis_error;
#[cfg(feature = "redis")]
mod redis_host_cache;
#[cfg(feature = "redis")]
mod redis_host_source;
#[cfg(feature = "redis")]
mod redis_hosts;
#[cfg(feature = "redis")]
mod redis_pool;
#[cfg(feature = "redis")]
mod redis_store;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use any::{AnyStore, OpenError, feature_for, open, supported_schemes, unsupported_reason};
#[cfg(any(feature = "memory", feature = "sqlite", feature = "postgres", feature = "redis"))]
pub use codec::percent_decode;
#[cfg(feature = "journal")]
pub use journal::{COMPACT_MIN_LINES, JournalStore, ReplayReport};
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "redis")]
pub use redis_host_source::RedisHostSource;
#[cfg(feature = "redis")]
pub use redis_store::{HOST_ENTRY_KINDS, HostEntry, RedisStore};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

#[cfg(feature = "memory")]
pub use memory::MemoryStore;
