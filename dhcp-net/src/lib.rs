//! The network side of [`dhcp_core`]: serve DHCPv4 on real sockets.
//!
//! - [`DhcpSocket`]: UDP on the server port with SO_REUSEADDR, SO_BROADCAST, optionally tied
//!   to one interface (SO_BINDTODEVICE), reporting each datagram's interface and local address
//!   (IP_PKTINFO), which the engine uses for subnet selection and the server identifier.
//! - [`Server`]: sockets feeding one [`Engine`](dhcp_core::Engine), replies routed as RFC 2131
//!   4.1 says (relay, ciaddr, broadcast, or yiaddr at chaddr through an ARP entry), the
//!   engine's timers; driven by [`Server::run_blocking`] or, with the `tokio` feature,
//!   [`Server::serve`].
//! - [`ServerConfig`]: the config file (the engine's config plus a `[server]` table).
//! - [`probe()`]: one full DORA against a server, the boot-time health check.
//!
//! # Example
//! Serve a config on loopback with the in-memory store, from a blocking thread, and stop it:
//! ```no_run
//! use std::sync::Arc;
//! use std::sync::atomic::AtomicBool;
//! use dhcp_core::Engine;
//! use dhcp_net::{Server, ServerConfig};
//!
//! let config = ServerConfig::from_toml_str(r#"
//!     [server]
//!     listen = ["127.0.0.1"]
//!     server-port = 6767
//!     client-port = 6868
//!
//!     [[subnets]]
//!     id = 1
//!     subnet = "10.20.0.0/24"
//!     pools = ["10.20.0.100-10.20.0.199"]
//!     relay-addresses = ["127.0.0.2"]
//! "#)?;
//! let store = dhcp_store::MemoryStore::new();
//! let server = Server::bind(Arc::new(Engine::new(config.dhcp, store)), config.settings)?;
//! let stop = AtomicBool::new(false);
//! server.run_blocking(&stop)?; // returns once another thread sets `stop`
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

#[cfg(feature = "admin")]
pub mod admin;
mod arp;
mod clock;
mod control;
pub mod iface;
mod park;
mod probe;
mod seen;
mod server;
mod settings;
mod socket;
#[cfg(feature = "tokio")]
mod tokio_driver;

pub use clock::now;
pub use control::{Applied, ConfigControl, ControlError};
pub use park::park_on;
pub use probe::{ProbeError, ProbeLease, ProbeMode, ProbeOptions, probe};
pub use seen::LastSeen;
pub use server::{ServeError, Server, write_lease_csv};
pub use settings::{API_TOKEN_ENV, Listen, LogLevel, ServerConfig, ServerSettings};
pub use socket::{DhcpSocket, Received};
#[cfg(feature = "tokio")]
pub use tokio_driver::shutdown_signal;

// The README's examples are compiled and run as doc tests here, where every crate they use is a
// dependency.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
