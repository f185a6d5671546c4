//! Hosts and groups as the small Go DHCP servers keep them in Redis (`mac:`, `client:` and
//! `group:` hashes), read the way their operators write them.
//!
//! A value that cannot be read is left out and reported, never a reason to drop the client:
//! the rest of the entry and its group still apply. Every reader here is pure (hashes in, a
//! host out), so the store does the round trips and these functions the reading.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use dhcp_core::StoreHost;
use dhcp_core::config::Group;
use dhcp_core::options::{OptionSet, OptionValue};

/// The field the Go server writes a host's last-seen time to (Unix seconds) on each lookup,
/// and its CLI's `show mac` prints.
pub(crate) const LAST_SEEN: &str = "ts";

/// A duration as operators of the Go server write one: plain seconds (`3600`), or numbers with
/// units as Go's `time.ParseDuration` reads them (`90m`, `24h`, `1h30m`, `1.5h`, `45s`), plus
/// days (`1d`). Whole seconds, at least one; `None` for anything else.
pub(crate) fn seconds(text: &str) -> Option<u32> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u32>() {
        return (secs > 0).then_some(secs);
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    let whole = total.floor();
    (whole >= 1.0 && whole <= f64::from(u32::MAX)).then_some(whole as u32)
}

/// A domain name as written, without the trailing dot of a fully qualified one.
fn domain(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}

/// The items of a list field: commas, spaces or both between them.
fn items(text: &str) -> Vec<&str> {
    text.split([',', ' ']).filter(|t| !t.is_empty()).collect()
}

/// The prefix length a subnet mask stands for, if it is one (contiguous ones, then zeros).
fn mask_length(addr: Ipv4Addr) -> Option<u32> {
    let bits = u32::from(addr);
    (bits.leading_ones() + bits.trailing_zeros() == 32).then(|| bits.leading_ones())
}

/// Reads a group's fields (`fields`, already layered: see [`host_from_hashes`]) as the
/// engine's group named `name`. Fields that cannot be read are left out and named in
/// `unreadable` (`group:NAME FIELD: VALUE (why)`).
pub(crate) fn group_from_fields(name: &str, fields: &HashMap<String, String>, unreadable: &mut Vec<String>) -> Group {
    let mut table: BTreeMap<String, OptionValue> = BTreeMap::new();
    let mut bad =
        |field: &str, value: &str, why: &str| unreadable.push(format!("group:{name} {field}: {value:?} ({why})"));
    let value = |field: &str| fields.get(field).map(|v| v.trim()).filter(|v| !v.is_empty());
    let list =
        |text: &str| OptionValue::List(items(text).into_iter().map(|t| OptionValue::Text(t.to_owned())).collect());
    let mut options: Vec<(&str, &str, OptionValue)> = Vec::new();
    for (field, option) in [("gateway", "routers"), ("dns", "domain-name-servers"), ("ntp", "ntp-servers")] {
        if let Some(v) = value(field) {
            options.push((field, option, list(v)));
        }
    }
    if let Some(v) = value("domain") {
        // The first name is the client's domain (option 15); several make a search list too.
        let names: Vec<&str> = items(v).into_iter().map(domain).collect();
        if let Some(first) = names.first() {
            options.push(("domain", "domain-name", OptionValue::Text((*first).to_owned())));
        }
        if names.len() > 1 {
            let search = names.iter().map(|n| OptionValue::Text((*n).to_owned())).collect();
            options.push(("domain", "domain-search", OptionValue::List(search)));
        }
    }
    let mut mask = None;
    if let Some(v) = value("prefix") {
        match v.trim_start_matches('/').parse::<u32>() {
            Ok(len) if len <= 32 => mask = Some(u32::MAX.checked_shl(32 - len).unwrap_or(0)),
            _ => bad("prefix", v, "not a prefix length from 0 to 32"),
        }
    }
    if let Some(v) = value("broadcast") {
        match v.parse::<Ipv4Addr>() {
            // The Go server's own groups hold the netmask here (`broadcast = 255.255.0.0`),
            // and it never sends the field: a mask-shaped value is taken as the subnet mask
            // when no prefix gives one, and is not sent as a broadcast address.
            Ok(addr) if mask_length(addr).is_some() => {
                mask.get_or_insert(u32::from(addr));
            }
            Ok(_) => options.push(("broadcast", "broadcast-address", OptionValue::Text(v.to_owned()))),
            Err(_) => bad("broadcast", v, "not an IPv4 address"),
        }
    }
    if let Some(mask) = mask {
        options.push(("prefix", "subnet-mask", OptionValue::Text(Ipv4Addr::from(mask).to_string())));
    }
    // Each option checked alone, so that one bad value costs only itself.
    for (field, option, value) in options {
        let one = BTreeMap::from([(option.to_owned(), value)]);
        match OptionSet::from_config(&one) {
            Ok(_) => table.extend(one),
            Err((_, why)) => bad(field, fields.get(field).map_or("", String::as_str), &why),
        }
    }
    let lease_time = value("lease-time").and_then(|v| {
        let secs = seconds(v);
        if secs.is_none() {
            bad("lease-time", v, "not a duration such as 3600, 90m, 24h or 1d");
        }
        secs
    });
    // Every entry of `table` was accepted alone above, so together they are too.
    let options = OptionSet::from_config(&table).unwrap_or_default();
    Group { name: name.to_owned(), options, lease_time, matcher: None }
}

