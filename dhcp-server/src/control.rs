//! The config file of a running server: test, reload, roll back.
//!
//! A new config is validated in full before anything changes; when it fails, the running config
//! stays and the error names the field. Every config that was applied is kept in the config
//! history in the state directory ([`ConfigHistory`]) with who applied it and why, so a broken
//! file on disk (an edit gone wrong, a bad deploy) can be put back with
//! [`ConfigControl::rollback`], and a change that was valid but wrong can be undone with
//! [`ConfigControl::rollback_to`] any version the history keeps.
//!
//! Only the engine's part of the config changes on a reload. A changed `[server]` table (the
//! sockets, the store, the API) is reported as needing a restart and otherwise left as it runs.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use dhcp_core::{ConfigError, Engine, LeaseStore};
use tracing::{info, warn};

use crate::api::model::AppliedInfo;
use crate::config::{ServerConfig, ServerSettings};
use crate::files::replace_file;
use crate::history::{Change, ConfigHistory, Source, Version};
use crate::redact::redact_secrets;

/// Why a config operation did not happen. The running config is unchanged in every case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The new config is not valid.
    #[error("invalid config: {0}")]
    Invalid(#[from] ConfigError),
    /// The history holds no such version.
    #[error("the config history holds no version {0}")]
    NoVersion(u64),
    /// The server keeps no config history (its state directory could not be used).
    #[error("no config history is kept: {0}")]
    NoHistory(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// What a successful reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Subnets in the config now running.
    pub subnets: usize,
    /// Reservations in the config now running, over all subnets.
    pub reservations: usize,
    /// `[server]` settings that differ in the new file and take effect only at restart.
    pub restart_needed: Vec<&'static str>,
    /// The history's version of the config now running (none without a history).
    pub version: Option<u64>,
}

impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} subnets, {} reservations", self.subnets, self.reservations)?;
        if !self.restart_needed.is_empty() {
            write!(f, "; restart needed for server.{}", self.restart_needed.join(", server."))?;
        }
        Ok(())
    }
}

impl From<&Applied> for AppliedInfo {
    fn from(applied: &crate::control::Applied) -> Self {
        AppliedInfo {
            subnets: applied.subnets,
            reservations: applied.reservations,
            restart_needed: applied.restart_needed.iter().map(|s| (*s).to_owned()).collect(),
            version: applied.version,
        }
    }
}

/// The config file of a running server, the text that runs, and its history.
#[derive(Debug)]
pub struct ConfigControl {
    path: PathBuf,
    /// The history, unless its directory could not be used (then the reason).
    history: Result<ConfigHistory, String>,
    /// The text of the running config and the settings the process started with. The lock
    /// also serialises config changes.
    running: Mutex<(String, ServerSettings)>,
}

impl ConfigControl {
    /// Takes charge of the config at `path`, whose `text` the server was started with (already
    /// validated), and records it in the history (`STATE-DIR/config-history`) unless it is the
    /// newest version there already. A history that cannot be kept (a state directory that
    /// cannot be written) is logged, not fatal: the server runs, and rollback reports why when
    /// asked.
    pub fn new(path: impl Into<PathBuf>, text: String, settings: ServerSettings) -> Self {
        let dir = settings.state_dir.join("config-history");
        let history = ConfigHistory::open(&dir, settings.history_keep)
            .and_then(|history| history.append(&text, &Change::system(Source::Startup), None).map(|_| history))
            .map_err(|e| {
                warn!(error = %e, dir = %dir.display(), "cannot keep the config history; rollback will not be possible");
                format!("{}: {e}", dir.display())
            });
        ConfigControl { path: path.into(), history, running: Mutex::new((text, settings)) }
    }

    /// The config file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The history, or why none is kept.
    pub fn history(&self) -> Result<&ConfigHistory, ControlError> {
        self.history.as_ref().map_err(|why| ControlError::NoHistory(why.clone()))
    }

