//! Option definitions, values from the config, and ordered option sets.
//!
//! Config files name options the way operators know them (`routers`, `domain-name-servers`)
//! and give values as TOML strings, numbers, booleans or lists. [`encode_value`] turns a
//! name and value into the option's wire bytes once, at config load; the engine only copies
//! bytes. Options with no name here are written `option-N` and given as hex.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use serde::Deserialize;

use crate::wire::code;

/// How an option's value is written on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionKind {
    /// One IPv4 address.
    Ip,
    /// One or more IPv4 addresses.
    IpList,
    /// Text (no terminating NUL).
    Text,
    /// An unsigned byte.
    U8,
    /// An unsigned 16-bit integer.
    U16,
    /// An unsigned 32-bit integer.
    U32,
    /// A signed 32-bit integer.
    I32,
    /// A boolean byte (0 or 1).
    Bool,
    /// A list of domain names in DNS wire format (option 119, RFC 3397), uncompressed.
    DomainList,
    /// Classless static routes (option 121, RFC 3442), each `"NET/LEN - GATEWAY"`.
    Routes,
    /// Raw bytes, written as hex.
    Hex,
}

/// A named option this server knows how to encode.
#[derive(Debug, Clone, Copy)]
pub struct OptionDef {
    /// The option code.
    pub code: u8,
    /// The name used in config files (Kea's names where Kea has one).
    pub name: &'static str,
    /// How the value is encoded.
    pub kind: OptionKind,
}

macro_rules! defs {
    ($($code:literal $name:literal $kind:ident,)*) => {
        /// Every option known by name, by code.
        pub const DEFINITIONS: &[OptionDef] = &[$(OptionDef { code: $code, name: $name, kind: OptionKind::$kind },)*];
    };
}

defs! {
    1 "subnet-mask" Ip,
    2 "time-offset" I32,
    3 "routers" IpList,
    4 "time-servers" IpList,
    5 "name-servers" IpList,
    6 "domain-name-servers" IpList,
    7 "log-servers" IpList,
    9 "lpr-servers" IpList,
    12 "host-name" Text,
    13 "boot-size" U16,
    14 "merit-dump" Text,
    15 "domain-name" Text,
    16 "swap-server" Ip,
    17 "root-path" Text,
    18 "extensions-path" Text,
    19 "ip-forwarding" Bool,
    20 "non-local-source-routing" Bool,
    22 "max-dgram-reassembly" U16,
    23 "default-ip-ttl" U8,
    24 "path-mtu-aging-timeout" U32,
    26 "interface-mtu" U16,
    27 "all-subnets-local" Bool,
    28 "broadcast-address" Ip,
    29 "perform-mask-discovery" Bool,
    30 "mask-supplier" Bool,
    31 "router-discovery" Bool,
    32 "router-solicitation-address" Ip,
    34 "trailer-encapsulation" Bool,
    35 "arp-cache-timeout" U32,
    36 "ieee802-3-encapsulation" Bool,
    37 "default-tcp-ttl" U8,
    38 "tcp-keepalive-interval" U32,
    39 "tcp-keepalive-garbage" Bool,
    40 "nis-domain" Text,
    41 "nis-servers" IpList,
    42 "ntp-servers" IpList,
    43 "vendor-encapsulated-options" Hex,
    44 "netbios-name-servers" IpList,
    45 "netbios-dd-server" IpList,
    46 "netbios-node-type" U8,
    47 "netbios-scope" Text,
    48 "font-servers" IpList,
    49 "x-display-manager" IpList,
    60 "vendor-class-identifier" Text,
    64 "nisplus-domain-name" Text,
    65 "nisplus-servers" IpList,
    66 "tftp-server-name" Text,
    67 "boot-file-name" Text,
    68 "mobile-ip-home-agent" IpList,
    69 "smtp-server" IpList,
    70 "pop-server" IpList,
    72 "www-server" IpList,
    114 "v4-captive-portal" Text,
    119 "domain-search" DomainList,
    121 "classless-static-route" Routes,
    150 "tftp-server-address" IpList,
    252 "wpad-url" Text,
}

/// Codes the server sets itself; a config may not give them.
pub const SERVER_OWNED: &[u8] = &[
    code::PAD,
    code::REQUESTED_IP_ADDRESS,
    code::LEASE_TIME,
    code::OPTION_OVERLOAD,
    code::MESSAGE_TYPE,
    code::SERVER_IDENTIFIER,
    code::PARAMETER_REQUEST_LIST,
    code::MAX_MESSAGE_SIZE,
    code::RENEWAL_TIME,
    code::REBINDING_TIME,
    code::CLIENT_IDENTIFIER,
    code::RELAY_AGENT_INFORMATION,
    code::END,
];

