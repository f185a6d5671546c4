//! The example server against real DHCP clients that no one here wrote (ISC dhclient, busybox
//! udhcpc, dhcpcd, nmap, ISC perfdhcp), each in network namespaces the test makes and removes.
//!
//! Needs root and the clients installed (the README's test command installs them). Without
//! root, set DHCP_SKIP_NETNS=1 to skip these tests.

mod lab;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use lab::{Lab, LeaseRow, PrivateRedis, SERVER_ADDR, dhclient, mac_of, text, values};

/// The engine config every test starts from: one subnet on the lab segment with a MAC
/// reservation, one behind a relay.
const CONFIG: &str = include_str!("../../dhcp-core/tests/fixtures/captured/lab.toml");

/// udhcpc's hook: its first argument is the event, the values are in its environment.
const UDHCPC_HOOK: &str = r#"
{
  echo "event=$1"
  echo "ip=$ip"
  echo "mask=$mask"
  echo "routers=$router"
  echo "dns=$dns"
  echo "domain=$domain"
  echo "hostname=$hostname"
} >> "$LOG"
case "$1" in
  bound|renew) ip addr replace "$ip/$mask" dev "$interface" ;;
esac
"#;

fn udhcpc(lab: &Lab, client: usize, name: &str, extra: &[&str]) -> std::process::Output {
    let hook = lab::path_str(&lab.hook(name, UDHCPC_HOOK));
    let mut args = vec!["timeout", "60", "busybox", "udhcpc", "-i", "vcli", "-n", "-q", "-f", "-t", "5", "-T", "2"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-s", &hook]);
    lab.client(client).output(&args)
}

#[test]
fn dhclient_gets_renews_and_releases_a_lease() {
    if !lab::available() {
        return;
    }
    let mut lab = Lab::pair();
    // A 20 s lease: dhclient renews at T1 = 10 s, so the test sees a real renewal.
    lab.start_server(&CONFIG.replace("lease-time = 3600", "lease-time = 20"));
    let out = dhclient(&lab, 0, "dhclient", &["-1"]);
    assert!(out.status.success(), "dhclient failed:\n{}", text(&out));

    let log = lab.hook_log("dhclient");
    let ip = values(&log, "ip").into_iter().find(|v| !v.is_empty()).expect("dhclient was given an address");
    assert!(ip.starts_with("10.199.1."), "address from the pool: {ip}");
    assert!(values(&log, "reason").iter().any(|r| r == "BOUND"), "{log}");
    assert!(values(&log, "mask").contains(&"255.255.0.0".to_owned()), "{log}");
    assert!(values(&log, "routers").contains(&"10.199.0.1".to_owned()), "{log}");
    assert!(values(&log, "dns").contains(&"10.199.0.53 10.199.0.54".to_owned()), "{log}");
    assert!(values(&log, "domain").contains(&"lab.test".to_owned()), "{log}");
    // The hook configured the client's interface and route from what the server sent.
    assert_eq!(lab.client(0).addrs("vcli"), vec![format!("{ip}/16")]);
    let routes = lab.client(0).ip(&["route", "show", "default"]);
    assert!(routes.contains("via 10.199.0.1"), "{routes}");

    let mac = mac_of(&lab, 0);
    let leases = lab.leases();
    let held: Vec<_> = leases.iter().filter(|l| l.hwaddr == mac).collect();
    assert_eq!(held.len(), 1, "{leases:?}");
    assert_eq!((held[0].address.as_str(), held[0].state.as_str()), (ip.as_str(), "bound"));

    // dhclient stays in the background and renews at T1 by unicast; the address stays.
    lab.wait_for("dhclient to renew", Duration::from_secs(25), || {
        values(&lab.hook_log("dhclient"), "reason").iter().any(|r| r == "RENEW")
    });
    let log = lab.hook_log("dhclient");
    let renewed: Vec<String> = values(&log, "ip").into_iter().filter(|v| !v.is_empty()).collect();
    assert!(renewed.iter().all(|a| *a == ip), "renewal kept the address: {renewed:?}");
    assert!(lab.server_log().contains("Unicast"), "the renewal ACK went to ciaddr:\n{}", lab.server_log());

    // Release: the lease is free in the store.
    let out = dhclient(&lab, 0, "dhclient", &["-r"]);
    assert!(out.status.success(), "dhclient -r failed:\n{}", text(&out));
    lab.wait_for("the release", Duration::from_secs(5), || {
        lab.leases().iter().any(|l| l.address == ip && l.state == "released")
    });
    assert!(lab.client(0).addrs("vcli").is_empty(), "dhclient removed the address");
}

#[test]
fn udhcpc_gets_a_lease_and_its_options() {
    if !lab::available() {
        return;
    }
    let mut lab = Lab::pair();
    lab.start_server(CONFIG);
    let out = udhcpc(&lab, 0, "udhcpc", &[]);
    assert!(out.status.success(), "udhcpc failed:\n{}", text(&out));
    let log = lab.hook_log("udhcpc");
    assert!(values(&log, "event").contains(&"bound".to_owned()), "{log}");
    let ip = values(&log, "ip").into_iter().find(|v| !v.is_empty()).expect("an address");
    assert!(ip.starts_with("10.199.1."), "{ip}");
    assert!(values(&log, "mask").contains(&"16".to_owned()), "{log}");
    assert!(values(&log, "routers").contains(&"10.199.0.1".to_owned()), "{log}");
    assert!(values(&log, "dns").contains(&"10.199.0.53 10.199.0.54".to_owned()), "{log}");
    assert!(values(&log, "domain").contains(&"lab.test".to_owned()), "{log}");
    assert_eq!(lab.client(0).addrs("vcli"), vec![format!("{ip}/16")]);
    let mac = mac_of(&lab, 0);
    assert!(lab.leases().iter().any(|l| l.address == ip && l.hwaddr == mac && l.state == "bound"));
    // udhcpc does not set the broadcast flag: the server unicast to yiaddr at chaddr (an ARP
    // entry it wrote), and the client, which had no address yet, still got the replies.
    assert!(lab.server_log().contains("destination=Hardware"), "{}", lab.server_log());
}

#[test]
fn dhcpcd_gets_a_lease_and_its_options() {
    if !lab::available() {
        return;
    }
    let mut lab = Lab::pair();
    lab.start_server(CONFIG);
    // dhcpcd keeps leases by interface name in a host-wide directory; an old one would make
    // it ask for its old address back (INIT-REBOOT) instead of starting afresh.
    let stale = std::path::Path::new("/var/lib/dhcpcd/vcli.lease");
    let _ = std::fs::remove_file(stale);
    let hook = lab.hook(
        "dhcpcd",
        r#"{ echo "reason=$reason"; echo "ip=$new_ip_address"; echo "routers=$new_routers";
             echo "dns=$new_domain_name_servers"; echo "domain=$new_domain_name"; } >> "$LOG""#,
    );
    let conf =
        lab.write("dhcpcd.conf", "option domain_name_servers, domain_name, routers, subnet_mask\nnohook resolv.conf\n");
    let (hook, conf) = (lab::path_str(&hook), lab::path_str(&conf));
    // -A: no ARP probe (the 5 s wait tells nothing here); -1 -B: one lease, in the foreground.
    let out = lab
        .client(0)
        .output(&["timeout", "60", "dhcpcd", "-4", "-1", "-A", "-B", "-d", "-f", &conf, "-c", &hook, "vcli"]);
    let log = lab.hook_log("dhcpcd");
    assert!(values(&log, "reason").contains(&"BOUND".to_owned()), "dhcpcd did not bind:\n{}\n{log}", text(&out));
    let ip = values(&log, "ip").into_iter().find(|v| !v.is_empty()).expect("an address");
    assert!(ip.starts_with("10.199.1."), "{ip}");
    assert!(values(&log, "routers").contains(&"10.199.0.1".to_owned()), "{log}");
    assert!(values(&log, "dns").contains(&"10.199.0.53 10.199.0.54".to_owned()), "{log}");
    assert!(values(&log, "domain").contains(&"lab.test".to_owned()), "{log}");
    assert!(lab.leases().iter().any(|l| l.address == ip && l.state == "bound"));
    let _ = std::fs::remove_file(stale);
}