    /// The text of the running config.
    pub fn running_text(&self) -> String {
        self.running.lock().unwrap_or_else(PoisonError::into_inner).0.clone()
    }

    /// Validates config text without applying it.
    pub fn test(text: &str) -> Result<ServerConfig, ConfigError> {
        ServerConfig::from_toml_str(text)
    }

    /// Reads the config file again and applies it if it is valid.
    pub fn reload<S: LeaseStore>(&self, engine: &Engine<S>, change: &Change) -> Result<Applied, ControlError> {
        let text = read(&self.path)?;
        self.apply(engine, text, false, change, None)
    }

    /// Puts the newest version of the history (the last config applied) back into the config
    /// file and applies it: what undoes a broken file on disk.
    pub fn rollback<S: LeaseStore>(&self, engine: &Engine<S>, change: &Change) -> Result<Applied, ControlError> {
        let history = self.history()?;
        let latest = history.latest().map_err(|source| self.history_io(source))?;
        let (version, text) = latest.ok_or_else(|| ControlError::NoHistory("the history is empty".into()))?;
        self.apply(engine, text, true, change, Some(version.version))
    }

    /// Puts version `version` of the history back into the config file and applies it,
    /// validated first as any new config: a change that was valid but wrong, undone. Recorded
    /// as a new version that names the one it restores.
    pub fn rollback_to<S: LeaseStore>(
        &self,
        engine: &Engine<S>,
        version: u64,
        change: &Change,
    ) -> Result<Applied, ControlError> {
        let found = self.history()?.get(version).map_err(|source| self.history_io(source))?;
        let (_, text) = found.ok_or(ControlError::NoVersion(version))?;
        self.apply(engine, text, true, change, Some(version))
    }

    fn history_io(&self, source: io::Error) -> ControlError {
        let path = self.history.as_ref().map_or_else(|_| PathBuf::new(), |h| h.dir().to_owned());
        ControlError::Io { path, source }
    }

    /// Applies new config text (an edit made through the API) and, when it is valid, writes it
    /// to the config file so that it survives a restart.
    pub fn replace<S: LeaseStore>(
        &self,
        engine: &Engine<S>,
        text: String,
        change: &Change,
    ) -> Result<Applied, ControlError> {
        self.apply(engine, text, true, change, None)
    }

    /// Runs `edit` on the running config text and applies the result as
    /// [`replace`](Self::replace) does; the edit and the apply happen under one lock, so two
    /// edits at once cannot lose one another.
    pub fn edit<S: LeaseStore, E>(
        &self,
        engine: &Engine<S>,
        change: &Change,
        edit: impl FnOnce(&str) -> Result<String, E>,
    ) -> Result<Result<Applied, ControlError>, E> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let text = edit(&running.0)?;
        Ok(self.apply_locked(&mut running, engine, text, true, change, None))
    }

    fn apply<S: LeaseStore>(
        &self,
        engine: &Engine<S>,
        text: String,
        write_file: bool,
        change: &Change,
        restores: Option<u64>,
    ) -> Result<Applied, ControlError> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        self.apply_locked(&mut running, engine, text, write_file, change, restores)
    }

    fn apply_locked<S: LeaseStore>(
        &self,
        running: &mut (String, ServerSettings),
        engine: &Engine<S>,
        text: String,
        write_file: bool,
        change: &Change,
        restores: Option<u64>,
    ) -> Result<Applied, ControlError> {
        let config = ServerConfig::from_toml_str(&text).inspect_err(
            |e| warn!(error = %redact_secrets(&e.to_string()), "config refused; the running config stays"),
        )?;
        // An edit that cannot be saved is not applied: the file and the running config agree.
        if write_file {
            write_atomically(&self.path, &text)?;
        }
        let mut applied = Applied {
            subnets: config.dhcp.subnets.len(),
            reservations: config.dhcp.subnets.iter().map(|s| s.reservations.len()).sum(),
            restart_needed: settings_changed(&running.1, &config.settings),
            version: None,
        };
        engine.replace_config(config.dhcp);
        if let Ok(history) = &self.history {
            match history.append(&text, change, restores) {
                Ok(Version { version, .. }) => applied.version = Some(version),
                Err(e) => warn!(error = %e, "config applied but not kept in the history"),
            }
        }
        running.0 = text;
        info!(%applied, user = %change.user, "config applied");
        Ok(applied)
    }
}

