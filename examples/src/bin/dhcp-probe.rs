//! `dhcp-probe`: one full DORA against a server; prints the lease, exits non-zero without one.
//!
//! As a client on an interface: `dhcp-probe --interface eth0`. As a relay (unprivileged, beside
//! the server): `dhcp-probe --relay 127.0.0.2 --server 127.0.0.1:67`.
//! Exit status: 0 with a lease, 1 when none came back (timeout or NAK), 2 on a usage or socket
//! error.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use dhcp_net::{ProbeError, ProbeMode, ProbeOptions, probe};

/// Health check: take a lease from a DHCPv4 server.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Probe as a client broadcasting on this interface.
    #[arg(long, conflicts_with = "relay", required_unless_present = "relay")]
    interface: Option<String>,
    /// Probe as a relay agent at this local address (giaddr).
    #[arg(long, requires = "server")]
    relay: Option<Ipv4Addr>,
    /// The server's address and port, for --relay.
    #[arg(long)]
    server: Option<SocketAddrV4>,
    /// The client hardware address to use.
    #[arg(long, value_parser = parse_mac)]
    mac: Option<[u8; 6]>,
    /// Seconds to wait for each reply.
    #[arg(long, default_value_t = 3.0)]
    timeout: f64,
    /// The port servers listen on.
    #[arg(long, default_value_t = 67)]
    server_port: u16,
    /// The port clients listen on.
    #[arg(long, default_value_t = 68)]
    client_port: u16,
    /// Keep the lease instead of releasing it after the check.
    #[arg(long)]
    keep: bool,
}

fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let hw = dhcp_core::HwAddr::parse(text).ok_or_else(|| format!("{text:?} is not a MAC address"))?;
    hw.as_bytes().try_into().map_err(|_| format!("{text:?} is not a 6-byte MAC address"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mode = match (args.interface, args.relay, args.server) {
        (Some(interface), _, _) => ProbeMode::Client { interface },
        (None, Some(local), Some(server)) => ProbeMode::Relay { local, server },
        _ => {
            eprintln!("give --interface, or --relay with --server");
            return ExitCode::from(2);
        }
    };
    let mut options = ProbeOptions::new(mode);
    if let Some(mac) = args.mac {
        options.mac = mac;
    }
    options.timeout = Duration::from_secs_f64(args.timeout.max(0.01));
    options.server_port = args.server_port;
    options.client_port = args.client_port;
    options.release = !args.keep;
    match probe(&options) {
        Ok(lease) => {
            println!("{lease}");
            ExitCode::SUCCESS
        }
        Err(e @ (ProbeError::Timeout(_) | ProbeError::Nak(_))) => {
            eprintln!("no lease: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("probe failed: {e}");
            ExitCode::from(2)
        }
    }
}
