//! The one harness of the integration tests: network namespaces joined by veth pairs or a
//! bridge ([`Lab`]), processes killed on drop ([`Proc`]), our `dhcp-server` started in a
//! namespace or on loopback ([`Server`]), tcpdump captures ([`Capture`]), and store servers of
//! a test's own: a private PostgreSQL and Redis, with certificates when they take only TLS.
//!
//! Everything a test starts is stopped and removed when its owner is dropped, also when the
//! test panics: processes are killed, namespaces (and whatever still runs in them) deleted,
//! temporary directories removed.
//!
//! - [`process`]: [`run`] a command, [`Proc`] a background one;
//! - [`netns`]: [`Netns`] and [`Lab`], the real clients' hooks and dhclient;
//! - [`server`]: [`Server`], our server, and its [`LeaseRow`]s;
//! - [`capture`]: [`Capture`], tcpdump, and the UDP payloads of its file;
//! - [`services`]: [`PrivatePostgres`], [`PrivateRedis`] and [`Certs`].
//!
//! Each test binary includes this module (`mod lab;`) and uses only part of it: what one
//! leaves unused (items, and their re-exports here) is no warning.

#![allow(dead_code, unused_imports)]

mod capture;
mod netns;
mod process;
mod server;
mod services;

use std::net::{TcpListener, UdpSocket};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

pub use capture::{Capture, acks, udp_payloads};
pub use netns::{DHCLIENT_HOOK, Lab, Netns, SERVER_ADDR, cli_stats, dhclient, dhclient_with, mac_of, values};
pub use process::{Proc, run, text};
pub use server::{LeaseRow, Place, Server};
pub use services::{Certs, PostgresPair, PrivatePostgres, PrivateRedis, RedisSentinels, SENTINEL_MASTER};

/// A number unique within the test binary, for names of namespaces, links and directories.
fn next_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Whether the tests that need root (network namespaces, `su postgres`) can run here. Without
/// root they fail with the reason, unless `DHCP_SKIP_NETNS=1` is set (a developer machine):
/// then they return early.
pub fn available() -> bool {
    let root = std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout == b"0\n");
    if root {
        return true;
    }
    if std::env::var("DHCP_SKIP_NETNS").as_deref() == Ok("1") {
        eprintln!("skipping: this test needs root (network namespaces, su postgres)");
        return false;
    }
    panic!("this test needs root for network namespaces and su postgres (set DHCP_SKIP_NETNS=1 to skip it)");
}

/// A directory of the test's own, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("dhcp-{tag}-{}-{}", std::process::id(), next_id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A port for our server on loopback: free now for TCP, and the port after it (where the
/// server answers relays) free for UDP.
pub fn server_port() -> u16 {
    loop {
        let port = free_port();
        if port < 65_000 && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}
