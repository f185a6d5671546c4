//! The server's configuration: the TOML-facing raw model, and its validation.
//!
//! [`RawConfig`] is what serde reads (unknown keys refused); [`Config::from_raw`] checks it
//! and builds the typed, indexed [`Config`] the engine uses. A config that fails validation
//! is refused whole, with the path of the offending field and the reason, so a running server
//! can keep its current config.
//!
//! ```toml
//! server-id = "10.0.0.1"          # optional: else the address the request arrived on
//! authoritative = true            # NAK unknown clients' INIT-REBOOT requests
//! lease-time = 3600               # seconds; renew-time (T1) and rebind-time (T2) default to
//!                                 # 50% and 87.5% of it
//! offer-hold-time = 30            # how long an offered address is held for the client
//! decline-probation-period = 86400
//! max-offers = 1000               # addresses outstanding offers may hold per subnet (default:
//!                                 # half the subnet's dynamic addresses); a subnet may override
//! max-offers-per-relay = 200      # the same through one relay (giaddr); default: no own bound
//! ping-check = false              # ICMP echo to an address before it is first offered to a
//! ping-timeout-ms = 500           # client; one that answers is set aside like a declined one
//!                                 # (both settable per subnet too)
//! # relay-addresses listed in any subnet are also the only relays whose relay information
//! # (option 82 circuit-id and link selection, option 118, the RFC 8357 relay port) is honoured
//! host-source = "config"          # or "store": also look reservations up in the lease store
//! options = { domain-name-servers = ["10.0.0.53"], domain-name = "example.net" }
//!
//! [groups.phones]                 # a named option set (a class)
//! options = { tftp-server-name = "tftp.example.net" }
//! match = { vendor-class = "Polycom" }   # optional: chosen by the packet, not only by reservations
//!
//! [[subnets]]
//! id = 1
//! subnet = "10.0.0.0/24"
//! pools = ["10.0.0.100-10.0.0.199", { range = "10.0.0.200/29", options = { routers = ["10.0.0.254"] } }]
//! options = { routers = ["10.0.0.1"] }
//! relay-addresses = ["10.0.0.2"]  # relays whose giaddr selects this subnet besides its own range
//!
//! [[subnets.reservations]]
//! hw-address = "02:00:00:00:00:42"   # or client-id = "01:02:..." or circuit-id = "eth0/1"
//! ip-address = "10.0.0.42"
//! hostname = "printer"
//! group = "phones"
//! ```

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::Ipv4Addr;
use core::ops::RangeInclusive;

use ipnet::Ipv4Net;
use serde::Deserialize;

use crate::lease::{HwAddr, parse_hex_bytes};
use crate::options::{OptionSet, OptionValue};
use crate::wire::code;

/// Default lease time, in seconds.
pub const DEFAULT_LEASE_TIME: u32 = 3600;
/// Default time an offered address is held, in seconds.
pub const DEFAULT_OFFER_HOLD: u32 = 30;
/// How long a ping check waits for an echo reply unless told otherwise, in milliseconds.
pub const DEFAULT_PING_TIMEOUT_MS: u32 = 500;
/// The longest ping check allowed: beyond it a client retransmits its DISCOVER first.
pub const MAX_PING_TIMEOUT_MS: u32 = 3000;
/// Default decline probation, in seconds (Kea's default: a day).
pub const DEFAULT_PROBATION: u32 = 86_400;

/// A config that was refused: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ConfigError {
    /// The path of the offending field, e.g. `subnets[0].pools[1]`; empty for a syntax error.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError { path: path.into(), reason: reason.into() }
    }
}

