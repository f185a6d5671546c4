//! The config file of a running server: test, reload, roll back.
//!
//! A new config is validated in full before anything changes; when it fails, the running config
//! stays and the error names the field. Every config that was applied is also written to
//! `<config>.last-good`, so a broken file on disk (an edit gone wrong, a bad deploy) can be put
//! back with [`ConfigControl::rollback`], which is what an operator's recovery script would
//! otherwise do by hand.
//!
//! Only the engine's part of the config changes on a reload. A changed `[server]` table (the
//! sockets, the store, the API) is reported as needing a restart and otherwise left as it runs.

use std::fmt;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use dhcp_core::{ConfigError, Engine, LeaseStore};
use tracing::{info, warn};

use crate::api::model::AppliedInfo;
use crate::config::{ServerConfig, ServerSettings};
use crate::redact::redact_secrets;

/// Why a config operation did not happen. The running config is unchanged in every case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The new config is not valid.
    #[error("invalid config: {0}")]
    Invalid(#[from] ConfigError),
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
        }
    }
}

/// The config file of a running server and the text that runs.
#[derive(Debug)]
pub struct ConfigControl {
    path: PathBuf,
    last_good: PathBuf,
    /// The text of the running config and the settings the process started with. The lock
    /// also serialises config changes.
    running: Mutex<(String, ServerSettings)>,
}

impl ConfigControl {
    /// Takes charge of the config at `path`, whose `text` the server was started with (already
    /// validated), and records it as the last good config. A last-good file that cannot be
    /// written (a read-only config directory) is logged, not fatal: the server runs, and
    /// rollback reports the missing file when asked.
    pub fn new(path: impl Into<PathBuf>, text: String, settings: ServerSettings) -> Self {
        let path = path.into();
        let mut last_good = path.clone().into_os_string();
        last_good.push(".last-good");
        let control = ConfigControl { path, last_good: last_good.into(), running: Mutex::new((text, settings)) };
        if let Err(e) = write_atomically(&control.last_good, &control.running_text()) {
            warn!(error = %e, "cannot keep the last good config; rollback will not be possible");
        }
        control
    }

    /// The config file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the last config that was applied is kept.
    pub fn last_good_path(&self) -> &Path {
        &self.last_good
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
    pub fn reload<S: LeaseStore>(&self, engine: &Engine<S>) -> Result<Applied, ControlError> {
        let text = read(&self.path)?;
        self.apply(engine, text, false)
    }

    /// Puts the last good config back into the config file and applies it.
    pub fn rollback<S: LeaseStore>(&self, engine: &Engine<S>) -> Result<Applied, ControlError> {
        let text = read(&self.last_good)?;
        self.apply(engine, text, true)
    }

    /// Applies new config text (an edit made through the API) and, when it is valid, writes it
    /// to the config file so that it survives a restart.
    pub fn replace<S: LeaseStore>(&self, engine: &Engine<S>, text: String) -> Result<Applied, ControlError> {
        self.apply(engine, text, true)
    }

    /// Runs `edit` on the running config text and applies the result as
    /// [`replace`](Self::replace) does; the edit and the apply happen under one lock, so two
    /// edits at once cannot lose one another.
    pub fn edit<S: LeaseStore, E>(
        &self,
        engine: &Engine<S>,
        edit: impl FnOnce(&str) -> Result<String, E>,
    ) -> Result<Result<Applied, ControlError>, E> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let text = edit(&running.0)?;
        Ok(self.apply_locked(&mut running, engine, text, true))
    }

    fn apply<S: LeaseStore>(
        &self,
        engine: &Engine<S>,
        text: String,
        write_file: bool,
    ) -> Result<Applied, ControlError> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        self.apply_locked(&mut running, engine, text, write_file)
    }

    fn apply_locked<S: LeaseStore>(
        &self,
        running: &mut (String, ServerSettings),
        engine: &Engine<S>,
        text: String,
        write_file: bool,
    ) -> Result<Applied, ControlError> {
        let config = ServerConfig::from_toml_str(&text).inspect_err(
            |e| warn!(error = %redact_secrets(&e.to_string()), "config refused; the running config stays"),
        )?;
        // An edit that cannot be saved is not applied: the file and the running config agree.
        if write_file {
            write_atomically(&self.path, &text)?;
        }
        let applied = Applied {
            subnets: config.dhcp.subnets.len(),
            reservations: config.dhcp.subnets.iter().map(|s| s.reservations.len()).sum(),
            restart_needed: settings_changed(&running.1, &config.settings),
        };
        engine.replace_config(config.dhcp);
        if let Err(e) = write_atomically(&self.last_good, &text) {
            warn!(error = %e, "config applied but not kept as the last good one");
        }
        running.0 = text;
        info!(%applied, "config applied");
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
    changed
}

fn read(path: &Path) -> Result<String, ControlError> {
    std::fs::read_to_string(path).map_err(|source| ControlError::Io { path: path.to_owned(), source })
}

/// Writes `text` to a temporary file beside `path` and renames it over `path`: a reader sees
/// the old file or the new one, never half of one, and after a crash the file is one or the
/// other too (the new file is synced before the rename and the directory after it).
///
/// The new file keeps the mode (and, where the process may set them, the owner and group) of
/// the file it replaces; a file that did not exist is created `0600`, since config files hold
/// the API token and store passwords, and lease dumps hold clients' identities.
pub(crate) fn replace_file(path: &Path, text: &str) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let old = match std::fs::metadata(path) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let mode = old.as_ref().map_or(0o600, |m| m.permissions().mode() & 0o7777);
    let written = write_synced(&tmp, text, mode, old.as_ref()).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(path)
}