#[test]
fn mac_reservation_on_a_shared_segment() {
    if !lab::available() {
        return;
    }
    // Two hosts on one bridge with the server: the reserved MAC and an ordinary client.
    let mut lab = Lab::with_clients(2);
    lab.client(0).ip(&["link", "set", "vcli", "down"]);
    lab.client(0).ip(&["link", "set", "vcli", "address", "02:00:00:00:00:42"]);
    lab.client(0).ip(&["link", "set", "vcli", "up"]);
    lab.start_server(CONFIG);

    // -B: the broadcast flag, so the server broadcasts its replies on the segment.
    let out = udhcpc(&lab, 0, "reserved", &["-B", "-O", "hostname"]);
    assert!(out.status.success(), "udhcpc failed:\n{}", text(&out));
    let log = lab.hook_log("reserved");
    assert!(values(&log, "ip").contains(&"10.199.0.42".to_owned()), "the reserved address:\n{log}");
    assert!(values(&log, "hostname").contains(&"printer".to_owned()), "the reserved hostname:\n{log}");
    assert!(lab.server_log().contains("destination=Broadcast"), "{}", lab.server_log());

    let out = dhclient(&lab, 1, "other", &["-1"]);
    assert!(out.status.success(), "dhclient failed:\n{}", text(&out));
    let other = values(&lab.hook_log("other"), "ip").into_iter().find(|v| !v.is_empty()).expect("an address");
    assert!(other.starts_with("10.199.1."), "an ordinary client gets a pool address: {other}");

    let leases = lab.leases();
    let reserved = leases.iter().find(|l| l.address == "10.199.0.42").expect("reserved lease stored");
    assert_eq!((reserved.hwaddr.as_str(), reserved.hostname.as_str()), ("02:00:00:00:00:42", "printer"));
}

