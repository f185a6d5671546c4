//! The example server against real DHCP clients that no one here wrote (ISC dhclient, busybox
//! udhcpc, dhcpcd, nmap, ISC perfdhcp), each in network namespaces the test makes and removes.
//!
//! Needs root and the clients installed (the README's test command installs them). Without
//! root, set DHCP_SKIP_NETNS=1 to skip these tests.

mod lab;

use std::collections::HashSet;
use std::time::Duration;

use lab::{Lab, SERVER_ADDR, dhclient, mac_of, text, values};

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
    let routes = String::from_utf8_lossy(&lab.client(0).ip(&["route", "show", "default"]).stdout).into_owned();
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

/// perfdhcp with `-R 1000` picks each exchange's client at random among 1000 MACs, so enough
/// exchanges are run that every one of them is all but certain to appear (the chance that
/// one of the 1000 never does after 20000 draws is about 2e-6).
const PERF_EXCHANGES: &str = "20000";

fn bound_in_subnet(lab: &Lab, subnet: &str) -> HashSet<String> {
    let leases = lab.leases();
    let bound: Vec<_> = leases.iter().filter(|l| l.subnet == subnet && l.state == "bound").collect();
    let addrs: HashSet<String> = bound.iter().map(|l| l.address.clone()).collect();
    assert_eq!(addrs.len(), bound.len(), "no address twice");
    addrs
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

    for (local, subnet, base) in [("10.199.0.2", "1", "02:aa:00:00:00:00"), ("10.77.0.2", "2", "02:bb:00:00:00:00")] {
        let out = cli.output(&[
            "timeout",
            "120",
            "perfdhcp",
            "-4",
            "-g",
            "single",
            "-l",
            local,
            "-R",
            "1000",
            "-n",
            PERF_EXCHANGES,
            "-r",
            "2000",
            "-W",
            "500000",
            "-b",
            &format!("mac={base}"),
            SERVER_ADDR,
        ]);
        let report = text(&out);
        // perfdhcp exits with 3 when any packet was dropped.
        assert!(out.status.success(), "perfdhcp via {local} failed or dropped:\n{report}");
        assert_eq!(bound_in_subnet(&lab, subnet).len(), 1000, "one lease per client in subnet {subnet}:\n{report}");
    }
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
    let socket = lab.path("redis.sock");
    let socket_arg = lab::path_str(&socket);
    let mut redis = std::process::Command::new("redis-server")
        .args(["--port", "0", "--save", "", "--appendonly", "no", "--unixsocket", &socket_arg])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server");
    lab.wait_for("redis", Duration::from_secs(5), || socket.exists());
    // What an operator types: a host and its group, with plain redis-cli.
    let cli = |args: &[&str]| {
        let mut full = vec!["redis-cli", "-s", &socket_arg];
        full.extend_from_slice(args);
        lab::run(&full)
    };
    cli(&[
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
    cli(&["hset", "group:lab", "lease-time", "900", "gateway", "10.199.0.254", "dns", "10.199.0.8, 10.199.0.9"]);
    cli(&["hset", "group:lab", "domain", "redis.test", "prefix", "16"]);
    lab.client(0).ip(&["link", "set", "vcli", "address", "02:00:00:00:00:55"]);

    let config = format!("host-source = \"store\"\n{CONFIG}");
    lab.start_server_with(&config, &format!("store = \"redis+unix://{socket_arg}?prefix=lab:\""));
    let out = dhclient(&lab, 0, "kiosk", &["-1"]);
    let seen = String::from_utf8_lossy(&cli(&["hget", "mac:02:00:00:00:00:55", "last-seen"]).stdout).trim().to_owned();
    let _ = redis.kill();
    let _ = redis.wait();
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
