//! The config model: a rich valid config read back field by field, and every validation error
//! refused with the path of the field and the reason.

use std::net::Ipv4Addr;

use dhcp_core::{Config, ConfigError, HwAddr};

const VALID: &str = r#"
server-id = "10.0.0.1"
authoritative = true
lease-time = 7200
offer-hold-time = 20
decline-probation-period = 900
options = { domain-name-servers = ["10.0.0.53", "10.0.0.54"], domain-name = "example.test" }

[groups.phones]
options = { tftp-server-name = "tftp.example.test" }
lease-time = 600
match = { vendor-class = "Polycom" }

[groups.vip]
options = { ntp-servers = ["10.0.0.123"] }

[[subnets]]
id = 1
subnet = "10.0.0.0/24"
pools = ["10.0.0.100-10.0.0.149", { range = "10.0.0.160/28", options = { routers = ["10.0.0.254"] } }]
options = { routers = ["10.0.0.1"] }
relay-addresses = ["10.9.9.9"]

[[subnets.reservations]]
hw-address = "02:00:00:00:00:42"
ip-address = "10.0.0.42"
hostname = "printer"
group = "vip"

[[subnets.reservations]]
client-id = "01:02:00:00:00:00:43"
ip-address = "10.0.0.110"

[[subnets.reservations]]
circuit-id = "eth0/7"
ip-address = "10.0.0.77"
options = { domain-name = "lab.example.test" }

[[subnets]]
id = 2
subnet = "10.1.0.0/16"
lease-time = 1000
renew-time = 400
rebind-time = 800
pools = ["10.1.1.0-10.1.1.255"]
"#;

#[test]
fn a_rich_config_reads_back() {
    let config = Config::from_toml_str(VALID).expect("valid");
    assert_eq!(config.server_id, Some(Ipv4Addr::new(10, 0, 0, 1)));
    assert!(config.authoritative);
    assert_eq!((config.offer_hold_time, config.decline_probation_period), (20, 900));
    assert_eq!(config.groups.len(), 2);

    let one = config.subnet_by_id(1).expect("subnet 1");
    // T1 and T2 default to 50% and 87.5% of the lease.
    assert_eq!((one.times.lease, one.times.renew, one.times.rebind), (7200, 3600, 6300));
    assert_eq!(one.relay_addresses, vec![Ipv4Addr::new(10, 9, 9, 9)]);
    assert_eq!(one.pools.len(), 2);
    // The reserved 10.0.0.110 is carved out of the first pool.
    let first: Vec<(u32, u32)> = one.pools[0].ranges.iter().map(|r| (*r.start(), *r.end())).collect();
    let a = |last: u8| u32::from(Ipv4Addr::new(10, 0, 0, last));
    assert_eq!(first, vec![(a(100), a(109)), (a(111), a(149))]);
    // A CIDR pool covers its whole block.
    assert_eq!((one.pools[1].first, one.pools[1].last), (Ipv4Addr::new(10, 0, 0, 160), Ipv4Addr::new(10, 0, 0, 175)));
    assert_eq!(one.pools[1].options.get(3), Some(&[10, 0, 0, 254][..]));
    // Subnet options: its own routers, the global DNS servers, and a subnet mask derived.
    assert_eq!(one.options.get(3), Some(&[10, 0, 0, 1][..]));
    assert_eq!(one.options.get(6), Some(&[10, 0, 0, 53, 10, 0, 0, 54][..]));
    assert_eq!(one.options.get(1), Some(&[255, 255, 255, 0][..]));
    assert_eq!(one.options.get(15), Some(&b"example.test"[..]));

    assert_eq!(one.reservations.len(), 3);
    let printer = &one.reservations[0];
    assert_eq!(printer.hw_address, Some(HwAddr::mac([2, 0, 0, 0, 0, 0x42])));
    assert_eq!(printer.hostname.as_deref(), Some("printer"));
    assert_eq!(printer.group.map(|g| config.groups[g].name.as_str()), Some("vip"));
    assert_eq!(one.reservations[1].client_id.as_deref(), Some(&[1, 2, 0, 0, 0, 0, 0x43][..]));
    assert_eq!(one.reservations[2].circuit_id.as_deref(), Some(&b"eth0/7"[..]));
    assert_eq!(one.reservations[2].options.get(15), Some(&b"lab.example.test"[..]));

    let two = config.subnet_by_id(2).expect("subnet 2");
    assert_eq!((two.times.lease, two.times.renew, two.times.rebind), (1000, 400, 800));
    assert_eq!(config.subnet_for(Ipv4Addr::new(10, 1, 2, 3)).map(|s| s.id), Some(2));
    assert_eq!(one.total_addresses(), 50 + 16 - 1);
}

/// The config refused, with the path and a phrase of the reason.
fn refused(text: &str) -> ConfigError {
    match Config::from_toml_str(text) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => e,
    }
}

fn assert_refused(text: &str, path: &str, phrase: &str) {
    let err = refused(text);
    assert_eq!(err.path, path, "wrong path for: {err}\n{text}");
    assert!(err.reason.contains(phrase), "reason {:?} lacks {phrase:?}", err.reason);
}