#[test]
fn nmap_sees_our_offer() {
    if !lab::available() {
        return;
    }
    let mut lab = Lab::pair();
    lab.start_server(CONFIG);
    // nmap's script needs an address on the interface it sends from.
    lab.client(0).ip(&["addr", "add", "10.199.0.2/16", "dev", "vcli"]);
    let out = lab.client(0).output(&[
        "timeout",
        "60",
        "nmap",
        "-n",
        "--script",
        "broadcast-dhcp-discover",
        "-e",
        "vcli",
        "--script-args",
        "broadcast-dhcp-discover.timeout=5s",
    ]);
    let report = text(&out);
    assert!(report.contains("DHCP Message Type: DHCPOFFER"), "{report}");
    assert!(report.contains("IP Offered: 10.199.1."), "{report}");
    assert!(report.contains(&format!("Server Identifier: {SERVER_ADDR}")), "{report}");
    assert!(report.contains("Subnet Mask: 255.255.0.0"), "{report}");
    assert!(report.contains("Router: 10.199.0.1"), "{report}");
    assert!(report.contains("Domain Name Server: 10.199.0.53, 10.199.0.54"), "{report}");
    assert!(report.contains("Domain Name: lab.test"), "{report}");
}

/// perfdhcp's clients. With `-R N -b mac=BASE` it goes through BASE, BASE+1, ..., BASE+N-1 in
/// turn (Kea 2.2's perfdhcp: `-R 1000 -n 500` asks for exactly the first 500 MACs), so `-n N`
/// is one DORA for each of them.
const PERF_CLIENTS: u64 = 1000;

/// Rounds of one DORA per client, at most. perfdhcp does not retransmit: a packet lost (or a
/// reply perfdhcp gave up waiting for) leaves a client without its lease in that round, and the
/// next round asks again, for every client; those leased already are given their own address
/// again.
const PERF_ROUNDS: usize = 5;

/// The MAC of perfdhcp's client `i` with base MAC `base` (such as 0x02aa_0000_0000), as the
/// lease dump writes it.
fn perf_mac(base: u64, i: u64) -> String {
    let octets = (base + i).to_be_bytes();
    octets[2..].iter().map(|o| format!("{o:02x}")).collect::<Vec<_>>().join(":")
}

