//! The journal store: the shared contract, and what the journal adds: replay after a restart,
//! torn lines skipped, compaction.

#[macro_use]
mod conformance;

use std::io::Write;

use conformance::{T0, addr, bound, client};
use dhcp_core::{LeaseState, LeaseStore};
use dhcp_store::{COMPACT_MIN_LINES, JournalStore};

suite!(async {
    // The directory is removed when this guard drops; the open file stays usable until then.
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, report) = JournalStore::open(dir.path().join("leases.journal")).expect("open");
    assert_eq!(report.leases, 0);
    std::mem::forget(dir);
    store
});

fn sorted(mut leases: Vec<dhcp_core::Lease>) -> Vec<dhcp_core::Lease> {
    leases.sort_by_key(|l| l.addr);
    leases
}

#[tokio::test]
async fn a_restart_replays_every_change() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("leases.journal");
    let before = {
        let (store, _) = JournalStore::open(&path).expect("open");
        for n in 1..=5 {
            store.claim(&bound(n, addr(n), 3600), T0).await.expect("store").expect("granted");
        }
        store.update_state(addr(2), &client(2), LeaseState::Released).await.expect("store").expect("held");
        store.update_state(addr(3), &client(3), LeaseState::Declined { until: T0 + 600 }).await.expect("store");
        assert!(store.delete(addr(4)).await.expect("store"));
        store.claim(&bound(5, addr(5), 7200), T0 + 100).await.expect("store").expect("renewed");
        // Offers are not journaled: a crash costs the client one more DISCOVER.
        store.claim(&conformance::offered(9, addr(9), 30), T0).await.expect("store").expect("offered");
        sorted(store.list(None).await.expect("store"))
    };
    let (store, report) = JournalStore::open(&path).expect("reopen");
    assert_eq!((report.applied, report.skipped), (9, 0));
    let after = sorted(store.list(None).await.expect("store"));
    let without_offer: Vec<_> = before.into_iter().filter(|l| l.addr != addr(9)).collect();
    assert_eq!(after, without_offer);
    assert_eq!(after.len(), 4);
}

#[tokio::test]
async fn a_torn_last_line_is_skipped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("leases.journal");
    {
        let (store, _) = JournalStore::open(&path).expect("open");
        store.claim(&bound(1, addr(1), 3600), T0).await.expect("store").expect("granted");
        store.claim(&bound(2, addr(2), 3600), T0).await.expect("store").expect("granted");
    }
    // A crash in the middle of an append leaves part of a line.
    let mut file = std::fs::OpenOptions::new().append(true).open(&path).expect("append");
    file.write_all(b"L 10.0.0.3 1 bound 17000036").expect("write");
    drop(file);
    let (store, report) = JournalStore::open(&path).expect("reopen");
    assert_eq!((report.applied, report.skipped, report.leases), (2, 1, 2));
    // And the journal goes on working after it.
    store.claim(&bound(3, addr(3), 3600), T0).await.expect("store").expect("granted");
    drop(store);
    let (_, report) = JournalStore::open(&path).expect("reopen again");
    assert_eq!((report.skipped, report.leases), (1, 3));
}

#[tokio::test]
async fn compaction_keeps_the_journal_proportional_to_the_leases() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("leases.journal");
    let (store, _) = JournalStore::open(&path).expect("open");
    // Ten clients renewing over and over: many lines, few leases.
    for round in 0..(COMPACT_MIN_LINES / 10 + 50) {
        for n in 1..=10u8 {
            let renewed = bound(n, addr(n), 3600 + round);
            store.claim(&renewed, T0 + round).await.expect("store").expect("granted");
        }
    }
    // Compaction runs in the background; wait for it.
    for _ in 0..200 {
        if store.journal_lines() < 1000 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(store.journal_lines() < 1000, "compacted: {} lines", store.journal_lines());
    let before = sorted(store.list(None).await.expect("store"));
    drop(store);
    let (store, report) = JournalStore::open(&path).expect("reopen");
    assert!(report.applied < 1000, "{report:?}");
    assert_eq!(sorted(store.list(None).await.expect("store")), before);
    let size = std::fs::metadata(&path).expect("journal").len();
    assert!(size < 100_000, "journal is {size} bytes");
}

#[tokio::test]
async fn changes_in_flight_together_share_syncs_and_are_all_on_disk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("leases.journal");
    let (store, _) = JournalStore::open(&path).expect("open");
    let mut tasks = tokio::task::JoinSet::new();
    for n in 1..=200u8 {
        let store = store.clone();
        let at = std::net::Ipv4Addr::new(10, 0, 1, n);
        tasks.spawn(async move { store.claim(&bound(n, at, 3600), T0).await });
    }
    while let Some(done) = tasks.join_next().await {
        assert!(done.expect("task").expect("store").is_some(), "granted");
    }
    let syncs = store.syncs();
    assert!((1..=50).contains(&syncs), "200 changes at once took {syncs} syncs");
    drop(store);
    let (reopened, report) = JournalStore::open(&path).expect("reopen");
    assert_eq!(report.leases, 200, "every answered change is in the journal");
    assert_eq!(reopened.list(None).await.expect("store").len(), 200);
}

