//! The management API's typed model: what the server's handlers send and what the client
//! reads, in one place, with the one MAC normaliser and the one percent-encoder both use.
//!
//! Every body is JSON with kebab-case keys (`hw-address`, `last-seen`), as in the config file.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The API's path prefix.
pub const PREFIX: &str = "/api/v1";

/// The lease states the API names, as [`dhcp_core::LeaseState::name`] spells them.
pub const LEASE_STATES: [&str; 5] = ["offered", "bound", "declined", "released", "expired"];

/// A lease as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LeaseInfo {
    /// The leased address.
    pub address: Ipv4Addr,
    /// The subnet's id.
    pub subnet: u32,
    /// The client's hardware address, `02:00:00:00:00:01`.
    pub hw_address: String,
    /// The client's identity: option 61 when it sent one, else hardware type and address.
    pub client_id: String,
    /// One of [`LEASE_STATES`].
    pub state: String,
    /// When the state ends (Unix seconds): the offer's hold, the lease's expiry, the end of a
    /// decline's probation; none for released and expired leases.
    pub deadline: Option<u64>,
    /// The client's host name, when it has one.
    pub hostname: Option<String>,
    /// When the client's MAC was last heard from (Unix seconds), when it has been.
    pub last_seen: Option<u64>,
}

impl LeaseInfo {
    /// The API's view of `lease`, with when its client was last heard from.
    pub fn new(lease: &dhcp_core::Lease, last_seen: Option<u64>) -> LeaseInfo {
        LeaseInfo {
            address: lease.addr,
            subnet: lease.subnet,
            hw_address: lease.hwaddr.to_string(),
            client_id: lease.client.to_string(),
            state: lease.state.name().to_owned(),
            deadline: lease.state.deadline().map(|t| t.as_secs()),
            hostname: lease.hostname.clone(),
            last_seen,
        }
    }
}

/// The most leases one page of `GET /api/v1/leases?limit=N` holds.
pub const MAX_LEASE_LIMIT: usize = 10_000;

/// `GET /api/v1/leases`: every lease that matched, or with `limit` one page of them; in address
/// order either way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseList {
    /// The leases that matched (on this page).
    pub leases: Vec<LeaseInfo>,
    /// Where the next page starts (`after=` this): the page's last address, sent only when more
    /// leases match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Ipv4Addr>,
}

/// `DELETE /api/v1/leases/{address}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedLease {
    /// The lease as it was.
    pub deleted: LeaseInfo,
}

/// The filters of `GET /api/v1/leases`: every field narrows the list. (The query may add
/// `after` and `limit`, see [`LeaseFilter::page_path`].)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseFilter {
    /// Only this subnet id.
    pub subnet: Option<u32>,
    /// Only this state, one of [`LEASE_STATES`].
    pub state: Option<String>,
    /// Only this MAC, in any spelling [`normal_id`] accepts.
    pub mac: Option<String>,
    /// Only this client identity.
    pub client: Option<String>,
}

impl LeaseFilter {
    /// The path with this filter as its query, percent-encoded: every matching lease.
    pub fn path(&self) -> String {
        self.page_path(None, None)
    }

    /// The path of the leases matching this filter with addresses above `after`: at most
    /// `limit` of them (one page, with `next` when more match), or all when `limit` is none.
    pub fn page_path(&self, after: Option<Ipv4Addr>, limit: Option<usize>) -> String {
        let mut query = Vec::new();
        if let Some(subnet) = self.subnet {
            query.push(format!("subnet={subnet}"));
        }
        for (key, value) in [("state", &self.state), ("mac", &self.mac), ("client", &self.client)] {
            if let Some(value) = value {
                query.push(format!("{key}={}", encode(value)));
            }
        }
        if let Some(after) = after {
            query.push(format!("after={after}"));
        }
        if let Some(limit) = limit {
            query.push(format!("limit={limit}"));
        }
        let mut path = format!("{PREFIX}/leases");
        if !query.is_empty() {
            path.push('?');
            path.push_str(&query.join("&"));
        }
        path
    }
}

