//! A sans-IO DHCPv4 server engine.
//!
//! `dhcp-core` holds everything a DHCPv4 server decides, and nothing it does: it parses
//! datagrams, runs the RFC 2131 state machine, allocates addresses through a [`LeaseStore`],
//! assembles options and encodes the reply, but it opens no socket, reads no clock and
//! spawns no task. The caller hands it the received bytes, where they came from, and the
//! current time; it hands back the reply and where to send it, or the reason it dropped
//! the packet. Time is always an argument, so tests can drive it with a simulated clock.
//!
//! The crate is `no_std` with `alloc`, so it also runs inside router firmware; the default
//! `std` feature adds TOML config parsing and `std::error::Error` on the error types.
//!
//! # Example
//!
//! The engine driven by the in-memory store from `dhcp-store`, answering a DISCOVER:
//!
//! ```
//! use core::net::Ipv4Addr;
//! use dhcp_core::{Config, Engine, Outcome, RecvMeta, Timestamp, Destination};
//! use dhcp_store::MemoryStore;
//!
//! let config = Config::from_toml_str(r#"
//!     server-id = "192.0.2.1"
//!     [[subnets]]
//!     id = 1
//!     subnet = "192.0.2.0/24"
//!     pools = ["192.0.2.100-192.0.2.199"]
//!     options = { routers = ["192.0.2.1"], domain-name-servers = ["192.0.2.53"] }
//! "#)?;
//! let engine = Engine::new(config, MemoryStore::new());
//!
//! // A DISCOVER from 02:00:00:00:00:01, broadcast on the interface whose address is 192.0.2.1.
//! let discover = dhcp_core::testing::discover([2, 0, 0, 0, 0, 1], 0x1234);
//! let meta = RecvMeta::new("0.0.0.0:68".parse()?).with_local_addr(Ipv4Addr::new(192, 0, 2, 1));
//! let mut reply = Vec::new();
//! let outcome = dhcp_core::block_on(engine.handle(&discover, &meta, Timestamp::from_secs(1_000), &mut reply))
//!     .expect("the in-memory store answers at once");
//! match outcome {
//!     Outcome::Reply(r) => {
//!         assert_eq!(r.message_type, dhcp_core::MessageType::Offer);
//!         assert_eq!(r.yiaddr, Ipv4Addr::new(192, 0, 2, 100));
//!         assert!(matches!(r.destination, Destination::Hardware { .. }));
//!     }
//!     other => panic!("expected an offer, got {other:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//! - [`wire`]: a checked view over a received packet, and the reply encoder (long options,
//!   option overload, maximum message size).
//! - [`config`]: the TOML-facing raw model and its validation into [`Config`].
//! - [`Engine`]: the state machine; [`LeaseStore`]: the storage contract it drives.
//! - [`Stats`]: counters named as Kea names them.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]
#![deny(unused_must_use)]
#![warn(missing_docs)]
#![warn(clippy::std_instead_of_core, clippy::alloc_instead_of_core)]

extern crate alloc;

pub mod config;
mod engine;
mod lease;
mod offers;
pub mod options;
mod poll;
mod stats;
mod store;
mod swap;
pub mod testing;
mod time;
pub mod wire;

pub use config::{Config, ConfigError};
pub use dhcproto::v4::{MessageType, OptionCode};
pub use engine::{
    Destination, DropReason, Engine, NoReplyReason, Outcome, PingAnswer, PingCheck, RecvMeta, Reply, TimerReport,
};
pub use lease::{ClientId, HwAddr, Lease, LeaseState};
pub use poll::block_on;
pub use stats::{Counter, Stats, SubnetStats};
pub use store::{HostQuery, LeaseStore, PoolRef, StoreError, StoreHost};
pub use time::Timestamp;
pub use wire::ParseError;
