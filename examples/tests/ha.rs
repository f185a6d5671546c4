//! High availability on a shared store, end to end in network namespaces: two server hosts and
//! a client host on one bridge, both servers on one private Redis (through its Unix socket).
//! - hot-standby: dhclient is served by the primary; the primary is killed; the client's
//!   renewal is answered by the standby with the same address; perfdhcp started after the kill
//!   completes; no address is held twice.
//! - load-balancing: under perfdhcp each server answers about half of the clients; with one
//!   killed the other answers all; when it comes back the split returns.

mod lab;

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;
use std::thread::sleep;
use std::time::{Duration, Instant};

use lab::{Netns, Place, PrivateRedis, Server, TempDir, path_str, run, text, values};

/// Numbers veth names apart between the tests of this binary, which run at once.
fn next() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

const TOKEN: &str = "ha-test-token-0123";
const ADDRS: [&str; 2] = ["10.199.0.1", "10.199.0.2"];

/// Two server hosts (`vsrv` at 10.199.0.1 and .2) and a client host on one bridge.
struct Pair {
    servers: [Netns; 2],
    client: Netns,
    _bridge: Netns,
    dir: TempDir,
}

impl Pair {
    fn new() -> Pair {
        let bridge = Netns::new("habr");
        bridge.ip(&["link", "add", "br0", "type", "bridge"]);
        bridge.ip(&["link", "set", "br0", "up"]);
        let servers = [Netns::new("haa"), Netns::new("hab")];
        let client = Netns::new("hac");
        let join = |ns: &Netns, dev: &str, port: &str| {
            let tmp = format!("h{}x{}", std::process::id() % 100_000, next());
            run(["ip", "link", "add", &tmp, "type", "veth", "peer", "name", &format!("{tmp}p")]);
            run(["ip", "link", "set", &tmp, "netns", &ns.name, "name", dev]);
            run(["ip", "link", "set", &format!("{tmp}p"), "netns", &bridge.name, "name", port]);
            bridge.ip(&["link", "set", port, "master", "br0"]);
            bridge.ip(&["link", "set", port, "up"]);
            ns.ip(&["link", "set", dev, "up"]);
        };
        for (i, ns) in servers.iter().enumerate() {
            join(ns, "vsrv", &format!("ps{i}"));
            ns.ip(&["addr", "add", &format!("{}/16", ADDRS[i]), "dev", "vsrv"]);
        }
        join(&client, "vcli", "pc");
        Pair { servers, client, _bridge: bridge, dir: TempDir::new("ha") }
    }

    /// Starts server `i` (0: primary, 1: the partner) with the engine config, the `[ha]` table
    /// for `mode` and the store.
    fn start(&self, i: usize, mode: &str, store: &str) -> Server {
        let partner_role = if mode == "load-balancing" { "secondary" } else { "standby" };
        let config = format!(
            "lease-time = 12\nrenew-time = 4\nrebind-time = 6\n\
             [[subnets]]\nid = 1\nsubnet = \"10.199.0.0/16\"\npools = [\"10.199.1.0-10.199.7.255\"]\n\
             [ha]\nthis-server = \"{}\"\nmode = \"{mode}\"\nheartbeat-delay-ms = 300\n\
             max-response-delay-ms = 1200\nmax-ack-delay-ms = 1000\nmax-unacked-clients = 0\n\
             [[ha.peers]]\nname = \"a\"\nurl = \"http://{}:8067\"\nrole = \"primary\"\n\
             [[ha.peers]]\nname = \"b\"\nurl = \"http://{}:8067\"\nrole = \"{partner_role}\"\n",
            ["a", "b"][i],
            ADDRS[0],
            ADDRS[1]
        );
        let lines = format!("store = \"{store}\"\napi-listen = \"{}:8067\"\napi-token = \"{TOKEN}\"", ADDRS[i]);
        Server::start(Place::Netns(&self.servers[i]), &self.dir, ["a", "b"][i], &config, &lines)
    }

    /// `dhcp-cli --json ARGS` against server `i`'s API, from inside its namespace.
    fn cli(&self, i: usize, args: &[&str]) -> serde_json::Value {
        let out = self.servers[i]
            .command(env!("CARGO_BIN_EXE_dhcp-cli"))
            .args(["--url", &format!("http://{}:8067", ADDRS[i]), "--token", TOKEN, "--json"])
            .args(args)
            .output()
            .expect("dhcp-cli");
        assert!(out.status.success(), "dhcp-cli {args:?} on server {i}: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
    }

    fn ha_state(&self, i: usize) -> String {
        self.cli(i, &["show", "ha"])["state"].as_str().unwrap_or_default().to_owned()
    }

    fn acks(&self, i: usize) -> u64 {
        self.cli(i, &["show", "stats"])["pkt4-ack-sent"].as_u64().unwrap_or(0)
    }

    fn wait_for_states(&self, want: [&str; 2], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let states = [self.ha_state(0), self.ha_state(1)];
            if states == want {
                return;
            }
            assert!(Instant::now() < deadline, "HA states {states:?}, waited for {want:?}");
            sleep(Duration::from_millis(100));
        }
    }