/// The definition for a config name: a known name, or `option-N`.
pub fn lookup(name: &str) -> Option<OptionDef> {
    if let Some(def) = DEFINITIONS.iter().find(|d| d.name == name) {
        return Some(*def);
    }
    let code: u8 = name.strip_prefix("option-")?.parse().ok()?;
    let kind = DEFINITIONS.iter().find(|d| d.code == code).map_or(OptionKind::Hex, |d| d.kind);
    Some(OptionDef { code, name: "option", kind })
}

/// An option value as written in TOML.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum OptionValue {
    /// `true` / `false`.
    Bool(bool),
    /// A number.
    Int(i64),
    /// A string: an address, text, hex, a route.
    Text(String),
    /// A list of the above.
    List(Vec<OptionValue>),
}

impl OptionValue {
    fn items(&self) -> Vec<&OptionValue> {
        match self {
            OptionValue::List(items) => items.iter().collect(),
            one => alloc::vec![one],
        }
    }

    fn text(&self) -> Result<&str, String> {
        match self {
            OptionValue::Text(s) => Ok(s),
            other => Err(format!("expected a string, got {}", other.describe())),
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            OptionValue::Bool(_) => "a boolean",
            OptionValue::Int(_) => "a number",
            OptionValue::Text(_) => "a string",
            OptionValue::List(_) => "a list",
        }
    }
}

/// Encodes `value` as option `def` would carry it. The error says what is wrong with the value.
pub fn encode_value(def: &OptionDef, value: &OptionValue) -> Result<Vec<u8>, String> {
    let out = match def.kind {
        OptionKind::Ip => {
            let items = value.items();
            if items.len() != 1 {
                return Err("expected one IPv4 address".into());
            }
            parse_ip(items[0])?.octets().to_vec()
        }
        OptionKind::IpList => {
            let mut out = Vec::new();
            for item in value.items() {
                out.extend_from_slice(&parse_ip(item)?.octets());
            }
            if out.is_empty() {
                return Err("expected at least one IPv4 address".into());
            }
            out
        }
        OptionKind::Text => {
            let text = value.text()?;
            if text.is_empty() {
                return Err("text must not be empty".into());
            }
            text.as_bytes().to_vec()
        }
        OptionKind::U8 => alloc::vec![int_in(value, 0, u8::MAX.into())? as u8],
        OptionKind::U16 => (int_in(value, 0, u16::MAX.into())? as u16).to_be_bytes().to_vec(),
        OptionKind::U32 => (int_in(value, 0, u32::MAX.into())? as u32).to_be_bytes().to_vec(),
        OptionKind::I32 => (int_in(value, i32::MIN.into(), i32::MAX.into())? as i32).to_be_bytes().to_vec(),
        OptionKind::Bool => match value {
            OptionValue::Bool(b) => alloc::vec![u8::from(*b)],
            other => return Err(format!("expected true or false, got {}", other.describe())),
        },
        OptionKind::DomainList => {
            let mut out = Vec::new();
            for item in value.items() {
                encode_domain(item.text()?, &mut out)?;
            }
            out
        }
        OptionKind::Routes => {
            let mut out = Vec::new();
            for item in value.items() {
                encode_route(item.text()?, &mut out)?;
            }
            out
        }
        OptionKind::Hex => {
            let text = value.text()?;
            crate::lease::parse_hex_bytes(text).ok_or_else(|| format!("{text:?} is not hex bytes"))?
        }
    };
    Ok(out)
}

fn parse_ip(value: &OptionValue) -> Result<Ipv4Addr, String> {
    let text = value.text()?;
    text.trim().parse().map_err(|_| format!("{text:?} is not an IPv4 address"))
}

fn int_in(value: &OptionValue, min: i64, max: i64) -> Result<i64, String> {
    match value {
        OptionValue::Int(n) if (min..=max).contains(n) => Ok(*n),
        OptionValue::Int(n) => Err(format!("{n} is outside {min}..={max}")),
        other => Err(format!("expected a number, got {}", other.describe())),
    }
}

fn encode_domain(name: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let name = name.trim().trim_end_matches('.');
    if name.is_empty() {
        return Err("empty domain name".into());
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("{name:?} has a label that is empty or longer than 63 bytes"));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    Ok(())
}

fn encode_route(route: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let bad = || format!("{route:?} is not a route written \"NET/LEN - GATEWAY\"");
    let (net, gateway) = route.split_once('-').ok_or_else(bad)?;
    let net: ipnet::Ipv4Net = net.trim().parse().map_err(|_| bad())?;
    let gateway: Ipv4Addr = gateway.trim().parse().map_err(|_| bad())?;
    let len = net.prefix_len();
    out.push(len);
    let significant = usize::from(len).div_ceil(8);
    out.extend_from_slice(&net.network().octets()[..significant]);
    out.extend_from_slice(&gateway.octets());
    Ok(())
}

