//! The one entry point: a config file in, a running server out.
//!
//! [`Service`] holds a validated config. [`Service::start`] opens the store the config names
//! (wrapped so that `/metrics` times every store call), counts the leases already stored into
//! the gauges, binds the DHCP sockets and the management API, and returns a [`Running`]
//! server; [`Running::run`] serves until a shutdown future resolves, with SIGHUP reloading
//! the config file and SIGUSR1 writing the lease dump. [`Service::run`] does both.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use dhcp_core::wire::Packet;
use dhcp_core::{ConfigError, Engine, RecvMeta, Timestamp};
use dhcp_net::{Observer, ServeError, Server, Verdict};
use dhcp_store::{AnyStore, OpenError};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::api::entries::StoreEntries;
use crate::api::{self, Admin};
use crate::audit::AuditLog;
use crate::config::{ServerConfig, ServerSettings};
use crate::control::ConfigControl;
use crate::ha::{Ha, HaStore};
use crate::history::{Change, Source};
use crate::host_store::HostStore;
use crate::lease_dump::write_lease_csv;
use crate::limits::Limits;
use crate::metrics::{MeteredStore, Metrics};
use crate::seen::LastSeen;
use crate::sessions::Sessions;
use crate::tls::{self, TlsListener};
use crate::users::Users;

/// The store a [`Service`] runs on: whichever the config's URL names, kept in step with the HA
/// partner when there is one, timed for `/metrics`.
pub type ServiceStore = MeteredStore<HaStore<AnyStore>>;