    /// perfdhcp from the client host as a relay on `vcli` (which gets 10.199.200.1), full DORA
    /// for `clients` clients from MAC base `base`, one exchange each, retried in rounds; returns
    /// the total ACKs perfdhcp counted.
    fn perfdhcp(&self, clients: u32, base: &str) -> Output {
        if self.client.addrs("vcli").is_empty() {
            self.client.ip(&["addr", "add", "10.199.200.1/16", "dev", "vcli"]);
        }
        let (n, r) = (clients.to_string(), "200".to_owned());
        let mac = format!("mac={base}");
        let args = ["perfdhcp", "-4", "-g", "single", "-l", "vcli", "-R", &n, "-n", &n, "-r", &r, "-W", "1000000"];
        self.client.command(args[0]).args(&args[1..]).args(["-b", &mac]).output().expect("perfdhcp")
    }
}

/// Every lease in the shared store, as `server`'s lease dump lists them, by address: (MAC,
/// state). No address may appear twice, and no MAC may hold two bound leases.
fn shared_leases(server: &Server) -> HashMap<String, (String, String)> {
    let mut leases = HashMap::new();
    let mut bound_macs = HashMap::new();
    for row in server.leases() {
        if row.state == "bound" {
            let previous = bound_macs.insert(row.hwaddr.clone(), row.address.clone());
            assert!(previous.is_none(), "{} holds {} and {previous:?}", row.hwaddr, row.address);
        }
        let entry = (row.hwaddr, row.state);
        assert!(leases.insert(row.address.clone(), entry).is_none(), "{} listed twice", row.address);
    }
    leases
}

/// dhclient's hook: logs the reason, the address and the server that gave it to `log`, and
/// applies the address.
fn dhclient_hook(dir: &Path, log: &Path) -> String {
    let hook = dir.join("hook.sh");
    let body = format!(
        "#!/bin/sh\nLOG='{}'\n{{ echo \"reason=$reason\"; echo \"ip=$new_ip_address\"; \
         echo \"server=$new_dhcp_server_identifier\"; }} >> \"$LOG\"\n\
         case \"$reason\" in BOUND|RENEW|REBIND|REBOOT) \
         ip addr replace \"$new_ip_address/$new_subnet_mask\" dev \"$interface\";; esac\nexit 0\n",
        log.display()
    );
    std::fs::write(&hook, body).expect("hook");
    run(["chmod", "+x", &path_str(&hook)]);
    path_str(&hook)
}

