//! Crash safety of the durable stores: the server is killed with SIGKILL while perfdhcp runs
//! DORA against it; after a restart on the same store, every lease a client was sent an ACK for
//! (as captured on the wire) is in the store.

mod lab;

use std::collections::HashSet;
use std::thread::sleep;
use std::time::Duration;

use lab::{Lab, SERVER_ADDR};

const CONFIG: &str = include_str!("../../dhcp-core/tests/fixtures/captured/lab.toml");

#[test]
fn journal_keeps_every_acked_lease_through_sigkill() {
    crash_under_load(|lab| format!("memory:?journal={}", lab.path("leases.journal").display()));
}

#[test]
fn sqlite_keeps_every_acked_lease_through_sigkill() {
    crash_under_load(|lab| format!("sqlite://{}", lab.path("leases.db").display()));
}

#[test]
fn postgres_keeps_every_acked_lease_through_sigkill() {
    // The server runs in a network namespace, which has its own loopback: it reaches the host's
    // PostgreSQL through the Unix socket directory, which the namespace shares.
    let schema = format!("dhcp_crash_{}", std::process::id());
    let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};");
    lab::run(["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-c", &sql]);
    crash_under_load(|_| {
        format!("postgresql://postgres@%2Fvar%2Frun%2Fpostgresql/test?options=-c%20search_path%3D{schema}")
    });
    let drop = format!("DROP SCHEMA IF EXISTS {schema} CASCADE;");
    lab::run(["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-c", &drop]);
}

fn crash_under_load(url: impl Fn(&Lab) -> String) {
    if !lab::available() {
        return;
    }
    let mut lab = Lab::pair();
    let store = format!("store = \"{}\"", url(&lab));
    lab.start_server_with(CONFIG, &store);
    lab.client(0).ip(&["addr", "add", "10.199.0.2/16", "dev", "vcli"]);

    let pcap = lab.path("replies.pcap");
    let capture = lab.capture_replies(&pcap);
    let perf = lab.client(0).spawn(
        &["perfdhcp", "-4", "-g", "single", "-l", "10.199.0.2", "-R", "100000", "-r", "1000", "-p", "10", SERVER_ADDR],
        &lab.path("perfdhcp.log"),
    );
    // Crash once clients hold a few hundred ACKed leases (or after 8 s, whatever came).
    let start = std::time::Instant::now();
    while acks(&pcap).len() < 300 && start.elapsed() < Duration::from_secs(8) {
        sleep(Duration::from_millis(100));
    }
    lab.crash_server();
    assert!(perf.wait(Duration::from_secs(60)).is_some(), "perfdhcp did not stop:\n{}", perf.log_text());
    capture.stop();

    let acked = acks(&pcap);
    assert!(acked.len() >= 50, "perfdhcp got only {} ACKs before the crash", acked.len());

    lab.start_server_with(CONFIG, &store);
    let stored: HashSet<(String, String)> =
        lab.leases().into_iter().filter(|l| l.state == "bound").map(|l| (l.address, l.hwaddr)).collect();
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} of {} ACKed leases lost in the crash: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    eprintln!("{}: {} ACKed before SIGKILL, all in the store after restart", url(&lab), acked.len());
}

/// The (address, hardware address) pairs of the ACKs in a capture of the server's replies.
fn acks(pcap: &std::path::Path) -> HashSet<(String, String)> {
    lab::acks(pcap).into_iter().collect()
}