/// Why a service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The lease store could not be opened (shown with any password in its URL hidden: the
    /// message goes to logs).
    #[error("{}", crate::redact::redact_secrets(&.0.to_string()))]
    Store(#[from] OpenError),
    /// The host store (`host-store`) could not be reached (its URL's password hidden).
    #[error("host store: {}", crate::redact::redact_secrets(&.0.to_string()))]
    HostStore(dhcp_core::StoreError),
    /// The DHCP sockets could not be opened.
    #[error(transparent)]
    Sockets(#[from] ServeError),
    /// The management API's address could not be bound.
    #[error("management API on {addr}: {source}")]
    Api {
        /// `api-listen`.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// A TLS certificate, key or CA file could not be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The users file (`STATE-DIR/users.json`) exists but cannot be read: the server does not
    /// start with its users lost.
    #[error("users: {0}")]
    Users(io::Error),
    /// The OpenID Connect settings cannot be used (a CA file that cannot be read).
    #[error("OpenID Connect: {0}")]
    Oidc(String),
    /// Serving failed (a signal handler, a socket).
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A validated server config, ready to start.
#[derive(Debug, Clone)]
pub struct Service {
    config: ServerConfig,
    /// The config file and the text the config was read from, when there is a file: reloads,
    /// rollback and the API's config endpoints need it.
    file: Option<(PathBuf, String)>,
}

impl Service {
    /// Reads and validates a config file. Errors name the file or the field, and the reason.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Service, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError { path: String::new(), reason: format!("cannot read {}: {e}", path.display()) })?;
        let config = ServerConfig::from_toml_str(&text)?;
        Ok(Service { config, file: Some((path.to_owned(), text)) })
    }

    /// A service from a config built in code. It has no file, so nothing reloads it and the
    /// API's config and reservation endpoints answer 501.
    pub fn from_config(config: ServerConfig) -> Service {
        Service { config, file: None }
    }

    /// The config it will run.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Opens the store, binds the sockets and the API: everything that can fail at start.
    pub async fn start(self) -> Result<Running, ServiceError> {
        let ServerConfig { settings, dhcp } = self.config;
        let metrics = Arc::new(Metrics::new());
        let ha = match settings.ha.clone() {
            Some(config) => Some(Arc::new(Ha::new(config).map_err(ServiceError::Tls)?)),
            None => None,
        };
        let opened = dhcp_store::open(&settings.store).await?;
        let hosts = match &settings.host_store {
            Some(url) => Some(HostStore::connect(url).await.map_err(ServiceError::HostStore)?),
            None => None,
        };
        // The API lists and edits the entries of the Redis the hosts are read from.
        let entries = match &hosts {
            #[cfg(feature = "redis")]
            Some(hosts) => StoreEntries::of_redis(hosts.reader()),
            _ => StoreEntries::of(&opened),
        };
        let mut store = HaStore::new(opened, ha.clone());
        if let Some(hosts) = hosts {
            store = store.with_hosts(hosts);
            info!("hosts and groups are read from the host store");
        }
        let mut store = MeteredStore::new(store, &metrics);
        if let Some(deadline) = settings.store_deadline {
            store = store.with_deadline(deadline);
        }
        let engine = Arc::new(Engine::new(dhcp, store));
        if let Some(ha) = &ha {
            ha.note_pools(&engine.config());
        }
        // A durable or shared store may hold leases already: start the gauges from them.
        if let Err(e) = engine.count_leases().await {
            warn!(error = %e, "cannot count the stored leases; assigned-addresses starts at 0");
        }
        let control = self.file.map(|(path, text)| Arc::new(ConfigControl::new(path, text, settings.clone())));
        let seen = Arc::new(LastSeen::default());
        let limits = (!settings.limits.is_empty()).then(|| Arc::new(Limits::new(&settings.limits)));
        let gate = Gate { seen: Arc::clone(&seen), ha: ha.clone(), limits: limits.clone() };
        let server = Server::bind(engine, settings.net.clone())?.with_observer(Arc::new(gate));
        let mut api_cert = None;
        let api = match settings.api_listen {
            Some(addr) => {
                let listener = TcpListener::bind(addr).await.map_err(|source| ServiceError::Api { addr, source })?;
                let local = listener.local_addr().unwrap_or(addr);
                // The API runs on a thread of its own (see `run`): the socket moves there.
                let listener = listener.into_std().map_err(|source| ServiceError::Api { addr, source })?;
                match &settings.api_tls {
                    Some((cert, key)) => {
                        let (config, cert) = tls::server_config(cert, key).map_err(ServiceError::Tls)?;
                        api_cert = Some(cert);
                        info!(addr = %local, "management API listening (HTTPS)");
                        Some(ApiListener::Tls(listener, config, local))
                    }
                    None => {
                        info!(addr = %local, "management API listening");
                        Some(ApiListener::Plain(listener, local))
                    }
                }
            }
            None => None,
        };
        Ok(Running { server: Arc::new(server), control, metrics, seen, ha, limits, entries, settings, api, api_cert })
    }

    /// Starts, then serves until `shutdown` resolves.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServiceError> {
        self.start().await?.run(shutdown).await
    }
}

/// A started server: store open, sockets and API bound, not yet serving.
#[derive(Debug)]
pub struct Running {
    server: Arc<Server<ServiceStore>>,
    control: Option<Arc<ConfigControl>>,
    metrics: Arc<Metrics>,
    seen: Arc<LastSeen>,
    ha: Option<Arc<Ha>>,
    limits: Option<Arc<Limits>>,
    entries: StoreEntries,
    settings: ServerSettings,
    api: Option<ApiListener>,
    /// The API's certificate, read again on SIGHUP.
    api_cert: Option<Arc<tls::ApiCert>>,
}

/// The management API's bound socket, plain or with its TLS config, and its address.
enum ApiListener {
    Plain(std::net::TcpListener, SocketAddr),
    Tls(std::net::TcpListener, Arc<rustls::ServerConfig>, SocketAddr),
}

impl std::fmt::Debug for ApiListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiListener::Plain(_, addr) => write!(f, "http://{addr}"),
            ApiListener::Tls(_, _, addr) => write!(f, "https://{addr}"),
        }
    }
}

impl Running {
    /// The engine: statistics, leases, the running config.
    pub fn engine(&self) -> &Arc<Engine<ServiceStore>> {
        self.server.engine()
    }

    /// The network side: sockets and the settings they were bound with.
    pub fn server(&self) -> &Arc<Server<ServiceStore>> {
        &self.server
    }

