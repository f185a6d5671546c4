//! Embedding the whole operated server in your own tokio program: a config file in, a server
//! out, in a few lines.
//!
//! `cargo run -p dhcp-server --example embed [CONFIG]` (default `examples/config/loopback.toml`,
//! no root needed) starts the server, takes a lease from it as a relay at 127.0.0.2 would, prints
//! the lease and the ACK count, and stops.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use dhcp_core::Counter;
use dhcp_net::{ProbeMode, ProbeOptions, probe};
use dhcp_server::Service;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/config/loopback.toml").to_owned());

    // The whole server: store from the URL, sockets, API, SIGHUP reload, lease dump.
    let running = Service::from_file(&path)?.start().await?;
    let engine = Arc::clone(running.engine());
    let port = running.server().settings().server_port;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(running.run(async {
        let _ = stopped.await;
    }));

    // Your program goes on beside it; here it takes one lease, as a relay would.
    let mut options = ProbeOptions::new(ProbeMode::Relay {
        local: Ipv4Addr::new(127, 0, 0, 2),
        server: SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
    });
    options.timeout = Duration::from_secs(2);
    let lease = tokio::task::spawn_blocking(move || probe(&options)).await??;
    println!("{lease}");
    println!("pkt4-ack-sent {}", engine.stats().get(Counter::AckSent));

    let _ = stop.send(());
    serving.await??;
    Ok(())
}