/// The config file as written, before validation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[allow(missing_docs)]
pub struct RawConfig {
    pub server_id: Option<String>,
    pub host_source: Option<String>,
    #[serde(default)]
    pub authoritative: bool,
    pub lease_time: Option<u32>,
    pub renew_time: Option<u32>,
    pub rebind_time: Option<u32>,
    pub offer_hold_time: Option<u32>,
    pub decline_probation_period: Option<u32>,
    pub max_offers: Option<u32>,
    pub max_offers_per_relay: Option<u32>,
    pub ping_check: Option<bool>,
    pub ping_timeout_ms: Option<u32>,
    #[serde(default)]
    pub options: BTreeMap<String, OptionValue>,
    #[serde(default)]
    pub groups: BTreeMap<String, RawGroup>,
    #[serde(default)]
    pub subnets: Vec<RawSubnet>,
}

/// A named option set as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[allow(missing_docs)]
pub struct RawGroup {
    #[serde(default)]
    pub options: BTreeMap<String, OptionValue>,
    pub lease_time: Option<u32>,
    #[serde(rename = "match")]
    pub matcher: Option<RawMatch>,
}

/// What a packet must carry to fall into a group, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[allow(missing_docs)]
pub struct RawMatch {
    /// The vendor class (option 60) starts with this text.
    pub vendor_class: Option<String>,
    /// The user class (option 77) equals this text.
    pub user_class: Option<String>,
    /// The relay circuit id (option 82, sub-option 1) equals this text.
    pub circuit_id: Option<String>,
}

/// A subnet as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[allow(missing_docs)]
pub struct RawSubnet {
    pub id: u32,
    pub subnet: String,
    #[serde(default)]
    pub pools: Vec<RawPool>,
    #[serde(default)]
    pub options: BTreeMap<String, OptionValue>,
    pub lease_time: Option<u32>,
    pub renew_time: Option<u32>,
    pub rebind_time: Option<u32>,
    #[serde(default)]
    pub relay_addresses: Vec<String>,
    pub max_offers: Option<u32>,
    pub ping_check: Option<bool>,
    pub ping_timeout_ms: Option<u32>,
    pub server_id: Option<String>,
    pub next_server: Option<String>,
    pub server_hostname: Option<String>,
    pub boot_file_name: Option<String>,
    #[serde(default)]
    pub reservations: Vec<RawReservation>,
}

/// A pool: `"FIRST-LAST"`, `"NET/LEN"`, or a table with a range and options.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
#[allow(missing_docs)]
pub enum RawPool {
    Range(String),
    Table(RawPoolTable),
}

/// A pool given as a table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[allow(missing_docs)]
pub struct RawPoolTable {
    pub range: String,
    #[serde(default)]
    pub options: BTreeMap<String, OptionValue>,
}

/// A reservation as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[allow(missing_docs)]
pub struct RawReservation {
    pub hw_address: Option<String>,
    pub client_id: Option<String>,
    pub circuit_id: Option<String>,
    pub ip_address: Option<String>,
    pub hostname: Option<String>,
    pub description: Option<String>,
    pub group: Option<String>,
    #[serde(default)]
    pub options: BTreeMap<String, OptionValue>,
}

/// Lease, renew (T1) and rebind (T2) times, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimes {
    /// Option 51.
    pub lease: u32,
    /// Option 58, T1.
    pub renew: u32,
    /// Option 59, T2.
    pub rebind: u32,
}