    /// The metrics registry `/metrics` renders.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The config file's control (test, reload, rollback), when the service has a file.
    pub fn control(&self) -> Option<&Arc<ConfigControl>> {
        self.control.as_ref()
    }

    /// When each client was last heard from.
    pub fn last_seen(&self) -> &LastSeen {
        &self.seen
    }

    /// High availability, when the config has an `[ha]` table.
    pub fn ha(&self) -> Option<&Arc<Ha>> {
        self.ha.as_ref()
    }

    /// The rate limits, when the config sets any in `[limits]`.
    pub fn limits(&self) -> Option<&Arc<Limits>> {
        self.limits.as_ref()
    }

    /// Where the management API listens (the bound port, when `api-listen` asked for port 0).
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().map(|l| match l {
            ApiListener::Plain(_, addr) | ApiListener::Tls(_, _, addr) => *addr,
        })
    }

    /// Serves until `shutdown` resolves, then stops and, when `lease-dump` is set, writes the
    /// leases one last time.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServiceError> {
        let Running { server, control, metrics, seen, ha, limits, entries, settings, api, api_cert } = self;
        let mut tasks = JoinSet::new();
        let (audit, unwritable) = AuditLog::open(&settings.audit_log);
        if let Some(e) = unwritable {
            warn!(error = %e, path = %settings.audit_log.display(), "cannot open the audit log; changes are logged only");
        }
        let audit = Arc::new(audit);
        if control.is_some() || api_cert.is_some() {
            let mut hangup = signal(SignalKind::hangup())?;
            let (control, server, audit) = (control.clone(), Arc::clone(&server), Arc::clone(&audit));
            tasks.spawn(async move {
                while hangup.recv().await.is_some() {
                    if let Some(control) = &control {
                        info!("SIGHUP: reloading the config");
                        // Errors are logged by the control; the running config stays.
                        let (outcome, detail) = match control.reload(server.engine(), &Change::system(Source::Reload)) {
                            Ok(applied) => ("ok".to_owned(), serde_json::json!({ "version": applied.version })),
                            Err(e) => (crate::redact::redact_secrets(&e.to_string()), serde_json::Value::Null),
                        };
                        audit.record("system", "config.reload", "SIGHUP", &outcome, detail);
                    }
                    if let Some(cert) = &api_cert {
                        match cert.reload() {
                            Ok(()) => info!("SIGHUP: the API's certificate and key were read again"),
                            Err(e) => {
                                warn!(error = %e, "SIGHUP: the API's new certificate is refused; the old one stays")
                            }
                        }
                    }
                }
            });
        }
        let api_thread = match (api, settings.api_token.clone()) {
            (Some(listener), Some(token)) => {
                let users = Users::open(&settings.state_dir.join("users.json")).map_err(ServiceError::Users)?;
                let admin = Admin {
                    users: Arc::new(users),
                    sessions: Arc::new(Sessions::new(settings.session_idle, settings.session_lifetime)),
                    secure_cookies: settings.api_tls.is_some(),
                    sessions_lifetime_secs: settings.session_lifetime.as_secs(),
                    rates: Arc::default(),
                    hosts: std::sync::Mutex::default(),
                    oidc: match &settings.oidc {
                        Some(oidc) => Some(Arc::new(crate::oidc::Oidc::new(oidc.clone()).map_err(ServiceError::Oidc)?)),
                        None => None,
                    },
                    server: Arc::clone(&server),
                    control: control.clone(),
                    metrics,
                    seen,
                    ha: ha.clone(),
                    limits,
                    entries,
                    token,
                    audit,
                };
                Some(ApiThread::start(listener, admin)?)
            }
            _ => None,
        };
        if let (Some(ha), Some(token)) = (ha, settings.api_token.clone()) {
            tasks.spawn(Arc::clone(&ha).run_updates(token.clone()));
            tasks.spawn(Arc::clone(&ha).run_watchdog());
            tasks.spawn(ha.run_heartbeats(token, Arc::clone(&server)));
        }
        if let Some(path) = settings.lease_dump.clone() {
            let mut user1 = signal(SignalKind::user_defined1())?;
            let server = Arc::clone(&server);
            tasks.spawn(async move {
                while user1.recv().await.is_some() {
                    dump(&server, &path).await;
                }
            });
        }
        info!("serving");
        let served = Arc::clone(&server).serve(shutdown).await;
        if let Some(api) = api_thread {
            api.stop().await;
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        if let Some(path) = &settings.lease_dump {
            dump(&server, path).await;
        }
        info!("stopped");
        Ok(served?)
    }
}