/// The `[server]` settings that differ, by their config names.
fn settings_changed(old: &ServerSettings, new: &ServerSettings) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |name, differs: bool| {
        if differs {
            changed.push(name);
        }
    };
    check("listen", old.net.listen != new.net.listen);
    check("server-port", old.net.server_port != new.net.server_port);
    check("client-port", old.net.client_port != new.net.client_port);
    check("store", old.store != new.store);
    check("log-level", old.log_level != new.log_level);
    check("lease-dump", old.lease_dump != new.lease_dump);
    check("max-in-flight", old.net.max_in_flight != new.net.max_in_flight);
    check("threads", old.threads != new.threads);
    check("receive-buffer", old.net.receive_buffer != new.net.receive_buffer);
    check("api-listen", old.api_listen != new.api_listen);
    check("api-token", old.api_token != new.api_token);
    check("api-tls", old.api_tls != new.api_tls);
    check("ha", old.ha != new.ha);
    check("limits", old.limits != new.limits);
    check("store-timeout-ms", old.store_deadline != new.store_deadline);
    check("state-dir", old.state_dir != new.state_dir);
    check("history-keep", old.history_keep != new.history_keep);
    check("audit-log", old.audit_log != new.audit_log);
    check("session-idle-timeout", old.session_idle != new.session_idle);
    check("session-lifetime", old.session_lifetime != new.session_lifetime);
    check("oidc", old.oidc != new.oidc);
    changed
}

fn read(path: &Path) -> Result<String, ControlError> {
    std::fs::read_to_string(path).map_err(|source| ControlError::Io { path: path.to_owned(), source })
}