impl LeaseTimes {
    /// T1 and T2 at their RFC 2131 defaults: 50% and 87.5% of the lease.
    pub fn with_defaults(lease: u32) -> Self {
        LeaseTimes { lease, renew: lease / 2, rebind: (u64::from(lease) * 7 / 8) as u32 }
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Server identifier for every reply; `None` uses the address the request arrived on.
    pub server_id: Option<Ipv4Addr>,
    /// Whether the server is the authority for its subnets (NAKs requests it knows nothing of).
    pub authoritative: bool,
    /// How long an offer is held, in seconds.
    pub offer_hold_time: u32,
    /// How long a declined address stays out of use, in seconds.
    pub decline_probation_period: u32,
    /// The most addresses outstanding offers may hold through one relay (by giaddr), if bounded.
    pub max_offers_per_relay: Option<u32>,
    /// Subnets, sorted by network address (they never overlap).
    pub subnets: Vec<Subnet>,
    /// Named option sets, by name.
    pub groups: Vec<Group>,
    /// Whether host reservations and their groups are also looked up in the lease store
    /// (`host-source = "store"`), for clients the config reserves nothing for.
    pub hosts_from_store: bool,
}

/// A subnet and everything served in it.
#[derive(Debug, Clone)]
pub struct Subnet {
    /// The configured id: stable across reloads, stored with each lease.
    pub id: u32,
    /// The network.
    pub net: Ipv4Net,
    /// Dynamic pools.
    pub pools: Vec<Pool>,
    /// Global options with this subnet's laid over, plus the subnet mask.
    pub options: OptionSet,
    /// Lease times.
    pub times: LeaseTimes,
    /// Relay addresses that select this subnet besides addresses inside it.
    pub relay_addresses: Vec<Ipv4Addr>,
    /// The most addresses outstanding offers may hold in this subnet. Over it, DISCOVERs from
    /// clients with neither a lease nor a reservation here are dropped.
    pub max_offers: u64,
    /// How long to wait, in milliseconds, for an answer to the ICMP echo sent to an address
    /// before it is first offered to a client (`ping-check`); `None` when the subnet does not
    /// check.
    pub ping_check: Option<u32>,
    /// Server identifier override for this subnet.
    pub server_id: Option<Ipv4Addr>,
    /// `siaddr` for network boot.
    pub next_server: Option<Ipv4Addr>,
    /// `sname` field contents.
    pub server_hostname: Option<String>,
    /// `file` field contents.
    pub boot_file_name: Option<String>,
    /// Reservations.
    pub reservations: Vec<Reservation>,
    by_hw: BTreeMap<HwAddr, usize>,
    by_client_id: BTreeMap<Vec<u8>, usize>,
    by_circuit_id: BTreeMap<Vec<u8>, usize>,
    by_addr: BTreeMap<Ipv4Addr, usize>,
}

/// A dynamic pool.
#[derive(Debug, Clone)]
pub struct Pool {
    /// First address as configured.
    pub first: Ipv4Addr,
    /// Last address as configured.
    pub last: Ipv4Addr,
    /// Options for clients whose address comes from this pool.
    pub options: OptionSet,
    /// The addresses the allocator may hand out: the range less reserved addresses.
    pub ranges: Vec<RangeInclusive<u32>>,
    /// Identifies `ranges` for the store's allocator.
    pub key: u64,
}

impl Pool {
    /// The allocator's view of this pool.
    pub fn as_ref(&self, subnet: u32) -> crate::PoolRef<'_> {
        crate::PoolRef { key: self.key, subnet, ranges: &self.ranges }
    }

    /// Whether `addr` lies in the configured range (reserved addresses included).
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&addr)
    }
}

/// A reservation: what one client always gets.
#[derive(Debug, Clone, Default)]
pub struct Reservation {
    /// Matched against `chaddr`.
    pub hw_address: Option<HwAddr>,
    /// Matched against option 61.
    pub client_id: Option<Vec<u8>>,
    /// Matched against the relay's circuit id (option 82 sub-option 1).
    pub circuit_id: Option<Vec<u8>>,
    /// The reserved address, if any (a reservation may carry only options).
    pub ip_address: Option<Ipv4Addr>,
    /// Host name (option 12).
    pub hostname: Option<String>,
    /// Free text for people (the Go server's `description`); not sent to the client.
    pub description: Option<String>,
    /// Index into [`Config::groups`].
    pub group: Option<usize>,
    /// Options for this client only.
    pub options: OptionSet,
}

/// A named option set, chosen by a reservation or by matching the packet.
#[derive(Debug, Clone)]
pub struct Group {
    /// Its name.
    pub name: String,
    /// Its options.
    pub options: OptionSet,
    /// Lease time for its members, overriding the subnet's.
    pub lease_time: Option<u32>,
    /// What selects a packet into this group without a reservation.
    pub matcher: Option<Matcher>,
}