/// The management API on a thread and runtime of its own: a large `GET /leases`, a metrics
/// scrape or a burst of API calls costs that thread's time, never the DHCP loop's.
struct ApiThread {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl ApiThread {
    fn start(listener: ApiListener, admin: Admin<ServiceStore>) -> Result<ApiThread, ServiceError> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("dhcp-api".into()).spawn(move || {
            lower_priority();
            runtime.block_on(async move {
                let serve = async {
                    match listener {
                        ApiListener::Plain(listener, addr) => match TcpListener::from_std(listener) {
                            Ok(listener) => api::serve(listener, admin).await,
                            Err(e) => warn!(%addr, error = %e, "management API cannot listen"),
                        },
                        ApiListener::Tls(listener, config, addr) => {
                            match TcpListener::from_std(listener).and_then(|l| TlsListener::new(l, config)) {
                                Ok(listener) => api::serve(listener, admin).await,
                                Err(e) => warn!(%addr, error = %e, "management API cannot listen"),
                            }
                        }
                    }
                };
                tokio::select! {
                    () = serve => {}
                    _ = stopped => {}
                }
            });
        })?;
        Ok(ApiThread { stop, thread })
    }

    /// Stops serving and waits for the thread to end.
    async fn stop(self) {
        let _ = self.stop.send(());
        let thread = self.thread;
        if !matches!(tokio::task::spawn_blocking(move || thread.join()).await, Ok(Ok(()))) {
            warn!("management API thread did not end cleanly");
        }
    }
}

/// Lowers the calling thread's scheduling priority (nice 10): when the machine is busy, the
/// DHCP loop gets the CPU before a large API answer does. Without the right to, the thread
/// stays as it is, and the log says so.
fn lower_priority() {
    // On Linux a thread id names that thread alone for setpriority.
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10) {
        warn!(error = %e, "cannot lower the management API thread's priority");
    }
}

/// What the server checks of every datagram: notes when its client was last seen, drops it
/// over a rate limit, and leaves it to the HA partner when it is the partner's to answer.
struct Gate {
    seen: Arc<LastSeen>,
    ha: Option<Arc<Ha>>,
    limits: Option<Arc<Limits>>,
}

impl Observer for Gate {
    fn received(&self, datagram: &[u8], _meta: &RecvMeta, now: Timestamp) -> Verdict {
        self.seen.note(datagram, now);
        if self.limits.is_none() && self.ha.is_none() {
            return Verdict::Handle;
        }
        // What does not parse goes on to the engine, which drops and counts it.
        let Ok(packet) = Packet::parse(datagram) else { return Verdict::Handle };
        if let Some(limits) = &self.limits
            && limits.check(&packet, Instant::now()).is_err()
        {
            return Verdict::Ignore;
        }
        self.ha.as_ref().map_or(Verdict::Handle, |ha| ha.decide(&packet))
    }
}

async fn dump(server: &Server<ServiceStore>, path: &Path) {
    match write_lease_csv(server.engine().store(), path).await {
        Ok(count) => info!(path = %path.display(), count, "leases written"),
        Err(e) => warn!(path = %path.display(), error = %e, "cannot write leases"),
    }
}

/// Resolves when the process receives SIGINT or SIGTERM: the shutdown future a server process
/// passes to [`Service::run`].
pub async fn shutdown_signal() -> io::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = interrupt.recv() => info!("SIGINT: shutting down"),
        _ = terminate.recv() => info!("SIGTERM: shutting down"),
    }
    Ok(())
}