/// One subnet 10.0.0.0/24 with `extra` lines in its table and then `tail` (more tables).
fn subnet(extra: &str, tail: &str) -> String {
    format!("[[subnets]]\nid = 1\nsubnet = \"10.0.0.0/24\"\n{extra}\n{tail}")
}

#[test]
fn global_values() {
    assert_refused(&format!("server-id = \"10.0.0\"\n{}", subnet("", "")), "server-id", "not an IPv4 address");
    assert_refused(&format!("lease-time = 0\n{}", subnet("", "")), "lease-time", "greater than zero");
    assert_refused(&format!("offer-hold-time = 0\n{}", subnet("", "")), "offer-hold-time", "greater than zero");
    assert_refused(
        &format!("lease-time = 100\nrenew-time = 90\nrebind-time = 80\n{}", subnet("", "")),
        "renew-time",
        "must be less than rebind-time",
    );
    assert_refused(
        &format!("lease-time = 100\nrebind-time = 100\n{}", subnet("", "")),
        "rebind-time",
        "must be less than lease-time",
    );
}

#[test]
fn option_errors() {
    assert_refused(&format!("options = {{ no-such-option = 1 }}\n{}", subnet("", "")), "options.no-such-option", "");
    assert_refused(&format!("options = {{ routers = \"not-an-address\" }}\n{}", subnet("", "")), "options.routers", "");
    // Options the server sets itself cannot be configured.
    assert_refused(&format!("options = {{ dhcp-lease-time = 60 }}\n{}", subnet("", "")), "options.dhcp-lease-time", "");
    let err = refused(&subnet("options = { routers = [\"10.0.1.1\"] }", ""));
    assert_eq!(err.path, "subnets[0].options.routers");
    assert!(err.reason.contains("outside subnet"), "{err}");
}

#[test]
fn subnet_errors() {
    assert_refused("[[subnets]]\nid = 0\nsubnet = \"10.0.0.0/24\"\n", "subnets[0].id", "start at 1");
    assert_refused("[[subnets]]\nid = 1\nsubnet = \"10.0.0.0\"\n", "subnets[0].subnet", "not NET/LEN");
    assert_refused("[[subnets]]\nid = 1\nsubnet = \"10.0.0.5/24\"\n", "subnets[0].subnet", "host bits");
    assert_refused(
        "[[subnets]]\nid = 1\nsubnet = \"10.0.0.0/24\"\n[[subnets]]\nid = 1\nsubnet = \"10.0.1.0/24\"\n",
        "subnets[1].id",
        "also used",
    );
    assert_refused(
        "[[subnets]]\nid = 1\nsubnet = \"10.0.0.0/16\"\n[[subnets]]\nid = 2\nsubnet = \"10.0.1.0/24\"\n",
        "subnets[1].subnet",
        "overlaps",
    );
    assert_refused(&subnet("lease-time = 0", ""), "subnets[0].lease-time", "greater than zero");
    assert_refused(&subnet("lease-time = 100\nrenew-time = 95", ""), "subnets[0].renew-time", "less than rebind-time");
    assert_refused(
        &subnet("lease-time = 100\nrebind-time = 100", ""),
        "subnets[0].rebind-time",
        "less than lease-time",
    );
    assert_refused(&subnet("relay-addresses = [\"10.0.0.x\"]", ""), "subnets[0].relay-addresses[0]", "not an IPv4");
    assert_refused(&subnet("server-id = \"nope\"", ""), "subnets[0].server-id", "not an IPv4");
}

#[test]
fn pool_errors() {
    assert_refused(&subnet("pools = [\"10.0.1.10-10.0.1.20\"]", ""), "subnets[0].pools[0]", "outside subnet");
    assert_refused(&subnet("pools = [\"10.0.0.20-10.0.0.10\"]", ""), "subnets[0].pools[0]", "after its end");
    assert_refused(&subnet("pools = [\"10.0.0.10 to 10.0.0.20\"]", ""), "subnets[0].pools[0]", "neither FIRST-LAST");
    assert_refused(&subnet("pools = [\"10.0.0.x-10.0.0.20\"]", ""), "subnets[0].pools[0]", "not an IPv4");
    assert_refused(
        &subnet("pools = [\"10.0.0.10-10.0.0.50\", \"10.0.0.40-10.0.0.60\"]", ""),
        "subnets[0].pools[1]",
        "overlaps pools[0]",
    );
    assert_refused(&subnet("pools = [\"10.0.0.0/24\"]", ""), "subnets[0].pools[0]", "network or broadcast");
    assert_refused(
        &subnet("pools = [{ range = \"10.0.0.10-10.0.0.20\", options = { bogus = 1 } }]", ""),
        "subnets[0].pools[0].options.bogus",
        "",
    );
}