/// The addresses of the bound leases in `subnet`, none of them twice.
fn bound_in_subnet(lab: &Lab, subnet: &str) -> HashSet<String> {
    let leases = lab.leases();
    let bound: Vec<_> = leases.iter().filter(|l| l.subnet == subnet && l.state == "bound").collect();
    let addrs: HashSet<String> = bound.iter().map(|l| l.address.clone()).collect();
    assert_eq!(addrs.len(), bound.len(), "no address twice");
    addrs
}

/// Runs perfdhcp from `local` (the relay address that selects `subnet`) in rounds of one DORA
/// for each of its clients until every client holds a bound lease in `subnet`, and checks that
/// each holds exactly one. perfdhcp's drops (and its exit status 3 for them) decide nothing:
/// the server's leases do.
fn lease_every_perfdhcp_client(lab: &Lab, local: &str, subnet: &str, base: u64) {
    let clients: HashSet<String> = (0..PERF_CLIENTS).map(|i| perf_mac(base, i)).collect();
    let (count, base_mac) = (PERF_CLIENTS.to_string(), format!("mac={}", perf_mac(base, 0)));
    // -R N -n N: one DORA for each client; -r: 500 a second; -W: a second for late replies.
    let clients_args = ["-l", local, "-R", &count, "-n", &count, "-r", "500", "-W", "1000000", "-b", &base_mac];
    let args = [&["timeout", "60", "perfdhcp", "-4", "-g", "single"], &clients_args[..], &[SERVER_ADDR]].concat();
    let mut reports = Vec::new();
    let mut missing = clients.clone();
    for round in 1..=PERF_ROUNDS {
        let out = lab.client(0).output(&args);
        let report = text(&out);
        // 0: every exchange completed; 3: some did not, which the next round retries.
        assert!(matches!(out.status.code(), Some(0 | 3)), "perfdhcp via {local} failed ({}):\n{report}", out.status);
        let drops: Vec<&str> = report.lines().filter(|l| l.starts_with("drops:")).collect();
        reports.push(format!("round {round}: exit {:?}, {drops:?}", out.status.code()));
        let leased: HashSet<String> =
            lab.leases().into_iter().filter(|l| l.subnet == subnet && l.state == "bound").map(|l| l.hwaddr).collect();
        missing.retain(|mac| !leased.contains(mac));
        if missing.is_empty() {
            break;
        }
    }
    let mut sample: Vec<_> = missing.iter().collect();
    sample.sort();
    assert!(
        missing.is_empty(),
        "{} of perfdhcp's {PERF_CLIENTS} clients via {local} hold no lease in subnet {subnet} after {} rounds, such as \
         {:?}\n{reports:#?}",
        missing.len(),
        reports.len(),
        &sample[..sample.len().min(5)]
    );

    // Each client's MAC once in the whole store, bound in its subnet; no address twice; the
    // subnet holds the clients' leases and nothing else.
    let leases = lab.leases();
    let mut held: HashMap<&str, Vec<&LeaseRow>> = HashMap::new();
    for lease in leases.iter().filter(|l| clients.contains(&l.hwaddr)) {
        held.entry(lease.hwaddr.as_str()).or_default().push(lease);
    }
    let twice: Vec<_> = held.values().filter(|rows| rows.len() > 1).collect();
    assert!(twice.is_empty(), "{} clients hold more than one lease, such as {:?}", twice.len(), twice.first());
    let elsewhere: Vec<_> = held.values().flatten().filter(|l| l.subnet != subnet || l.state != "bound").collect();
    assert!(elsewhere.is_empty(), "leases not bound in subnet {subnet}: {:?}", &elsewhere[..elsewhere.len().min(5)]);
    let addresses: HashSet<&str> = leases.iter().map(|l| l.address.as_str()).collect();
    assert_eq!(addresses.len(), leases.len(), "no address in two leases");
    assert_eq!(
        bound_in_subnet(lab, subnet).len(),
        PERF_CLIENTS as usize,
        "one lease per client in subnet {subnet}:\n{reports:#?}"
    );
    eprintln!("perfdhcp via {local}: {PERF_CLIENTS} clients leased once each; {reports:?}");
}