#[tokio::test]
async fn a_move_is_one_line_replayed_whole_or_not_at_all() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("leases.journal");
    {
        let (store, _) = JournalStore::open(&path).expect("open");
        store.claim(&bound(1, addr(1), 3600), T0).await.expect("store").expect("granted");
        let lines = store.journal_lines();
        store.claim(&bound(1, addr(7), 3600), T0 + 10).await.expect("store").expect("moved");
        assert_eq!(store.journal_lines(), lines + 1, "the move and the freeing are one line");
    }
    let text = std::fs::read_to_string(&path).expect("read");
    let last = text.lines().rfind(|l| !l.is_empty()).expect("a line").to_owned();
    assert!(last.starts_with("M "), "{last}");
    {
        let (store, report) = JournalStore::open(&path).expect("reopen");
        assert_eq!(report.skipped, 0);
        assert_eq!(store.lease_by_addr(addr(1)).await.expect("store").map(|l| l.state), Some(LeaseState::Released));
        assert_eq!(store.lease_by_client(1, &client(1)).await.expect("store").map(|l| l.addr), Some(addr(7)));
    }
    // Torn anywhere, the move is lost whole: the client keeps its old binding and no new one.
    let without_last = text.trim_end().rsplit_once('\n').map_or("", |(head, _)| head).to_owned();
    for cut in [3, last.len() / 2, last.len() - 1] {
        std::fs::write(&path, format!("{without_last}\n{}", &last[..cut])).expect("write");
        let (store, report) = JournalStore::open(&path).expect("reopen");
        assert_eq!(report.skipped, 1, "cut at {cut}");
        assert_eq!(
            store.lease_by_addr(addr(1)).await.expect("store").map(|l| l.state),
            Some(LeaseState::Bound { expires: T0 + 3600 })
        );
        assert_eq!(store.lease_by_addr(addr(7)).await.expect("store"), None);
    }
}

/// A tmpfs of `size` mounted on a temp dir (tests run as root), unmounted when dropped, also
/// when the test panics.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("temp dir");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        if !status.success() {
            eprintln!("SKIPPED: cannot mount a tmpfs (not root?)");
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Fills the file system under `dir` with a file until a write fails.
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler).expect("filler");
    let chunk = vec![0u8; 4096];
    while file.write_all(&chunk).is_ok() {}
    // Whatever is left is smaller than a page: take it byte by byte.
    while file.write_all(&[0]).is_ok() {}
    filler
}

#[tokio::test]
async fn a_full_disk_fails_changes_and_they_work_again_when_space_returns() {
    let Some(fs) = Tmpfs::mount("256k") else { return };
    let path = fs.path().join("leases.journal");
    let (store, _) = JournalStore::open(&path).expect("open");
    store.claim(&bound(1, addr(1), 3600), T0).await.expect("store").expect("granted");
    let filler = fill(fs.path());

    // The disk is full: a change that cannot be written fails, so the server sends no ACK.
    let mut answered = vec![addr(1)];
    let mut failed = 0;
    for n in 2..=100u8 {
        match store.claim(&bound(n, addr(n), 3600), T0).await {
            Ok(granted) => answered.push(granted.expect("granted").addr),
            Err(e) => {
                assert!(matches!(&e, dhcp_core::StoreError::Unavailable(why) if why.contains("write")), "{e}");
                failed += 1;
            }
        }
    }
    // The journal's last page had room for some lines; past it, every change fails.
    assert!(failed >= 10, "{failed} of 99 changes failed on a full disk");

    // Space returns: changes work again by themselves, no reopen.
    std::fs::remove_file(&filler).expect("free space");
    for n in 101..=150u8 {
        store.claim(&bound(n, addr(n), 3600), T0).await.expect("store works again").expect("granted");
        answered.push(addr(n));
    }
    let in_memory = sorted(store.list(None).await.expect("store"));
    drop(store);

    let (reopened, report) = JournalStore::open(&path).expect("reopen");
    assert_eq!(report.skipped, 0, "no torn line was left by the failed writes");
    for at in &answered {
        assert!(reopened.lease_by_addr(*at).await.expect("store").is_some(), "{at} was answered and is lost");
    }
    // The changes that failed were written once space returned: the journal holds what memory held.
    assert_eq!(sorted(reopened.list(None).await.expect("store")), in_memory);
    assert_eq!(report.leases, 150);
}