/// Packet criteria for a group; every criterion given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matcher {
    /// Option 60 starts with these bytes.
    pub vendor_class_prefix: Option<Vec<u8>>,
    /// Option 77 equals these bytes.
    pub user_class: Option<Vec<u8>>,
    /// Option 82 sub-option 1 equals these bytes.
    pub circuit_id: Option<Vec<u8>>,
}

impl Subnet {
    /// The reservation for a client, by client id, then hardware address, then circuit id.
    pub fn reservation_for(
        &self,
        client_id: Option<&[u8]>,
        hw: Option<&HwAddr>,
        circuit: Option<&[u8]>,
    ) -> Option<&Reservation> {
        let index = client_id
            .and_then(|id| self.by_client_id.get(id))
            .or_else(|| hw.and_then(|hw| self.by_hw.get(hw)))
            .or_else(|| circuit.and_then(|c| self.by_circuit_id.get(c)))?;
        self.reservations.get(*index)
    }

    /// The reservation that holds `addr`, if any.
    pub fn reservation_of_addr(&self, addr: Ipv4Addr) -> Option<&Reservation> {
        self.by_addr.get(&addr).and_then(|i| self.reservations.get(*i))
    }

    /// The pool whose configured range holds `addr`.
    pub fn pool_of(&self, addr: Ipv4Addr) -> Option<&Pool> {
        self.pools.iter().find(|p| p.contains(addr))
    }

    /// Total dynamic addresses (reserved ones excluded).
    pub fn total_addresses(&self) -> u64 {
        self.pools.iter().map(|p| p.as_ref(self.id).size()).sum()
    }
}

impl Config {
    /// Parses and validates a TOML config.
    #[cfg(feature = "std")]
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        use alloc::string::ToString;
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::new("", e.to_string().trim_end()))?;
        Config::from_raw(&raw)
    }

    /// Validates a raw config.
    pub fn from_raw(raw: &RawConfig) -> Result<Config, ConfigError> {
        Validator.config(raw)
    }

    /// The subnet that holds `addr` or lists it as a relay address.
    pub fn subnet_for(&self, addr: Ipv4Addr) -> Option<&Subnet> {
        let i = self.subnets.partition_point(|s| s.net.network() <= addr);
        let by_range = i.checked_sub(1).map(|i| &self.subnets[i]).filter(|s| s.net.contains(&addr));
        by_range.or_else(|| self.subnets.iter().find(|s| s.relay_addresses.contains(&addr)))
    }

    /// Whether relay information (option 82, option 118) in a packet relayed through `giaddr`
    /// is to be believed: never from a directly attached client (giaddr 0), and, once any
    /// subnet lists `relay-addresses`, only from a relay listed there.
    pub fn trusts_relay(&self, giaddr: Ipv4Addr) -> bool {
        if giaddr.is_unspecified() {
            return false;
        }
        let mut listed = false;
        for s in &self.subnets {
            listed |= !s.relay_addresses.is_empty();
            if s.relay_addresses.contains(&giaddr) {
                return true;
            }
        }
        !listed
    }

    /// The subnet with id `id`.
    pub fn subnet_by_id(&self, id: u32) -> Option<&Subnet> {
        self.subnets.iter().find(|s| s.id == id)
    }

    /// The group named `name`.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }
}

struct Validator;

fn parse_addr(path: &str, text: &str) -> Result<Ipv4Addr, ConfigError> {
    text.trim().parse().map_err(|_| ConfigError::new(path, format!("{text:?} is not an IPv4 address")))
}

fn options(path: &str, table: &BTreeMap<String, OptionValue>) -> Result<OptionSet, ConfigError> {
    OptionSet::from_config(table).map_err(|(name, reason)| ConfigError::new(format!("{path}.{name}"), reason))
}

/// A ping check's timeout: long enough for a host on the LAN or behind a relay to answer,
/// short against a client's first DISCOVER retransmission (4 s, RFC 2131 4.1).
fn ping_timeout(path: &str, ms: u32) -> Result<u32, ConfigError> {
    match ms {
        1..=MAX_PING_TIMEOUT_MS => Ok(ms),
        _ => Err(ConfigError::new(path, format!("must be between 1 and {MAX_PING_TIMEOUT_MS} milliseconds"))),
    }
}

