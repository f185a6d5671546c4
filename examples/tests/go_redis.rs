//! The Go Redis DHCP server's data, as its README (`../shared/seeds/002_...`) lists it, loaded
//! with plain `redis-cli` and served to real clients (ISC dhclient) in network namespaces:
//! its groups' lease times (`1h`, `24h`), fully qualified domains, comma lists and
//! mask-shaped `broadcast` fields; `group:default` under known hosts, `group:pool` for clients
//! without an entry; the last-seen time in its `ts` field; and a field that cannot be read
//! costing only that field.

mod lab;

use std::path::{Path, PathBuf};
use std::time::Duration;

use lab::{Lab, PrivateRedis, Proc, TempDir, dhclient, run, text, values};

const TOKEN: &str = "go-redis-test-token";

/// The seed's network: 172.17.0.0/16, a dynamic range for clients without an entry.
const CONFIG: &str = r#"
authoritative = true
lease-time = 600
host-source = "store"

[[subnets]]
id = 1
subnet = "172.17.0.0/16"
pools = ["172.17.9.10-172.17.9.200"]
"#;

/// `redis-cli hset KEY FIELD VALUE`, one field at a time, as the seed's README types them.
fn hset(redis: &PrivateRedis, key: &str, fields: &[(&str, &str)]) {
    for (field, value) in fields {
        redis.cli(&["hset", key, field, value]);
    }
}

/// The three groups of the seed's `show groups`, field by field as printed there.
fn load_seed_groups(redis: &PrivateRedis) {
    hset(
        redis,
        "group:pool",
        &[
            ("lease-time", "1h"),
            ("gateway", "172.17.2.254"),
            ("broadcast", "255.255.0.0"),
            ("dns", "10.10.10.10,172.17.2.2"),
            ("domain", "ojala.cloud."),
            ("ntp", "172.17.2.22"),
        ],
    );
    hset(
        redis,
        "group:default",
        &[
            ("domain", "ojala.cloud."),
            ("lease-time", "24h"),
            ("gateway", "172.17.2.254"),
            ("broadcast", "255.255.0.0"),
            ("dns", "10.10.10.10"),
            ("prefix", "16"),
        ],
    );
    hset(
        redis,
        "group:getflix",
        &[
            ("broadcast", "255.255.0.0"),
            ("dns", "82.103.129.240,46.246.29.68"),
            ("prefix", "16"),
            ("domain", "ojala.cloud."),
            ("ntp", "172.17.2.22"),
            ("lease-time", "24h"),
            ("gateway", "172.17.2.254"),
        ],
    );
}

/// The seed's two example entries, as its README's `redis-cli` lines make them.
fn load_seed_macs(redis: &PrivateRedis) {
    redis.cli(&["del", "mac:dc:a6:32:43:e5:e0"]);
    hset(
        redis,
        "mac:dc:a6:32:43:e5:e0",
        &[
            ("description", "Kubernetes Node 4 (raspberry-pi4-5)"),
            ("hostname", "raspberry-pi4-5"),
            ("ip", "172.17.7.5"),
        ],
    );
    redis.cli(&["del", "mac:f4:f5:d8:a9:5a:b6"]);
    hset(
        redis,
        "mac:f4:f5:d8:a9:5a:b6",
        &[
            ("description", "Google Chromecast Ultra"),
            ("hostname", "chromecast-ultra"),
            ("ip", "172.17.4.19"),
            ("group", "getflix"),
        ],
    );
}

/// A lab whose server sits on the seed's network (172.17.2.2/16, its standby's address),
/// started with `server_lines` in its `[server]` table.
fn seed_lab(server_lines: &str) -> Lab {
    let mut lab = Lab::pair();
    lab.server.ip(&["addr", "flush", "dev", "vsrv"]);
    lab.server.ip(&["addr", "add", "172.17.2.2/16", "dev", "vsrv"]);
    lab.start_server_with(CONFIG, server_lines);
    lab
}

/// The `[server]` lines of a server on `store` with the management API, for `dhcp-cli`.
fn with_api(store: &str) -> String {
    format!("store = \"{store}\"\napi-listen = \"127.0.0.1:8067\"\napi-token = \"{TOKEN}\"")
}