/// A reservation: the body of `POST` and `PUT /api/v1/reservations`, and an entry of the list
/// (which adds `subnet` and `last-seen`). The keys are the config file's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Reservation {
    /// The subnet's id (required when adding).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet: Option<i64>,
    /// The client's MAC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hw_address: Option<String>,
    /// The client identifier (option 61) in hex, with its type byte.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The relay's circuit id (option 82 sub-option 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_id: Option<String>,
    /// The reserved address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    /// The host name given to the client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Free text for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The client's group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Options for this client only, by the config's names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Map<String, Value>>,
    /// When the client's MAC was last heard from (Unix seconds); in lists only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<u64>,
}

impl Reservation {
    /// The keys a reservation may have in the config file (and in a request body, beside
    /// `subnet`).
    pub const CONFIG_KEYS: [&'static str; 8] =
        ["hw-address", "client-id", "circuit-id", "ip-address", "hostname", "description", "group", "options"];

    /// The MAC, else the client identifier, else the circuit id: who the reservation is for.
    pub fn who(&self) -> Option<&str> {
        self.hw_address.as_deref().or(self.client_id.as_deref()).or(self.circuit_id.as_deref())
    }
}

/// `GET /api/v1/reservations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReservationList {
    /// Every reservation of every subnet, in config order.
    pub reservations: Vec<Reservation>,
}

/// A group of options: the body of `PUT /api/v1/groups/{name}`, and an entry of the list
/// (which adds `name`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Group {
    /// The group's name; in lists only (a request names the group in its path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The lease time for the group's clients, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_time: Option<u32>,
    /// The group's options, by the config's names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Map<String, Value>>,
    /// Which packets join the group by themselves (`vendor-class`, `user-class`, `circuit-id`).
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub matches: Option<Map<String, Value>>,
}

impl Group {
    /// The keys a group may have in the config file.
    pub const CONFIG_KEYS: [&'static str; 3] = ["lease-time", "options", "match"];
}

/// `GET /api/v1/groups`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupList {
    /// Every group, by name.
    pub groups: Vec<Group>,
}

/// What a config change applied: the answer to every reservation or group edit, reload and
/// rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AppliedInfo {
    /// Subnets in the config now running.
    pub subnets: usize,
    /// Reservations in it, over all subnets.
    pub reservations: usize,
    /// `[server]` keys that changed and take effect only at a restart.
    pub restart_needed: Vec<String>,
    /// The config history's version of the config now running (none without a history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// The body of a successful change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    /// What it applied.
    pub applied: AppliedInfo,
}

/// `POST /api/v1/config/test` when the config is valid (an invalid one is an [`ErrorBody`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigTested {
    /// Always true: an invalid config is refused with 400.
    pub valid: bool,
    /// Subnets in the tested config.
    pub subnets: usize,
}

/// `GET /api/v1/config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ConfigText {
    /// The config file.
    pub path: String,
    /// The config history's directory (none when no history is kept).
    #[serde(default)]
    pub history: Option<String>,
    /// The running config's text.
    pub text: String,
}

/// `GET /api/v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Sockets bound and the store answering: the status is 200, else 503.
    pub ready: bool,
    /// Sockets bound.
    pub sockets: usize,
    /// `ok`, or why the store did not answer.
    pub store: String,
}

/// A high-availability heartbeat: the body of `POST /api/v1/ha/heartbeat` and of its answer.
/// Each server of a pair sends its own and reads its partner's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Heartbeat {
    /// The sender's name (`ha.this-server`).
    pub name: String,
    /// Its HA state (`hot-standby`, `partner-down`, ...).
    pub state: String,
    /// Its clock, in Unix seconds (a pair whose clocks differ by over a minute stops failover).
    pub clock: u64,
    /// How many leases it counts as assigned.
    pub lease_count: u64,
    /// A fingerprint of its subnets and pools; 0 when not sent.
    #[serde(default)]
    pub pools: u64,
}

/// `GET /api/v1/ha`: this server's high-availability state and what it knows of its partner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct HaStatus {
    /// This server's name.
    pub this_server: String,
    /// `hot-standby`, `load-balancing` or `passive-backup`.
    pub mode: String,
    /// This server's role.
    pub role: String,
    /// This server's state.
    pub state: String,
    /// The partner it exchanges heartbeats with, when it has one.
    pub partner: Option<HaPartnerStatus>,
    /// Partner clients seen going unanswered while communications are interrupted.
    pub unacked_clients: usize,
    /// Client packets left to the partner since start.
    pub not_in_scope: u64,
    /// Lease changes sent to the peers since start.
    #[serde(default)]
    pub lease_updates_sent: u64,
    /// Requests they went in (changes that come while one is on its way go in the next).
    #[serde(default)]
    pub lease_update_batches: u64,
    /// The partner's last heartbeat named other subnets or pools than this server's.
    pub pools_differ: bool,
    /// Milliseconds since this server started.
    pub uptime_ms: u64,
}