#[test]
fn hot_standby_on_a_shared_store_survives_a_killed_primary() {
    if !lab::available() {
        return;
    }
    let pair = Pair::new();
    let redis = PrivateRedis::start();
    let store = format!("redis+unix://{}?prefix=ha:", redis.socket().display());
    let primary = pair.start(0, "hot-standby", &store);
    let standby = pair.start(1, "hot-standby", &store);
    pair.wait_for_states(["hot-standby", "hot-standby"], Duration::from_secs(10));

    // dhclient is served by the primary and keeps renewing (lease 12 s, T1 4 s, T2 6 s).
    let log = pair.dir.join("dhclient.log");
    let hook = dhclient_hook(&pair.dir, &log);
    let files = |ext: &str| path_str(&pair.dir.join(format!("dhclient.{ext}")));
    let out = pair
        .client
        .command("dhclient")
        .env("LOG", &log)
        .args(["-4", "-v", "-1", "-sf", &hook, "-lf", &files("leases"), "-pf", &files("pid"), "vcli"])
        .output()
        .expect("dhclient");
    assert!(out.status.success(), "dhclient: {}", text(&out));
    let hook_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let first = values(&hook_log(), "ip").last().cloned().expect("a lease");
    assert_eq!(values(&hook_log(), "server").last().map(String::as_str), Some(ADDRS[0]), "{}", hook_log());
    assert_eq!(pair.acks(1), 0, "the standby answers nobody while the primary is up");

    // The primary dies. The standby takes over after max-response-delay (1.2 s); dhclient's
    // renewals to the primary go unanswered until T2, when it broadcasts a REBIND.
    primary.crash();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(30);
    let mut took_over = None;
    while Instant::now() < deadline {
        if took_over.is_none() && pair.ha_state(1) == "partner-down" {
            took_over = Some(killed.elapsed());
        }
        let log = hook_log();
        if values(&log, "server").last().map(String::as_str) == Some(ADDRS[1]) {
            break;
        }
        sleep(Duration::from_millis(100));
    }
    let log = hook_log();
    let detection = took_over.expect("the standby took over");
    assert!(detection < Duration::from_secs(4), "partner-down after {detection:?}");
    assert_eq!(values(&log, "server").last().map(String::as_str), Some(ADDRS[1]), "answered by the standby: {log}");
    assert_eq!(values(&log, "ip").last(), Some(&first), "the same address: {log}");
    // dhclient sends its renewal to the primary's address in a link-level broadcast, so the
    // standby may answer the RENEW itself; else the REBIND at T2.
    let last_reason = values(&log, "reason").last().cloned().unwrap_or_default();
    assert!(last_reason == "RENEW" || last_reason == "REBIND", "{log}");
    println!("standby in partner-down {detection:?} after the kill; client rebound at {:?}", killed.elapsed());

    // New clients after the kill get leases from the standby alone.
    let before = pair.acks(1);
    let out = pair.perfdhcp(100, "02:aa:00:00:00:00");
    assert!(matches!(out.status.code(), Some(0 | 3)), "perfdhcp: {}", text(&out));
    let leases = shared_leases(&standby);
    let perf_bound = leases.values().filter(|(hw, state)| hw.starts_with("02:aa:") && state == "bound").count();
    assert!(perf_bound >= 95, "{perf_bound} of 100 perfdhcp clients bound: {}", text(&out));
    assert!(pair.acks(1) >= before + perf_bound as u64, "the standby answered them");
}

#[test]
fn load_balancing_splits_clients_and_covers_a_dead_partner() {
    if !lab::available() {
        return;
    }
    let pair = Pair::new();
    let redis = PrivateRedis::start();
    let store = format!("redis+unix://{}?prefix=ha:", redis.socket().display());
    let a = pair.start(0, "load-balancing", &store);
    let b = pair.start(1, "load-balancing", &store);
    pair.wait_for_states(["load-balancing", "load-balancing"], Duration::from_secs(10));

    let out = pair.perfdhcp(400, "02:bb:00:00:00:00");
    assert!(matches!(out.status.code(), Some(0 | 3)), "perfdhcp: {}", text(&out));
    let (a_acks, b_acks) = (pair.acks(0), pair.acks(1));
    let share = a_acks as f64 / (a_acks + b_acks).max(1) as f64;
    assert!(a_acks + b_acks >= 380, "ACKs {a_acks} + {b_acks} for 400 clients");
    assert!((0.4..=0.6).contains(&share), "server a answered {a_acks}, b {b_acks}");
    println!("load-balancing: a answered {a_acks}, b {b_acks} of 400 clients");
    shared_leases(&a);

    // b dies: a answers everyone once b has been silent for max-response-delay.
    b.crash();
    pair.wait_for_states_one(0, "partner-down", Duration::from_secs(5));
    let before = pair.acks(0);
    let out = pair.perfdhcp(200, "02:cc:00:00:00:00");
    assert!(matches!(out.status.code(), Some(0 | 3)), "perfdhcp: {}", text(&out));
    let answered = pair.acks(0) - before;
    assert!(answered >= 190, "a alone answered {answered} of 200");
    println!("b killed: a answered {answered} of 200 clients");

    // b comes back: both return to load-balancing and split again.
    drop(b);
    let _b = pair.start(1, "load-balancing", &store);
    pair.wait_for_states(["load-balancing", "load-balancing"], Duration::from_secs(10));
    let (a0, b0) = (pair.acks(0), pair.acks(1));
    let out = pair.perfdhcp(400, "02:dd:00:00:00:00");
    assert!(matches!(out.status.code(), Some(0 | 3)), "perfdhcp: {}", text(&out));
    let (a1, b1) = (pair.acks(0) - a0, pair.acks(1) - b0);
    let share = a1 as f64 / (a1 + b1).max(1) as f64;
    assert!((0.4..=0.6).contains(&share), "after the return a answered {a1}, b {b1}");
    println!("b back: a answered {a1}, b {b1} of 400 clients");
    shared_leases(&a);
}

impl Pair {
    fn wait_for_states_one(&self, i: usize, want: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.ha_state(i) != want {
            assert!(Instant::now() < deadline, "server {i} is {}, waited for {want}", self.ha_state(i));
            sleep(Duration::from_millis(100));
        }
    }
}