/// Polls `check` every 50 ms until it holds, failing with `what` after `timeout`.
fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !check() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs dhclient once as `mac` on client 0, asserts it got a lease, and returns its hook log.
fn lease_as(lab: &Lab, mac: &str, name: &str) -> String {
    lab.client(0).ip(&["link", "set", "vcli", "down"]);
    lab.client(0).ip(&["link", "set", "vcli", "address", mac]);
    lab.client(0).ip(&["link", "set", "vcli", "up"]);
    let out = dhclient(lab, 0, name, &["-1"]);
    assert!(out.status.success(), "dhclient as {mac} failed:\n{}\n{}", text(&out), lab.server_log());
    let log = lab.hook_log(name);
    // The daemon it left stops (by its pid file), and its address goes, before the next client.
    let _ = dhclient(lab, 0, name, &["-x"]);
    lab.client(0).ip(&["addr", "flush", "dev", "vcli"]);
    log
}

/// The last value dhclient's hook logged for `key`.
fn last(log: &str, key: &str) -> String {
    values(log, key).pop().unwrap_or_default()
}

#[test]
fn the_seeds_groups_and_macs_serve_dhclient_as_written() {
    if !lab::available() {
        return;
    }
    let redis = PrivateRedis::start();
    load_seed_groups(&redis);
    load_seed_macs(&redis);
    let lab = seed_lab(&with_api(&redis.url()));

    // A known host with no group: `group:default`.
    let log = lease_as(&lab, "dc:a6:32:43:e5:e0", "k8s-node");
    assert_eq!(last(&log, "ip"), "172.17.7.5", "{log}");
    assert_eq!(last(&log, "mask"), "255.255.0.0", "{log}");
    assert_eq!(last(&log, "routers"), "172.17.2.254", "{log}");
    assert_eq!(last(&log, "dns"), "10.10.10.10", "{log}");
    assert_eq!(last(&log, "domain"), "ojala.cloud", "{log}");
    assert_eq!(last(&log, "lease"), "86400", "24h:\n{log}");
    assert_eq!(last(&log, "hostname"), "raspberry-pi4-5", "{log}");
    let seen = redis.cli(&["hget", "mac:dc:a6:32:43:e5:e0", "ts"]).trim().to_owned();
    assert!(seen.parse::<u64>().is_ok_and(|t| t > 1_700_000_000), "the seed's `ts` is written: {seen:?}");

    // A known host in `group:getflix`: its DNS and NTP.
    let log = lease_as(&lab, "f4:f5:d8:a9:5a:b6", "chromecast");
    assert_eq!(last(&log, "ip"), "172.17.4.19", "{log}");
    assert_eq!(last(&log, "dns"), "82.103.129.240 46.246.29.68", "{log}");
    assert_eq!(last(&log, "ntp"), "172.17.2.22", "{log}");
    assert_eq!(last(&log, "mask"), "255.255.0.0", "{log}");
    assert_eq!(last(&log, "lease"), "86400", "{log}");

    // A client without an entry: a dynamic address with `group:pool`'s options, 1h.
    let log = lease_as(&lab, "02:00:00:00:99:01", "dynamic");
    assert!(last(&log, "ip").starts_with("172.17.9."), "{log}");
    assert_eq!(last(&log, "lease"), "3600", "1h:\n{log}");
    assert_eq!(last(&log, "dns"), "10.10.10.10 172.17.2.2", "{log}");
    assert_eq!(last(&log, "ntp"), "172.17.2.22", "{log}");
    assert_eq!(last(&log, "mask"), "255.255.0.0", "pool's mask-shaped broadcast:\n{log}");
    assert!(lab.server_log().contains("lease granted"), "the server logged its grants");
}

#[test]
fn an_unreadable_group_field_costs_only_that_field_and_is_counted_and_logged() {
    if !lab::available() {
        return;
    }
    let redis = PrivateRedis::start();
    load_seed_groups(&redis);
    load_seed_macs(&redis);
    hset(&redis, "group:getflix", &[("lease-time", "a fortnight"), ("ntp", "ntp.example")]);
    let lab = seed_lab(&with_api(&redis.url()));

    let log = lease_as(&lab, "f4:f5:d8:a9:5a:b6", "chromecast");
    assert_eq!(last(&log, "ip"), "172.17.4.19", "still answered:\n{log}");
    assert_eq!(last(&log, "dns"), "82.103.129.240 46.246.29.68", "the rest of the group:\n{log}");
    // The merged field is getflix's, unreadable: the subnet's lease time, not a silence.
    assert_eq!(last(&log, "lease"), "600", "the subnet's lease time:\n{log}");
    assert_eq!(last(&log, "ntp"), "", "the unreadable NTP server is left out:\n{log}");
    let server_log = lab.server_log();
    assert!(server_log.contains("a fortnight") && server_log.contains("could not be read"), "logged:\n{server_log}");
    let stats = lab::cli_stats(&lab, "http://127.0.0.1:8067", TOKEN);
    let unreadable = stats.pointer("/host-fields-unreadable").and_then(serde_json::Value::as_i64).unwrap_or(0);
    assert!(unreadable >= 2, "both fields counted, each time the host is looked up: {stats}");
}

