//! The `[ha]` table: who this server is, its peers, the mode, and the failure detection times.
//!
//! ```toml
//! [ha]
//! this-server = "dhcp-a"
//! mode = "hot-standby"           # or "load-balancing", "passive-backup"
//! heartbeat-delay-ms = 1000      # how often to ask the partner how it is (Kea: heartbeat-delay)
//! max-response-delay-ms = 3000   # no answer this long: communications interrupted
//! max-ack-delay-ms = 1000        # a client whose `secs` reach this is going unanswered
//! max-unacked-clients = 2        # take over once more clients than this go unanswered (0: at once)
//! send-lease-updates = true      # local stores: every lease change goes to the partner (default:
//!                                # true, false on a shared PostgreSQL or Redis store)
//! sync-lease-updates = true      # ...and the client is answered only once the partner has it
//! full-takeover-after-ms = 3600000  # local stores: in partner-down, new clients get addresses
//!                                # from this server's half of each pool until this long has
//!                                # passed (or `dhcp-cli ha partner-down`): at least the longest
//!                                # lease the partner may have granted
//! sync-page-size = 10000         # leases per page when a starting server fetches its partner's
//! tls-ca = "/etc/dhcp/peers-ca.pem"  # https:// peers: their certificates are checked against
//!                                # this CA (PEM); without it, against the web's roots
//!
//! [[ha.peers]]
//! name = "dhcp-a"
//! url = "http://192.0.2.1:8067"  # the peer's management API (`api-listen`), same token
//! role = "primary"
//!
//! [[ha.peers]]
//! name = "dhcp-b"
//! url = "http://192.0.2.2:8067"
//! role = "standby"               # "secondary" in load-balancing; "backup" in any mode
//! ```

use std::time::Duration;

use dhcp_core::ConfigError;
use serde::Deserialize;

/// How the pair shares the clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The primary answers everyone; the standby answers only while the primary is down.
    HotStandby,
    /// Primary and secondary each answer their share of clients (RFC 3074 hash); either
    /// answers all while the other is down.
    LoadBalancing,
    /// The primary answers everyone; backups never answer (a disaster-recovery copy).
    PassiveBackup,
}

impl Mode {
    /// The mode's config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::HotStandby => "hot-standby",
            Mode::LoadBalancing => "load-balancing",
            Mode::PassiveBackup => "passive-backup",
        }
    }
}

/// A peer's part in the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Answers its clients in every mode.
    Primary,
    /// Load-balancing: answers its share.
    Secondary,
    /// Hot-standby: answers only while the primary is down.
    Standby,
    /// Never answers, never takes over.
    Backup,
}

impl Role {
    /// The role's config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Secondary => "secondary",
            Role::Standby => "standby",
            Role::Backup => "backup",
        }
    }
}

/// One server of the pair (or a backup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its name, unique among the peers.
    pub name: String,
    /// Its management API, `http://ADDRESS:PORT`.
    pub url: String,
    /// Its part.
    pub role: Role,
}

/// The validated `[ha]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaConfig {
    /// This server's name: one of the peers.
    pub this_server: String,
    /// How the pair shares the clients.
    pub mode: Mode,
    /// Every server, this one included.
    pub peers: Vec<Peer>,
    /// How often each server asks its partner how it is.
    pub heartbeat_delay: Duration,
    /// No answer from the partner for this long: communications are interrupted.
    pub max_response_delay: Duration,
    /// A client of the partner whose `secs` field reaches this is going unanswered.
    pub max_ack_delay: Duration,
    /// Take the partner's clients over once more than this many go unanswered while it does
    /// not answer heartbeats; 0 takes over as soon as it stops answering.
    pub max_unacked_clients: u32,
    /// Every lease change is sent to the partner (leases on local stores kept in step); a
    /// starting server fetches the partner's leases first; new addresses are split by halves
    /// whenever both servers might allocate.
    pub send_lease_updates: bool,
    /// A client is answered only once the partner has acknowledged its lease (Kea's way);
    /// otherwise updates go out in the background.
    pub sync_lease_updates: bool,
    /// In partner-down with local stores, how long until the whole pool (not only this server's
    /// half) is handed out.
    pub full_takeover_after: Duration,
    /// Leases per page when fetching the partner's.
    pub sync_page_size: usize,
    /// The CA certificates (PEM) that `https://` peers' certificates are checked against.
    pub tls_ca: Option<std::path::PathBuf>,
}