#[test]
fn reservation_errors() {
    let r = |body: &str| subnet("", &format!("[[subnets.reservations]]\n{body}\n"));
    let two = |a: &str, b: &str| subnet("", &format!("[[subnets.reservations]]\n{a}\n[[subnets.reservations]]\n{b}\n"));
    let path = "subnets[0].reservations[0]";
    // An address in another subnet (or none) cannot be reserved here.
    assert_refused(
        &r("hw-address = \"02:00:00:00:00:01\"\nip-address = \"10.0.1.5\""),
        &format!("{path}.ip-address"),
        "outside subnet",
    );
    assert_refused(
        &r("hw-address = \"02:00:00:00:00:01\"\nip-address = \"10.0.0.255\""),
        &format!("{path}.ip-address"),
        "broadcast",
    );
    assert_refused(
        &r("hw-address = \"02:00:00:00:00:01\"\nip-address = \"10.0.0\""),
        &format!("{path}.ip-address"),
        "not an IPv4",
    );
    assert_refused(&r("hw-address = \"02:00:00:00:00:zz\""), &format!("{path}.hw-address"), "not a hardware address");
    assert_refused(&r("client-id = \"0g\""), &format!("{path}.client-id"), "two hex bytes");
    assert_refused(&r("client-id = \"01\""), &format!("{path}.client-id"), "two hex bytes");
    assert_refused(&r("ip-address = \"10.0.0.5\""), path, "needs hw-address, client-id or circuit-id");
    assert_refused(&r("circuit-id = \"p1\"\ngroup = \"nope\""), &format!("{path}.group"), "no group named");
    assert_refused(&r("circuit-id = \"p1\"\nhostname = \"\""), &format!("{path}.hostname"), "1 to 255 bytes");
    assert_refused(&r("circuit-id = \"p1\"\noptions = { bogus = 1 }"), &format!("{path}.options.bogus"), "");

    let second = "subnets[0].reservations[1]";
    assert_refused(
        &two(
            "hw-address = \"02:00:00:00:00:01\"\nip-address = \"10.0.0.5\"",
            "hw-address = \"02:00:00:00:00:02\"\nip-address = \"10.0.0.5\"",
        ),
        &format!("{second}.ip-address"),
        "also reserved by reservations[0]",
    );
    assert_refused(
        &two("hw-address = \"02:00:00:00:00:01\"", "hw-address = \"02-00-00-00-00-01\""),
        &format!("{second}.hw-address"),
        "already used",
    );
    assert_refused(
        &two("client-id = \"01:02\"", "client-id = \"0102\""),
        &format!("{second}.client-id"),
        "already used",
    );
    assert_refused(&two("circuit-id = \"a\"", "circuit-id = \"a\""), &format!("{second}.circuit-id"), "already used");
}

#[test]
fn group_errors() {
    let g = |body: &str| format!("[groups.g]\n{body}\n{}", subnet("", ""));
    assert_refused(&g("lease-time = 0"), "groups.g.lease-time", "greater than zero");
    assert_refused(&g("match = {}"), "groups.g.match", "needs vendor-class");
    assert_refused(&g("options = { bogus = 1 }"), "groups.g.options.bogus", "");
}

#[test]
fn unknown_keys_are_refused_at_every_level() {
    for (text, key) in [
        (format!("colour = \"red\"\n{}", subnet("", "")), "colour"),
        (subnet("gateway = \"10.0.0.1\"", ""), "gateway"),
        (subnet("pools = [{ range = \"10.0.0.10-10.0.0.20\", size = 3 }]", ""), "size"),
        (subnet("", "[[subnets.reservations]]\nmac = \"02:00:00:00:00:01\"\n"), "mac"),
        (format!("[groups.g]\nprefix = 24\n{}", subnet("", "")), "prefix"),
        (format!("[groups.g]\nmatch = {{ vendor = \"x\" }}\n{}", subnet("", "")), "vendor"),
    ] {
        let err = refused(&text);
        assert!(err.to_string().contains(key), "error for unknown key {key:?} does not name it: {err}");
    }
}

#[test]
fn syntax_errors_are_refused() {
    let err = refused("lease-time = \n");
    assert!(err.path.is_empty(), "{err}");
    assert!(!err.reason.is_empty());
    let err = refused("lease-time = \"long\"\n");
    assert!(err.reason.contains("lease-time") || err.reason.contains("integer"), "{err}");
}

#[test]
fn ping_check_settings() {
    let between = "between 1 and 3000 milliseconds";
    assert_refused(&format!("ping-timeout-ms = 0\n{}", subnet("ping-check = true", "")), "ping-timeout-ms", between);
    assert_refused(&subnet("ping-check = true\nping-timeout-ms = 5000", ""), "subnets[0].ping-timeout-ms", between);
    let checks = |text: &str| Config::from_toml_str(text).expect("valid").subnets[0].ping_check;
    assert_eq!(checks(&subnet("", "")), None, "off unless asked for");
    assert_eq!(checks(&format!("ping-check = true\n{}", subnet("", ""))), Some(500), "the default timeout");
    assert_eq!(checks(&format!("ping-check = true\n{}", subnet("ping-check = false", ""))), None, "a subnet opts out");
    assert_eq!(
        checks(&format!("ping-timeout-ms = 200\n{}", subnet("ping-check = true\nping-timeout-ms = 50", ""))),
        Some(50),
        "the subnet's own timeout"
    );
}
