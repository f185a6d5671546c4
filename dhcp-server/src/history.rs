//! The config history: every config the server applied (at start, by the API, a reload, a
//! rollback), kept as a numbered version with who applied it, when, how and why, in the state
//! directory (`STATE-DIR/config-history/`), never beside the config file.
//!
//! A version is two files, `NNNNNNNN.toml` (the text as applied) and `NNNNNNNN.json` (what
//! [`Version`] holds), written with the same care as the config file (a temporary file, synced,
//! renamed; mode 0600, as configs hold secrets). The text is written first, so a crash between
//! the two leaves a text without its record, which the listing passes over. A version's number
//! is taken with `create_new`, so two processes sharing a directory cannot write one number
//! twice. Past `history-keep` versions, the oldest are deleted.

use std::fs::OpenOptions;
use std::io::{self, ErrorKind};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::clock;
use crate::files::replace_file;

/// How a config came to be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Source {
    /// The config the server started with.
    Startup,
    /// The config file read again (`config reload`, SIGHUP).
    Reload,
    /// An edit through the management API (reservations, groups, a whole config).
    Api,
    /// An earlier version put back.
    Rollback,
    /// An edit in the web portal (reservations, groups, an import).
    Portal,
}

/// Who applied a config, how and why: what a version and an audit line record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The user (`api-token` for the shared token, `system` for the server itself).
    pub user: String,
    /// How.
    pub source: Source,
    /// Why, as the user said it (optional).
    pub message: Option<String>,
}

impl Change {
    /// A change the server makes by itself (start, SIGHUP).
    pub fn system(source: Source) -> Change {
        Change { user: "system".to_owned(), source, message: None }
    }

    /// A change by `user` through `source`, with `message` if given.
    pub fn by(user: &str, source: Source, message: Option<String>) -> Change {
        Change { user: user.to_owned(), source, message: message.filter(|m| !m.trim().is_empty()) }
    }
}

/// One applied config, as the history lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// Its number: 1 for the first, one more for each next.
    pub version: u64,
    /// When it was applied, seconds since the epoch.
    pub at: u64,
    /// The same as RFC 3339 UTC.
    pub time: String,
    /// Who applied it.
    pub user: String,
    /// How.
    pub source: Source,
    /// Why, if they said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For a rollback: the version put back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restores: Option<u64>,
}

/// The history's directory and how much it keeps.
#[derive(Debug)]
pub struct ConfigHistory {
    dir: PathBuf,
    keep: usize,
}

/// A version's file name without its extension.
fn stem(version: u64) -> String {
    format!("{version:08}")
}

