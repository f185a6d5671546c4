//! The example server on several threads (`threads` in `[server]`), in network namespaces,
//! under a real generator (ISC perfdhcp): no address goes to two clients and every ACK is
//! stored, on the memory store (whose requests are answered where they are read, the backlog
//! handed on) and on the journal (every request a task, both workers busy); on one thread the
//! server runs no workers and still serves a real client (ISC dhclient).
//!
//! Every other end-to-end suite runs the server at its default, one thread per core.

mod lab;

use std::collections::HashMap;
use std::time::Duration;

use lab::{Lab, SERVER_ADDR, dhclient, text};

const CONFIG: &str = include_str!("../../dhcp-core/tests/fixtures/captured/lab.toml");

/// DORAs perfdhcp makes: fewer than the lab subnet's 2,289 pool addresses.
const EXCHANGES: usize = 2000;

#[test]
fn two_threads_on_the_memory_store_give_no_address_twice_under_a_burst() {
    if !lab::available() {
        return;
    }
    let mut lab = Lab::pair();
    lab.start_server_with(CONFIG, "threads = 2");
    let pid = lab.dhcpd().pid();
    assert_eq!(comm(&format!("/proc/{pid}")), "dhcp-server", "the lab's pid is the server's");
    assert_eq!(worker_switches(pid).len(), 2, "two worker threads");
    // perfdhcp sends in bursts, so datagrams queue now and then: the receiving thread answers
    // the first of each wakeup and hands the rest to the other. (Faster, tcpdump loses replies.)
    load_and_check(&lab, "3000");
}

#[test]
fn two_threads_share_the_journal_stores_requests() {
    if !lab::available() {
        return;
    }
    let mut lab = Lab::pair();
    let store = format!("threads = 2\nstore = \"memory:?journal={}\"", lab.path("leases.journal").display());
    lab.start_server_with(CONFIG, &store);
    let pid = lab.dhcpd().pid();
    let before = worker_switches(pid);
    assert_eq!(before.len(), 2, "two worker threads: {before:?}");
    load_and_check(&lab, "1500");
    // A store that waits has every request in a task of its own: both workers ran many (a
    // worker that never got one would have slept through the load).
    let after = worker_switches(pid);
    for (tid, switches) in &after {
        let ran = switches - before.get(tid).copied().unwrap_or(0);
        assert!(ran >= 50, "worker {tid} woke only {ran} times during {EXCHANGES} DORAs: {after:?}");
    }
}

/// Runs perfdhcp for [`EXCHANGES`] DORAs at `rate` as a relay from the client namespace, with
/// the server's replies captured; checks that perfdhcp got at least 99% ACKed and no address
/// twice, that no captured ACK gave an address to two clients, and that every captured ACK is
/// a bound lease of that client in the store.
fn load_and_check(lab: &Lab, rate: &str) {
    lab.client(0).ip(&["addr", "add", "10.199.0.2/16", "dev", "vcli"]);
    let pcap = lab.path("replies.pcap");
    let capture = lab.capture_replies(&pcap);
    let exchanges = EXCHANGES.to_string();
    let perf = lab.client(0).spawn(
        &[
            "perfdhcp",
            "-4",
            "-g",
            "single",
            "-l",
            "10.199.0.2",
            "-R",
            "100000",
            "-r",
            rate,
            "-n",
            &exchanges,
            // Replies still on their way count, not as drops: the test's server is a debug
            // build that logs every reply, and under a burst on a loaded machine (the rest of
            // the test command runs beside it) answers seconds late. perfdhcp waits 2 s after
            // its last request, and counts a request lost only after 10 s (per exchange).
            "-W",
            "2000000",
            "-d",
            "10",
            "-d",
            "10",
            SERVER_ADDR,
        ],
        &lab.path("perfdhcp.log"),
    );
    assert!(perf.wait(Duration::from_secs(60)).is_some(), "perfdhcp did not stop:\n{}", perf.log_text());
    // The last replies reach the capture file.
    std::thread::sleep(Duration::from_millis(500));
    capture.stop();

    let mut owner: HashMap<String, String> = HashMap::new();
    for (addr, mac) in lab::acks(&pcap) {
        if let Some(first) = owner.insert(addr.clone(), mac.clone()) {
            assert_eq!(first, mac, "{addr} was ACKed to two clients");
        }
    }
    // perfdhcp's own count, and its own check that no address came twice. The capture may lose
    // a few replies when the machine is busy (tcpdump's buffer), so it is held to less.
    let log = perf.log_text();
    let counts = |key: &str| -> Vec<usize> {
        log.lines().filter_map(|l| l.strip_prefix(key)).filter_map(|v| v.trim().parse().ok()).collect()
    };
    let received = counts("received packets:");
    assert!(received.len() == 2 && received[1] * 100 >= EXCHANGES * 99, "too few ACKs for {EXCHANGES} DORAs:\n{log}");
    assert!(counts("non unique addresses:").iter().all(|&n| n == 0), "perfdhcp got an address twice:\n{log}");
    assert!(owner.len() * 10 >= EXCHANGES * 9, "the capture holds only {} ACKs:\n{log}", owner.len());
    let stored: HashMap<String, String> =
        lab.leases().into_iter().filter(|l| l.state == "bound").map(|l| (l.address, l.hwaddr)).collect();
    for (addr, mac) in &owner {
        assert_eq!(stored.get(addr), Some(mac), "{addr} was ACKed to {mac} but is not its bound lease in the store");
    }
}

#[test]
fn one_thread_runs_no_workers_and_serves_dhclient() {
    if !lab::available() {
        return;
    }
    let mut lab = Lab::pair();
    lab.start_server_with(CONFIG, "threads = 1");
    assert!(worker_switches(lab.dhcpd().pid()).is_empty(), "no worker threads on one thread");
    let out = dhclient(&lab, 0, "dhclient", &["-1"]);
    assert!(out.status.success(), "dhclient failed:\n{}", text(&out));
    assert!(lab.leases().iter().any(|l| l.state == "bound"), "the lease is stored");
}

/// The name of the process or thread at `dir` (`/proc/PID` or `/proc/PID/task/TID`).
fn comm(dir: &str) -> String {
    std::fs::read_to_string(format!("{dir}/comm")).unwrap_or_default().trim().to_owned()
}

/// The server's worker threads (named `dhcp-worker`), each with its context switches so far.
fn worker_switches(pid: u32) -> HashMap<String, u64> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return HashMap::new() };
    tasks
        .filter_map(Result::ok)
        .map(|task| task.path().to_string_lossy().into_owned())
        .filter(|dir| comm(dir) == "dhcp-worker")
        .map(|dir| {
            let status = std::fs::read_to_string(format!("{dir}/status")).unwrap_or_default();
            let switches = status
                .lines()
                .filter(|l| l.contains("ctxt_switches"))
                .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
            (dir, switches)
        })
        .collect()
}