impl HaConfig {
    /// This server's peer entry (always there in a validated config).
    pub fn this(&self) -> Option<&Peer> {
        self.peers.iter().find(|p| p.name == self.this_server)
    }

    /// This server's role.
    pub fn role(&self) -> Role {
        self.this().map_or(Role::Backup, |p| p.role)
    }

    /// The partner this server exchanges heartbeats with: for the primary, the standby or
    /// secondary; for anyone else, the primary. `None` for a primary with backups only.
    pub fn partner(&self) -> Option<&Peer> {
        match self.role() {
            Role::Primary => self.peers.iter().find(|p| matches!(p.role, Role::Secondary | Role::Standby)),
            _ => self.peers.iter().find(|p| p.role == Role::Primary),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawHa {
    this_server: String,
    mode: String,
    heartbeat_delay_ms: Option<u64>,
    max_response_delay_ms: Option<u64>,
    max_ack_delay_ms: Option<u64>,
    max_unacked_clients: Option<u32>,
    send_lease_updates: Option<bool>,
    sync_lease_updates: Option<bool>,
    full_takeover_after_ms: Option<u64>,
    sync_page_size: Option<usize>,
    tls_ca: Option<std::path::PathBuf>,
    peers: Vec<RawPeer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    name: String,
    url: String,
    role: String,
}

/// Reads the `[ha]` table; errors name the field (`ha.peers[1].role`) and the reason.
/// `shared_store`: the lease store is shared by the pair (PostgreSQL, Redis), which decides
/// whether lease updates are sent by default.
pub(crate) fn from_raw(raw: RawHa, shared_store: bool) -> Result<HaConfig, ConfigError> {
    let bad = |path: &str, reason: String| ConfigError { path: format!("ha.{path}"), reason };
    let mode = match raw.mode.as_str() {
        "hot-standby" => Mode::HotStandby,
        "load-balancing" => Mode::LoadBalancing,
        "passive-backup" => Mode::PassiveBackup,
        other => return Err(bad("mode", format!("{other:?}: hot-standby, load-balancing or passive-backup"))),
    };
    let mut peers = Vec::new();
    for (i, peer) in raw.peers.into_iter().enumerate() {
        let role = match peer.role.as_str() {
            "primary" => Role::Primary,
            "secondary" => Role::Secondary,
            "standby" => Role::Standby,
            "backup" => Role::Backup,
            other => {
                return Err(bad(
                    &format!("peers[{i}].role"),
                    format!("{other:?}: primary, secondary, standby or backup"),
                ));
            }
        };
        if peer.name.is_empty() || peers.iter().any(|p: &Peer| p.name == peer.name) {
            return Err(bad(
                &format!("peers[{i}].name"),
                format!("{:?}: names must be unique and non-empty", peer.name),
            ));
        }
        let host = peer.url.strip_prefix("http://").or_else(|| peer.url.strip_prefix("https://")).unwrap_or("");
        let host = host.strip_suffix('/').unwrap_or(host);
        if host.is_empty() || host.contains(['/', '?', '#', ' ']) {
            return Err(bad(
                &format!("peers[{i}].url"),
                format!("{:?}: expected http://ADDRESS:PORT or https://NAME:PORT", peer.url),
            ));
        }
        peers.push(Peer { name: peer.name, url: peer.url.trim_end_matches('/').to_owned(), role });
    }
    let count = |role| peers.iter().filter(|p| p.role == role).count();
    if count(Role::Primary) != 1 {
        return Err(bad("peers", "exactly one peer must be the primary".into()));
    }
    let (wanted, other) = match mode {
        Mode::HotStandby => (Role::Standby, Role::Secondary),
        Mode::LoadBalancing => (Role::Secondary, Role::Standby),
        Mode::PassiveBackup => (Role::Backup, Role::Standby),
    };
    if mode != Mode::PassiveBackup && count(wanted) != 1 {
        return Err(bad("peers", format!("{} needs exactly one {} peer", mode.as_str(), wanted.as_str())));
    }
    if count(other) > 0 || (mode == Mode::PassiveBackup && count(Role::Secondary) > 0) {
        return Err(bad("peers", format!("{} has no {} peers", mode.as_str(), other.as_str())));
    }
    if !peers.iter().any(|p| p.name == raw.this_server) {
        return Err(bad("this-server", format!("{:?} is not one of the peers", raw.this_server)));
    }
    let ms = |value: Option<u64>, default: u64, field: &str| match value.unwrap_or(default) {
        0 => Err(bad(field, "must be more than 0".into())),
        n => Ok(Duration::from_millis(n)),
    };
    let heartbeat_delay = ms(raw.heartbeat_delay_ms, 1000, "heartbeat-delay-ms")?;
    let max_response_delay = ms(raw.max_response_delay_ms, 3000, "max-response-delay-ms")?;
    let max_ack_delay = ms(raw.max_ack_delay_ms, 1000, "max-ack-delay-ms")?;
    if max_response_delay <= heartbeat_delay {
        return Err(bad("max-response-delay-ms", "must be longer than heartbeat-delay-ms".into()));
    }
    let full_takeover_after = ms(raw.full_takeover_after_ms, 3_600_000, "full-takeover-after-ms")?;
    let sync_page_size = match raw.sync_page_size.unwrap_or(10_000) {
        0 => return Err(bad("sync-page-size", "must be more than 0".into())),
        n => n,
    };
    Ok(HaConfig {
        send_lease_updates: raw.send_lease_updates.unwrap_or(!shared_store),
        sync_lease_updates: raw.sync_lease_updates.unwrap_or(true),
        full_takeover_after,
        sync_page_size,
        tls_ca: raw.tls_ca,
        this_server: raw.this_server,
        mode,
        peers,
        heartbeat_delay,
        max_response_delay,
        max_ack_delay,
        max_unacked_clients: raw.max_unacked_clients.unwrap_or(2),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HaConfig, ConfigError> {
        let raw: RawHa = toml::from_str(text).map_err(|e| ConfigError { path: "ha".into(), reason: e.to_string() })?;
        from_raw(raw, false)
    }

    const PAIR: &str = "this-server = \"b\"\nmode = \"hot-standby\"\n\
        [[peers]]\nname = \"a\"\nurl = \"http://10.0.0.1:8067\"\nrole = \"primary\"\n\
        [[peers]]\nname = \"b\"\nurl = \"http://10.0.0.2:8067/\"\nrole = \"standby\"\n";

    #[test]
    fn reads_a_pair_with_kea_like_defaults() {
        let ha = parse(PAIR).expect("valid");
        assert_eq!(ha.mode, Mode::HotStandby);
        assert_eq!(ha.role(), Role::Standby);
        assert_eq!(ha.partner().map(|p| p.url.as_str()), Some("http://10.0.0.1:8067"));
        assert_eq!((ha.heartbeat_delay, ha.max_response_delay), (Duration::from_secs(1), Duration::from_secs(3)));
        assert_eq!(ha.max_unacked_clients, 2);
    }

    #[test]
    fn refuses_what_cannot_work_naming_the_field() {
        for (change, path) in [
            (PAIR.replace("\"hot-standby\"", "\"mirror\""), "ha.mode"),
            (PAIR.replace("role = \"standby\"", "role = \"boss\""), "ha.peers[1].role"),
            (PAIR.replace("role = \"standby\"", "role = \"primary\""), "ha.peers"),
            (PAIR.replace("role = \"standby\"", "role = \"secondary\""), "ha.peers"),
            (PAIR.replace("name = \"b\"", "name = \"a\""), "ha.peers[1].name"),
            (PAIR.replace("http://10.0.0.2:8067/", "ftp://10.0.0.2:8067"), "ha.peers[1].url"),
            (PAIR.replace("http://10.0.0.2:8067/", "10.0.0.2:8067"), "ha.peers[1].url"),
            (PAIR.replace("this-server = \"b\"", "this-server = \"c\""), "ha.this-server"),
            (format!("heartbeat-delay-ms = 5000\n{PAIR}"), "ha.max-response-delay-ms"),
            (format!("max-ack-delay-ms = 0\n{PAIR}"), "ha.max-ack-delay-ms"),
        ] {
            let err = parse(&change).expect_err(&change);
            assert_eq!(err.path, path, "{change}: {err}");
        }
    }
}