impl ConfigHistory {
    /// Opens (creating, mode 0700) the history in `dir`, keeping `keep` versions.
    pub fn open(dir: &Path, keep: usize) -> io::Result<ConfigHistory> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        Ok(ConfigHistory { dir: dir.to_owned(), keep: keep.max(1) })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The numbers of the versions whose text exists, ascending.
    fn numbers(&self) -> io::Result<Vec<u64>> {
        let mut numbers: Vec<u64> = std::fs::read_dir(&self.dir)?
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".toml")?.parse().ok()
            })
            .collect();
        numbers.sort_unstable();
        Ok(numbers)
    }

    /// Every version, newest first. A version whose record is missing or unreadable (a crash
    /// between its two files) is left out.
    pub fn list(&self) -> io::Result<Vec<Version>> {
        let mut out = Vec::new();
        for n in self.numbers()?.into_iter().rev() {
            if let Some(version) = self.record(n)? {
                out.push(version);
            }
        }
        Ok(out)
    }

    fn record(&self, version: u64) -> io::Result<Option<Version>> {
        match std::fs::read(self.dir.join(format!("{}.json", stem(version)))) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Version `version` and its text, if the history holds it.
    pub fn get(&self, version: u64) -> io::Result<Option<(Version, String)>> {
        let Some(record) = self.record(version)? else { return Ok(None) };
        match std::fs::read_to_string(self.dir.join(format!("{}.toml", stem(version)))) {
            Ok(text) => Ok(Some((record, text))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The newest version and its text.
    pub fn latest(&self) -> io::Result<Option<(Version, String)>> {
        for n in self.numbers()?.into_iter().rev() {
            if let Some(found) = self.get(n)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Records `text` as applied by `change` (`restores`: the version a rollback put back), and
    /// deletes the oldest versions past `keep`. Text equal to the newest version's is not
    /// recorded again (a restart, a reload of an unchanged file): that version is answered.
    pub fn append(&self, text: &str, change: &Change, restores: Option<u64>) -> io::Result<Version> {
        if let Some((latest, latest_text)) = self.latest()?
            && latest_text == text
        {
            return Ok(latest);
        }
        let mut next = self.numbers()?.last().map_or(1, |n| n + 1);
        // Claim the number: a second writer sharing the directory takes the next one.
        let claimed = loop {
            let path = self.dir.join(format!("{}.toml", stem(next)));
            match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
                Ok(_) => break path,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => next += 1,
                Err(e) => return Err(e),
            }
        };
        replace_file(&claimed, text)?;
        let at = clock::now_secs();
        let version = Version {
            version: next,
            at,
            time: clock::rfc3339(at),
            user: change.user.clone(),
            source: change.source,
            message: change.message.clone(),
            restores,
        };
        let record = serde_json::to_string_pretty(&version).map_err(io::Error::other)?;
        replace_file(&self.dir.join(format!("{}.json", stem(next))), &record)?;
        self.prune()?;
        Ok(version)
    }

    /// Deletes the oldest versions past `keep`.
    fn prune(&self) -> io::Result<()> {
        let numbers = self.numbers()?;
        let excess = numbers.len().saturating_sub(self.keep);
        for n in &numbers[..excess] {
            for ext in ["json", "toml"] {
                match std::fs::remove_file(self.dir.join(format!("{}.{ext}", stem(*n)))) {
                    Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// A unified diff from `old` (labelled `from`) to `new` (`to`), three lines of context: empty
/// when they are equal.
pub fn diff(old: &str, new: &str, from: &str, to: &str) -> String {
    similar::TextDiff::from_lines(old, new).unified_diff().context_radius(3).header(from, to).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(keep: usize) -> (tempfile::TempDir, ConfigHistory) {
        let dir = tempfile::tempdir().expect("temp dir");
        let history = ConfigHistory::open(&dir.path().join("config-history"), keep).expect("open");
        (dir, history)
    }

    #[test]
    fn versions_are_numbered_listed_newest_first_and_kept_with_who_and_why() {
        let (_dir, history) = history(10);
        let first = history.append("a = 1\n", &Change::system(Source::Startup), None).expect("append");
        let api = Change::by("alice", Source::Api, Some("more leases".into()));
        let second = history.append("a = 2\n", &api, None).expect("append");
        assert_eq!((first.version, second.version), (1, 2));
        let listed = history.list().expect("list");
        assert_eq!(listed.iter().map(|v| v.version).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(listed[0].user, "alice");
        assert_eq!(listed[0].message.as_deref(), Some("more leases"));
        assert_eq!(history.get(1).expect("get").map(|(_, t)| t), Some("a = 1\n".to_owned()));
        assert!(history.get(9).expect("get").is_none());
    }

    #[test]
    fn the_same_text_again_is_not_a_new_version() {
        let (_dir, history) = history(10);
        history.append("a = 1\n", &Change::system(Source::Startup), None).expect("append");
        let again = history.append("a = 1\n", &Change::system(Source::Reload), None).expect("append");
        assert_eq!(again.version, 1);
        assert_eq!(history.list().expect("list").len(), 1);
    }

    #[test]
    fn only_the_newest_keep_versions_stay_and_numbers_go_on() {
        let (_dir, history) = history(3);
        for n in 1..=5 {
            history.append(&format!("a = {n}\n"), &Change::system(Source::Api), None).expect("append");
        }
        let numbers: Vec<u64> = history.list().expect("list").iter().map(|v| v.version).collect();
        assert_eq!(numbers, vec![5, 4, 3]);
        let files = std::fs::read_dir(history.dir()).expect("dir").count();
        assert_eq!(files, 6, "the pruned versions' files are gone");
    }

    #[test]
    fn a_text_without_its_record_is_passed_over_and_its_number_not_reused() {
        let (_dir, history) = history(10);
        history.append("a = 1\n", &Change::system(Source::Startup), None).expect("append");
        // A crash after the text of version 2, before its record.
        std::fs::write(history.dir().join("00000002.toml"), "a = 2\n").expect("write");
        assert_eq!(history.list().expect("list").len(), 1);
        let next = history.append("a = 3\n", &Change::system(Source::Api), None).expect("append");
        assert_eq!(next.version, 3);
    }

    #[test]
    fn a_diff_shows_the_changed_lines() {
        let d = diff("a = 1\nb = 2\n", "a = 1\nb = 3\n", "version 1", "version 2");
        assert!(d.contains("--- version 1") && d.contains("+++ version 2"), "{d}");
        assert!(d.contains("-b = 2") && d.contains("+b = 3"), "{d}");
        assert_eq!(diff("same\n", "same\n", "a", "b"), "");
    }
}
