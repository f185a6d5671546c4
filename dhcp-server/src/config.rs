//! The server's config file: the engine's config plus a `[server]` table for the process.
//! The `[server]` keys that concern sockets become [`dhcp_net::NetSettings`]; the rest (store,
//! logging, lease dump, management API) are the operated server's own.
//!
//! ```toml
//! [server]
//! listen = ["eth1", "eth2"]   # interface names; or an address ("192.0.2.1"); or "*" for all
//! server-port = 67            # where clients and relays send (default 67)
//! client-port = 68            # where replies to clients go (default 68)
//! store = "memory:"           # lease store URL
//! log-level = "info"          # error, warn, info, debug or trace
//! lease-dump = "/run/dhcp/leases.csv"   # optional: written on SIGUSR1 and at shutdown
//! threads = 2                 # threads that handle datagrams (default: the number of cores)
//! max-in-flight = 64          # requests handled at once (default 1 for plain memory: on one
//!                             # thread, else 64)
//! receive-buffer = 4194304    # bytes of datagrams queued per socket (0: the system's default)
//! store-timeout-ms = 2000     # a request's store call gives up after this (0: never)
//! api-listen = "127.0.0.1:8067"   # optional: the management API and /metrics (off when unset)
//! api-token = "s3cret"        # its bearer token; or the DHCP_API_TOKEN environment variable
//! api-tls-cert = "/etc/dhcp/api.pem"   # optional: HTTPS with this certificate chain (PEM)
//! api-tls-key = "/etc/dhcp/api.key"    # ...and its private key (PEM)
//! state-dir = "/var/lib/dhcp-server"  # the config history and the audit log (this default)
//! history-keep = 100          # config versions kept in the history (default 100)
//! audit-log = "/var/log/dhcp-audit.log"  # default: STATE-DIR/audit.log
//! session-idle-timeout = 1800 # seconds a portal session lives without a request
//! session-lifetime = 43200    # seconds a portal session lives at most
//! oidc-issuer = "https://id.example.org/realms/staff"  # optional: portal login by OpenID Connect
//! oidc-client-id = "dhcp-portal"
//! oidc-client-secret = "..."  # or DHCP_OIDC_CLIENT_SECRET; none for a public client
//! oidc-redirect-url = "https://dhcp.example.org:8067/portal/oidc/callback"
//! oidc-role-claim = "dhcp_role"   # the claim with viewer, editor or admin (this default)
//! oidc-ca = "/etc/dhcp/idp-ca.pem"  # optional: the provider's CA (default: the web's roots)
//!
//! # ...then the engine's config (dhcp_core::config): lease-time, subnets, reservations...
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dhcp_core::{Config, ConfigError};
use dhcp_net::{Listen, NetSettings};
use serde::Deserialize;

/// How much the server logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// One line per lease event (the default).
    #[default]
    Info,
    /// One line per packet.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    fn parse(text: &str) -> Option<LogLevel> {
        Some(match text {
            "error" => LogLevel::Error,
            "warn" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            _ => return None,
        })
    }

    /// The level's name, as `tracing` filters spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// The `[server]` table: everything about the process rather than the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// The sockets: `listen`, `server-port`, `client-port`, `max-in-flight`.
    pub net: NetSettings,
    /// The lease store's URL (see [`dhcp_store::open`]).
    pub store: String,
    /// Where hosts and groups are read from instead of the lease store (`host-store`, a Redis
    /// URL with `master=` and `allow-dynamic=`; see `dhcp_store::RedisHostSource`), with
    /// `host-source = "store"`.
    pub host_store: Option<String>,
    /// Threads that handle datagrams (`threads`; default: the number of cores). The example
    /// server runs a multi-threaded tokio runtime with this many workers when it is above 1; an
    /// embedder reads it to size its own runtime.
    pub threads: usize,
    /// How much to log.
    pub log_level: LogLevel,
    /// Where to write every lease as CSV on SIGUSR1 and at shutdown.
    pub lease_dump: Option<PathBuf>,
    /// Where the management API (and `/metrics`) listens; off when `None`.
    pub api_listen: Option<SocketAddr>,
    /// The bearer token every API request must carry: `api-token`, else the `DHCP_API_TOKEN`
    /// environment variable. Required when the API is on.
    pub api_token: Option<String>,
    /// The API's TLS certificate chain and private key (PEM files): it serves HTTPS when set.
    pub api_tls: Option<(PathBuf, PathBuf)>,
    /// High availability: the `[ha]` table (a top-level table beside `[server]`); none for a
    /// server on its own.
    pub ha: Option<crate::ha::HaConfig>,
    /// How long a client's request may wait on one store call (`store-timeout-ms`); none: no
    /// deadline.
    pub store_deadline: Option<Duration>,
    /// The `[limits]` table: rate limits on client packets (none by default).
    pub limits: crate::limits::LimitsConfig,
    /// Where the server keeps its own state: the config history (`config-history/`) and, by
    /// default, the audit log (`state-dir`, default [`DEFAULT_STATE_DIR`]).
    pub state_dir: PathBuf,
    /// How many config versions the history keeps (`history-keep`); older ones are deleted.
    pub history_keep: usize,
    /// The audit log, one JSON line a change (`audit-log`; default `STATE-DIR/audit.log`).
    pub audit_log: PathBuf,
    /// How long a session lives without a request (`session-idle-timeout`, seconds).
    pub session_idle: Duration,
    /// How long a session lives at most (`session-lifetime`, seconds).
    pub session_lifetime: Duration,
    /// Portal login by OpenID Connect (`oidc-*`); none without `oidc-issuer`.
    pub oidc: Option<crate::oidc::OidcSettings>,
}

