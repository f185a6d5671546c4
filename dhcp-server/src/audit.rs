//! The audit log: every change an operator makes (reservations, groups, store entries, leases
//! deleted, configs applied and rolled back) and every refused login, one JSON line each with
//! the user, appended to a file (`audit-log`) and logged through `tracing` (target `audit`).
//!
//! Refused logins are what an attacker controls: past [`REFUSALS_PER_MINUTE`] a minute they
//! are counted rather than written, and the count is written with the next one that is, so a
//! password-guessing flood cannot fill the disk.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock;

/// Refused logins written a minute at most.
pub const REFUSALS_PER_MINUTE: u32 = 60;

/// How far back from the end [`AuditLog::tail`] reads at most.
const TAIL_BYTES: u64 = 4 << 20;

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// RFC 3339 UTC.
    pub time: String,
    /// Who: a user name, `api-token` for the shared token, `system`, or for a refused login
    /// the name tried (`-` when none).
    pub user: String,
    /// What, as `thing.verb`: `reservation.add`, `config.rollback`, `login.refused`...
    pub action: String,
    /// Which: a reservation's id, a lease's address, a version...
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    /// Whether it happened (`ok`) or why not.
    pub outcome: String,
    /// What else is worth keeping (the fields written, the message given, the peer).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub detail: Value,
}

#[derive(Debug)]
struct Sink {
    file: Option<File>,
    /// The minute refusals are being counted in, how many were written in it, and how many
    /// were not.
    minute: u64,
    refusals_written: u32,
    refusals_unwritten: u64,
}

/// The audit log's file (see the module docs).
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    sink: Mutex<Sink>,
}

impl AuditLog {
    /// Opens `path` for appending (created 0600, its directory 0700 when missing). A file that
    /// cannot be opened is reported here; the server runs on, and each change is then logged
    /// through `tracing` only.
    pub fn open(path: &Path) -> (AuditLog, Option<io::Error>) {
        let opened = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or(Ok(()), |dir| std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir))
            .and_then(|()| OpenOptions::new().create(true).append(true).mode(0o600).open(path));
        let (file, error) = match opened {
            Ok(file) => (Some(file), None),
            Err(e) => (None, Some(e)),
        };
        let sink = Sink { file, minute: 0, refusals_written: 0, refusals_unwritten: 0 };
        (AuditLog { path: path.to_owned(), sink: Mutex::new(sink) }, error)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records `action` on `target` by `user` with its `outcome` and `detail`.
    pub fn record(&self, user: &str, action: &str, target: &str, outcome: &str, detail: Value) {
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        let mut detail = detail;
        if action == "login.refused" {
            let minute = clock::now_secs() / 60;
            if sink.minute != minute {
                (sink.minute, sink.refusals_written) = (minute, 0);
            }
            if sink.refusals_written >= REFUSALS_PER_MINUTE {
                sink.refusals_unwritten += 1;
                return;
            }
            sink.refusals_written += 1;
            if sink.refusals_unwritten > 0 {
                let unwritten = std::mem::take(&mut sink.refusals_unwritten);
                if let Value::Object(map) = &mut detail {
                    map.insert("refusals-not-written-before".into(), unwritten.into());
                } else {
                    detail = serde_json::json!({ "refusals-not-written-before": unwritten });
                }
            }
        }
        let entry = AuditEntry {
            time: clock::rfc3339(clock::now_secs()),
            user: user.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            outcome: outcome.to_owned(),
            detail,
        };
        let line = serde_json::to_string(&entry).unwrap_or_default();
        tracing::info!(target: "audit", user = %entry.user, action = %entry.action, target = %entry.target, outcome = %entry.outcome, "{line}");
        if let Some(file) = &mut sink.file
            && let Err(e) = file.write_all(format!("{line}\n").as_bytes())
        {
            tracing::warn!(error = %e, path = %self.path.display(), "the audit log cannot be written");
        }
    }

    /// The last `limit` entries, oldest first, read from the end of the file (its last 4 MiB at
    /// most). Lines that are not entries (a line cut by a crash) are passed over.
    pub fn tail(&self, limit: usize) -> io::Result<Vec<AuditEntry>> {
        let mut file = File::open(&self.path)?;
        let len = file.metadata()?.len();
        let start = len.saturating_sub(TAIL_BYTES);
        file.seek(SeekFrom::Start(start))?;
        let mut lines = BufReader::new(file).lines();
        if start > 0 {
            // The first line read from the middle of the file is a part of one.
            lines.next();
        }
        let mut entries: Vec<AuditEntry> =
            lines.map_while(Result::ok).filter_map(|l| serde_json::from_str(&l).ok()).collect();
        let skip = entries.len().saturating_sub(limit);
        entries.drain(..skip);
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_lines_with_the_user_and_read_back_newest_last() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (log, error) = AuditLog::open(&dir.path().join("state/audit.log"));
        assert!(error.is_none(), "{error:?}");
        log.record("alice", "reservation.add", "02:00:00:00:00:01", "ok", serde_json::json!({"ip": "10.0.0.5"}));
        log.record("bob", "lease.delete", "10.0.0.9", "no lease", Value::Null);
        let text = std::fs::read_to_string(log.path()).expect("read");
        assert_eq!(text.lines().count(), 2);
        let tail = log.tail(10).expect("tail");
        assert_eq!(tail[0].user, "alice");
        assert_eq!(tail[0].detail["ip"], "10.0.0.5");
        assert_eq!(tail[1].outcome, "no lease");
        assert_eq!(log.tail(1).expect("tail").len(), 1);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(log.path()).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_flood_of_refused_logins_is_counted_not_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (log, _) = AuditLog::open(&dir.path().join("audit.log"));
        for _ in 0..1000 {
            log.record("-", "login.refused", "", "wrong token", Value::Null);
        }
        let lines = std::fs::read_to_string(log.path()).expect("read").lines().count();
        // The minute may turn during the loop: at most two minutes' worth.
        assert!((REFUSALS_PER_MINUTE as usize..=2 * REFUSALS_PER_MINUTE as usize).contains(&lines), "{lines}");
        log.record("alice", "group.set", "lab", "ok", Value::Null);
        let last = log.tail(1).expect("tail");
        assert_eq!(last[0].user, "alice", "other changes are still written");
    }
}