fn positive(path: &str, value: Option<u32>) -> Result<Option<u32>, ConfigError> {
    match value {
        Some(0) => Err(ConfigError::new(path, "must be greater than zero")),
        other => Ok(other),
    }
}

fn times(path: &str, lease: u32, renew: Option<u32>, rebind: Option<u32>) -> Result<LeaseTimes, ConfigError> {
    let defaults = LeaseTimes::with_defaults(lease);
    let t = LeaseTimes { lease, renew: renew.unwrap_or(defaults.renew), rebind: rebind.unwrap_or(defaults.rebind) };
    if t.renew >= t.rebind {
        return Err(ConfigError::new(
            format!("{path}renew-time"),
            format!("renew-time (T1, {}s) must be less than rebind-time (T2, {}s)", t.renew, t.rebind),
        ));
    }
    if t.rebind >= t.lease {
        return Err(ConfigError::new(
            format!("{path}rebind-time"),
            format!("rebind-time (T2, {}s) must be less than lease-time ({}s)", t.rebind, t.lease),
        ));
    }
    Ok(t)
}

fn parse_pool(path: &str, text: &str) -> Result<(Ipv4Addr, Ipv4Addr), ConfigError> {
    if let Some((first, last)) = text.split_once('-') {
        let first = parse_addr(path, first)?;
        let last = parse_addr(path, last)?;
        if first > last {
            return Err(ConfigError::new(path, format!("pool starts at {first}, after its end {last}")));
        }
        Ok((first, last))
    } else if let Ok(net) = text.trim().parse::<Ipv4Net>() {
        Ok((net.network(), net.broadcast()))
    } else {
        Err(ConfigError::new(path, format!("{text:?} is neither FIRST-LAST nor NET/LEN")))
    }
}