fn write_atomically(path: &Path, text: &str) -> Result<(), ControlError> {
    replace_file(path, text).map_err(|source| ControlError::Io { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcp_store::MemoryStore;
    use std::os::unix::fs::PermissionsExt;

    const GOOD: &str = "[[subnets]]\nid = 1\nsubnet = \"10.0.0.0/24\"\npools = [\"10.0.0.10-10.0.0.20\"]\n";

    /// A config for a server whose state lives in `dir`: `server` lines, then `body`.
    fn text(dir: &Path, server: &str, body: &str) -> String {
        format!("[server]\nstate-dir = \"{}\"\n{server}\n{body}", dir.join("state").display())
    }

    fn setup(dir: &Path) -> (ConfigControl, Engine<MemoryStore>) {
        let path = dir.join("server.toml");
        let good = text(dir, "", GOOD);
        std::fs::write(&path, &good).expect("write");
        let config = ServerConfig::from_toml_str(&good).expect("valid");
        let engine = Engine::new(config.dhcp, MemoryStore::new());
        (ConfigControl::new(&path, good, config.settings), engine)
    }

    fn api(message: &str) -> Change {
        Change::by("alice", Source::Api, Some(message.to_owned()))
    }

    #[test]
    fn a_broken_file_is_refused_and_rolled_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let (control, engine) = setup(dir.path());
        let good = control.running_text();
        std::fs::write(control.path(), good.replace("10.0.0.20", "10.0.9.20")).expect("break it");
        let err = control.reload(&engine, &Change::system(Source::Reload)).expect_err("pool outside the subnet");
        assert!(matches!(&err, ControlError::Invalid(e) if e.path.starts_with("subnets[0].pools[0]")), "{err}");
        assert_eq!(engine.config().subnets[0].total_addresses(), 11, "the running config stays");

        let applied = control.rollback(&engine, &Change::system(Source::Rollback)).expect("rollback");
        assert_eq!(applied.subnets, 1);
        assert_eq!(std::fs::read_to_string(control.path()).expect("read"), good, "the good file is back");
        assert_eq!(applied.version, Some(1), "the same text: no new version");
    }

    #[test]
    fn every_applied_config_is_a_version_and_any_version_can_be_rolled_back_to() {
        let dir = tempfile::tempdir().expect("tmp");
        let (control, engine) = setup(dir.path());
        let first = control.running_text();
        let bigger = first.replace("10.0.0.20", "10.0.0.30");
        let applied = control.replace(&engine, bigger.clone(), &api("room for the lab")).expect("valid");
        assert_eq!(applied.version, Some(2));
        // Valid but wrong: the pool cut to two addresses.
        let small = first.replace("10.0.0.20", "10.0.0.11");
        control.replace(&engine, small, &api("oops")).expect("valid");
        assert_eq!(engine.config().subnets[0].total_addresses(), 2);

        let applied = control.rollback_to(&engine, 2, &Change::by("bob", Source::Rollback, None)).expect("rollback");
        assert_eq!(applied.version, Some(4), "a rollback is a version of its own");
        assert_eq!(engine.config().subnets[0].total_addresses(), 21, "version 2 runs again");
        assert_eq!(std::fs::read_to_string(control.path()).expect("read"), bigger, "and is the file again");
        let history = control.history().expect("kept").list().expect("list");
        let summary: Vec<(u64, &str, Source, Option<u64>)> =
            history.iter().map(|v| (v.version, v.user.as_str(), v.source, v.restores)).collect();
        assert_eq!(
            summary,
            vec![
                (4, "bob", Source::Rollback, Some(2)),
                (3, "alice", Source::Api, None),
                (2, "alice", Source::Api, None),
                (1, "system", Source::Startup, None),
            ]
        );
        assert_eq!(history[2].message.as_deref(), Some("room for the lab"));
        assert!(matches!(control.rollback_to(&engine, 99, &api("x")), Err(ControlError::NoVersion(99))));
    }

    #[test]
    fn a_version_that_is_no_longer_valid_is_refused_and_nothing_changes() {
        let dir = tempfile::tempdir().expect("tmp");
        let (control, engine) = setup(dir.path());
        // A version 2 on disk that this build would refuse (edited by hand, or from a build
        // that took other keys).
        let history = control.history().expect("kept");
        let broken = control.running_text().replace("10.0.0.20", "10.0.9.20");
        history.append(&broken, &api("hand edit"), None).expect("append");
        let err = control.rollback_to(&engine, 2, &api("back")).expect_err("invalid");
        assert!(matches!(err, ControlError::Invalid(_)), "{err}");
        assert_eq!(engine.config().subnets[0].total_addresses(), 11);
        assert_eq!(std::fs::read_to_string(control.path()).expect("read"), control.running_text());
    }

    #[test]
    fn nothing_is_written_beside_the_config_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let configs = dir.path().join("configs");
        std::fs::create_dir(&configs).expect("mkdir");
        let path = configs.join("server.toml");
        let good = text(dir.path(), "", GOOD);
        std::fs::write(&path, &good).expect("write");
        let config = ServerConfig::from_toml_str(&good).expect("valid");
        let engine = Engine::new(config.dhcp, MemoryStore::new());
        let control = ConfigControl::new(&path, good.clone(), config.settings);
        control.replace(&engine, good.replace("10.0.0.20", "10.0.0.30"), &api("x")).expect("valid");
        let names: Vec<String> = std::fs::read_dir(&configs)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        assert_eq!(names, vec!["server.toml"], "no last-good file, no temporary left");
    }

    #[test]
    fn a_state_dir_that_cannot_be_written_leaves_the_server_running_without_history() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("server.toml");
        // A file where the state directory should be.
        std::fs::write(dir.path().join("state"), "not a directory").expect("write");
        let good = text(dir.path(), "", GOOD);
        std::fs::write(&path, &good).expect("write");
        let config = ServerConfig::from_toml_str(&good).expect("valid");
        let engine = Engine::new(config.dhcp, MemoryStore::new());
        let control = ConfigControl::new(&path, good.clone(), config.settings);
        let applied = control.replace(&engine, good.replace("10.0.0.20", "10.0.0.30"), &api("x")).expect("applied");
        assert_eq!(applied.version, None);
        assert!(matches!(control.rollback(&engine, &api("x")), Err(ControlError::NoHistory(_))));
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
    }

    #[test]
    fn written_files_keep_their_mode_and_new_ones_are_private() {
        let dir = tempfile::tempdir().expect("tmp");
        let (control, engine) = setup(dir.path());
        let history = control.history().expect("kept").dir().to_owned();
        assert_eq!(mode(&history), 0o700, "the history's directory");
        assert_eq!(mode(&history.join("00000001.toml")), 0o600, "a version");
        std::fs::set_permissions(control.path(), std::fs::Permissions::from_mode(0o640)).expect("chmod");

        // An edit through the API writes the config file.
        let good = control.running_text();
        let bigger = good.replace("10.0.0.20", "10.0.0.30");
        control.replace(&engine, bigger.clone(), &api("x")).expect("valid");
        assert_eq!(std::fs::read_to_string(control.path()).expect("read"), bigger);
        assert_eq!(mode(control.path()), 0o640, "the config keeps its mode");
        // A reload and a rollback write the config file again.
        control.reload(&engine, &Change::system(Source::Reload)).expect("valid");
        control.rollback_to(&engine, 1, &api("x")).expect("rollback");
        assert_eq!(mode(control.path()), 0o640);
        let mut tmp = control.path().as_os_str().to_owned();
        tmp.push(".tmp");
        assert!(!Path::new(&tmp).exists(), "no temporary file left behind");

        // A mode with bits the umask would take off is kept whole.
        std::fs::set_permissions(control.path(), std::fs::Permissions::from_mode(0o666)).expect("chmod");
        control.replace(&engine, good, &api("x")).expect("valid");
        assert_eq!(mode(control.path()), 0o666);
    }

    #[test]
    fn a_valid_reload_applies_and_becomes_a_version() {
        let dir = tempfile::tempdir().expect("tmp");
        let (control, engine) = setup(dir.path());
        let bigger = GOOD.replace("10.0.0.20", "10.0.0.30");
        let with_port = text(dir.path(), "server-port = 6767\nclient-port = 6868", &bigger);
        std::fs::write(control.path(), &with_port).expect("write");
        let applied = control.reload(&engine, &Change::system(Source::Reload)).expect("valid");
        assert_eq!(applied.restart_needed, vec!["server-port", "client-port"]);
        assert_eq!(engine.config().subnets[0].total_addresses(), 21);
        assert_eq!(engine.stats().subnet(1).map(|s| s.total_addresses()), Some(21), "stats follow the config");
        let latest = control.history().expect("kept").latest().expect("read").expect("a version");
        assert_eq!((latest.0.version, latest.0.source, latest.1), (2, Source::Reload, with_port));
    }

    #[test]
    fn a_new_thread_count_waits_for_a_restart() {
        let dir = tempfile::tempdir().expect("tmp");
        let (control, engine) = setup(dir.path());
        let running = ServerConfig::from_toml_str(&control.running_text()).expect("valid").settings;
        // The in-flight bound kept as it runs, so that only the thread count differs.
        let more = text(
            dir.path(),
            &format!("threads = {}\nmax-in-flight = {}", running.threads + 1, running.net.max_in_flight),
            GOOD,
        );
        std::fs::write(control.path(), &more).expect("write");
        let applied = control.reload(&engine, &Change::system(Source::Reload)).expect("valid");
        assert_eq!(applied.restart_needed, vec!["threads"]);
    }
}
