//! High availability on a shared store, end to end in network namespaces: two server hosts and
//! a client host on one bridge, both servers on one private Redis (through its Unix socket).
//! - hot-standby: dhclient is served by the primary; the primary is killed; the client's
//!   renewal is answered by the standby with the same address; perfdhcp started after the kill
//!   completes; no address is held twice, in the store and on the wire (a capture on the client
//!   host: no address ACKed to two clients, nothing from the standby before the kill). Also on
//!   PostgreSQL, and on each server's own journal kept in step by lease updates.
//! - the unacked-clients guard: with `max-unacked-clients = 1` the standby of a killed primary
//!   stays in communications-interrupted while one real dhclient retries, and takes over when
//!   a second one does.
//! - load-balancing: under perfdhcp each server answers about half of the clients; with one
//!   killed the other answers all; when it comes back the split returns.
//!
//! And on local (memory) stores kept in step by lease updates over a link of their own between
//! the servers: every lease reaches the standby; the standby takes over from its half of the
//! pool; a restarted primary fetches the leases before it answers; a cut of the servers' link
//! under perfdhcp from both sides gives no address twice, and the pair converges after.

mod lab;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Output;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use lab::{
    Capture, Netns, Place, PrivatePostgres, PrivateRedis, Proc, Server, TempDir, free_port, path_str, run, text, values,
};

/// Numbers veth names apart between the tests of this binary, which run at once.
fn next() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

const TOKEN: &str = "ha-test-token-0123";
const ADDRS: [&str; 2] = ["10.199.0.1", "10.199.0.2"];
/// The servers' own link, for their heartbeats and lease updates, when the pair has one.
const PEER_ADDRS: [&str; 2] = ["10.200.0.1", "10.200.0.2"];

/// Two server hosts (`vsrv` at 10.199.0.1 and .2) and a client host on one bridge.
struct Pair {
    servers: [Netns; 2],
    client: Netns,
    bridge: Netns,
    dir: TempDir,
    /// The servers talk over `vpeer` (10.200.0.0/24) instead of the client segment.
    peer_link: bool,
    /// The API and the peers speak HTTPS: (CA each server checks its partner against, the
    /// servers' certificate, its key).
    tls: Option<(String, String, String)>,
    /// The `[ha]` lines for failure detection (and anything else a test sets there), in both
    /// servers' configs: [`HA_TIMING`] unless a test needs other settings.
    ha_timing: String,
}

/// Fast failure detection with an immediate takeover: the settings most tests run with.
const HA_TIMING: &str =
    "heartbeat-delay-ms = 300\nmax-response-delay-ms = 1200\nmax-ack-delay-ms = 1000\nmax-unacked-clients = 0\n";

/// Joins `ns` to the bridge in `bridge` through a veth pair: `dev` in `ns`, `port` on `br0`.
fn join_bridge(bridge: &Netns, ns: &Netns, dev: &str, port: &str) {
    let tmp = format!("h{}x{}", std::process::id() % 100_000, next());
    run(["ip", "link", "add", &tmp, "type", "veth", "peer", "name", &format!("{tmp}p")]);
    run(["ip", "link", "set", &tmp, "netns", &ns.name, "name", dev]);
    run(["ip", "link", "set", &format!("{tmp}p"), "netns", &bridge.name, "name", port]);
    bridge.ip(&["link", "set", port, "master", "br0"]);
    bridge.ip(&["link", "set", port, "up"]);
    ns.ip(&["link", "set", dev, "up"]);
}

impl Pair {
    fn new() -> Pair {
        let bridge = Netns::new("habr");
        bridge.ip(&["link", "add", "br0", "type", "bridge"]);
        bridge.ip(&["link", "set", "br0", "up"]);
        let servers = [Netns::new("haa"), Netns::new("hab")];
        let client = Netns::new("hac");
        for (i, ns) in servers.iter().enumerate() {
            join_bridge(&bridge, ns, "vsrv", &format!("ps{i}"));
            ns.ip(&["addr", "add", &format!("{}/16", ADDRS[i]), "dev", "vsrv"]);
        }
        join_bridge(&bridge, &client, "vcli", "pc");
        Pair {
            servers,
            client,
            bridge,
            dir: TempDir::new("ha"),
            peer_link: false,
            tls: None,
            ha_timing: HA_TIMING.to_owned(),
        }
    }

    /// Another client host on the segment (its interface `vcli`, its own MAC), for a second
    /// real client: dhclient runs one per interface. Dropped before the pair, it takes its
    /// veth (and the bridge port) with it.
    fn add_client(&self, tag: &str, port: &str) -> Netns {
        let ns = Netns::new(tag);
        join_bridge(&self.bridge, &ns, "vcli", port);
        ns
    }