#[test]
fn perfdhcp_dora_for_1000_clients_direct_and_relayed() {
    if !lab::available() {
        return;
    }
    let mut lab = Lab::pair();
    lab.start_server(CONFIG);
    let cli = lab.client(0);
    // perfdhcp always acts as a relay: giaddr is its local address. On the segment, that
    // selects subnet 1; from a second address, 10.77.0.2, it is a relay of subnet 2, which is
    // not on the server's interface.
    cli.ip(&["addr", "add", "10.199.0.2/16", "dev", "vcli"]);
    cli.ip(&["addr", "add", "10.77.0.2/16", "dev", "vcli"]);
    lab.server.ip(&["route", "add", "10.77.0.0/16", "via", "10.199.0.2"]);

    lease_every_perfdhcp_client(&lab, "10.199.0.2", "1", 0x02aa_0000_0000);
    lease_every_perfdhcp_client(&lab, "10.77.0.2", "2", 0x02bb_0000_0000);
    let direct = bound_in_subnet(&lab, "1");
    assert!(direct.iter().all(|a| a.starts_with("10.199.")), "direct clients got subnet 1 addresses");
    let relayed = bound_in_subnet(&lab, "2");
    assert!(relayed.iter().all(|a| a.starts_with("10.77.")), "relayed clients got subnet 2 addresses");
}

#[test]
fn init_reboot_from_the_wrong_subnet_is_naked() {
    if !lab::available() {
        return;
    }
    let mut lab = Lab::pair();
    lab.start_server(CONFIG);
    // dhclient remembers a lease from another network: it asks for it back (INIT-REBOOT), the
    // authoritative server refuses, and dhclient falls back to DISCOVER.
    lab.write(
        "moved.leases",
        "lease {\n  interface \"vcli\";\n  fixed-address 10.50.0.5;\n  option subnet-mask 255.255.255.0;\n  \
         option dhcp-lease-time 3600;\n  renew 4 2037/01/01 00:00:00;\n  rebind 4 2037/01/01 00:00:00;\n  \
         expire 4 2037/01/01 00:00:00;\n}\n",
    );
    let out = dhclient(&lab, 0, "moved", &["-1"]);
    let report = text(&out);
    assert!(out.status.success(), "dhclient failed:\n{report}");
    assert!(report.contains("DHCPREQUEST for 10.50.0.5"), "dhclient tried its old address:\n{report}");
    assert!(report.contains(&format!("DHCPNAK from {SERVER_ADDR}")), "the server refused it:\n{report}");
    let ip = values(&lab.hook_log("moved"), "ip").into_iter().find(|v| !v.is_empty()).expect("then a new lease");
    assert!(ip.starts_with("10.199.1."), "{ip}");
}

#[test]
fn declined_address_goes_into_probation() {
    if !lab::available() {
        return;
    }
    // A squatter on the segment already uses the first pool address; udhcpc checks the
    // address it is given with ARP (-a), finds it taken and DECLINEs it.
    let mut lab = Lab::with_clients(2);
    lab.client(1).ip(&["addr", "add", "10.199.1.10/16", "dev", "vcli"]);
    lab.start_server(CONFIG);
    let out = udhcpc(&lab, 0, "decliner", &["-a"]);
    let log = lab.hook_log("decliner");
    assert!(out.status.success(), "udhcpc failed:\n{}\n{log}", text(&out));
    let ip = values(&log, "ip").into_iter().find(|v| !v.is_empty()).expect("an address");
    assert_eq!(ip, "10.199.1.11", "the declined address is not offered again:\n{}", text(&out));
    let leases = lab.leases();
    let declined = leases.iter().find(|l| l.address == "10.199.1.10").expect("declined address recorded");
    assert_eq!(declined.state, "declined", "{leases:?}");
    assert!(lab.server_log().contains("address declined"), "{}", lab.server_log());
}

