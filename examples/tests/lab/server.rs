//! Our `dhcp-server` binary as the tests run it: in a lab's server namespace on `vsrv`, or on
//! loopback on unprivileged ports; killed on drop.

use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use dhcp_net::{ProbeError, ProbeMode, ProbeOptions, probe};

use super::{Netns, Proc};

const BINARY: &str = env!("CARGO_BIN_EXE_dhcp-server");

/// The server binary the tests run: `DHCP_SERVER_BIN` (a release build, for the timing tests),
/// else the test build's.
fn binary() -> std::ffi::OsString {
    std::env::var_os("DHCP_SERVER_BIN").unwrap_or_else(|| BINARY.into())
}

/// The engine config of a server on loopback: one subnet, 192.0.2.0/24, served to the relay
/// 127.0.0.2.
pub const LOOPBACK_CONFIG: &str = "lease-time = 600\n\n[[subnets]]\nid = 1\nsubnet = \"192.0.2.0/24\"\n\
                                   pools = [\"192.0.2.10-192.0.2.250\"]\nrelay-addresses = [\"127.0.0.2\"]\n";

/// Where the server runs.
#[derive(Clone, Copy)]
pub enum Place<'a> {
    /// In a lab's server namespace, listening on `vsrv`, logging at debug.
    Netns(&'a Netns),
    /// On the host's loopback: 127.0.0.1:`port`, replies to relays at `port + 1`, logging at
    /// info.
    Loopback(u16),
}

/// Our server, killed on drop.
pub struct Server {
    proc: Proc,
    config: PathBuf,
    dump: PathBuf,
    /// The port it serves on: 67 in a namespace, the one it was given on loopback.
    pub port: u16,
}

impl Server {
    /// Starts the server at `place` without waiting: its config `DIR/NAME.toml` is `config`
    /// (the engine part) and a `[server]` table for the place, with a lease dump and
    /// `server_lines` (a store URL, say); its log is `DIR/NAME.log`.
    pub fn spawn(place: Place<'_>, dir: &Path, name: &str, config: &str, server_lines: &str) -> Server {
        let (mut cmd, port, place_lines) = match place {
            Place::Netns(ns) => (ns.command(binary()), 67, "listen = [\"vsrv\"]\nlog-level = \"debug\"".to_owned()),
            Place::Loopback(port) => (
                Command::new(binary()),
                port,
                format!(
                    "listen = [\"127.0.0.1\"]\nserver-port = {port}\nclient-port = {}\nlog-level = \"info\"",
                    port + 1
                ),
            ),
        };
        let dump = dir.join(format!("{name}-leases.csv"));
        // The config history and the audit log stay in the lab, apart from other servers'.
        let state = if server_lines.contains("state-dir") {
            String::new()
        } else {
            format!("state-dir = \"{}\"\n", dir.join(format!("{name}-state")).display())
        };
        let text =
            format!("{config}\n[server]\n{place_lines}\nlease-dump = \"{}\"\n{state}{server_lines}\n", dump.display());
        let file = dir.join(format!("{name}.toml"));
        fs::write(&file, text).expect("write server config");
        let proc = Proc::spawn(cmd.arg("--config").arg(&file).env("NO_COLOR", "1"), &dir.join(format!("{name}.log")));
        Server { proc, config: file, dump, port }
    }

    /// [`spawn`](Self::spawn), then waits until the server serves.
    pub fn start(place: Place<'_>, dir: &Path, name: &str, config: &str, server_lines: &str) -> Server {
        Server::spawn(place, dir, name, config, server_lines).serving()
    }

    /// Waits until the server serves (up to 10 s), panicking when it exits first.
    pub fn serving(self) -> Server {
        self.serving_within(Duration::from_secs(10))
    }

    /// [`serving`](Self::serving) with a longer wait (a big journal to replay).
    pub fn serving_within(self, wait: Duration) -> Server {
        self.proc.wait_for_log("serving", wait);
        self
    }

    /// The server on loopback at 127.0.0.1:`port` with `store` and [`LOOPBACK_CONFIG`], its
    /// files `server-PORT.*` in `dir`; waits until it serves.
    pub fn loopback(dir: &Path, store: &str, port: u16, server_lines: &str) -> Server {
        Server::spawn_loopback(dir, store, port, server_lines).serving()
    }

    /// [`loopback`](Self::loopback) without waiting: for a start that is meant to fail.
    pub fn spawn_loopback(dir: &Path, store: &str, port: u16, server_lines: &str) -> Server {
        let lines = format!("store = \"{store}\"\n{server_lines}");
        Server::spawn(Place::Loopback(port), dir, &format!("server-{port}"), LOOPBACK_CONFIG, &lines)
    }

    /// The config file it was started with.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Waits up to `timeout` for the server to exit; whether it did.
    pub fn exited_within(&self, timeout: Duration) -> bool {
        self.proc.wait(timeout).is_some()
    }

    /// Sends `signal` (such as "HUP") to the server.
    pub fn signal(&self, signal: &str) {
        self.proc.signal(signal);
    }

    /// Kills the server with SIGKILL, as a crash would, and waits for it to be gone.
    pub fn crash(&self) {
        self.proc.crash();
    }

    /// The server's leases, read from a fresh dump (SIGUSR1).
    pub fn leases(&self) -> Vec<LeaseRow> {
        let _ = fs::remove_file(&self.dump);
        self.signal("USR1");
        let start = Instant::now();
        while !self.dump.exists() {
            assert!(start.elapsed() < Duration::from_secs(5), "no lease dump:\n{}", self.log_text());
            sleep(Duration::from_millis(20));
        }
        let text = fs::read_to_string(&self.dump).expect("read dump");
        text.lines().skip(1).map(LeaseRow::parse).collect()
    }

    /// On loopback: a DORA through the relay address 127.0.0.2 for the client with MAC
    /// 02:00:0e:00:00:`mac`.
    pub fn probe(&self, mac: u8) -> Result<Ipv4Addr, ProbeError> {
        let mut options = ProbeOptions::new(ProbeMode::Relay {
            local: Ipv4Addr::new(127, 0, 0, 2),
            server: SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port),
        });
        options.mac = [2, 0, 0x0e, 0, 0, mac];
        options.timeout = Duration::from_millis(600);
        options.release = false;
        probe(&options).map(|l| l.addr)
    }
}

/// One line of the server's lease dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub address: String,
    pub hwaddr: String,
    pub client_id: String,
    pub state: String,
    pub subnet: String,
    pub hostname: String,
}

impl LeaseRow {
    fn parse(line: &str) -> LeaseRow {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 7, "bad dump line {line:?}");
        LeaseRow {
            address: f[0].into(),
            hwaddr: f[1].into(),
            client_id: f[2].into(),
            state: f[3].into(),
            subnet: f[5].into(),
            hostname: f[6].into(),
        }
    }
}