    /// A pair whose servers also have a link of their own, which the test can cut.
    fn with_peer_link() -> Pair {
        let mut pair = Pair::new();
        let tmp = format!("h{}x{}", std::process::id() % 100_000, next());
        run(["ip", "link", "add", &tmp, "type", "veth", "peer", "name", &format!("{tmp}p")]);
        run(["ip", "link", "set", &tmp, "netns", &pair.servers[0].name, "name", "vpeer"]);
        run(["ip", "link", "set", &format!("{tmp}p"), "netns", &pair.servers[1].name, "name", "vpeer"]);
        for (i, ns) in pair.servers.iter().enumerate() {
            ns.ip(&["addr", "add", &format!("{}/24", PEER_ADDRS[i]), "dev", "vpeer"]);
            ns.ip(&["link", "set", "vpeer", "up"]);
        }
        pair.peer_link = true;
        pair
    }

    /// The scheme of the servers' APIs.
    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Where server `i`'s API listens and its partner reaches it.
    fn api_addr(&self, i: usize) -> &'static str {
        if self.peer_link { PEER_ADDRS[i] } else { ADDRS[i] }
    }

    /// Cuts or restores the servers' own link.
    fn peer_link_up(&self, up: bool) {
        self.servers[0].ip(&["link", "set", "vpeer", if up { "up" } else { "down" }]);
    }

    /// Starts server `i` (0: primary, 1: the partner) with the engine config, the `[ha]` table
    /// for `mode` and the store.
    fn start(&self, i: usize, mode: &str, store: &str) -> Server {
        let partner_role = if mode == "load-balancing" { "secondary" } else { "standby" };
        let config = format!(
            "lease-time = 12\nrenew-time = 4\nrebind-time = 6\n\
             [[subnets]]\nid = 1\nsubnet = \"10.199.0.0/16\"\npools = [\"10.199.1.0-10.199.7.255\"]\n\
             [ha]\nthis-server = \"{}\"\nmode = \"{mode}\"\n{}\
             {tls_ca}\
             [[ha.peers]]\nname = \"a\"\nurl = \"{scheme}://{}:8067\"\nrole = \"primary\"\n\
             [[ha.peers]]\nname = \"b\"\nurl = \"{scheme}://{}:8067\"\nrole = \"{partner_role}\"\n",
            ["a", "b"][i],
            self.ha_timing,
            self.api_addr(0),
            self.api_addr(1),
            scheme = self.scheme(),
            tls_ca = self.tls.as_ref().map(|(ca, _, _)| format!("tls-ca = \"{ca}\"\n")).unwrap_or_default(),
        );
        let mut lines =
            format!("store = \"{store}\"\napi-listen = \"{}:8067\"\napi-token = \"{TOKEN}\"", self.api_addr(i));
        if let Some((_, cert, key)) = &self.tls {
            lines.push_str(&format!("\napi-tls-cert = \"{cert}\"\napi-tls-key = \"{key}\""));
        }
        Server::start(Place::Netns(&self.servers[i]), &self.dir, ["a", "b"][i], &config, &lines)
    }

    /// `dhcp-cli --json ARGS` against server `i`'s API, from inside its namespace.
    fn cli(&self, i: usize, args: &[&str]) -> serde_json::Value {
        let mut cmd = self.servers[i].command(env!("CARGO_BIN_EXE_dhcp-cli"));
        cmd.args(["--url", &format!("{}://{}:8067", self.scheme(), self.api_addr(i)), "--token", TOKEN, "--json"]);
        if let Some((ca, _, _)) = &self.tls {
            cmd.args(["--ca", ca]);
        }
        let out = cmd.args(args).output().expect("dhcp-cli");
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
/// applies the address. The script is `log` with the extension `.sh` (one per client).
fn dhclient_hook(log: &Path) -> String {
    let hook = log.with_extension("sh");
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
fn hot_standby_on_a_shared_redis_survives_a_killed_primary() {
    if !lab::available() {
        return;
    }
    let redis = PrivateRedis::start();
    let url = format!("redis+unix://{}?prefix=ha:", redis.socket().display());
    hot_standby_survives_a_killed_primary(|_, _| url.clone(), false);
}

#[test]
fn hot_standby_on_a_shared_postgres_survives_a_killed_primary() {
    if !lab::available() {
        return;
    }
    let pg = PrivatePostgres::start(free_port());
    hot_standby_survives_a_killed_primary(|_, _| pg.url(), false);
}

#[test]
fn hot_standby_on_local_journals_survives_a_killed_primary() {
    if !lab::available() {
        return;
    }
    // Each server its own journal, kept in step by (synchronous) lease updates.
    hot_standby_survives_a_killed_primary(
        |dir, i| format!("memory:?journal={}", path_str(&dir.join(format!("{}.journal", ["a", "b"][i])))),
        true,
    );
}

/// dhclient served by the primary, the primary killed, the client's renewal answered by the
/// standby with the same address, perfdhcp after the kill served by the standby alone.
/// `store(dir, i)` is server `i`'s store URL (the same for both on a shared store); `local`:
/// the stores are the servers' own, kept in step by lease updates. What went on the wire to
/// the client host is checked too: no address ACKed to two clients, dhclient's address ACKed
/// by the primary and then by the standby, nothing from the standby before the kill.
fn hot_standby_survives_a_killed_primary(store: impl Fn(&Path, usize) -> String, local: bool) {
    let mut pair = Pair::new();
    if local {
        // The default on local stores; said here because the test is about it.
        pair.ha_timing.push_str("send-lease-updates = true\nsync-lease-updates = true\n");
    }
    let primary = pair.start(0, "hot-standby", &store(&pair.dir, 0));
    let standby = pair.start(1, "hot-standby", &store(&pair.dir, 1));
    pair.wait_for_states(["hot-standby", "hot-standby"], Duration::from_secs(10));

    // Everything DHCP the client host sees, from before dhclient's first DISCOVER.
    let pcap = pair.dir.join("client.pcap");
    let capture = Capture::start(&pair.client, "vcli", "udp port 67 or udp port 68", None, &pcap, &pair.dir);

    // dhclient is served by the primary and keeps renewing (lease 12 s, T1 4 s, T2 6 s).
    let log = pair.dir.join("dhclient.log");
    let hook = dhclient_hook(&log);
    let files = |ext: &str| path_str(&pair.dir.join(format!("dhclient.{ext}")));
    // Retransmissions at most 2 s apart: with dhclient's default backoff its REBIND may come
    // only near the lease's end (12 s), and a lease that runs out first is no renewal.
    let conf = pair.dir.join("dhclient-renewing.conf");
    std::fs::write(&conf, "initial-interval 1;\nbackoff-cutoff 2;\n").expect("dhclient.conf");
    let out = pair
        .client
        .command("dhclient")
        .env("LOG", &log)
        .args(["-4", "-v", "-1", "-cf", &path_str(&conf), "-sf", &hook, "-lf", &files("leases"), "-pf", &files("pid")])
        .arg("vcli")
        .output()
        .expect("dhclient");
    assert!(out.status.success(), "dhclient: {}", text(&out));
    let hook_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let first = values(&hook_log(), "ip").last().cloned().expect("a lease");
    assert_eq!(values(&hook_log(), "server").last().map(String::as_str), Some(ADDRS[0]), "{}", hook_log());
    assert_eq!(pair.acks(1), 0, "the standby answers nobody while the primary is up");

    // The primary dies. The standby takes over after max-response-delay (1.2 s); dhclient's
    // renewals to the primary go unanswered until T2, when it broadcasts a REBIND.
    let killed_wall = SystemTime::now();
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
    // dhclient unicasts its RENEW at T1 to the primary (to its MAC: the primary's host still
    // answers ARP), which the standby never sees; the standby answers the broadcast REBIND
    // that follows (seen on the wire 7.7 to 12.4 s after the bind). RENEW is accepted too,
    // for a client that broadcasts its renewals.
    let last_reason = values(&log, "reason").last().cloned().unwrap_or_default();
    assert!(last_reason == "RENEW" || last_reason == "REBIND", "{log}");
    println!("standby in partner-down {detection:?} after the kill; client rebound at {:?}", killed.elapsed());

    // New clients after the kill get leases from the standby alone.
    let before = pair.acks(1);
    let out = pair.perfdhcp(100, "02:aa:00:00:00:00");
    assert!(matches!(out.status.code(), Some(0 | 3)), "perfdhcp: {}", text(&out));
    let leases = shared_leases(&standby);
    let perf_bound: Vec<&String> =
        leases.iter().filter(|(_, (hw, state))| hw.starts_with("02:aa:") && state == "bound").map(|(a, _)| a).collect();
    assert!(perf_bound.len() >= 95, "{} of 100 perfdhcp clients bound: {}", perf_bound.len(), text(&out));
    assert!(pair.acks(1) >= before + perf_bound.len() as u64, "the standby answered them");
    if local {
        // The primary may still be serving clients we cannot see (a cut, not a crash, looks
        // the same from here): the standby gives new clients only its own half.
        assert!(perf_bound.iter().all(|a| in_upper_half(a)), "the standby's half only: {perf_bound:?}");
        for i in 0..2 {
            let url = store(&pair.dir, i);
            let journal = url.strip_prefix("memory:?journal=").expect("a journal store");
            let size = std::fs::metadata(journal).map(|m| m.len()).unwrap_or(0);
            assert!(size > 0, "server {i}'s journal {journal} holds its leases ({size} bytes)");
        }
    }

    capture.stop();
    let replies = dhcp_replies(&Capture::timed_udp_payloads(&pcap));
    let mac = mac_of(&pair.client, "vcli");
    let primary_acks = check_killed_primary_wire(&replies, killed_wall, &mac, &first);
    // Every lease the primary granted before it died (dhclient's, as the wire shows) is in the
    // standby's store, to the same client: on local stores it got there by a lease update
    // before the client had its ACK, so the standby cannot give the address to anyone else.
    for (addr, hw) in &primary_acks {
        let held = leases.get(addr).map(|(holder, _)| holder.as_str());
        assert_eq!(held, Some(hw.as_str()), "{addr}, ACKed by the primary to {hw}, in the standby's store");
    }
}

/// The MAC of `dev` in `ns`, as the lease dump writes it (`02:..`, lower case).
fn mac_of(ns: &Netns, dev: &str) -> String {
    let line = ns.ip(&["-o", "link", "show", dev]);
    line.split_whitespace().skip_while(|w| *w != "link/ether").nth(1).expect("a MAC").to_lowercase()
}

/// A DHCP reply (op 2) on the wire.
#[derive(Debug)]
struct Reply {
    /// When tcpdump saw it.
    at: SystemTime,
    /// Option 53: 2 OFFER, 5 ACK, 6 NAK.
    kind: u8,
    yiaddr: Ipv4Addr,
    /// The client's MAC, as the lease dump writes it.
    chaddr: String,
    /// Option 54, the server identifier: which server sent it.
    server: Option<Ipv4Addr>,
}

const DHCPACK: u8 = 5;

/// The DHCP replies among captured UDP payloads, parsed just enough for the wire checks: the
/// fixed header's yiaddr (16..20) and chaddr (28..34), then options 53 and 54 after the magic
/// cookie (236..240). Requests (op 1) and anything malformed are left out.
fn dhcp_replies(payloads: &[(SystemTime, Vec<u8>)]) -> Vec<Reply> {
    let mut replies = Vec::new();
    for (at, p) in payloads {
        if p.len() < 240 || p[0] != 2 || p[236..240] != [99, 130, 83, 99] {
            continue;
        }
        let (mut kind, mut server) = (None, None);
        let mut i = 240;
        while i < p.len() {
            match p[i] {
                0 => i += 1,
                255 => break,
                code => {
                    let Some(&len) = p.get(i + 1) else { break };
                    let Some(value) = p.get(i + 2..i + 2 + usize::from(len)) else { break };
                    match (code, value) {
                        (53, [t]) => kind = Some(*t),
                        (54, [a, b, c, d]) => server = Some(Ipv4Addr::new(*a, *b, *c, *d)),
                        _ => {}
                    }
                    i += 2 + usize::from(len);
                }
            }
        }
        let Some(kind) = kind else { continue };
        let chaddr = p[28..34].iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        let yiaddr = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
        replies.push(Reply { at: *at, kind, yiaddr, chaddr, server });
    }
    replies
}

/// The wire checks of the killed-primary test on `replies` (in capture order): no address
/// ACKed to two clients; nothing from the standby before `killed`; dhclient's address (`addr`,
/// MAC `mac`) ACKed first by the primary, later by the standby. Prints how long after the kill
/// the standby's first reply went out. Returns the primary's ACKs: address -> MAC.
fn check_killed_primary_wire(replies: &[Reply], killed: SystemTime, mac: &str, addr: &str) -> HashMap<String, String> {
    let [primary, standby]: [Ipv4Addr; 2] = ADDRS.map(|a| a.parse().expect("an address"));
    let acks: Vec<&Reply> = replies.iter().filter(|r| r.kind == DHCPACK).collect();
    assert!(!acks.is_empty(), "no ACK on the wire: {replies:?}");

    let mut holder: HashMap<Ipv4Addr, &str> = HashMap::new();
    for ack in &acks {
        let previous = holder.insert(ack.yiaddr, &ack.chaddr);
        assert!(
            previous.is_none_or(|p| p == ack.chaddr),
            "{} ACKed to {previous:?} and to {} (by {:?})",
            ack.yiaddr,
            ack.chaddr,
            ack.server
        );
    }

    let early: Vec<&Reply> = replies.iter().filter(|r| r.server == Some(standby) && r.at < killed).collect();
    assert!(early.is_empty(), "the standby sent {} replies before the kill: {early:?}", early.len());

    let addr: Ipv4Addr = addr.parse().expect("dhclient's address");
    let mine: Vec<&&Reply> = acks.iter().filter(|r| r.yiaddr == addr && r.chaddr == mac).collect();
    let servers: Vec<Option<Ipv4Addr>> = mine.iter().map(|r| r.server).collect();
    assert_eq!(servers.first(), Some(&Some(primary)), "dhclient's first ACK from the primary: {servers:?}");
    let by_standby = mine.iter().position(|r| r.server == Some(standby));
    let by_standby = by_standby.unwrap_or_else(|| panic!("dhclient's address ACKed by the standby: {servers:?}"));
    assert!(
        mine[..by_standby].iter().all(|r| r.server == Some(primary) && r.at < killed),
        "the primary's ACKs before the kill, then the standby's: {mine:?}"
    );

    let first_reply = replies.iter().find(|r| r.server == Some(standby)).expect("a reply from the standby");
    let gap = first_reply.at.duration_since(killed).unwrap_or_default();
    println!(
        "wire: {} ACKs ({} to dhclient: {} by the primary, then the standby); kill to the standby's first reply \
         (type {}, to {}) {gap:?}",
        acks.len(),
        mine.len(),
        by_standby,
        first_reply.kind,
        first_reply.chaddr
    );

    acks.iter().filter(|r| r.server == Some(primary)).map(|r| (r.yiaddr.to_string(), r.chaddr.clone())).collect()
}

/// dhclient on `vcli` in `ns`, kept in the foreground (`-d`) so that the test owns its process
/// (killed on drop, and with its namespace), retrying fast (1 s, then at most about 2 s apart)
/// so that its `secs` field grows within the test's time. Its hook log is `dir/NAME.log`, its
/// own output `dir/NAME.out`; `timeout` ends it after 40 s whatever happens.
fn spawn_dhclient(ns: &Netns, dir: &Path, name: &str) -> Proc {
    let hook = dhclient_hook(&dir.join(format!("{name}.log")));
    let conf = dir.join(format!("{name}.conf"));
    std::fs::write(&conf, "initial-interval 1;\nbackoff-cutoff 2;\nrequest subnet-mask, broadcast-address;\n")
        .expect("dhclient.conf");
    let file = |ext: &str| path_str(&dir.join(format!("{name}.{ext}")));
    let args = [
        "timeout",
        "40",
        "dhclient",
        "-d",
        "-4",
        "-v",
        "-sf",
        &hook,
        "-cf",
        &file("conf"),
        "-lf",
        &file("leases"),
        "-pf",
        &file("pid"),
        "vcli",
    ];
    ns.spawn(&args, &dir.join(format!("{name}.out")))
}

/// The standby's guard against a cut between the servers while the primary still serves its
/// clients: with the primary silent it goes to communications-interrupted and takes over only
/// once more than `max-unacked-clients` (here 1) distinct clients retry with `secs` at least
/// `max-ack-delay` (here 2 s). Real dhclients grow `secs` as they retry (perfdhcp and
/// dhcp-probe keep it at 0, so they could not tip it).
#[test]
fn hot_standby_takes_over_only_once_more_than_max_unacked_clients_go_unanswered() {
    if !lab::available() {
        return;
    }
    let redis = PrivateRedis::start();
    let store = format!("redis+unix://{}?prefix=ha:", redis.socket().display());
    let mut pair = Pair::new();
    pair.ha_timing = "heartbeat-delay-ms = 300\nmax-response-delay-ms = 1000\nmax-ack-delay-ms = 2000\n\
                      max-unacked-clients = 1\n"
        .to_owned();
    let primary = pair.start(0, "hot-standby", &store);
    let standby = pair.start(1, "hot-standby", &store);
    pair.wait_for_states(["hot-standby", "hot-standby"], Duration::from_secs(10));
    let second_host = pair.add_client("had", "pc2");

    // The primary dies; with no client asking, silence alone does not make it partner-down.
    primary.crash();
    sleep(Duration::from_secs(3));
    let status = pair.cli(1, &["show", "ha"]);
    assert_eq!(status["state"], "communications-interrupted", "3 s after the kill, no client yet: {status}");
    assert_eq!(status["unacked-clients"], 0, "{status}");
    assert_eq!(pair.acks(1), 0, "the standby answers nobody before it takes over");

    // One client goes unanswered: counted once its secs reaches 2, but one is not more than 1.
    let hook_log = |name: &str| std::fs::read_to_string(pair.dir.join(format!("{name}.log"))).unwrap_or_default();
    let one = spawn_dhclient(&pair.client, &pair.dir, "one");
    let started = Instant::now();
    loop {
        let status = pair.cli(1, &["show", "ha"]);
        assert_eq!(status["state"], "communications-interrupted", "one unacked client is not more than 1: {status}");
        if status["unacked-clients"] == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "dhclient one was not counted as unacked: {status}\n{}",
            one.log_text()
        );
        sleep(Duration::from_millis(100));
    }
    let counted = started.elapsed();
    // dhclient keeps retrying (every 1 to 2 s) with a growing secs: still one client.
    while started.elapsed() < counted + Duration::from_secs(3) {
        let status = pair.cli(1, &["show", "ha"]);
        assert_eq!(status["state"], "communications-interrupted", "{status}\n{}", one.log_text());
        assert_eq!(status["unacked-clients"], 1, "dhclient one counted once: {status}");
        sleep(Duration::from_millis(200));
    }
    assert_eq!(pair.acks(1), 0, "the standby answered nobody with one unacked client");
    // (PREINIT logs an empty address.)
    let leased = values(&hook_log("one"), "ip").into_iter().any(|ip| !ip.is_empty());
    assert!(!leased, "dhclient one got no lease: {}", hook_log("one"));
    assert!(one.running(), "dhclient one still retrying:\n{}", one.log_text());

    // A second client, on its own interface (its own MAC), goes unanswered too: 2 > 1, the
    // standby takes over, answering the packet that tipped the count, and then both.
    let two = spawn_dhclient(&second_host, &pair.dir, "two");
    let second_started = Instant::now();
    pair.wait_for_states_one(1, "partner-down", Duration::from_secs(10));
    let took_over = second_started.elapsed();
    assert!(
        standby.log_text().contains("HA: partner's clients go unanswered; taking them over"),
        "partner-down by the unacked count:\n{}",
        standby.log_text()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let bound = |name: &str| {
        let log = hook_log(name);
        let served_by = values(&log, "server").last().cloned();
        let ip = values(&log, "ip").last().cloned().filter(|ip| !ip.is_empty());
        ip.filter(|_| served_by.as_deref() == Some(ADDRS[1]))
    };
    while bound("one").is_none() || bound("two").is_none() {
        assert!(
            Instant::now() < deadline,
            "both dhclients bound by the standby:\none: {}\ntwo: {}\n{}\n{}",
            hook_log("one"),
            hook_log("two"),
            one.log_text(),
            two.log_text()
        );
        sleep(Duration::from_millis(100));
    }
    let (ip_one, ip_two) = (bound("one"), bound("two"));
    assert_ne!(ip_one, ip_two, "two clients, two addresses");
    println!(
        "unacked guard: dhclient one counted {counted:?} after it started; dhclient two started: partner-down \
         {took_over:?} later, both bound by the standby {:?} later ({} and {})",
        second_started.elapsed(),
        ip_one.unwrap_or_default(),
        ip_two.unwrap_or_default()
    );
    one.stop("TERM", Duration::from_secs(5));
    two.stop("TERM", Duration::from_secs(5));
}

#[test]
fn load_balancing_on_a_shared_redis_splits_clients_and_covers_a_dead_partner() {
    if !lab::available() {
        return;
    }
    let redis = PrivateRedis::start();
    load_balancing_splits_clients_and_covers_a_dead_partner(&format!(
        "redis+unix://{}?prefix=ha:",
        redis.socket().display()
    ));
}

#[test]
fn load_balancing_on_local_stores_splits_clients_and_covers_a_dead_partner() {
    if !lab::available() {
        return;
    }
    load_balancing_splits_clients_and_covers_a_dead_partner("memory:");
}

/// Under perfdhcp each server answers about half; one killed, the other answers all; back,
/// the split returns. On local stores the returning server syncs first and the stores agree.
fn load_balancing_splits_clients_and_covers_a_dead_partner(store: &str) {
    let pair = Pair::new();
    let a = pair.start(0, "load-balancing", store);
    let b = pair.start(1, "load-balancing", store);
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
    let b = pair.start(1, "load-balancing", store);
    pair.wait_for_states(["load-balancing", "load-balancing"], Duration::from_secs(10));
    let (a0, b0) = (pair.acks(0), pair.acks(1));
    let out = pair.perfdhcp(400, "02:dd:00:00:00:00");
    assert!(matches!(out.status.code(), Some(0 | 3)), "perfdhcp: {}", text(&out));
    let (a1, b1) = (pair.acks(0) - a0, pair.acks(1) - b0);
    let share = a1 as f64 / (a1 + b1).max(1) as f64;
    assert!((0.4..=0.6).contains(&share), "after the return a answered {a1}, b {b1}");
    println!("b back: a answered {a1}, b {b1} of 400 clients");
    shared_leases(&a);
    assert_eq!(bound(&a), bound(&b), "both hold every lease");
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

/// The bound leases in `server`'s own store: address -> MAC.
fn bound(server: &Server) -> HashMap<String, String> {
    shared_leases(server).into_iter().filter(|(_, (_, state))| state == "bound").map(|(a, (hw, _))| (a, hw)).collect()
}

/// Whether `addr` is in the upper half of the test pool 10.199.1.0-10.199.7.255 (1792
/// addresses: the upper half starts at 10.199.4.128).
fn in_upper_half(addr: &str) -> bool {
    let ip: std::net::Ipv4Addr = addr.parse().expect("an address");
    u32::from(ip) >= u32::from(std::net::Ipv4Addr::new(10, 199, 4, 128))
}

#[test]
fn hot_standby_on_local_stores_keeps_leases_in_step() {
    if !lab::available() {
        return;
    }
    let pair = Pair::with_peer_link();
    // The standby keeps a journal (durable), the primary only memory: both kinds of local store.
    let journal = format!("memory:?journal={}", path_str(&pair.dir.join("standby.journal")));
    let primary = pair.start(0, "hot-standby", "memory:");
    let standby = pair.start(1, "hot-standby", &journal);
    pair.wait_for_states(["hot-standby", "hot-standby"], Duration::from_secs(10));

    // Every lease the primary grants is in the standby's store before the client has it.
    let out = pair.perfdhcp(100, "02:a1:00:00:00:00");
    assert!(matches!(out.status.code(), Some(0 | 3)), "perfdhcp: {}", text(&out));
    let on_primary = bound(&primary);
    assert!(on_primary.len() >= 95, "{} bound: {}", on_primary.len(), text(&out));
    assert_eq!(bound(&standby), on_primary, "the standby holds the primary's leases");
    assert_eq!(pair.acks(1), 0);
    // The standby's gauge counts the leases that came as updates (its engine granted none).
    let assigned = |i: usize| pair.cli(i, &["show", "stats"])["subnet[1].assigned-addresses"].as_i64();
    assert_eq!(assigned(1), Some(on_primary.len() as i64), "the standby's assigned-addresses");
    assert_eq!(assigned(0), assigned(1));

    // The primary dies: the standby answers new clients from its half of the pool.
    primary.crash();
    pair.wait_for_states_one(1, "partner-down", Duration::from_secs(5));
    let out = pair.perfdhcp(50, "02:a2:00:00:00:00");
    assert!(matches!(out.status.code(), Some(0 | 3)), "perfdhcp: {}", text(&out));
    let after_kill: HashMap<String, String> =
        bound(&standby).into_iter().filter(|(_, hw)| hw.starts_with("02:a2:")).collect();
    assert!(after_kill.len() >= 45, "{} of 50 leased by the standby", after_kill.len());
    assert!(after_kill.keys().all(|a| in_upper_half(a)), "the standby's half only: {after_kill:?}");

    // The primary comes back with an empty store: it fetches the standby's leases first.
    drop(primary);
    let primary = pair.start(0, "hot-standby", "memory:");
    pair.wait_for_states(["hot-standby", "hot-standby"], Duration::from_secs(15));
    assert_eq!(bound(&primary), bound(&standby), "the restarted primary synced");
    assert!(primary.log_text().contains("HA: synced"), "{}", primary.log_text());
    assert_eq!(pair.cli(0, &["show", "ha"])["pools-differ"], false);

    // Maintenance: the primary stops answering, the standby answers everyone from the whole
    // pool and keeps the primary's store in step; then the primary takes its part back.
    pair.cli(0, &["ha", "maintenance", "start"]);
    pair.wait_for_states(["in-maintenance", "partner-in-maintenance"], Duration::from_secs(5));
    let primary_acks = pair.acks(0);
    let out = pair.perfdhcp(40, "02:a3:00:00:00:00");
    assert!(matches!(out.status.code(), Some(0 | 3)), "perfdhcp: {}", text(&out));
    assert_eq!(pair.acks(0), primary_acks, "the primary in maintenance answers nobody");
    let in_maintenance: Vec<String> =
        bound(&standby).into_iter().filter(|(_, hw)| hw.starts_with("02:a3:")).map(|(a, _)| a).collect();
    assert!(in_maintenance.len() >= 36, "{} of 40 leased", in_maintenance.len());
    assert!(in_maintenance.iter().any(|a| !in_upper_half(a)), "the whole pool: {in_maintenance:?}");
    assert_eq!(bound(&primary), bound(&standby), "updates reach the primary in maintenance");
    pair.cli(0, &["ha", "maintenance", "stop"]);
    pair.wait_for_states(["hot-standby", "hot-standby"], Duration::from_secs(5));
}

#[test]
fn a_cut_between_servers_on_local_stores_never_leases_an_address_twice() {
    if !lab::available() {
        return;
    }
    a_cut_between_servers_never_leases_an_address_twice("memory:");
}

#[test]
fn a_cut_between_servers_on_a_shared_redis_never_leases_an_address_twice() {
    if !lab::available() {
        return;
    }
    let redis = PrivateRedis::start();
    a_cut_between_servers_never_leases_an_address_twice(&format!(
        "redis+unix://{}?prefix=ha:",
        redis.socket().display()
    ));
}

/// The servers' own link is cut while perfdhcp runs from the client segment, which both still
/// reach: both take over, no address goes to two clients; the link returns and they agree.
fn a_cut_between_servers_never_leases_an_address_twice(store: &str) {
    let pair = Pair::with_peer_link();
    let a = pair.start(0, "hot-standby", store);
    let b = pair.start(1, "hot-standby", store);
    pair.wait_for_states(["hot-standby", "hot-standby"], Duration::from_secs(10));
    let out = pair.perfdhcp(60, "02:b1:00:00:00:00");
    assert!(matches!(out.status.code(), Some(0 | 3)), "perfdhcp: {}", text(&out));

    // The servers lose each other but not the clients: both take over, each from its half.
    pair.peer_link_up(false);
    pair.wait_for_states(["partner-down", "partner-down"], Duration::from_secs(6));
    for round in 0..3 {
        let out = pair.perfdhcp(80, &format!("02:b{}:00:00:00:00", round + 2));
        assert!(matches!(out.status.code(), Some(0 | 3)), "perfdhcp: {}", text(&out));
    }
    let (on_a, on_b) = (bound(&a), bound(&b));
    for (addr, hw) in &on_a {
        if let Some(other) = on_b.get(addr) {
            assert_eq!(other, hw, "{addr} bound to {hw} on a and {other} on b");
        }
    }
    let mut macs: HashMap<&String, &String> = HashMap::new();
    for (addr, hw) in on_a.iter().chain(&on_b) {
        if let Some(previous) = macs.insert(hw, addr) {
            assert_eq!(previous, addr, "{hw} holds {previous} and {addr}");
        }
    }
    let new_on_b = on_b.iter().filter(|(_, hw)| !hw.starts_with("02:b1:")).count();
    assert!(new_on_b > 0, "b answered during the cut");

    // The link comes back: the pair converges on the same leases.
    pair.peer_link_up(true);
    pair.wait_for_states(["hot-standby", "hot-standby"], Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (on_a, on_b) = (bound(&a), bound(&b));
        if on_a == on_b {
            println!("converged on {} leases ({} granted by b during the cut)", on_a.len(), new_on_b);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not converged: a {} leases, b {}\n{}\n---- b\n{}",
            on_a.len(),
            on_b.len(),
            a.log_text(),
            b.log_text()
        );
        sleep(Duration::from_millis(200));
    }
}

/// A CA and one server certificate it signed for both servers' peer addresses, made with
/// openssl in `dir`; (CA, certificate, key) paths.
fn peer_certs(dir: &Path, name: &str) -> (String, String, String) {
    let at = |file: &str| path_str(&dir.join(format!("{name}-{file}")));
    let (ca_key, ca, key, csr, cert, ext) =
        (at("ca.key"), at("ca.pem"), at("server.key"), at("server.csr"), at("server.pem"), at("ext.cnf"));
    std::fs::write(&ext, format!("subjectAltName=IP:{},IP:{}\n", PEER_ADDRS[0], PEER_ADDRS[1])).expect("ext");
    let subject = format!("/CN={name} CA");
    run([
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", &subject, "-keyout",
        &ca_key, "-out", &ca,
    ]);
    run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=dhcp peers", "-keyout", &key, "-out", &csr]);
    run([
        "openssl",
        "x509",
        "-req",
        "-days",
        "2",
        "-CAcreateserial",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-out",
        &cert,
        "-extfile",
        &ext,
    ]);
    (ca, cert, key)
}

#[test]
fn peers_over_tls_check_each_others_certificates() {
    if !lab::available() {
        return;
    }
    let mut pair = Pair::with_peer_link();
    let (ca, cert, key) = peer_certs(&pair.dir, "peers");
    pair.tls = Some((ca, cert, key));
    // The primary must still count the partner as there when the standby comes back with the
    // other CA: a partner silent past max-response-delay is down. The standby's restart takes
    // longer than the shared timing's 1.2 s on a loaded machine.
    pair.ha_timing =
        "heartbeat-delay-ms = 300\nmax-response-delay-ms = 6000\nmax-ack-delay-ms = 1000\nmax-unacked-clients = 0\n"
            .into();
    let (stranger_ca, _, _) = peer_certs(&pair.dir, "stranger");
    let primary = pair.start(0, "hot-standby", "memory:");
    let standby = pair.start(1, "hot-standby", "memory:");
    pair.wait_for_states(["hot-standby", "hot-standby"], Duration::from_secs(10));
    let out = pair.perfdhcp(30, "02:c1:00:00:00:00");
    assert!(matches!(out.status.code(), Some(0 | 3)), "perfdhcp: {}", text(&out));
    let leased = bound(&primary);
    assert!(leased.len() >= 27, "{} of 30 bound", leased.len());
    assert_eq!(bound(&standby), leased, "lease updates over TLS");

    // Plain HTTP to the HTTPS API gets nowhere.
    let plain = pair.servers[0]
        .command(env!("CARGO_BIN_EXE_dhcp-cli"))
        .args(["--url", &format!("http://{}:8067", PEER_ADDRS[0]), "--token", TOKEN, "show", "ha"])
        .output()
        .expect("dhcp-cli");
    assert_eq!(plain.status.code(), Some(2), "{}", text(&plain));

    // A standby that trusts another CA refuses the primary's certificate and says why.
    drop(standby);
    let good = pair.tls.clone();
    pair.tls = good.clone().map(|(_, cert, key)| (stranger_ca, cert, key));
    let doubting = pair.start(1, "hot-standby", "memory:");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !doubting.log_text().contains("UnknownIssuer") {
        assert!(Instant::now() < deadline, "no certificate refusal logged:\n{}", doubting.log_text());
        sleep(Duration::from_millis(100));
    }
    pair.tls = good;
    assert_eq!(pair.ha_state(0), "hot-standby", "the primary, which trusts the standby, still hears it");
}