#[test]
fn dhcp_probe_as_a_client_takes_a_lease_and_fails_without_a_server() {
    if !lab::available() {
        return;
    }
    let probe = env!("CARGO_BIN_EXE_dhcp-probe");
    let mut lab = Lab::pair();
    // No server yet: the health check must fail, with status 1.
    let out = lab.client(0).output(&[probe, "--interface", "vcli", "--timeout", "1"]);
    assert_eq!(out.status.code(), Some(1), "no server, no lease:\n{}", text(&out));

    lab.start_server(CONFIG);
    let out = lab.client(0).output(&[probe, "--interface", "vcli", "--mac", "02:00:00:00:00:42", "--keep"]);
    let report = text(&out);
    assert!(out.status.success(), "probe failed:\n{report}");
    // The reserved MAC gets its reservation; the probe prints what the server gave.
    assert!(report.contains("address 10.199.0.42"), "{report}");
    assert!(report.contains(&format!("server-id {SERVER_ADDR}")), "{report}");
    assert!(report.contains("routers 10.199.0.1"), "{report}");
    assert!(report.contains("dns-servers 10.199.0.53,10.199.0.54"), "{report}");
    assert!(report.contains("domain-name lab.test"), "{report}");
    assert!(lab.leases().iter().any(|l| l.address == "10.199.0.42" && l.state == "bound"));

    // By default the probe releases what it took, so health checks do not use up the pool.
    let out = lab.client(0).output(&[probe, "--interface", "vcli", "--mac", "02:00:00:00:00:99"]);
    let report = text(&out);
    assert!(out.status.success(), "probe failed:\n{report}");
    let addr = report.lines().find_map(|l| l.strip_prefix("address ")).expect("an address").to_owned();
    lab.wait_for("the probe's release", Duration::from_secs(5), || {
        lab.leases().iter().any(|l| l.address == addr && l.state == "released")
    });
}

#[test]
fn redis_reservation_and_group_give_dhclient_its_address_and_options() {
    if !lab::available() {
        return;
    }
    let mut lab = Lab::pair();
    // A Redis of the test's own on a Unix socket, which the server's namespace can reach.
    let redis = PrivateRedis::start();
    // What an operator types: a host and its group, with plain redis-cli.
    redis.cli(&[
        "hset",
        "mac:02:00:00:00:00:55",
        "ip",
        "10.199.0.55",
        "hostname",
        "kiosk",
        "description",
        "lobby",
        "group",
        "lab",
    ]);
    redis.cli(&["hset", "group:lab", "lease-time", "900", "gateway", "10.199.0.254", "dns", "10.199.0.8, 10.199.0.9"]);
    redis.cli(&["hset", "group:lab", "domain", "redis.test", "prefix", "16"]);
    lab.client(0).ip(&["link", "set", "vcli", "address", "02:00:00:00:00:55"]);

    let config = format!("host-source = \"store\"\n{CONFIG}");
    lab.start_server_with(&config, &format!("store = \"{}?prefix=lab:\"", redis.url()));
    let out = dhclient(&lab, 0, "kiosk", &["-1"]);
    // The Go server's field for the last-seen time, which its CLI prints.
    let seen = redis.cli(&["hget", "mac:02:00:00:00:00:55", "ts"]).trim().to_owned();
    assert!(seen.parse::<u64>().is_ok_and(|t| t > 1_700_000_000), "last-seen is recorded: {seen:?}");
    assert!(out.status.success(), "dhclient failed:\n{}", text(&out));
    let log = lab.hook_log("kiosk");
    assert!(values(&log, "ip").contains(&"10.199.0.55".to_owned()), "the reserved address:\n{log}");
    assert!(values(&log, "hostname").contains(&"kiosk".to_owned()), "{log}");
    assert!(values(&log, "routers").contains(&"10.199.0.254".to_owned()), "the group's gateway:\n{log}");
    assert!(values(&log, "dns").contains(&"10.199.0.8 10.199.0.9".to_owned()), "{log}");
    assert!(values(&log, "domain").contains(&"redis.test".to_owned()), "{log}");
    assert!(values(&log, "lease").contains(&"900".to_owned()), "the group's lease time:\n{log}");
    assert!(values(&log, "mask").contains(&"255.255.0.0".to_owned()), "{log}");
}