/// Runs dhclient once as `mac` on client 0 sending host name `host_name`, asserts it got a
/// lease, and returns its hook log.
fn lease_named(lab: &Lab, mac: &str, name: &str, host_name: &str) -> String {
    lab.client(0).ip(&["link", "set", "vcli", "down"]);
    lab.client(0).ip(&["link", "set", "vcli", "address", mac]);
    lab.client(0).ip(&["link", "set", "vcli", "up"]);
    let out = lab::dhclient_with(lab, 0, name, &format!("send host-name \"{host_name}\";\n"), &["-1"]);
    assert!(out.status.success(), "dhclient as {mac} failed:\n{}\n{}", text(&out), lab.server_log());
    let log = lab.hook_log(name);
    let _ = dhclient(lab, 0, name, &["-x"]);
    lab.client(0).ip(&["addr", "flush", "dev", "vcli"]);
    log
}

/// The Go server's `pool` hash: four free addresses and one another MAC holds.
fn load_seed_pool(redis: &PrivateRedis) {
    for last in 1..=4 {
        redis.cli(&["hset", "pool", &format!("172.17.10.{last}"), ""]);
    }
    redis.cli(&["hset", "pool", "172.17.10.5", "02:00:00:00:77:77"]);
}

/// The `pool` hash's address → holder, as `redis-cli hgetall pool` prints it.
fn pool_holders(redis: &PrivateRedis) -> Vec<(String, String)> {
    let out = redis.cli(&["hgetall", "pool"]);
    let lines: Vec<&str> = out.lines().collect();
    let mut pairs: Vec<(String, String)> =
        lines.chunks(2).map(|kv| (kv[0].to_owned(), kv.get(1).copied().unwrap_or("").to_owned())).collect();
    pairs.sort();
    pairs
}