/// The environment variable that holds the OpenID Connect client secret when the config does not.
pub const OIDC_SECRET_ENV: &str = "DHCP_OIDC_CLIENT_SECRET";

/// Where the server keeps its state unless `state-dir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/dhcp-server";

/// How many config versions the history keeps unless `history-keep` says otherwise.
const DEFAULT_HISTORY_KEEP: usize = 100;

/// How long a session lives without a request unless `session-idle-timeout` says otherwise.
const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(30 * 60);

/// How long a session lives at most unless `session-lifetime` says otherwise.
const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The most `history-keep` takes: a history is listed whole.
const MAX_HISTORY_KEEP: usize = 10_000;

/// The environment variable that holds the API token when the config does not.
pub const API_TOKEN_ENV: &str = "DHCP_API_TOKEN";

/// How long a request waits on one store call unless `store-timeout-ms` says otherwise: past
/// it a client has usually sent its request again.
const DEFAULT_STORE_DEADLINE: Duration = Duration::from_secs(2);

/// The largest `receive-buffer` taken: more is a typo, not a plan.
const MAX_RECEIVE_BUFFER: usize = 256 << 20;

/// The most `threads` taken: more is a typo, not a plan.
const MAX_THREADS: usize = 256;

/// The `threads` default: the cores this process may run on.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The `max-in-flight` default for a store URL and thread count: 1 for the plain in-memory
/// store on one thread (it never waits, so each datagram is answered before the next is read,
/// with no task to spawn), 64 otherwise (a network store's round trips, or the journal's group
/// commits, overlap; with several threads, requests in flight are what the other threads run).
pub fn default_in_flight(store: &str, threads: usize) -> usize {
    if never_waits(store) && threads <= 1 { 1 } else { 64 }
}

/// Whether the store at `store` answers every call at once, without waiting on a disk or a
/// network: only the plain in-memory store. Its requests need not overlap on one thread, and on
/// several, the receiving task may answer the first datagram of each wakeup itself.
fn never_waits(store: &str) -> bool {
    store == "memory:"
}

