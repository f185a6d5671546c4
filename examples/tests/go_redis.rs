//! The Go Redis DHCP server's data, as its README (`../shared/seeds/002_...`) lists it, loaded
//! with plain `redis-cli` and served to real clients (ISC dhclient) in network namespaces:
//! its groups' lease times (`1h`, `24h`), fully qualified domains, comma lists and
//! mask-shaped `broadcast` fields; `group:default` under known hosts, `group:pool` for clients
//! without an entry; the last-seen time in its `ts` field; and a field that cannot be read
//! costing only that field.

mod lab;

use lab::{Lab, PrivateRedis, dhclient, text, values};

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

/// A lab whose server sits on the seed's network (172.17.2.2/16, its standby's address).
fn seed_lab(redis: &PrivateRedis) -> Lab {
    let mut lab = Lab::pair();
    lab.server.ip(&["addr", "flush", "dev", "vsrv"]);
    lab.server.ip(&["addr", "add", "172.17.2.2/16", "dev", "vsrv"]);
    let lines = format!("store = \"{}\"\napi-listen = \"127.0.0.1:8067\"\napi-token = \"{TOKEN}\"", redis.url());
    lab.start_server_with(CONFIG, &lines);
    lab
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
    let lab = seed_lab(&redis);

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
    let lab = seed_lab(&redis);

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