/// The partner, as [`HaStatus`] shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct HaPartnerStatus {
    /// Its name.
    pub name: String,
    /// Its management API.
    pub url: String,
    /// Its role.
    pub role: String,
    /// Its state in its last heartbeat; none before it was heard from.
    pub state: Option<String>,
    /// Milliseconds since it was last heard from; none when never.
    pub last_contact_ms: Option<u64>,
}

/// A lease as the servers of a pair send it to each other: every field needed to store it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LeaseRecord {
    /// The address.
    pub address: Ipv4Addr,
    /// The subnet's id.
    pub subnet: u32,
    /// The hardware address, `02:00:00:00:00:01`.
    pub hw_address: String,
    /// The client's identity bytes in hex (option 61, or hardware type and address).
    pub client_id: String,
    /// One of [`LEASE_STATES`].
    pub state: String,
    /// The state's deadline in Unix seconds; none for released and expired.
    pub deadline: Option<u64>,
    /// The client's host name.
    pub hostname: Option<String>,
}

/// One lease change sent to the partner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum LeaseChange {
    /// The lease as it is now (granted, renewed, released, declined, expired).
    Put {
        /// The lease.
        lease: LeaseRecord,
    },
    /// The lease at this address is gone.
    Delete {
        /// The address.
        address: Ipv4Addr,
    },
}

/// `POST /api/v1/ha/lease-updates`: lease changes from the partner, in the order they happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseUpdates {
    /// The sender's name.
    pub from: String,
    /// The changes.
    pub changes: Vec<LeaseChange>,
}

/// The answer to [`LeaseUpdates`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdatesApplied {
    /// Changes stored.
    pub applied: usize,
    /// Changes refused: the address is held by another client here (logged on both sides).
    pub conflicts: usize,
}

/// `GET /api/v1/ha/leases?after=ADDRESS&limit=N`: a page of this server's leases, by address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeasePage {
    /// Leases with addresses above `after`, in address order, at most `limit`.
    pub leases: Vec<LeaseRecord>,
    /// Where the next page starts (`after=` this), none on the last page.
    pub next: Option<Ipv4Addr>,
}

/// `GET /api/v1/stats`: statistics by Kea's names.
pub type StatsMap = BTreeMap<String, i64>;

/// Every refusal: the message and, when one field is at fault, its path (`body` for a
/// malformed body, a config path such as `subnets[0].reservations[2].ip-address`, a query key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What is wrong.
    pub error: String,
    /// The field at fault.
    pub field: Option<String>,
}

/// The path of one lease.
pub fn lease_path(address: &str) -> String {
    format!("{PREFIX}/leases/{}", encode(address))
}

/// The path of one reservation, by MAC or client identifier.
pub fn reservation_path(id: &str) -> String {
    format!("{PREFIX}/reservations/{}", encode(id))
}

/// The path of one group.
pub fn group_path(name: &str) -> String {
    format!("{PREFIX}/groups/{}", encode(name))
}

/// A MAC or client identifier in the one spelling leases and reservations are compared in:
/// a MAC in any notation [`dhcp_core::HwAddr::parse`] reads (`02-00-0A-..`, `0200.0a..`)
/// becomes `02:00:0a:..`; anything else is lower-cased with `-` as `:`.
pub fn normal_id(text: &str) -> String {
    match dhcp_core::HwAddr::parse(text) {
        Some(hw) => hw.to_string(),
        None => text.trim().to_ascii_lowercase().replace('-', ":"),
    }
}