impl Default for ServerSettings {
    fn default() -> Self {
        let threads = default_threads();
        ServerSettings {
            net: NetSettings {
                max_in_flight: default_in_flight("memory:", threads),
                inline_first: true,
                ..NetSettings::default()
            },
            store: "memory:".to_owned(),
            host_store: None,
            threads,
            log_level: LogLevel::Info,
            lease_dump: None,
            api_listen: None,
            api_token: None,
            api_tls: None,
            ha: None,
            store_deadline: Some(DEFAULT_STORE_DEADLINE),
            limits: crate::limits::LimitsConfig::default(),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            history_keep: DEFAULT_HISTORY_KEEP,
            audit_log: Path::new(DEFAULT_STATE_DIR).join("audit.log"),
            session_idle: DEFAULT_SESSION_IDLE,
            session_lifetime: DEFAULT_SESSION_LIFETIME,
            oidc: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSettings {
    listen: Option<Vec<String>>,
    server_port: Option<u16>,
    client_port: Option<u16>,
    store: Option<String>,
    host_store: Option<String>,
    log_level: Option<String>,
    lease_dump: Option<PathBuf>,
    max_in_flight: Option<usize>,
    threads: Option<usize>,
    receive_buffer: Option<usize>,
    store_timeout_ms: Option<u64>,
    api_listen: Option<String>,
    api_token: Option<String>,
    api_tls_cert: Option<PathBuf>,
    api_tls_key: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    history_keep: Option<usize>,
    audit_log: Option<PathBuf>,
    session_idle_timeout: Option<u64>,
    session_lifetime: Option<u64>,
    oidc_issuer: Option<String>,
    oidc_client_id: Option<String>,
    oidc_client_secret: Option<String>,
    oidc_redirect_url: Option<String>,
    oidc_role_claim: Option<String>,
    oidc_ca: Option<PathBuf>,
}

/// A whole server config file: process settings and the engine's validated config.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The `[server]` table.
    pub settings: ServerSettings,
    /// Everything else, validated by `dhcp_core`.
    pub dhcp: Config,
}

impl ServerConfig {
    /// Reads and validates a config file. Errors name the file, the field and the reason.
    pub fn from_file(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError { path: String::new(), reason: format!("cannot read {}: {e}", path.display()) })?;
        ServerConfig::from_toml_str(&text)
    }

    /// Parses and validates config text.
    pub fn from_toml_str(text: &str) -> Result<ServerConfig, ConfigError> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError { path: String::new(), reason: e.to_string() })?;
        let explicit_in_flight = table.get("server").and_then(|s| s.get("max-in-flight")).is_some();
        let settings = match table.remove("server") {
            None => ServerSettings::default(),
            Some(value) => {
                let raw: RawSettings = value
                    .try_into()
                    .map_err(|e: toml::de::Error| ConfigError { path: "server".into(), reason: e.message().into() })?;
                settings_from_raw(raw)?
            }
        };
        let mut settings = settings;
        if let Some(value) = table.remove("ha") {
            let raw: crate::ha::config::RawHa = value
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError { path: "ha".into(), reason: e.message().into() })?;
            let shared = matches!(dhcp_store::feature_for(&settings.store), Some("postgres" | "redis"));
            let ha = crate::ha::config::from_raw(raw, shared)?;
            if settings.api_listen.is_none() {
                return Err(ConfigError {
                    path: "server.api-listen".into(),
                    reason: "high availability needs the management API: the peers talk through it".into(),
                });
            }
            // Answers wait for the partner's acknowledgement: requests in flight together share
            // one round trip (the updates go in batches, which wait a moment under load). A
            // waiting request holds a few kilobytes.
            if ha.send_lease_updates && ha.sync_lease_updates && !explicit_in_flight {
                settings.net.max_in_flight = settings.net.max_in_flight.max(256);
            }
            // A write then waits for the partner: answered on the receiving task, it would hold
            // up reading for that round trip.
            if ha.send_lease_updates && ha.sync_lease_updates {
                settings.net.inline_first = false;
            }
            settings.ha = Some(ha);
        }
        if let Some(value) = table.remove("limits") {
            let raw: crate::limits::RawLimits = value
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError { path: "limits".into(), reason: e.message().into() })?;
            settings.limits = crate::limits::from_raw(raw)?;
        }
        let raw = dhcp_core::config::RawConfig::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError { path: String::new(), reason: e.message().to_owned() })?;
        let dhcp = Config::from_raw(&raw)?;
        Ok(ServerConfig { settings, dhcp })
    }
}