/// The groups a host's entry draws on, as read from Redis: `default` (under every known host),
/// the group the entry names (when it exists), and `pool` (for clients without an entry).
#[derive(Debug, Default)]
pub(crate) struct GroupHashes {
    pub(crate) default: HashMap<String, String>,
    pub(crate) named: Option<(String, HashMap<String, String>)>,
}

/// A known host from its entry (`key` names it in reports) and its groups: the entry's named
/// group over `default` (the named group's fields win, `default` fills the rest); `default`
/// alone when the entry names no group or one that does not exist.
pub(crate) fn host_from_hashes(key: &str, entry: &HashMap<String, String>, groups: &GroupHashes) -> StoreHost {
    let mut unreadable = Vec::new();
    let ip_address = entry.get("ip").map(|ip| ip.trim()).filter(|ip| !ip.is_empty()).and_then(|ip| {
        let parsed = ip.parse::<Ipv4Addr>().ok();
        if parsed.is_none() {
            unreadable.push(format!("{key} ip: {ip:?} (not an IPv4 address)"));
        }
        parsed
    });
    let hostname = entry.get("hostname").map(|h| h.trim()).filter(|h| !h.is_empty()).map(str::to_owned);
    let mut fields = groups.default.clone();
    let name = match &groups.named {
        Some((name, named)) => {
            fields.extend(named.iter().map(|(k, v)| (k.clone(), v.clone())));
            name.as_str()
        }
        None => "default",
    };
    let group = (!fields.is_empty()).then(|| group_from_fields(name, &fields, &mut unreadable));
    let mut host = StoreHost::new(ip_address, hostname, group);
    host.unreadable = unreadable;
    host
}

