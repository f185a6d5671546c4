//! Durability at the edge of the disk: the server's lease journal on a small tmpfs that fills
//! up. While nothing can be written the server grants no lease (no ACK for a lease it could
//! lose); once space returns it leases again by itself, with no restart, and after a crash
//! (SIGKILL) and a restart every lease a client was granted is still there.
//!
//! The server listens on loopback on unprivileged ports; `dhcp_net::probe` plays a relay.

mod lab;

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lab::{Server, TempDir};

/// A tmpfs of `size` mounted on a directory of its own, unmounted when dropped (also when the
/// test panics), before the directory is removed.
struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = TempDir::new("tmpfs");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&*dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount a tmpfs on {}", dir.display());
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a server still holding the journal open must not keep the mount alive.
        let _ = std::process::Command::new("umount").arg("-l").arg(&*self.dir).status();
    }
}

/// Fills the file system under `dir` with one file until a write fails; returns the file.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler).expect("filler");
    while file.write_all(&[0u8; 4096]).is_ok() {}
    while file.write_all(&[0]).is_ok() {}
    filler
}

fn hwaddr(mac: u8) -> String {
    format!("02:00:0e:00:00:{mac:02x}")
}

#[test]
fn a_full_journal_disk_refuses_acks_and_recovers_without_a_restart() {
    if !lab::available() {
        return;
    }
    let disk = Tmpfs::mount("128k");
    let files = TempDir::new("durability");
    let store = format!("memory:?journal={}", disk.path().join("leases.journal").display());
    let port = lab::server_port();
    let server = Server::loopback(&files, &store, port, "");

    let mut granted = HashSet::new();
    for mac in 1..=3 {
        server.probe(mac).unwrap_or_else(|e| panic!("a lease before the disk fills: {e}\n{}", server.log_text()));
        granted.insert(hwaddr(mac));
    }

    // The disk fills. The journal's last page still takes some lines; then every request that
    // would need a write is refused: no ACK.
    let filler = fill(disk.path());
    let mut refused = 0;
    let mut mac = 10;
    while refused < 3 {
        assert!(mac < 120, "the server went on granting leases on a full disk\n{}", server.log_text());
        match server.probe(mac) {
            Ok(_) => {
                assert_eq!(refused, 0, "a lease granted after one was refused, with the disk still full");
                granted.insert(hwaddr(mac));
            }
            Err(_) => refused += 1,
        }
        mac += 1;
    }

    // Space returns: leases again by themselves, no restart.
    std::fs::remove_file(&filler).expect("free the space");
    let back = Instant::now();
    let mut next = 200;
    loop {
        match server.probe(next) {
            Ok(_) => {
                granted.insert(hwaddr(next));
                break;
            }
            Err(e) => {
                assert!(
                    back.elapsed() < Duration::from_secs(10),
                    "no lease after space returned: {e}\n{}",
                    server.log_text()
                );
                next += 1;
            }
        }
    }
    eprintln!(
        "full disk: {refused} requests refused; leases again {:.2} s after space returned",
        back.elapsed().as_secs_f64()
    );
    for mac in next + 1..=next + 5 {
        server.probe(mac).unwrap_or_else(|e| panic!("a lease after recovery: {e}\n{}", server.log_text()));
        granted.insert(hwaddr(mac));
    }

    // A crash and a restart on the same journal: every lease a client was granted is there.
    server.crash();
    let restarted = Server::loopback(&files, &store, port, "");
    let held: HashSet<String> =
        restarted.leases().into_iter().filter(|l| l.state == "bound").map(|l| l.hwaddr).collect();
    let lost: Vec<_> = granted.difference(&held).collect();
    assert!(lost.is_empty(), "granted and lost across the restart: {lost:?}\n{}", restarted.log_text());
    drop(restarted);
    drop(server);
}