/// Creates `tmp` afresh with `mode` (and `like`'s owner), writes `text` and syncs it.
fn write_synced(tmp: &Path, text: &str, mode: u32, like: Option<&std::fs::Metadata>) -> io::Result<()> {
    // A stale temporary file from a crash is replaced, not written through (it could be a
    // link someone else put there).
    match std::fs::remove_file(tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(tmp)?;
    if let Some(old) = like {
        // Only root may give a file away; anyone else keeps the file as theirs.
        let _ = std::os::unix::fs::fchown(&file, Some(old.uid()), Some(old.gid()));
    }
    // The umask may have taken bits off the mode asked for.
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Syncs the directory that holds `path`, so that a rename into it survives a crash.
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

fn write_atomically(path: &Path, text: &str) -> Result<(), ControlError> {
    replace_file(path, text).map_err(|source| ControlError::Io { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcp_store::MemoryStore;

    const GOOD: &str = "[[subnets]]\nid = 1\nsubnet = \"10.0.0.0/24\"\npools = [\"10.0.0.10-10.0.0.20\"]\n";

    fn setup(dir: &Path) -> (ConfigControl, Engine<MemoryStore>) {
        let path = dir.join("server.toml");
        std::fs::write(&path, GOOD).expect("write");
        let config = ServerConfig::from_toml_str(GOOD).expect("valid");
        let engine = Engine::new(config.dhcp, MemoryStore::new());
        (ConfigControl::new(&path, GOOD.to_owned(), config.settings), engine)
    }

    #[test]
    fn a_broken_file_is_refused_and_rolled_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let (control, engine) = setup(dir.path());
        std::fs::write(control.path(), GOOD.replace("10.0.0.20", "10.0.9.20")).expect("break it");
        let err = control.reload(&engine).expect_err("pool outside the subnet");
        assert!(matches!(&err, ControlError::Invalid(e) if e.path.starts_with("subnets[0].pools[0]")), "{err}");
        assert_eq!(engine.config().subnets[0].total_addresses(), 11, "the running config stays");

        let applied = control.rollback(&engine).expect("rollback");
        assert_eq!(applied.subnets, 1);
        assert_eq!(std::fs::read_to_string(control.path()).expect("read"), GOOD, "the good file is back");
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
    }

    #[test]
    fn written_files_keep_their_mode_and_new_ones_are_private() {
        let dir = tempfile::tempdir().expect("tmp");
        let (control, engine) = setup(dir.path());
        assert_eq!(mode(control.last_good_path()), 0o600, "a new last-good file");
        std::fs::set_permissions(control.path(), std::fs::Permissions::from_mode(0o640)).expect("chmod");

        // An edit through the API writes the config file.
        let bigger = GOOD.replace("10.0.0.20", "10.0.0.30");
        control.replace(&engine, bigger.clone()).expect("valid");
        assert_eq!(std::fs::read_to_string(control.path()).expect("read"), bigger);
        assert_eq!(mode(control.path()), 0o640, "the config keeps its mode");
        // A reload and a rollback write the last-good file and the config file again.
        control.reload(&engine).expect("valid");
        control.rollback(&engine).expect("rollback");
        assert_eq!(mode(control.path()), 0o640);
        assert_eq!(mode(control.last_good_path()), 0o600);
        let mut tmp = control.path().as_os_str().to_owned();
        tmp.push(".tmp");
        assert!(!Path::new(&tmp).exists(), "no temporary file left behind");

        // A mode with bits the umask would take off is kept whole.
        std::fs::set_permissions(control.path(), std::fs::Permissions::from_mode(0o666)).expect("chmod");
        control.replace(&engine, GOOD.to_owned()).expect("valid");
        assert_eq!(mode(control.path()), 0o666);
    }

    #[test]
    fn a_valid_reload_applies_and_becomes_the_last_good() {
        let dir = tempfile::tempdir().expect("tmp");
        let (control, engine) = setup(dir.path());
        let bigger = GOOD.replace("10.0.0.20", "10.0.0.30");
        let with_port = format!("[server]\nserver-port = 6767\nclient-port = 6868\n{bigger}");
        std::fs::write(control.path(), &with_port).expect("write");
        let applied = control.reload(&engine).expect("valid");
        assert_eq!(applied.restart_needed, vec!["server-port", "client-port"]);
        assert_eq!(engine.config().subnets[0].total_addresses(), 21);
        assert_eq!(engine.stats().subnet(1).map(|s| s.total_addresses()), Some(21), "stats follow the config");
        assert_eq!(std::fs::read_to_string(control.last_good_path()).expect("read"), with_port);
    }

    #[test]
    fn a_new_thread_count_waits_for_a_restart() {
        let dir = tempfile::tempdir().expect("tmp");
        let (control, engine) = setup(dir.path());
        let running = ServerConfig::from_toml_str(GOOD).expect("valid").settings;
        // The in-flight bound kept as it runs, so that only the thread count differs.
        let more = format!(
            "[server]\nthreads = {}\nmax-in-flight = {}\n{GOOD}",
            running.threads + 1,
            running.net.max_in_flight
        );
        std::fs::write(control.path(), &more).expect("write");
        let applied = control.reload(&engine).expect("valid");
        assert_eq!(applied.restart_needed, vec!["threads"]);
    }
}
