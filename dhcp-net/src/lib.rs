//! The network side of [`dhcp_core`]: serve DHCPv4 on real sockets.
//!
//! - [`DhcpSocket`]: UDP on the server port with SO_REUSEADDR, SO_BROADCAST, optionally tied
//!   to one interface (SO_BINDTODEVICE), reporting each datagram's interface and local address
//!   (IP_PKTINFO), which the engine uses for subnet selection and the server identifier.
//! - [`Server`]: sockets feeding one [`Engine`](dhcp_core::Engine), replies routed as RFC 2131
//!   4.1 says (relay, ciaddr, broadcast, or yiaddr at chaddr through an ARP entry), the
//!   engine's timers; driven by [`Server::run_blocking`] or, with the `tokio` feature,
//!   [`Server::serve`].
//! - [`NetSettings`]: where to listen and on which ports.
//! - [`Observer`]: told of every datagram, for what an operated server keeps beside the engine.
//! - [`probe()`]: one full DORA against a server, the boot-time health check.
//!
//! This crate depends on `dhcp-core` only: no lease store backend, no HTTP. The operated
//! server (config file, store selection, management API, metrics) is the `dhcp-server` crate.
//!
//! # Example
//! Serve a subnet on loopback with the in-memory store, from a blocking thread, and stop it:
//! ```no_run
//! use std::sync::Arc;
//! use std::sync::atomic::AtomicBool;
//! use dhcp_core::{Config, Engine};
//! use dhcp_net::{Listen, NetSettings, Server};
//!
//! let config = Config::from_toml_str(r#"
//!     [[subnets]]
//!     id = 1
//!     subnet = "10.20.0.0/24"
//!     pools = ["10.20.0.100-10.20.0.199"]
//!     relay-addresses = ["127.0.0.2"]
//! "#)?;
//! let settings = NetSettings {
//!     listen: vec![Listen::Address("127.0.0.1".parse()?)],
//!     server_port: 6767,
//!     client_port: 6868,
//!     ..NetSettings::default()
//! };
//! let store = dhcp_store::MemoryStore::new();
//! let server = Server::bind(Arc::new(Engine::new(config, store)), settings)?;
//! let stop = AtomicBool::new(false);
//! server.run_blocking(&stop)?; // returns once another thread sets `stop`
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod arp;
#[cfg(feature = "tokio")]
mod client_locks;
mod clock;
pub mod iface;
mod park;
mod ping;
mod probe;
mod server;
mod settings;
mod socket;
mod throttle;
#[cfg(feature = "tokio")]
mod tokio_driver;

pub use clock::{check_wall_clock, now};
pub use park::park_on;
pub use probe::{ProbeError, ProbeLease, ProbeMode, ProbeOptions, probe};
pub use server::{Observer, ServeError, Server, Verdict};
pub use settings::{BadListen, DEFAULT_RECEIVE_BUFFER, Listen, NetSettings};
pub use socket::{DhcpSocket, Received};
pub use throttle::Throttle;