/// A client without an entry, given `group:pool`'s fields (none when `pool` is empty) and
/// proposed `addresses` of the `pool` hash.
pub(crate) fn dynamic_host(pool: &HashMap<String, String>, addresses: Vec<Ipv4Addr>) -> StoreHost {
    let mut unreadable = Vec::new();
    let group = (!pool.is_empty()).then(|| group_from_fields("pool", pool, &mut unreadable));
    let mut host = StoreHost::pooled(group, addresses);
    host.unreadable = unreadable;
    host
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn durations_read_as_the_go_servers_operators_write_them() {
        for (text, secs) in [
            ("3600", 3600),
            ("1h", 3600),
            ("24h", 86_400),
            ("90m", 5400),
            ("1d", 86_400),
            ("1h30m", 5400),
            ("1.5h", 5400),
            (" 45s ", 45),
            ("2d12h", 216_000),
        ] {
            assert_eq!(seconds(text), Some(secs), "{text}");
        }
        for text in ["", "0", "0s", "h", "1x", "1h-", "-1h", "500ms", "one hour", "99999999999"] {
            assert_eq!(seconds(text), None, "{text}");
        }
    }

    /// The seed's three groups, exactly as its `show groups` prints them.
    fn seed_groups() -> [(&'static str, HashMap<String, String>); 3] {
        [
            (
                "pool",
                hash(&[
                    ("lease-time", "1h"),
                    ("gateway", "172.17.2.254"),
                    ("broadcast", "255.255.0.0"),
                    ("dns", "10.10.10.10,172.17.2.2"),
                    ("domain", "ojala.cloud."),
                    ("ntp", "172.17.2.22"),
                ]),
            ),
            (
                "default",
                hash(&[
                    ("domain", "ojala.cloud."),
                    ("lease-time", "24h"),
                    ("gateway", "172.17.2.254"),
                    ("broadcast", "255.255.0.0"),
                    ("dns", "10.10.10.10"),
                    ("prefix", "16"),
                ]),
            ),
            (
                "getflix",
                hash(&[
                    ("broadcast", "255.255.0.0"),
                    ("dns", "82.103.129.240,46.246.29.68"),
                    ("prefix", "16"),
                    ("domain", "ojala.cloud."),
                    ("ntp", "172.17.2.22"),
                    ("lease-time", "24h"),
                    ("gateway", "172.17.2.254"),
                ]),
            ),
        ]
    }

    #[test]
    fn the_seeds_groups_read_whole() {
        for (name, fields) in seed_groups() {
            let mut unreadable = Vec::new();
            let group = group_from_fields(name, &fields, &mut unreadable);
            assert!(unreadable.is_empty(), "{name}: {unreadable:?}");
            let want = if name == "pool" { 3600 } else { 86_400 };
            assert_eq!(group.lease_time, Some(want), "{name}");
            // The mask-shaped `broadcast` is the mask (pool has no prefix), never option 28.
            assert_eq!(group.options.get(1), Some(&[255, 255, 0, 0][..]), "{name}");
            assert_eq!(group.options.get(28), None, "{name}");
            assert_eq!(group.options.get(15), Some(&b"ojala.cloud"[..]), "{name}: the trailing dot goes");
            assert_eq!(group.options.get(3), Some(&[172, 17, 2, 254][..]), "{name}");
        }
    }

    #[test]
    fn a_bad_value_costs_only_its_field() {
        let fields = hash(&[
            ("lease-time", "forever"),
            ("dns", "10.0.0.1, not-an-address"),
            ("gateway", "10.0.0.254"),
            ("prefix", "33"),
            ("broadcast", "10.0.255.255"),
        ]);
        let mut unreadable = Vec::new();
        let group = group_from_fields("odd", &fields, &mut unreadable);
        assert_eq!(unreadable.len(), 3, "{unreadable:?}");
        assert!(unreadable.iter().any(|u| u.starts_with("group:odd lease-time: \"forever\"")), "{unreadable:?}");
        assert!(unreadable.iter().any(|u| u.starts_with("group:odd dns:")), "{unreadable:?}");
        assert!(unreadable.iter().any(|u| u.starts_with("group:odd prefix:")), "{unreadable:?}");
        assert_eq!(group.lease_time, None);
        assert_eq!(group.options.get(3), Some(&[10, 0, 0, 254][..]), "the gateway still goes");
        assert_eq!(group.options.get(28), Some(&[10, 0, 255, 255][..]), "a real broadcast address goes as one");
        assert_eq!(group.options.get(6), None);
    }

    #[test]
    fn a_host_draws_on_its_group_over_default_and_keeps_what_it_can_read() {
        let [_, (_, default), (_, getflix)] = seed_groups();
        let entry = hash(&[("ip", "172.17.4.19"), ("hostname", "chromecast-ultra"), ("group", "getflix")]);
        let groups = GroupHashes { default: default.clone(), named: Some(("getflix".into(), getflix)) };
        let host = host_from_hashes("mac:f4:f5:d8:a9:5a:b6", &entry, &groups);
        assert!(host.reserved && host.unreadable.is_empty(), "{host:?}");
        assert_eq!(host.ip_address, Some(Ipv4Addr::new(172, 17, 4, 19)));
        let group = host.group.expect("a group");
        assert_eq!(group.name, "getflix");
        assert_eq!(group.options.get(6), Some(&[82, 103, 129, 240, 46, 246, 29, 68][..]), "getflix's DNS wins");

        // A broken address is reported; the group still applies.
        let entry = hash(&[("ip", "172.17.999.1"), ("description", "typo")]);
        let host = host_from_hashes("mac:02:00:00:00:00:01", &entry, &GroupHashes { default, named: None });
        assert_eq!(host.ip_address, None);
        assert_eq!(
            host.unreadable,
            vec!["mac:02:00:00:00:00:01 ip: \"172.17.999.1\" (not an IPv4 address)".to_owned()]
        );
        assert_eq!(host.group.expect("default").lease_time, Some(86_400));
    }

    #[test]
    fn a_dynamic_client_gets_the_pool_group_and_no_reservation() {
        let [(_, pool), _, _] = seed_groups();
        let host = dynamic_host(&pool, Vec::new());
        assert!(!host.reserved && host.ip_address.is_none());
        assert_eq!(host.group.expect("pool").lease_time, Some(3600));
    }
}
