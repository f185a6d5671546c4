//! Files written whole: the config file, the config history's versions and lease dumps.

use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
