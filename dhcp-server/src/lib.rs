//! The operated DHCPv4 server as a library: what turns the engine (`dhcp-core`) and its
//! sockets (`dhcp-net`) into a service an operator runs in place of Kea.
//!
//! - [`ServerConfig`]: the config file, the engine's config plus a `[server]` table (sockets,
//!   store URL, logging, lease dump, management API).
//! - [`Service`]: the one entry point. It opens the store the URL names (each backend a cargo
//!   feature of this crate, passed through to `dhcp-store`), binds the sockets and the API, and
//!   serves: SIGHUP reloads the file, SIGUSR1 writes the lease dump.
//! - [`ConfigControl`]: test, reload and roll back a config file; a refused config leaves the
//!   running one in place, and the last good one is kept beside the file.
//! - [`api`]: the management API (HTTP, JSON, bearer token), its typed [`model`](api::model)
//!   and [`AdminClient`](api::AdminClient) speaking it.
//! - [`ha`]: high availability between a pair of servers (hot-standby, load-balancing,
//!   passive-backup), the `[ha]` table.
//! - [`Metrics`] and [`MeteredStore`]: Prometheus metrics without a global recorder.
//!
//! # Example
//! Run the server a config file describes until SIGINT or SIGTERM:
//! ```no_run
//! use dhcp_server::{Service, shutdown_signal};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let service = Service::from_file("examples/config/loopback.toml")?;
//! service.run(async { let _ = shutdown_signal().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! Or start it, look at it, and stop it from code:
//! ```
//! use dhcp_server::{ServerConfig, Service};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ServerConfig::from_toml_str(r#"
//!     [server]
//!     listen = ["127.0.0.1"]
//!     server-port = 26767
//!     client-port = 26768
//!     api-listen = "127.0.0.1:0"
//!     api-token = "example-token"
//!
//!     [[subnets]]
//!     id = 1
//!     subnet = "10.20.0.0/24"
//!     pools = ["10.20.0.100-10.20.0.199"]
//! "#)?;
//! let running = Service::from_config(config).start().await?;
//! assert!(running.api_addr().is_some());
//! assert_eq!(running.engine().stats().subnet(1).map(|s| s.total_addresses()), Some(100));
//! running.run(async {}).await?; // an empty shutdown future: stops at once
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod api;
pub mod audit;
mod clock;
mod config;
mod control;
mod files;
pub mod ha;
pub mod history;
pub mod host_store;
mod lease_dump;
pub mod limits;
mod metrics;
pub mod oidc;
mod portal;
mod rates;
mod redact;
mod seen;
mod service;
mod sessions;
mod stripes;
mod tls;
pub mod users;

pub use config::{
    API_TOKEN_ENV, DEFAULT_STATE_DIR, LogLevel, ServerConfig, ServerSettings, default_in_flight, default_threads,
};
pub use control::{Applied, ConfigControl, ControlError};
pub use lease_dump::write_lease_csv;
pub use metrics::{MeteredStore, Metrics};
pub use seen::LastSeen;
pub use service::{Running, Service, ServiceError, ServiceStore, shutdown_signal};

// The README's examples are compiled and run as doc tests here, where every crate they use is a
// dependency.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