/// Options with their encoded values, sorted by code, at most one value per code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptionSet {
    entries: Vec<(u8, Box<[u8]>)>,
}

impl OptionSet {
    /// An empty set.
    pub const fn new() -> Self {
        OptionSet { entries: Vec::new() }
    }

    /// Sets option `code`, replacing any earlier value.
    pub fn insert(&mut self, code: u8, value: impl Into<Box<[u8]>>) {
        let value = value.into();
        match self.entries.binary_search_by_key(&code, |(c, _)| *c) {
            Ok(i) => self.entries[i].1 = value,
            Err(i) => self.entries.insert(i, (code, value)),
        }
    }

    /// The encoded value of option `code`.
    pub fn get(&self, code: u8) -> Option<&[u8]> {
        self.entries.binary_search_by_key(&code, |(c, _)| *c).ok().map(|i| &*self.entries[i].1)
    }

    /// Every `(code, value)`, by code.
    pub fn iter(&self) -> impl Iterator<Item = (u8, &[u8])> {
        self.entries.iter().map(|(c, v)| (*c, &**v))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `self` with every option of `over` laid on top (the more specific source wins).
    pub fn overlaid_with(&self, over: &OptionSet) -> OptionSet {
        let mut merged = self.clone();
        for (code, value) in over.iter() {
            merged.insert(code, value);
        }
        merged
    }

    /// Encodes a config table of `name = value` into a set. The error is `(name, reason)`.
    pub fn from_config<'a>(
        table: impl IntoIterator<Item = (&'a String, &'a OptionValue)>,
    ) -> Result<OptionSet, (String, String)> {
        let mut set = OptionSet::new();
        for (name, value) in table {
            let def = lookup(name).ok_or_else(|| (name.clone(), "unknown option name".to_string()))?;
            if SERVER_OWNED.contains(&def.code) {
                return Err((name.clone(), format!("option {} is set by the server, not the config", def.code)));
            }
            let bytes = encode_value(&def, value).map_err(|reason| (name.clone(), reason))?;
            set.insert(def.code, bytes);
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> OptionValue {
        OptionValue::Text(s.into())
    }

    #[test]
    fn encodes_each_kind() {
        let routers = lookup("routers").expect("known");
        let list = OptionValue::List(alloc::vec![text("10.0.0.1"), text("10.0.0.2")]);
        assert_eq!(encode_value(&routers, &list), Ok(alloc::vec![10, 0, 0, 1, 10, 0, 0, 2]));
        assert_eq!(encode_value(&routers, &text("10.0.0.1")), Ok(alloc::vec![10, 0, 0, 1]));
        let mtu = lookup("interface-mtu").expect("known");
        assert_eq!(encode_value(&mtu, &OptionValue::Int(1500)), Ok(alloc::vec![5, 220]));
        assert!(encode_value(&mtu, &OptionValue::Int(70000)).is_err());
        let search = lookup("domain-search").expect("known");
        assert_eq!(encode_value(&search, &text("ab.c")), Ok(alloc::vec![2, b'a', b'b', 1, b'c', 0]));
        let routes = lookup("classless-static-route").expect("known");
        assert_eq!(encode_value(&routes, &text("10.1.0.0/16 - 10.0.0.1")), Ok(alloc::vec![16, 10, 1, 10, 0, 0, 1]));
        let raw = lookup("option-224").expect("numbered");
        assert_eq!(raw.code, 224);
        assert_eq!(encode_value(&raw, &text("01:02")), Ok(alloc::vec![1, 2]));
        assert!(encode_value(&lookup("ip-forwarding").expect("known"), &OptionValue::Int(1)).is_err());
    }

    #[test]
    fn refuses_server_owned_and_unknown() {
        let bad = [("dhcp-lease-time".to_string(), OptionValue::Int(5))];
        assert!(OptionSet::from_config(bad.iter().map(|(k, v)| (k, v))).is_err());
        let owned = [("option-54".to_string(), text("0a000001"))];
        let err = OptionSet::from_config(owned.iter().map(|(k, v)| (k, v))).expect_err("server owned");
        assert!(err.1.contains("set by the server"));
    }

    #[test]
    fn overlay_prefers_the_more_specific() {
        let mut base = OptionSet::new();
        base.insert(3, alloc::vec![1, 1, 1, 1]);
        base.insert(6, alloc::vec![2, 2, 2, 2]);
        let mut over = OptionSet::new();
        over.insert(6, alloc::vec![9, 9, 9, 9]);
        let merged = base.overlaid_with(&over);
        assert_eq!(merged.get(3), Some(&[1u8, 1, 1, 1][..]));
        assert_eq!(merged.get(6), Some(&[9u8, 9, 9, 9][..]));
    }
}