/// FNV-1a over the subnet id and pool ranges: a stable key for the allocator's state.
fn pool_key(subnet: u32, ranges: &[RangeInclusive<u32>]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |word: u32| {
        for b in word.to_be_bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(subnet);
    for r in ranges {
        feed(*r.start());
        feed(*r.end());
    }
    hash
}

/// `first..=last` with the addresses in `holes` (sorted) cut out.
fn carve(first: u32, last: u32, holes: &[u32]) -> Vec<RangeInclusive<u32>> {
    let mut out = Vec::new();
    let mut start = first;
    for &hole in holes.iter().filter(|h| (first..=last).contains(*h)) {
        if hole > start {
            out.push(start..=hole - 1);
        }
        start = hole.saturating_add(1);
        if hole == u32::MAX {
            return out;
        }
    }
    if start <= last {
        out.push(start..=last);
    }
    out
}

impl Validator {
    fn config(&self, raw: &RawConfig) -> Result<Config, ConfigError> {
        let server_id = raw.server_id.as_deref().map(|s| parse_addr("server-id", s)).transpose()?;
        let lease = positive("lease-time", raw.lease_time)?.unwrap_or(DEFAULT_LEASE_TIME);
        times("", lease, raw.renew_time, raw.rebind_time)?;
        let global_options = options("options", &raw.options)?;
        let offer_hold_time = positive("offer-hold-time", raw.offer_hold_time)?.unwrap_or(DEFAULT_OFFER_HOLD);

        let mut groups = Vec::new();
        for (name, g) in &raw.groups {
            let path = format!("groups.{name}");
            groups.push(Group {
                name: name.clone(),
                options: options(&format!("{path}.options"), &g.options)?,
                lease_time: positive(&format!("{path}.lease-time"), g.lease_time)?,
                matcher: g.matcher.as_ref().map(|m| self.matcher(&format!("{path}.match"), m)).transpose()?,
            });
        }

        let mut subnets: Vec<Subnet> = Vec::new();
        for (i, s) in raw.subnets.iter().enumerate() {
            let path = format!("subnets[{i}]");
            let subnet = self.subnet(&path, s, raw, lease, &global_options, &groups)?;
            if let Some(other) = subnets.iter().find(|o| o.id == subnet.id) {
                return Err(ConfigError::new(
                    format!("{path}.id"),
                    format!("id {} is also used by subnet {}", other.id, other.net),
                ));
            }
            if let Some(other) =
                subnets.iter().find(|o| o.net.contains(&subnet.net.network()) || subnet.net.contains(&o.net.network()))
            {
                return Err(ConfigError::new(
                    format!("{path}.subnet"),
                    format!("{} overlaps subnet {}", subnet.net, other.net),
                ));
            }
            subnets.push(subnet);
        }
        subnets.sort_by_key(|s| s.net.network());
        Ok(Config {
            server_id,
            authoritative: raw.authoritative,
            hosts_from_store: match raw.host_source.as_deref() {
                None | Some("config") => false,
                Some("store") => true,
                Some(other) => {
                    return Err(ConfigError::new("host-source", format!("{other:?}: use \"config\" or \"store\"")));
                }
            },
            offer_hold_time,
            decline_probation_period: raw.decline_probation_period.unwrap_or(DEFAULT_PROBATION),
            max_offers_per_relay: positive("max-offers-per-relay", raw.max_offers_per_relay)?,
            subnets,
            groups,
        })
    }

    fn matcher(&self, path: &str, m: &RawMatch) -> Result<Matcher, ConfigError> {
        let matcher = Matcher {
            vendor_class_prefix: m.vendor_class.as_ref().map(|s| s.as_bytes().to_vec()),
            user_class: m.user_class.as_ref().map(|s| s.as_bytes().to_vec()),
            circuit_id: m.circuit_id.as_ref().map(|s| s.as_bytes().to_vec()),
        };
        if matcher == Matcher::default() {
            return Err(ConfigError::new(path, "a match needs vendor-class, user-class or circuit-id"));
        }
        Ok(matcher)
    }

    fn subnet(
        &self,
        path: &str,
        s: &RawSubnet,
        raw: &RawConfig,
        global_lease: u32,
        global_options: &OptionSet,
        groups: &[Group],
    ) -> Result<Subnet, ConfigError> {
        if s.id == 0 {
            return Err(ConfigError::new(format!("{path}.id"), "subnet ids start at 1"));
        }
        let net: Ipv4Net = s
            .subnet
            .trim()
            .parse()
            .map_err(|_| ConfigError::new(format!("{path}.subnet"), format!("{:?} is not NET/LEN", s.subnet)))?;
        if net.trunc() != net {
            return Err(ConfigError::new(
                format!("{path}.subnet"),
                format!("{net} has host bits set; did you mean {}?", net.trunc()),
            ));
        }
        let lease = positive(&format!("{path}.lease-time"), s.lease_time)?.unwrap_or(global_lease);
        let times = times(
            &format!("{path}."),
            lease,
            s.renew_time.or(if s.lease_time.is_none() { raw.renew_time } else { None }),
            s.rebind_time.or(if s.lease_time.is_none() { raw.rebind_time } else { None }),
        )?;
        let mut subnet_options = global_options.overlaid_with(&options(&format!("{path}.options"), &s.options)?);
        if subnet_options.get(code::SUBNET_MASK).is_none() {
            subnet_options.insert(code::SUBNET_MASK, net.netmask().octets().to_vec());
        }
        if let Some(routers) = subnet_options.get(code::ROUTER).filter(|_| s.options.contains_key("routers")) {
            for chunk in routers.chunks(4) {
                let router = Ipv4Addr::new(chunk[0], chunk[1], chunk[2], chunk[3]);
                if !net.contains(&router) {
                    return Err(ConfigError::new(
                        format!("{path}.options.routers"),
                        format!("router {router} is outside subnet {net}"),
                    ));
                }
            }
        }
        let in_subnet = |p: &str, text: &str| -> Result<Ipv4Addr, ConfigError> {
            let addr = parse_addr(p, text)?;
            if net.contains(&addr) {
                Ok(addr)
            } else {
                Err(ConfigError::new(p, format!("{addr} is outside subnet {net}")))
            }
        };

        let mut reservations = Vec::new();
        let mut by_hw = BTreeMap::new();
        let mut by_client_id = BTreeMap::new();
        let mut by_circuit_id = BTreeMap::new();
        let mut by_addr = BTreeMap::new();
        for (r_index, r) in s.reservations.iter().enumerate() {
            let rpath = format!("{path}.reservations[{r_index}]");
            let reservation = self.reservation(&rpath, r, groups)?;
            if let Some(addr) = reservation.ip_address {
                if !net.contains(&addr) {
                    return Err(ConfigError::new(
                        format!("{rpath}.ip-address"),
                        format!("{addr} is outside subnet {net}"),
                    ));
                }
                if addr == net.network() || (net.prefix_len() < 31 && addr == net.broadcast()) {
                    return Err(ConfigError::new(
                        format!("{rpath}.ip-address"),
                        format!("{addr} is the network or broadcast address of {net}"),
                    ));
                }
                if let Some(other) = by_addr.insert(addr, r_index) {
                    return Err(ConfigError::new(
                        format!("{rpath}.ip-address"),
                        format!("{addr} is also reserved by reservations[{other}]"),
                    ));
                }
            }
            let dup = |field: &str, other: usize| {
                ConfigError::new(
                    format!("{rpath}.{field}"),
                    format!("the same identifier is already used by reservations[{other}]"),
                )
            };
            if let Some(hw) = reservation.hw_address
                && let Some(other) = by_hw.insert(hw, r_index)
            {
                return Err(dup("hw-address", other));
            }
            if let Some(id) = &reservation.client_id
                && let Some(other) = by_client_id.insert(id.clone(), r_index)
            {
                return Err(dup("client-id", other));
            }
            if let Some(c) = &reservation.circuit_id
                && let Some(other) = by_circuit_id.insert(c.clone(), r_index)
            {
                return Err(dup("circuit-id", other));
            }
            reservations.push(reservation);
        }
        let holes: Vec<u32> = by_addr.keys().map(|a| u32::from(*a)).collect();

        let mut pools: Vec<Pool> = Vec::new();
        for (p_index, p) in s.pools.iter().enumerate() {
            let ppath = format!("{path}.pools[{p_index}]");
            let (text, table) = match p {
                RawPool::Range(text) => (text.as_str(), None),
                RawPool::Table(t) => (t.range.as_str(), Some(&t.options)),
            };
            let (first, last) = parse_pool(&ppath, text)?;
            if !net.contains(&first) || !net.contains(&last) {
                return Err(ConfigError::new(&ppath, format!("pool {first}-{last} lies outside subnet {net}")));
            }
            if net.prefix_len() < 31 && (first == net.network() || last == net.broadcast()) {
                return Err(ConfigError::new(
                    &ppath,
                    format!("pool {first}-{last} includes the network or broadcast address of {net}"),
                ));
            }
            if let Some((o_index, o)) = pools.iter().enumerate().find(|(_, o)| first <= o.last && o.first <= last) {
                return Err(ConfigError::new(
                    &ppath,
                    format!("pool {first}-{last} overlaps pools[{o_index}] {}-{}", o.first, o.last),
                ));
            }
            let pool_options = match table {
                Some(t) => options(&format!("{ppath}.options"), t)?,
                None => OptionSet::new(),
            };
            let ranges = carve(first.into(), last.into(), &holes);
            pools.push(Pool { first, last, options: pool_options, key: pool_key(s.id, &ranges), ranges });
        }

        let mut relay_addresses = Vec::new();
        for (i, text) in s.relay_addresses.iter().enumerate() {
            relay_addresses.push(parse_addr(&format!("{path}.relay-addresses[{i}]"), text)?);
        }
        let dynamic: u64 = pools.iter().map(|p| p.as_ref(s.id).size()).sum();
        let max_offers = match positive(&format!("{path}.max-offers"), s.max_offers)? {
            Some(n) => u64::from(n),
            None => match positive("max-offers", raw.max_offers)? {
                Some(n) => u64::from(n),
                None => dynamic.div_ceil(2).max(1),
            },
        };
        let ping_timeout = match s.ping_timeout_ms {
            Some(ms) => ping_timeout(&format!("{path}.ping-timeout-ms"), ms)?,
            None => {
                raw.ping_timeout_ms.map_or(Ok(DEFAULT_PING_TIMEOUT_MS), |ms| ping_timeout("ping-timeout-ms", ms))?
            }
        };
        let ping_check = s.ping_check.or(raw.ping_check).unwrap_or(false).then_some(ping_timeout);
        Ok(Subnet {
            id: s.id,
            net,
            pools,
            options: subnet_options,
            times,
            relay_addresses,
            max_offers,
            ping_check,
            server_id: s.server_id.as_deref().map(|t| parse_addr(&format!("{path}.server-id"), t)).transpose()?,
            next_server: s
                .next_server
                .as_deref()
                .map(|t| {
                    in_subnet(&format!("{path}.next-server"), t)
                        .or_else(|_| parse_addr(&format!("{path}.next-server"), t))
                })
                .transpose()?,
            server_hostname: s.server_hostname.clone(),
            boot_file_name: s.boot_file_name.clone(),
            reservations,
            by_hw,
            by_client_id,
            by_circuit_id,
            by_addr,
        })
    }

    fn reservation(&self, path: &str, r: &RawReservation, groups: &[Group]) -> Result<Reservation, ConfigError> {
        let hw_address = r
            .hw_address
            .as_deref()
            .map(|t| {
                HwAddr::parse(t).ok_or_else(|| {
                    ConfigError::new(format!("{path}.hw-address"), format!("{t:?} is not a hardware address"))
                })
            })
            .transpose()?;
        let client_id = r
            .client_id
            .as_deref()
            .map(|t| match parse_hex_bytes(t) {
                Some(bytes) if bytes.len() >= 2 => Ok(bytes),
                _ => Err(ConfigError::new(
                    format!("{path}.client-id"),
                    format!("{t:?} is not a client id of at least two hex bytes"),
                )),
            })
            .transpose()?;
        let circuit_id = r.circuit_id.as_ref().map(|c| c.as_bytes().to_vec());
        if hw_address.is_none() && client_id.is_none() && circuit_id.is_none() {
            return Err(ConfigError::new(path, "a reservation needs hw-address, client-id or circuit-id"));
        }
        let group = match &r.group {
            None => None,
            Some(name) => Some(
                groups
                    .iter()
                    .position(|g| &g.name == name)
                    .ok_or_else(|| ConfigError::new(format!("{path}.group"), format!("no group named {name:?}")))?,
            ),
        };
        if let Some(h) = &r.hostname
            && (h.is_empty() || h.len() > 255)
        {
            return Err(ConfigError::new(format!("{path}.hostname"), "must be 1 to 255 bytes"));
        }
        Ok(Reservation {
            hw_address,
            client_id,
            circuit_id,
            ip_address: r.ip_address.as_deref().map(|t| parse_addr(&format!("{path}.ip-address"), t)).transpose()?,
            hostname: r.hostname.clone(),
            description: r.description.clone(),
            group,
            options: options(&format!("{path}.options"), &r.options)?,
        })
    }
}

impl fmt::Display for LeaseTimes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lease {}s, T1 {}s, T2 {}s", self.lease, self.renew, self.rebind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carve_cuts_holes() {
        assert_eq!(carve(10, 20, &[5, 10, 15, 20, 30]), alloc::vec![11..=14, 16..=19]);
        assert_eq!(carve(10, 12, &[]), alloc::vec![10..=12]);
        assert_eq!(carve(10, 10, &[10]), Vec::<RangeInclusive<u32>>::new());
    }

    #[test]
    fn default_t1_t2() {
        assert_eq!(LeaseTimes::with_defaults(3600), LeaseTimes { lease: 3600, renew: 1800, rebind: 3150 });
    }
}