#[test]
fn the_go_servers_pool_hash_gives_dynamic_clients_an_address_for_good_and_a_discover_flood_takes_none() {
    if !lab::available() {
        return;
    }
    let redis = PrivateRedis::start();
    load_seed_groups(&redis);
    load_seed_macs(&redis);
    load_seed_pool(&redis);
    redis.cli(&["hset", "client:chromebook", "ip", "172.17.7.9", "description", "by host name"]);
    let lab = seed_lab(&with_api(&redis.url()));

    // A client without an entry: an address of the pool hash (before the config's pools),
    // with group:pool's options, and the Go server's entry for it once bound.
    let mac = "02:00:00:00:99:07";
    let log = lease_named(&lab, mac, "pooled", "laptop");
    let ip = last(&log, "ip");
    assert!(ip.starts_with("172.17.10.") && ip != "172.17.10.5", "from the pool hash, not another's:\n{log}");
    assert_eq!(last(&log, "lease"), "3600", "group:pool's 1h:\n{log}");
    assert_eq!(last(&log, "ntp"), "172.17.2.22", "{log}");
    let holders = pool_holders(&redis);
    assert!(holders.contains(&(ip.clone(), mac.to_owned())), "the pool names its client: {holders:?}");
    let entry = redis.cli(&["hgetall", &format!("mac:{mac}")]);
    let fields: Vec<&str> = entry.lines().collect();
    let field = |name: &str| fields.iter().position(|f| *f == name).and_then(|i| fields.get(i + 1)).copied();
    assert_eq!(field("ip"), Some(ip.as_str()), "{entry}");
    assert_eq!(field("dynamic"), Some("1"), "{entry}");
    assert_eq!(field("description"), Some("dynamic:laptop"), "the Go server's description: {entry}");
    assert!(field("ts").and_then(|t| t.parse::<u64>().ok()).is_some_and(|t| t > 1_700_000_000), "{entry}");

    // It keeps that address from then on: a known host now, still with group:pool's options.
    let log = lease_named(&lab, mac, "pooled-again", "laptop");
    assert_eq!(last(&log, "ip"), ip, "{log}");
    assert_eq!(last(&log, "lease"), "3600", "{log}");

    // A `client:` entry keyed by the host name the client sends, as the Go server keys them.
    let log = lease_named(&lab, "02:00:00:00:99:08", "by-name", "chromebook");
    assert_eq!(last(&log, "ip"), "172.17.7.9", "{log}");

    // DISCOVERs from 40 made-up MACs (perfdhcp, DISCOVER-OFFER only) are offered addresses,
    // and take none of the pool for good.
    lab.client(0).ip(&["addr", "add", "172.17.50.2/16", "dev", "vcli"]);
    let before = pool_holders(&redis);
    let perf = text(&lab.client(0).output(&[
        "timeout",
        "30",
        "perfdhcp",
        "-4",
        "-i",
        "-R",
        "40",
        "-n",
        "40",
        "-r",
        "40",
        "-p",
        "3",
        "-l",
        "172.17.50.2",
        "172.17.2.2",
    ]));
    let offers = perf
        .lines()
        .find(|l| l.trim_start().starts_with("received packets:"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(offers >= 30, "the flood was answered: {perf}");
    assert_eq!(pool_holders(&redis), before, "an offer takes nothing for good");
}

/// A `mac:` entry of the seed's `show mac` listing, and the line the seed prints for it.
struct SeedMac {
    key: &'static str,
    ip: &'static str,
    /// The last-seen time: the Unix seconds of the printed time, read as UTC.
    ts: Option<u64>,
    description: &'static str,
    group: Option<&'static str>,
    line: &'static str,
}

/// Builds a [`SeedMac`] from its parts in listing order.
const fn seed(
    key: &'static str,
    ip: &'static str,
    ts: Option<u64>,
    description: &'static str,
    group: Option<&'static str>,
    line: &'static str,
) -> SeedMac {
    SeedMac { key, ip, ts, description, group, line }
}

/// The seed's `show mac` listing.
const SEED_MACS: [SeedMac; 13] = [
    seed(
        "mac:dc:a6:32:43:e5:e0",
        "172.17.7.5",
        Some(1_575_812_647),
        "Kubernetes Node 4 (raspberry-pi4-5)",
        None,
        "  mac:dc:a6:32:43:e5:e0  172.17.7.5          2019-12-08 13:44:07  Kubernetes Node 4 (raspberry-pi4-5)",
    ),
    seed(
        "mac:f4:f5:d8:a9:5a:b6",
        "172.17.4.19",
        Some(1_572_749_599),
        "Google Chromecast Ultra",
        Some("getflix"),
        "  mac:f4:f5:d8:a9:5a:b6  172.17.4.19         2019-11-03 02:53:19  Google Chromecast Ultra  (group:getflix)",
    ),
    seed(
        "mac:18:b4:30:a5:b1:bf",
        "172.17.3.134",
        Some(1_575_822_362),
        "Google Nest Protect (Hallway)",
        None,
        "  mac:18:b4:30:a5:b1:bf  172.17.3.134        2019-12-08 16:26:02  Google Nest Protect (Hallway)",
    ),
    seed(
        "mac:e0:66:78:68:b8:31",
        "172.17.2.184",
        Some(1_575_806_621),
        "Apple iPad Mini (Kitchen)",
        None,
        "  mac:e0:66:78:68:b8:31  172.17.2.184        2019-12-08 12:03:41  Apple iPad Mini (Kitchen)",
    ),
    seed(
        "mac:00:17:88:22:03:4c",
        "172.17.3.1",
        Some(1_575_819_300),
        "Philips Hue hub",
        None,
        "  mac:00:17:88:22:03:4c  172.17.3.1          2019-12-08 15:35:00  Philips Hue hub",
    ),
    seed(
        "mac:40:cb:c0:c9:51:d6",
        "172.17.4.18",
        Some(1_575_831_685),
        "Apple TV 4K (Living room)",
        Some("getflix"),
        "  mac:40:cb:c0:c9:51:d6  172.17.4.18         2019-12-08 19:01:25  Apple TV 4K (Living room)  (group:getflix)",
    ),
    seed(
        "mac:26:fc:7f:43:d6:dc",
        "172.17.8.1",
        Some(1_575_826_064),
        "Google Edge TPU Board",
        None,
        "  mac:26:fc:7f:43:d6:dc  172.17.8.1          2019-12-08 17:27:44  Google Edge TPU Board",
    ),
    seed(
        "mac:18:b4:30:31:52:fc",
        "172.17.3.135",
        Some(1_575_765_645),
        "Google Nest Protect (Study)",
        None,
        "  mac:18:b4:30:31:52:fc  172.17.3.135        2019-12-08 00:40:45  Google Nest Protect (Study)",
    ),
    seed(
        "mac:b8:27:eb:4b:19:a2",
        "172.17.2.24",
        Some(1_575_790_807),
        "Raspberry Pi Zero W",
        None,
        "  mac:b8:27:eb:4b:19:a2  172.17.2.24         2019-12-08 07:40:07  Raspberry Pi Zero W",
    ),
    seed(
        "mac:b8:27:eb:37:92:e5",
        "172.17.2.22",
        Some(1_575_789_973),
        "GPS/NTP Server (Raspberry Pi Zero W)",
        None,
        "  mac:b8:27:eb:37:92:e5  172.17.2.22         2019-12-08 07:26:13  GPS/NTP Server (Raspberry Pi Zero W)",
    ),
    seed(
        "mac:dc:54:d7:d2:18:55",
        "172.17.3.132",
        Some(1_575_812_827),
        "Amazon Echo Show 5 (Study)",
        None,
        "  mac:dc:54:d7:d2:18:55  172.17.3.132        2019-12-08 13:47:07  Amazon Echo Show 5 (Study)",
    ),
    seed(
        "mac:54:62:e2:06:11:4c",
        "172.17.2.180",
        Some(1_575_823_947),
        "Apple iPad Air (Petri)",
        None,
        "  mac:54:62:e2:06:11:4c  172.17.2.180        2019-12-08 16:52:27  Apple iPad Air (Petri)",
    ),
    seed(
        "mac:00:80:a3:91:38:d4",
        "172.17.254.250",
        None,
        "RIPE Atlas Probe",
        None,
        "  mac:00:80:a3:91:38:d4  172.17.254.250                           RIPE Atlas Probe",
    ),
];

/// `dhcp-cli ARGS` against the lab server's API, in its namespace; its standard output.
fn cli(lab: &Lab, args: &[&str]) -> String {
    let out = lab
        .server
        .command(env!("CARGO_BIN_EXE_dhcp-cli"))
        .args(["--url", "http://127.0.0.1:8067", "--token", TOKEN])
        .args(args)
        .output()
        .expect("dhcp-cli");
    assert!(out.status.success(), "dhcp-cli {args:?}:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn dhcp_cli_shows_the_seeds_groups_clients_and_macs_and_writes_entries_in_its_schema() {
    if !lab::available() {
        return;
    }
    let redis = PrivateRedis::start();
    load_seed_groups(&redis);
    for SeedMac { key, ip, ts, description, group, .. } in SEED_MACS {
        hset(&redis, key, &[("ip", ip), ("description", description)]);
        if let Some(ts) = ts {
            hset(&redis, key, &[("ts", &ts.to_string())]);
        }
        if let Some(group) = group {
            hset(&redis, key, &[("group", group)]);
        }
    }
    hset(&redis, "client:laptop", &[("ip", "172.17.5.5"), ("description", "by client id")]);
    let lab = seed_lab(&with_api(&redis.url()));

    // Every MAC, line for line as the seed's CLI prints them (its order is Redis's; ours, the
    // keys').
    let shown = cli(&lab, &["show", "mac"]);
    assert!(shown.starts_with("DHCP by Ethernet address:\n\n"), "{shown}");
    let mut got: Vec<&str> = shown.lines().skip(2).collect();
    let mut want: Vec<&str> = SEED_MACS.iter().map(|m| m.line).collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
    // One MAC, in any spelling.
    let one = cli(&lab, &["show", "mac", "F4-F5-D8-A9-5A-B6"]);
    assert_eq!(one.lines().skip(2).collect::<Vec<_>>(), vec![SEED_MACS[1].line], "{one}");

    let groups = cli(&lab, &["show", "groups"]);
    for line in ["group:pool", "  lease-time = 1h", "group:default", "  prefix = 16", "group:getflix"] {
        assert!(groups.lines().any(|l| l == line), "{line:?} in:\n{groups}");
    }
    let clients = cli(&lab, &["show", "clients"]);
    assert!(clients.contains("client:laptop\n") && clients.contains("  ip = 172.17.5.5\n"), "{clients}");
    let json: serde_json::Value = serde_json::from_str(&cli(&lab, &["--json", "show", "groups"])).expect("JSON");
    assert_eq!(json["entries"].as_array().map(Vec::len), Some(3), "{json}");

    // Writes go to Redis in the same schema, for redis-cli (and the Go server) to read.
    let written =
        cli(&lab, &["entry", "set", "mac:02:00:00:00:00:77", "ip=172.17.6.7", "description=new TV", "group=getflix"]);
    assert!(written.contains("written"), "{written}");
    assert_eq!(redis.cli(&["hget", "mac:02:00:00:00:00:77", "group"]).trim(), "getflix");
    let log = lease_as(&lab, "02:00:00:00:00:77", "new-tv");
    assert_eq!(last(&log, "ip"), "172.17.6.7", "the entry serves at once:\n{log}");
    cli(&lab, &["entry", "del", "mac:02:00:00:00:00:77"]);
    assert_eq!(redis.cli(&["exists", "mac:02:00:00:00:00:77"]).trim(), "0");

    // The reservation and group commands write the same entries, no --subnet needed.
    cli(&lab, &["reservation", "add", "--mac", "02-00-00-00-00-78", "--ip", "172.17.6.8", "--description", "kiosk"]);
    assert_eq!(redis.cli(&["hget", "mac:02:00:00:00:00:78", "ip"]).trim(), "172.17.6.8");
    cli(&lab, &["group", "set", "lab", "--lease-time", "900", "--gateway", "172.17.2.1", "--dns", "10.0.0.1,10.0.0.2"]);
    assert_eq!(redis.cli(&["hget", "group:lab", "lease-time"]).trim(), "900");
    assert_eq!(redis.cli(&["hget", "group:lab", "dns"]).trim(), "10.0.0.1,10.0.0.2");
    cli(&lab, &["reservation", "del", "02:00:00:00:00:78"]);
    cli(&lab, &["group", "del", "lab"]);
    assert_eq!(redis.cli(&["exists", "mac:02:00:00:00:00:78", "group:lab"]).trim(), "0");
}

/// A Redis master (TCP on loopback for its replica, and a Unix socket the server's namespace
/// can reach) and a read-only replica of it on a Unix socket, as the Go server's standby runs
/// beside its local replica. Killed on drop.
struct MasterAndReplica {
    dir: TempDir,
    master: Option<Proc>,
    _replica: Proc,
}

impl MasterAndReplica {
    fn start() -> MasterAndReplica {
        let dir = TempDir::new("redis-replica");
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let spawn = |name: &str, extra: &[String]| {
            let socket = dir.join(format!("{name}.sock")).display().to_string();
            let mut args: Vec<String> =
                ["--save", "", "--appendonly", "no", "--unixsocket", &socket].map(String::from).into();
            args.extend_from_slice(extra);
            let proc =
                Proc::spawn(std::process::Command::new("redis-server").args(&args), &dir.join(format!("{name}.log")));
            proc.wait_for_log("eady to accept connections", Duration::from_secs(5));
            proc
        };
        let master = spawn("master", &["--port".into(), port.to_string(), "--bind".into(), "127.0.0.1".into()]);
        let replica = spawn(
            "replica",
            &["--port".into(), "0".into(), "--replicaof".into(), "127.0.0.1".into(), port.to_string()],
        );
        let pair = MasterAndReplica { dir, master: Some(master), _replica: replica };
        // Replication is up once the replica reports its link.
        wait_until("the replica's link to its master", Duration::from_secs(10), || {
            pair.cli("replica", &["info", "replication"]).contains("master_link_status:up")
        });
        pair
    }

    fn socket(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.sock"))
    }

    fn cli(&self, name: &str, args: &[&str]) -> String {
        let socket = self.socket(name).display().to_string();
        run(["redis-cli", "-s", socket.as_str()].iter().chain(args))
    }

    /// Waits until the replica holds what the master was last given (a key's value).
    fn wait_replicated(&self, key: &str, field: &str, value: &str) {
        wait_until(&format!("{key} {field} on the replica"), Duration::from_secs(10), || {
            self.cli("replica", &["hget", key, field]).trim() == value
        });
    }

    fn stop_master(&mut self) {
        self.master = None;
    }
}

fn unix_url(socket: &Path) -> String {
    format!("redis+unix://{}", socket.display())
}

#[test]
fn a_standby_reads_hosts_from_a_read_only_replica_writes_nothing_to_it_and_outlives_its_master() {
    if !lab::available() {
        return;
    }
    let mut redis = MasterAndReplica::start();
    // The operator writes to the master, as with the Go server.
    for (key, fields) in [
        (
            "group:default",
            vec![("lease-time", "24h"), ("gateway", "172.17.2.254"), ("prefix", "16"), ("dns", "10.10.10.10")],
        ),
        ("group:pool", vec![("lease-time", "1h"), ("gateway", "172.17.2.254")]),
        ("pool", vec![("172.17.10.1", "")]),
        ("mac:dc:a6:32:43:e5:e0", vec![("ip", "172.17.7.5"), ("description", "Kubernetes Node 4 (raspberry-pi4-5)")]),
    ] {
        for (field, value) in fields {
            redis.cli("master", &["hset", key, field, value]);
        }
    }
    redis.wait_replicated("mac:dc:a6:32:43:e5:e0", "ip", "172.17.7.5");
    redis.cli("replica", &["config", "resetstat"]);

    // The standby: leases of its own (a journal), hosts from the local replica, last-seen
    // times to the master, no dynamic clients while the master is away (the Go standby's
    // default, without --allow-slave).
    let host_store = format!("{}?master={}", unix_url(&redis.socket("replica")), unix_url(&redis.socket("master")));
    let journal = redis.dir.join("leases.journal");
    let lab = seed_lab(&format!("store = \"memory:?journal={}\"\nhost-store = \"{host_store}\"", journal.display()));

    let log = lease_as(&lab, "dc:a6:32:43:e5:e0", "known");
    assert_eq!(last(&log, "ip"), "172.17.7.5", "{log}");
    assert_eq!(last(&log, "lease"), "86400", "{log}");
    let log = lease_as(&lab, "02:00:00:00:99:02", "dynamic");
    assert_eq!(last(&log, "lease"), "3600", "a dynamic client, with the master up:\n{log}");
    // Its address comes from the pool hash read on the replica, taken on the master.
    assert_eq!(last(&log, "ip"), "172.17.10.1", "{log}");
    assert_eq!(redis.cli("master", &["hget", "pool", "172.17.10.1"]).trim(), "02:00:00:00:99:02");
    redis.wait_replicated("mac:02:00:00:00:99:02", "dynamic", "1");

    // The last-seen time reaches the master (batched, within a couple of seconds), and then
    // the replica through replication, never by a write of ours.
    lab.wait_for("the last-seen time on the master", Duration::from_secs(10), || {
        !redis.cli("master", &["hget", "mac:dc:a6:32:43:e5:e0", "ts"]).trim().is_empty()
    });
    // The replica counts the writes its master streams to it as its own commands; a client's
    // write would be refused there (READONLY), which its error statistics would show.
    let stats = redis.cli("replica", &["info", "commandstats"]);
    assert!(stats.contains("cmdstat_hgetall"), "the replica was read:\n{stats}");
    assert!(
        stats.lines().all(|l| !l.starts_with("cmdstat_") || l.ends_with("rejected_calls=0,failed_calls=0")),
        "{stats}"
    );
    let errors = redis.cli("replica", &["info", "errorstats"]);
    assert!(!errors.contains("READONLY"), "a write reached the replica:\n{errors}");
    for script in ["cmdstat_evalsha", "cmdstat_eval:"] {
        assert!(!stats.contains(script), "the leases stay out of Redis on this standby:\n{stats}");
    }

    // The master goes away: known hosts are still served from the replica; clients without an
    // entry are not (allow-dynamic=no), once the standby has seen the master fail.
    redis.stop_master();
    std::thread::sleep(Duration::from_secs(3));
    let log = lease_as(&lab, "dc:a6:32:43:e5:e0", "known-again");
    assert_eq!(last(&log, "ip"), "172.17.7.5", "{log}");
    lab.client(0).ip(&["link", "set", "vcli", "address", "02:00:00:00:99:03"]);
    let out = dhclient(&lab, 0, "refused", &["-1", "-timeout", "5"]);
    assert!(!out.status.success(), "a dynamic client was served without the master:\n{}", text(&out));
    assert!(lab.server_log().contains("master Redis is unreachable"), "{}", lab.server_log());
}

#[test]
fn with_the_host_cache_a_storm_of_known_hosts_reads_each_once_and_an_edit_serves_next() {
    if !lab::available() {
        return;
    }
    let redis = PrivateRedis::start();
    load_seed_groups(&redis);
    // 256 known hosts, the MACs perfdhcp makes from its base below.
    for n in 0..=255u8 {
        let key = format!("mac:02:00:00:aa:00:{n:02x}");
        hset(&redis, &key, &[("ip", &format!("172.17.6.{n}")), ("group", "getflix")]);
    }
    // Leases in memory and hosts from Redis (the host store): every Redis command counted
    // below is a host read.
    let lab = seed_lab(&format!("{}\nhost-store = \"{}?host-cache=yes\"", with_api("memory:"), redis.url()));
    redis.cli(&["config", "resetstat"]);

    // perfdhcp as a relay on the seed's network: 1,000 DORAs over the 256 known MACs.
    lab.client(0).ip(&["addr", "add", "172.17.0.9/16", "dev", "vcli"]);
    let perf = lab.client(0).spawn(
        &[
            "perfdhcp",
            "-4",
            "-l",
            "172.17.0.9",
            "-r",
            "200",
            "-n",
            "1000",
            "-R",
            "256",
            "-b",
            "mac=02:00:00:aa:00:00",
            "-W",
            "2000000",
            "-d",
            "10",
            "-d",
            "10",
            "172.17.2.2",
        ],
        &lab.path("perfdhcp.log"),
    );
    assert!(perf.wait(Duration::from_secs(60)).is_some(), "perfdhcp did not stop:\n{}", perf.log_text());
    let log = perf.log_text();
    let received: Vec<usize> =
        log.lines().filter_map(|l| l.strip_prefix("received packets:")).filter_map(|v| v.trim().parse().ok()).collect();
    assert!(received.len() == 2 && received[1] >= 990, "the known hosts were served:\n{log}");

    // Two lookups a DORA (DISCOVER and REQUEST), each an entry and its groups without the
    // cache: about 4,000 HGETALLs. With it, each key is read about once: 256 entries, 2 groups.
    let stats = redis.cli(&["info", "commandstats"]);
    let calls = |name: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{name}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    assert!(calls("hgetall") <= 256 + 16, "host reads per packet, not per host:\n{stats}");
    let metrics = cli(&lab, &["show", "metrics"]);
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let (hits, misses) = (value("dhcp4_host_cache_hits_total"), value("dhcp4_host_cache_misses_total"));
    assert!(hits >= 1500 && hits > 2 * misses, "hits {hits}, misses {misses}:\n{metrics}");

    // An edit with plain redis-cli serves on the next packet.
    redis.cli(&["hset", "mac:02:00:00:aa:00:05", "ip", "172.17.7.250"]);
    let log = lease_as(&lab, "02:00:00:aa:00:05", "edited");
    assert_eq!(last(&log, "ip"), "172.17.7.250", "{log}");
}

#[test]
fn the_lease_store_with_the_host_cache_batches_last_seen_and_follows_edits() {
    if !lab::available() {
        return;
    }
    let redis = PrivateRedis::start();
    load_seed_groups(&redis);
    load_seed_macs(&redis);
    let lab = seed_lab(&format!("store = \"{}?host-cache=yes\"", redis.url()));

    let log = lease_as(&lab, "dc:a6:32:43:e5:e0", "cached");
    assert_eq!(last(&log, "ip"), "172.17.7.5", "{log}");
    // The last-seen time goes in the next batch (within a second or two), not with the request.
    lab.wait_for("the batched last-seen time", Duration::from_secs(5), || {
        !redis.cli(&["hget", "mac:dc:a6:32:43:e5:e0", "ts"]).trim().is_empty()
    });
    // Writing `ts` over the cache's own connection invalidated nothing (NOLOOP); an operator's
    // edit does.
    redis.cli(&["hset", "mac:dc:a6:32:43:e5:e0", "group", "getflix"]);
    let log = lease_as(&lab, "dc:a6:32:43:e5:e0", "edited");
    assert_eq!(last(&log, "ntp"), "172.17.2.22", "getflix's NTP server, after the edit:\n{log}");
}