fn settings_from_raw(raw: RawSettings) -> Result<ServerSettings, ConfigError> {
    let bad = |path: &str, reason: String| ConfigError { path: format!("server.{path}"), reason };
    let defaults = ServerSettings::default();
    let listen = match raw.listen {
        None => defaults.net.listen,
        Some(entries) if entries.is_empty() => {
            return Err(bad("listen", "must name at least one interface or address".into()));
        }
        Some(entries) => entries
            .iter()
            .enumerate()
            .map(|(i, text)| text.parse::<Listen>().map_err(|e| bad(&format!("listen[{i}]"), e.to_string())))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let server_port = raw.server_port.unwrap_or(defaults.net.server_port);
    let client_port = raw.client_port.unwrap_or(defaults.net.client_port);
    if server_port == 0 {
        return Err(bad("server-port", "must not be 0".into()));
    }
    if client_port == 0 || client_port == server_port {
        return Err(bad("client-port", "must be non-zero and differ from server-port".into()));
    }
    let store = raw.store.unwrap_or(defaults.store);
    if let Some(reason) = dhcp_store::unsupported_reason(&store) {
        // The message goes to logs and API answers: no password in it.
        return Err(bad("store", crate::redact::redact_secrets(&format!("{store:?}: {reason}"))));
    }
    let host_store = raw.host_store;
    if let Some(url) = &host_store {
        let redis = ["redis://", "rediss://", "redis+unix://", "unix://"].iter().any(|s| url.starts_with(s));
        if !redis {
            return Err(bad("host-store", "a redis://, rediss:// or redis+unix:// URL".into()));
        }
        if let Some(reason) = dhcp_store::unsupported_reason(url.split('?').next().unwrap_or(url)) {
            return Err(bad("host-store", crate::redact::redact_secrets(&format!("{url:?}: {reason}"))));
        }
    }
    let log_level = match raw.log_level {
        None => defaults.log_level,
        Some(text) => LogLevel::parse(&text)
            .ok_or_else(|| bad("log-level", format!("{text:?}: use error, warn, info, debug or trace")))?,
    };
    let threads = match raw.threads {
        None => default_threads(),
        Some(0) => return Err(bad("threads", "must be at least 1".into())),
        Some(n) if n > MAX_THREADS => return Err(bad("threads", format!("{n}: at most {MAX_THREADS}"))),
        Some(n) => n,
    };
    let max_in_flight = match raw.max_in_flight {
        None => default_in_flight(&store, threads),
        Some(0) => return Err(bad("max-in-flight", "must be at least 1".into())),
        Some(n) => n,
    };
    let store_deadline = match raw.store_timeout_ms {
        None => defaults.store_deadline,
        Some(0) => None,
        Some(ms) => Some(Duration::from_millis(ms)),
    };
    let receive_buffer = match raw.receive_buffer {
        None => dhcp_net::DEFAULT_RECEIVE_BUFFER,
        Some(n) if n > MAX_RECEIVE_BUFFER => {
            return Err(bad("receive-buffer", format!("{n} bytes: at most {MAX_RECEIVE_BUFFER} (256 MiB)")));
        }
        Some(n) => n,
    };
    let api_listen = raw
        .api_listen
        .map(|text| {
            text.parse::<SocketAddr>()
                .map_err(|_| bad("api-listen", format!("{text:?} is not ADDRESS:PORT (such as \"127.0.0.1:8067\")")))
        })
        .transpose()?;
    let api_token = raw.api_token.or_else(|| std::env::var(API_TOKEN_ENV).ok()).filter(|t| !t.is_empty());
    if api_listen.is_some() && api_token.is_none() {
        return Err(bad("api-token", format!("the management API needs a token: set api-token or {API_TOKEN_ENV}")));
    }
    if let Some(token) = &api_token
        && token.len() < 8
    {
        return Err(bad("api-token", "must be at least 8 characters".into()));
    }
    let api_tls = match (raw.api_tls_cert, raw.api_tls_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some((cert, key)),
        (Some(_), None) => return Err(bad("api-tls-key", "api-tls-cert needs its private key".into())),
        (None, Some(_)) => return Err(bad("api-tls-cert", "api-tls-key needs its certificate".into())),
    };
    let state_dir = raw.state_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    if state_dir.as_os_str().is_empty() {
        return Err(bad("state-dir", "must name a directory".into()));
    }
    let history_keep = match raw.history_keep {
        None => DEFAULT_HISTORY_KEEP,
        Some(n) if !(1..=MAX_HISTORY_KEEP).contains(&n) => {
            return Err(bad("history-keep", format!("{n}: from 1 to {MAX_HISTORY_KEEP}")));
        }
        Some(n) => n,
    };
    let audit_log = raw.audit_log.unwrap_or_else(|| state_dir.join("audit.log"));
    let seconds = |field: &str, value: Option<u64>, default: Duration| match value {
        None => Ok(default),
        Some(0) => Err(bad(field, "must be at least 1 second".into())),
        Some(s) => Ok(Duration::from_secs(s)),
    };
    let session_idle = seconds("session-idle-timeout", raw.session_idle_timeout, DEFAULT_SESSION_IDLE)?;
    let session_lifetime = seconds("session-lifetime", raw.session_lifetime, DEFAULT_SESSION_LIFETIME)?;
    let oidc = match (raw.oidc_issuer, raw.oidc_client_id, raw.oidc_redirect_url) {
        (None, None, None) => None,
        (Some(issuer), Some(client_id), Some(redirect_url)) => {
            for (field, url) in [("oidc-issuer", &issuer), ("oidc-redirect-url", &redirect_url)] {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(bad(field, format!("{url:?} is not an http:// or https:// URL")));
                }
            }
            Some(crate::oidc::OidcSettings {
                issuer,
                client_id,
                client_secret: raw.oidc_client_secret.or_else(|| std::env::var(OIDC_SECRET_ENV).ok()),
                redirect_url,
                role_claim: raw.oidc_role_claim.unwrap_or_else(|| "dhcp_role".to_owned()),
                ca: raw.oidc_ca,
            })
        }
        (None, _, _) => return Err(bad("oidc-issuer", "OpenID Connect login needs the provider's issuer URL".into())),
        (_, None, _) => return Err(bad("oidc-client-id", "OpenID Connect login needs this client's id".into())),
        (_, _, None) => {
            return Err(bad(
                "oidc-redirect-url",
                "OpenID Connect login needs the callback URL (…/portal/oidc/callback)".into(),
            ));
        }
    };
    Ok(ServerSettings {
        // The plain in-memory store never waits: answering where the datagram was read costs
        // least, and other threads take only a backlog.
        net: NetSettings {
            listen,
            server_port,
            client_port,
            max_in_flight,
            inline_first: never_waits(&store),
            receive_buffer,
        },
        store,
        host_store,
        threads,
        log_level,
        lease_dump: raw.lease_dump,
        api_listen,
        api_token,
        api_tls,
        ha: None,
        store_deadline,
        limits: crate::limits::LimitsConfig::default(),
        state_dir,
        history_keep,
        audit_log,
        session_idle,
        session_lifetime,
        oidc,
    })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const SUBNET: &str = "[[subnets]]\nid = 1\nsubnet = \"10.0.0.0/24\"\npools = [\"10.0.0.10-10.0.0.20\"]\n";

    #[test]
    fn reads_server_table_and_engine_config() {
        let text = format!(
            "lease-time = 600\n[server]\nlisten = [\"veth0\", \"127.0.0.1\", \"*\"]\nserver-port = 6767\n\
             client-port = 6868\nlog-level = \"warn\"\nlease-dump = \"/tmp/x.csv\"\n{SUBNET}"
        );
        let config = ServerConfig::from_toml_str(&text).expect("valid");
        assert_eq!(
            config.settings.net.listen,
            vec![Listen::Interface("veth0".into()), Listen::Address(Ipv4Addr::LOCALHOST), Listen::All]
        );
        assert_eq!((config.settings.net.server_port, config.settings.net.client_port), (6767, 6868));
        assert_eq!(config.settings.log_level, LogLevel::Warn);
        assert_eq!(config.settings.store, "memory:");
        assert_eq!(config.dhcp.subnets.len(), 1);
    }

    #[test]
    fn threads_default_to_the_cores_and_size_the_in_flight_default() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let config =
            ServerConfig::from_toml_str(&format!("[server]\nlisten = [\"127.0.0.1\"]\n{SUBNET}")).expect("valid");
        assert_eq!(config.settings.threads, cores);
        assert_eq!(config.settings.net.max_in_flight, if cores > 1 { 64 } else { 1 });
        // The memory store on one thread answers inline; on more, requests are what the other
        // threads run. An explicit max-in-flight wins.
        for (server, threads, in_flight) in [
            ("threads = 1", 1, 1),
            ("threads = 4", 4, 64),
            ("threads = 4\nmax-in-flight = 8", 4, 8),
            ("threads = 1\nstore = \"memory:?journal=/tmp/j\"", 1, 64),
        ] {
            let config = ServerConfig::from_toml_str(&format!("[server]\n{server}\n{SUBNET}")).expect(server);
            assert_eq!((config.settings.threads, config.settings.net.max_in_flight), (threads, in_flight), "{server}");
            // Only the store that never waits answers where it reads.
            assert_eq!(config.settings.net.inline_first, !server.contains("journal"), "{server}");
        }
    }

    #[test]
    fn a_pair_that_waits_for_its_partner_never_answers_on_the_receiving_task() {
        let ha = "[ha]\nthis-server = \"b\"\nmode = \"hot-standby\"\n\
            [[ha.peers]]\nname = \"a\"\nurl = \"http://10.0.0.1:8067\"\nrole = \"primary\"\n\
            [[ha.peers]]\nname = \"b\"\nurl = \"http://10.0.0.2:8067/\"\nrole = \"standby\"\n";
        let server = "[server]\nstore = \"memory:\"\napi-listen = \"127.0.0.1:8067\"\napi-token = \"0123456789\"\n";
        let config = ServerConfig::from_toml_str(&format!("{server}{ha}{SUBNET}")).expect("valid");
        assert!(config.settings.ha.as_ref().is_some_and(|h| h.sync_lease_updates));
        // Every write waits for the partner's acknowledgement: reading must not.
        assert!(!config.settings.net.inline_first);
        assert_eq!(config.settings.net.max_in_flight, 256);
    }

    #[test]
    fn defaults_without_server_table() {
        let config = ServerConfig::from_toml_str(SUBNET).expect("valid");
        assert_eq!(config.settings, ServerSettings::default());
    }

    #[test]
    fn refuses_bad_settings_with_their_path() {
        for (server, path) in [
            ("listen = []", "server.listen"),
            ("listen = [\"eth0\", \"a/b\"]", "server.listen[1]"),
            ("client-port = 67", "server.client-port"),
            ("server-port = 0", "server.server-port"),
            ("store = \"mongodb://x\"", "server.store"),
            ("log-level = \"loud\"", "server.log-level"),
            ("max-in-flight = 0", "server.max-in-flight"),
            ("threads = 0", "server.threads"),
            ("threads = 257", "server.threads"),
            ("receive-buffer = 1000000000", "server.receive-buffer"),
            ("api-listen = \"localhost\"\napi-token = \"0123456789\"", "server.api-listen"),
            ("api-listen = \"127.0.0.1:8067\"\napi-token = \"short\"", "server.api-token"),
            ("colour = \"red\"", "server"),
        ] {
            let text = format!("[server]\n{server}\n{SUBNET}");
            let err = ServerConfig::from_toml_str(&text).expect_err(server);
            assert_eq!(err.path, path, "{server}: {err}");
        }
    }

    #[test]
    fn engine_errors_keep_their_path() {
        let text = "[[subnets]]\nid = 1\nsubnet = \"10.0.0.0/24\"\npools = [\"10.0.1.10-10.0.1.20\"]\n";
        let err = ServerConfig::from_toml_str(text).expect_err("pool outside subnet");
        assert!(err.path.starts_with("subnets[0].pools[0]"), "{err}");
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    /// Store errors reach logs and API answers: the URL's password never does.
    #[test]
    fn store_errors_hide_the_urls_password() {
        let refused = ServerConfig::from_toml_str("[server]\nstore = \"mongodb://dhcp:s3cret@db/leases\"\n")
            .expect_err("no such store");
        assert_eq!(refused.path, "server.store");
        assert!(!refused.reason.contains("s3cret") && refused.reason.contains("mongodb://dhcp:"), "{}", refused.reason);
        let open = crate::ServiceError::Store(dhcp_store::OpenError::Open {
            url: "postgres://dhcp:s3cret@db/leases".into(),
            reason: "connection refused".into(),
        });
        let shown = open.to_string();
        assert!(!shown.contains("s3cret") && shown.contains("connection refused"), "{shown}");
    }

    #[test]
    fn openid_connect_needs_issuer_client_and_callback_together() {
        let subnet = "[[subnets]]\nid = 1\nsubnet = \"10.0.0.0/24\"\n";
        let with = |lines: &str| ServerConfig::from_toml_str(&format!("[server]\n{lines}\n{subnet}"));
        let full = "oidc-issuer = \"https://id.example\"\noidc-client-id = \"dhcp\"\n\
                    oidc-redirect-url = \"https://dhcp.example/portal/oidc/callback\"";
        let oidc = with(full).expect("valid").settings.oidc.expect("on");
        assert_eq!((oidc.client_id.as_str(), oidc.role_claim.as_str()), ("dhcp", "dhcp_role"));
        let missing = with("oidc-issuer = \"https://id.example\"").expect_err("no client id");
        assert_eq!(missing.path, "server.oidc-client-id");
        let bad = with(&full.replace("https://id.example", "id.example")).expect_err("not a URL");
        assert_eq!(bad.path, "server.oidc-issuer");
        assert!(with("").expect("valid").settings.oidc.is_none());
    }
}