/// Percent-encodes a path segment or query value (RFC 3986 unreserved characters and `:`
/// stay as they are).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b':' | b'~' => out.push(char::from(b)),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded() {
        assert_eq!(reservation_path("02:00:00:00:00:01"), "/api/v1/reservations/02:00:00:00:00:01");
        assert_eq!(group_path("a b/c"), "/api/v1/groups/a%20b%2Fc");
        assert_eq!(lease_path("10.0.0.1"), "/api/v1/leases/10.0.0.1");
        let filter =
            LeaseFilter { subnet: Some(2), state: Some("bound".into()), mac: Some("a&b".into()), client: None };
        assert_eq!(filter.path(), "/api/v1/leases?subnet=2&state=bound&mac=a%26b");
        assert_eq!(LeaseFilter::default().path(), "/api/v1/leases");
        let page = LeaseFilter { subnet: Some(2), ..LeaseFilter::default() }
            .page_path(Some(Ipv4Addr::new(10, 0, 0, 9)), Some(100));
        assert_eq!(page, "/api/v1/leases?subnet=2&after=10.0.0.9&limit=100");
    }

    #[test]
    fn ids_compare_in_one_spelling() {
        assert_eq!(normal_id("02-00-0A-00-00-07"), "02:00:0a:00:00:07");
        assert_eq!(normal_id(" 02:00:0a:00:00:07 "), normal_id("02-00-0a-00-00-07"));
        assert_eq!(normal_id("01-AB-CD"), "01:ab:cd");
    }

    #[test]
    fn bodies_use_the_config_keys() {
        let r = Reservation {
            subnet: Some(1),
            hw_address: Some("02:00:00:00:00:01".into()),
            ip_address: Some("10.0.0.1".into()),
            ..Reservation::default()
        };
        let json = serde_json::to_value(&r).expect("serialises");
        assert_eq!(json, serde_json::json!({"subnet": 1, "hw-address": "02:00:00:00:00:01", "ip-address": "10.0.0.1"}));
        for key in json.as_object().into_iter().flatten().map(|(k, _)| k) {
            assert!(key == "subnet" || Reservation::CONFIG_KEYS.contains(&key.as_str()), "{key}");
        }
        let g: Group =
            serde_json::from_value(serde_json::json!({"name": "lab", "lease-time": 60, "match": {}})).expect("a group");
        assert_eq!((g.lease_time, g.matches.map(|m| m.len())), (Some(60), Some(0)));
    }
}

/// A host or group entry kept in the store (`GET /api/v1/store/entries?kind=`): its key
/// (`mac:aa:bb:cc:dd:ee:ff`, `client:ID`, `group:NAME`) and its fields, as Redis holds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreEntry {
    /// The key, without the store's `hosts` prefix.
    pub key: String,
    /// The hash's fields.
    pub fields: std::collections::BTreeMap<String, String>,
}

/// `GET /api/v1/store/entries?kind=`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoreEntryList {
    /// The entries, by key.
    pub entries: Vec<StoreEntry>,
}

/// The path of store entry `key`.
pub fn store_entry_path(key: &str) -> String {
    format!("{PREFIX}/store/entries/{}", encode(key))
}

/// `GET /api/v1/config/history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigHistoryList {
    /// Where the history is kept.
    pub dir: String,
    /// Every version, newest first.
    pub versions: Vec<crate::history::Version>,
}

/// `GET /api/v1/config/history/{version}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigVersion {
    /// The version.
    pub version: crate::history::Version,
    /// Its text, with the token and store passwords shown as `***`.
    pub text: String,
}

/// `GET /api/v1/config/diff`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigDiff {
    /// The older side.
    pub from: u64,
    /// The newer side.
    pub to: u64,
    /// A unified diff, empty when the two are the same.
    pub diff: String,
}

/// `GET /api/v1/audit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditList {
    /// The audit log's file.
    pub path: String,
    /// Its last entries, oldest first.
    pub entries: Vec<crate::audit::AuditEntry>,
}

/// `POST /api/v1/login`'s answer (with the session cookie).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginAnswer {
    /// The user logged in.
    pub user: String,
    /// Its role.
    pub role: crate::users::Role,
    /// The token every change made with the session must carry in `X-CSRF-Token`.
    pub csrf: String,
}

/// `GET /api/v1/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserList {
    /// Every user, by name, without secrets.
    pub users: Vec<crate::users::UserSummary>,
}

/// `POST /api/v1/users/{name}/tokens`: the token, shown only here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenIssued {
    /// Whose.
    pub user: String,
    /// The bearer token itself.
    pub token: String,
    /// Its id, to revoke it.
    pub id: String,
    /// What it may do.
    pub role: crate::users::Role,
}
