//! The in-memory store with an append-only lease journal: `memory:?journal=PATH`.
//!
//! Every lease change a client could rely on (a binding, a release, a decline, a deletion) is
//! appended to the journal and synced to disk before the store answers, so the engine sends no
//! ACK for a lease a crash could lose. Syncing is a group commit: a background thread runs one
//! `fdatasync` for every line written since the last, and every change waiting on those lines
//! is answered together, so requests in flight at once share the cost of a sync. Offers and reclamation are not journaled: an offer lost in
//! a crash costs the client one more DISCOVER, and an expired binding replays as expired.
//!
//! On open, the journal is replayed into memory. When it holds more than twice as many lines as
//! there are live leases (and at least [`COMPACT_MIN_LINES`]), a background thread rewrites it
//! as one line per lease, as Kea's lease file cleanup does.
//!
//! # Failures
//! A write that fails (a full disk) fails the change that made it: the server sends no ACK. The
//! part of a batch that reached the file is cut off again, and the lines are kept and written
//! first by the next append, so the journal catches up with memory by itself once space returns,
//! with no restart. A failed `fdatasync` is different: the kernel may have dropped the dirty
//! pages, so every later change fails until the store is reopened.
//!
//! Compaction writes the new file beside the old one, syncs it, and renames it over the journal;
//! appends go on in the renamed file's open handle, so nothing is ever appended to the unlinked
//! old file. The directory is synced after the rename (`.` for a bare relative path); until that
//! sync succeeds the rename may not survive a crash, so appends are refused (each one retries the
//! sync) rather than written where a crash could lose them.
//!
//! # Format
//! One line per change, text, so an operator can read it:
//! `L ADDR SUBNET STATE DEADLINE CLIENT-ID HWADDR HOSTNAME` (the lease as it now is; `STATE` is
//! `offered`, `bound`, `declined`, `released` or `expired`, `DEADLINE` Unix seconds or `-`,
//! identifiers in hex, `HOSTNAME` in hex or `-`) or `D ADDR` (deleted). A torn last line (a
//! crash mid-write) is skipped on replay; so is any other line that does not parse, counted.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use dhcp_core::{ClientId, HwAddr, Lease, LeaseState, LeaseStore, PoolRef, StoreError, Timestamp};

use crate::MemoryStore;
use crate::codec::{self, hex, unhex};

/// The journal is not compacted below this many lines.
pub const COMPACT_MIN_LINES: u64 = 10_000;

/// What replaying a journal found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Lines applied.
    pub applied: u64,
    /// Lines skipped because they did not parse (a torn last line after a crash, or damage).
    pub skipped: u64,
    /// Leases in memory after the replay.
    pub leases: usize,
}

#[derive(Debug)]
struct Journal {
    path: PathBuf,
    /// Opened for appending; after a compaction, the handle the new file was written through.
    /// Shared with the syncer thread, which syncs it without the journal lock (a clone of the
    /// `Arc`, not of the descriptor: no `dup` and `close` per sync).
    file: Arc<File>,
    /// Bytes of whole lines in the file: a write that fails part way is cut back to this.
    len: u64,
    /// The file may end in part of a line that could not be cut off: the next write starts
    /// with a newline, so the torn part replays as one skipped line.
    torn: bool,
    /// Lines applied in memory whose write failed; written first by the next append.
    unwritten: Vec<Entry>,
    /// Set when the directory could not be synced after a compaction renamed the new file into
    /// place: appends are refused until a retry of the sync succeeds.
    dir_unsynced: bool,
    /// Lines in the file, for deciding when to compact.
    lines: u64,
    /// Lines written since the store opened: the number a change waits to see synced.
    written: u64,
    compacting: bool,
}

/// How far the syncer has got, and who waits for it.
#[derive(Debug, Default)]
struct SyncState {
    /// Every line up to this number is on disk.
    synced: u64,
    /// The highest line number someone waits for.
    wanted: u64,
    /// Set when a sync failed. After a failed fsync the kernel may have dropped the dirty pages,
    /// so nothing can be promised any more: every later change fails, and the server answers
    /// nothing it could lose.
    failed: Option<String>,
    waiters: Vec<Waker>,
    /// The syncer thread waits for work: only then does a change need to wake it (a notify is
    /// a system call; a busy syncer sees the new `wanted` when it loops).
    idle: bool,
    stop: bool,
    /// Syncs done, for tests and operators.
    syncs: u64,
}

#[derive(Debug, Default)]
struct Syncer {
    state: Mutex<SyncState>,
    work: Condvar,
}

impl Syncer {
    fn state(&self) -> MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The syncer thread: waits for wanted lines, syncs the file once for all of them, wakes
    /// their waiters, until the store is dropped.
    ///
    /// Syncs start at least [`MIN_SYNC_INTERVAL`] apart: when lines arrive faster than a sync
    /// takes, back-to-back syncs would each carry a few lines and spend a core on the kernel's
    /// flushing; waiting out the rest of the interval lets a sync carry every line of it.
    fn run(&self, journal: &Mutex<Journal>) {
        let mut last_start: Option<std::time::Instant> = None;
        loop {
            {
                let mut state = self.state();
                while state.wanted <= state.synced && !state.stop {
                    state.idle = true;
                    state = self.work.wait(state).unwrap_or_else(PoisonError::into_inner);
                }
                state.idle = false;
                if state.stop {
                    return;
                }
            }
            if let Some(wait) = last_start.and_then(|at| MIN_SYNC_INTERVAL.checked_sub(at.elapsed())) {
                std::thread::sleep(wait);
            }
            last_start = Some(std::time::Instant::now());
            // Take the line count and a handle on the file, then sync without the journal
            // lock: appends go on meanwhile and make the next batch.
            let (target, file) = {
                let journal = journal.lock().unwrap_or_else(PoisonError::into_inner);
                (journal.written, Arc::clone(&journal.file))
            };
            let result = file.sync_data();
            let waiters = {
                let mut state = self.state();
                match result {
                    Ok(()) => {
                        state.synced = state.synced.max(target);
                        state.syncs += 1;
                    }
                    Err(e) => state.failed = Some(e.to_string()),
                }
                std::mem::take(&mut state.waiters)
            };
            for waiter in waiters {
                waiter.wake();
            }
        }
    }
}

/// The least time from the start of one sync to the start of the next (see [`Syncer::run`]). A
/// change waits for its sync at most this much longer than for the sync alone; a DHCP client
/// waits seconds for an answer.
const MIN_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_micros(1000);

/// Stops the syncer thread when the last clone of the store goes.
#[derive(Debug)]
struct StopSyncer(Arc<Syncer>);

impl Drop for StopSyncer {
    fn drop(&mut self) {
        self.0.state().stop = true;
        self.0.work.notify_all();
    }
}

/// Resolves once line `line` of the journal is on disk.
struct Synced<'a> {
    syncer: &'a Syncer,
    line: u64,
}

impl Future for Synced<'_> {
    type Output = Result<(), StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.syncer.state();
        if let Some(why) = &state.failed {
            return Poll::Ready(Err(StoreError::Unavailable(format!("lease journal sync failed earlier: {why}"))));
        }
        if state.synced >= self.line {
            return Poll::Ready(Ok(()));
        }
        if state.wanted < self.line {
            state.wanted = self.line;
            if state.idle {
                self.syncer.work.notify_one();
            }
        }
        state.waiters.push(cx.waker().clone());
        Poll::Pending
    }
}

/// A [`MemoryStore`] whose changes survive restarts and crashes through a journal file.
#[derive(Debug, Clone)]
pub struct JournalStore {
    memory: Arc<MemoryStore>,
    journal: Arc<Mutex<Journal>>,
    syncer: Arc<Syncer>,
    _stop: Arc<StopSyncer>,
}

fn io_error(what: &str, e: io::Error) -> StoreError {
    StoreError::Unavailable(format!("lease journal {what}: {e}"))
}

impl JournalStore {
    /// Opens (or creates) the journal at `path` and replays it.
    pub fn open(path: impl AsRef<Path>) -> io::Result<(JournalStore, ReplayReport)> {
        let path = path.as_ref().to_path_buf();
        let memory = MemoryStore::new();
        let mut report = ReplayReport::default();
        match File::open(&path) {
            Ok(file) => {
                for line in BufReader::new(file).split(b'\n') {
                    let line = line?;
                    match std::str::from_utf8(&line).ok().and_then(parse_line) {
                        Some(Entry::Lease(lease)) => {
                            memory.restore(&lease);
                            report.applied += 1;
                        }
                        Some(Entry::Moved(lease, from)) => {
                            memory.restore(&lease);
                            memory.restore_freed(from, &lease.client);
                            report.applied += 1;
                        }
                        Some(Entry::Deleted(addr)) => {
                            let _deleted = dhcp_core::block_on(memory.delete(addr));
                            report.applied += 1;
                        }
                        None if line.is_empty() => {}
                        None => report.skipped += 1,
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        report.leases = memory.len();
        let file = OpenOptions::new().create(true).append(true).mode(0o600).open(&path)?;
        let len = file.metadata()?.len();
        let journal = Journal {
            path,
            file: Arc::new(file),
            len,
            torn: false,
            unwritten: Vec::new(),
            dir_unsynced: false,
            lines: report.applied + report.skipped,
            written: 0,
            compacting: false,
        };
        let journal = Arc::new(Mutex::new(journal));
        let syncer = Arc::new(Syncer::default());
        {
            let (syncer, journal) = (Arc::clone(&syncer), Arc::clone(&journal));
            std::thread::Builder::new().name("lease-journal-sync".into()).spawn(move || syncer.run(&journal))?;
        }
        let store = JournalStore {
            memory: Arc::new(memory),
            journal,
            _stop: Arc::new(StopSyncer(Arc::clone(&syncer))),
            syncer,
        };
        // A torn last line must not glue itself to the next append.
        {
            let mut journal = store.lock();
            (&*journal.file).write_all(b"\n")?;
            journal.len += 1;
        }
        Ok((store, report))
    }

    /// The in-memory side, for inspection.
    pub fn memory(&self) -> &MemoryStore {
        &self.memory
    }

    fn lock(&self) -> MutexGuard<'_, Journal> {
        // A panic mid-append leaves at worst a torn line, which replay skips.
        self.journal.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes `entries` to the file (not yet synced); returns the line number to wait for with
    /// [`durable`](Self::durable), or `None` when there was nothing to write.
    ///
    /// When the write fails, the change stays in memory (the caller answers with the error, so
    /// no client is told of it) and its lines are written first by the next append.
    fn append(&self, journal: &mut Journal, entries: &[Entry]) -> Result<Option<u64>, StoreError> {
        if entries.is_empty() {
            return Ok(None);
        }
        journal.unwritten.extend_from_slice(entries);
        if journal.dir_unsynced {
            sync_dir(&journal.path).map_err(|e| io_error("directory sync after compaction", e))?;
            journal.dir_unsynced = false;
        }
        let mut text = String::new();
        if journal.torn {
            text.push('\n');
        }
        for entry in &journal.unwritten {
            text.push_str(&entry.line());
        }
        if let Err(e) = (&*journal.file).write_all(text.as_bytes()) {
            // Cut off what part of the batch got in, so the lines are whole when written again.
            journal.torn = journal.file.set_len(journal.len).is_err();
            return Err(io_error("write", e));
        }
        let count = journal.unwritten.len() as u64;
        journal.unwritten.clear();
        journal.torn = false;
        journal.len += text.len() as u64;
        journal.lines += count;
        journal.written += count;
        self.maybe_compact(journal);
        Ok(Some(journal.written))
    }

    /// Waits until line `line` (from [`append`](Self::append)) is on disk.
    async fn durable(&self, line: Option<u64>) -> Result<(), StoreError> {
        match line {
            Some(line) => Synced { syncer: &self.syncer, line }.await,
            None => Ok(()),
        }
    }

    fn maybe_compact(&self, journal: &mut Journal) {
        let live = self.memory.len() as u64;
        if journal.compacting || journal.lines < COMPACT_MIN_LINES || journal.lines <= 2 * live {
            return;
        }
        journal.compacting = true;
        let store = self.clone();
        std::thread::spawn(move || {
            if let Err(e) = store.compact() {
                tracing_free_log(&format!("lease journal compaction failed: {e}"));
            }
            store.lock().compacting = false;
        });
    }

    /// Rewrites the journal as one line per lease. Appends wait while it runs.
    ///
    /// An error before the rename leaves the old journal in use. An error after it (the
    /// directory sync) leaves the new one in use and appends refused until the directory can
    /// be synced: see the module docs.
    pub fn compact(&self) -> io::Result<()> {
        let mut journal = self.lock();
        let leases = dhcp_core::block_on(self.memory.list(None))
            .unwrap_or(Ok(Vec::new()))
            .map_err(|e| io::Error::other(e.to_string()))?;
        // Memory is what gets written: lines that could not be written yet are in it.
        let tmp = journal.path.with_extension("compacting");
        let written = write_compacted(&journal, &tmp, &leases);
        let (file, len) = match written {
            Ok(done) => done,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        // Whichever file the directory names after a crash, it holds every line written.
        if let Err(e) = journal.file.sync_data() {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        if let Err(e) = std::fs::rename(&tmp, &journal.path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        // From here the old file is unlinked: appends go to the new one's handle at once, with
        // nothing in between that could fail.
        journal.file = Arc::new(file);
        journal.len = len;
        journal.torn = false;
        journal.unwritten.clear();
        journal.lines = leases.len() as u64;
        if let Err(e) = sync_dir(&journal.path) {
            journal.dir_unsynced = true;
            return Err(e);
        }
        journal.dir_unsynced = false;
        Ok(())
    }

    /// How many times the journal was synced to disk: with several changes in flight at once,
    /// fewer than the changes.
    pub fn syncs(&self) -> u64 {
        self.syncer.state().syncs
    }

    /// Lines in the journal file now.
    pub fn journal_lines(&self) -> u64 {
        self.lock().lines
    }
}

/// Writes the compacted journal to `tmp` with the journal's mode, synced; returns the open file
/// (positioned at its end, for appending) and its length.
fn write_compacted(journal: &Journal, tmp: &Path, leases: &[Lease]) -> io::Result<(File, u64)> {
    let mode = journal.file.metadata()?.permissions().mode() & 0o7777;
    // Opened for appending, as the journal is: a failed write is cut back with `set_len` and
    // the next one goes to the end.
    match std::fs::remove_file(tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let file = OpenOptions::new().append(true).create_new(true).mode(mode).open(tmp)?;
    // The umask may have taken bits off the mode asked for.
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    let mut out = BufWriter::new(file);
    let mut len = 0u64;
    for lease in leases {
        let line = Entry::Lease(lease.clone()).line();
        out.write_all(line.as_bytes())?;
        len += line.len() as u64;
    }
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    Ok((file, len))
}

/// The directory that holds `path`: its parent, or `.` for a bare relative name.
fn dir_of(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Syncs the directory that holds `path`, so that a rename into it survives a crash.
fn sync_dir(path: &Path) -> io::Result<()> {
    #[cfg(test)]
    tests::fault("sync-dir")?;
    File::open(dir_of(path))?.sync_all()
}

/// dhcp-store does not depend on a logging crate; compaction failures are rare enough for stderr.
fn tracing_free_log(message: &str) {
    eprintln!("{message}");
}

/// The entries to journal for a store answer: the lease unless it is only an offer.
fn journaled(lease: &Option<Lease>) -> Vec<Entry> {
    match lease {
        Some(l) if !matches!(l.state, LeaseState::Offered { .. }) => vec![Entry::Lease(l.clone())],
        _ => Vec::new(),
    }
}

/// The entries to journal for a claim: as [`journaled`], but a claim that moved the client off
/// a binding is one `M` line, so a torn write cannot keep the new lease without the freeing of
/// the old (or the reverse). Freed offers need no line: offers are not journaled.
fn journaled_claim(claimed: &crate::memory::Claimed) -> Vec<Entry> {
    match (&claimed.lease, &claimed.freed) {
        (Some(new), Some(old)) if !matches!(new.state, LeaseState::Offered { .. }) => {
            vec![Entry::Moved(new.clone(), old.addr)]
        }
        _ => journaled(&claimed.lease),
    }
}

impl JournalStore {
    /// An allocation, journaled: what the memory store did, once its line is on disk.
    async fn allocate_journaled(
        &self,
        pool: PoolRef<'_>,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Option<(Lease, Option<Lease>)>, StoreError> {
        let (allocated, line) = {
            let mut journal = self.lock();
            let claimed = self.memory.allocate_moving(pool, lease, now);
            let line = self.append(&mut journal, &journaled_claim(&claimed))?;
            // Only the stored lease and the one it overwrote are answered: the freed one is not
            // kept across the wait.
            (claimed.lease.map(|stored| (stored, claimed.replaced)), line)
        };
        self.durable(line).await?;
        Ok(allocated)
    }
}

impl LeaseStore for JournalStore {
    async fn lease_by_client(&self, subnet: u32, client: &ClientId) -> Result<Option<Lease>, StoreError> {
        self.memory.lease_by_client(subnet, client).await
    }

    async fn lease_by_addr(&self, addr: Ipv4Addr) -> Result<Option<Lease>, StoreError> {
        self.memory.lease_by_addr(addr).await
    }

    async fn claim(&self, lease: &Lease, now: Timestamp) -> Result<Option<Lease>, StoreError> {
        // The journal lock is held across the change and its write, so the journal's order is
        // the order the changes were made in. The memory store answers at once (`Ready`), so
        // nothing is awaited while the lock is held; the wait for the sync comes after it.
        let (got, line) = {
            let mut journal = self.lock();
            let claimed = self.memory.claim_moving(lease, now);
            let line = self.append(&mut journal, &journaled_claim(&claimed))?;
            (claimed.lease, line)
        };
        self.durable(line).await?;
        Ok(got)
    }

    async fn allocate(&self, pool: PoolRef<'_>, lease: &Lease, now: Timestamp) -> Result<Option<Lease>, StoreError> {
        Ok(self.allocate_journaled(pool, lease, now).await?.map(|(stored, _)| stored))
    }

    async fn allocate_replacing(
        &self,
        pool: PoolRef<'_>,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Option<(Lease, Option<Lease>)>, StoreError> {
        self.allocate_journaled(pool, lease, now).await
    }

    async fn update_state(
        &self,
        addr: Ipv4Addr,
        client: &ClientId,
        state: LeaseState,
    ) -> Result<Option<Lease>, StoreError> {
        let (got, line) = {
            let mut journal = self.lock();
            let got = self.memory.update_state(addr, client, state).into_inner()?;
            let line = self.append(&mut journal, &journaled(&got))?;
            (got, line)
        };
        self.durable(line).await?;
        Ok(got)
    }

    async fn reclaim_expired(&self, now: Timestamp, limit: usize) -> Result<Vec<Lease>, StoreError> {
        self.memory.reclaim_expired(now, limit).await
    }

    async fn delete(&self, addr: Ipv4Addr) -> Result<bool, StoreError> {
        let (deleted, line) = {
            let mut journal = self.lock();
            let deleted = self.memory.delete(addr).into_inner()?;
            let line = if deleted { self.append(&mut journal, &[Entry::Deleted(addr)])? } else { None };
            (deleted, line)
        };
        self.durable(line).await?;
        Ok(deleted)
    }

    async fn list(&self, subnet: Option<u32>) -> Result<Vec<Lease>, StoreError> {
        self.memory.list(subnet).await
    }

    async fn list_page(
        &self,
        subnet: Option<u32>,
        after: Option<Ipv4Addr>,
        limit: usize,
    ) -> Result<Vec<Lease>, StoreError> {
        self.memory.list_page(subnet, after, limit).await
    }

    fn list_page_native(&self) -> bool {
        self.memory.list_page_native()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Lease(Lease),
    /// The lease as it now is, and the address its client moved from (now released).
    Moved(Lease, Ipv4Addr),
    Deleted(Ipv4Addr),
}

impl Entry {
    fn line(&self) -> String {
        match self {
            Entry::Deleted(addr) => format!("D {addr} .\n"),
            Entry::Moved(l, from) => {
                let lease = Entry::Lease(l.clone()).line();
                let fields = lease.strip_prefix("L ").and_then(|f| f.strip_suffix(" .\n")).unwrap_or_default();
                format!("M {fields} {from} .\n")
            }
            Entry::Lease(l) => {
                let state = codec::name(l.state);
                let deadline = codec::encode(l.state).deadline.map_or_else(|| "-".to_owned(), |secs| secs.to_string());
                let hostname = l.hostname.as_deref().map_or_else(|| "-".to_owned(), |h| hex(h.as_bytes()));
                let client = hex(l.client.as_bytes());
                format!(
                    "L {} {} {state} {deadline} {} {} {hostname} .\n",
                    l.addr,
                    l.subnet,
                    if client.is_empty() { "-".to_owned() } else { client },
                    hex(l.hwaddr.as_bytes()),
                )
            }
        }
    }
}

fn parse_line(line: &str) -> Option<Entry> {
    let line = line.strip_suffix(" .")?;
    let mut f = line.split(' ');
    match f.next()? {
        "D" => {
            let addr = f.next()?.parse().ok()?;
            f.next().is_none().then_some(Entry::Deleted(addr))
        }
        "L" => {
            let lease = parse_lease(&mut f)?;
            f.next().is_none().then_some(Entry::Lease(lease))
        }
        "M" => {
            let lease = parse_lease(&mut f)?;
            let from = f.next()?.parse().ok()?;
            f.next().is_none().then_some(Entry::Moved(lease, from))
        }
        _ => None,
    }
}

/// The lease fields of an `L` or `M` line: `ADDR SUBNET STATE DEADLINE CLIENT-ID HWADDR HOSTNAME`.
fn parse_lease<'a>(f: &mut impl Iterator<Item = &'a str>) -> Option<Lease> {
    let addr = f.next()?.parse().ok()?;
    let subnet = f.next()?.parse().ok()?;
    let code = codec::code_named(f.next()?)?;
    let deadline: Option<u64> = match f.next()? {
        "-" => None,
        secs => Some(secs.parse().ok()?),
    };
    let client = match f.next()? {
        "-" => Vec::new(),
        text => unhex(text)?,
    };
    let hwaddr = HwAddr::new(&unhex(f.next()?)?)?;
    let hostname = match f.next()? {
        "-" => None,
        text => Some(String::from_utf8(unhex(text)?).ok()?),
    };
    let state = codec::decode(code, deadline)?;
    // The journal writes `-` for a state without a deadline, so a line with one there is
    // not one it wrote: skipped as damaged, where the codec alone would ignore the deadline.
    if codec::encode(state).deadline != deadline {
        return None;
    }
    Some(Lease { addr, client: ClientId::from_bytes(&client), hwaddr, subnet, state, hostname })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    thread_local! {
        /// Fault points that fail on this thread (a test's own calls; not the syncer's).
        static FAULTS: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
    }

    /// An injected error while `point` is switched on for this thread.
    pub(super) fn fault(point: &str) -> io::Result<()> {
        if FAULTS.with(|f| f.borrow().contains(&point)) {
            return Err(io::Error::other(format!("injected fault: {point}")));
        }
        Ok(())
    }

    fn switch(point: &'static str, on: bool) {
        FAULTS.with(|f| {
            let mut f = f.borrow_mut();
            f.retain(|p| *p != point);
            if on {
                f.push(point);
            }
        });
    }

    fn bound(n: u8) -> Lease {
        Lease {
            addr: Ipv4Addr::new(10, 0, 0, n),
            client: ClientId::from_bytes(&[1, 2, 0, 0, 0, 0, n]),
            hwaddr: HwAddr::mac([2, 0, 0, 0, 0, n]),
            subnet: 1,
            state: LeaseState::Bound { expires: Timestamp::from_secs(1_700_003_600) },
            hostname: None,
        }
    }

    /// The journal store is the memory store underneath: floods of renewals leave its
    /// bookkeeping bounded as they do the memory store's, and compaction keeps the file short.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_renewal_flood_leaves_memory_and_journal_bounded() {
        const OFFERS: u64 = if cfg!(debug_assertions) { 200_000 } else { 1_000_000 };
        const BATCH: u64 = 1000;
        const BOUND_RENEWALS: u64 = 3 * COMPACT_MIN_LINES;
        let dir = tempfile::tempdir().expect("tmp");
        let (store, _) = JournalStore::open(dir.path().join("leases.journal")).expect("open");
        let t0 = 1_700_000_000;
        // Offers are not journaled: a DISCOVER flood renews the offer in memory only.
        for i in 0..OFFERS {
            let offer = Lease { state: LeaseState::Offered { until: Timestamp::from_secs(t0 + i + 30) }, ..bound(7) };
            store.claim(&offer, Timestamp::from_secs(t0 + i)).await.expect("store").expect("granted");
        }
        // Bindings are, and synced: renewals in flight together share a sync.
        let start = t0 + OFFERS;
        for batch in 0..BOUND_RENEWALS / BATCH {
            let mut renewals = tokio::task::JoinSet::new();
            for i in 0..BATCH {
                let store = store.clone();
                let secs = start + batch * BATCH + i;
                renewals.spawn(async move {
                    let renewal =
                        Lease { state: LeaseState::Bound { expires: Timestamp::from_secs(secs + 3600) }, ..bound(7) };
                    store.claim(&renewal, Timestamp::from_secs(secs)).await
                });
            }
            while let Some(done) = renewals.join_next().await {
                assert!(done.expect("task").expect("store").is_some(), "renewed");
            }
        }
        let b = store.memory().bookkeeping();
        assert!(b.deadline_entries <= 2 * b.records + 1024, "{b:?}");
        assert_eq!((b.records, b.clients, b.offers), (1, 1, 0), "{b:?}");
        // Compaction runs in the background; once it is done, the file is short again.
        let waited = std::time::Instant::now();
        while store.lock().compacting && waited.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let lines = store.lock().lines;
        assert!(lines <= COMPACT_MIN_LINES + BATCH, "{lines} lines for one lease");
    }

    #[test]
    fn the_directory_of_a_bare_name_is_the_current_one() {
        assert_eq!(dir_of(Path::new("leases.journal")), Path::new("."));
        assert_eq!(dir_of(Path::new("var/leases.journal")), Path::new("var"));
        assert_eq!(dir_of(Path::new("/var/lib/leases.journal")), Path::new("/var/lib"));
    }

    /// A failure after compaction's rename (the directory sync) must not leave appends going to
    /// the unlinked old file: every change answered `Ok` is in the journal a restart replays.
    #[tokio::test(flavor = "current_thread")]
    async fn a_failure_after_the_compaction_rename_loses_no_answered_lease() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("leases.journal");
        std::fs::write(&path, "").expect("create");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let (store, _) = JournalStore::open(&path).expect("open");
        let now = Timestamp::from_secs(1_700_000_000);
        let mut answered = Vec::new();
        for n in 1..=5 {
            store.claim(&bound(n), now).await.expect("store").expect("granted");
            answered.push(bound(n));
        }
        let old_inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).expect("stat"));

        switch("sync-dir", true);
        let err = store.compact().expect_err("the injected directory sync failure");
        assert!(err.to_string().contains("injected"), "{err}");
        let new_inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).expect("stat"));
        assert_ne!(old_inode, new_inode, "the rename happened");
        // Until the directory is synced, appends are refused: the rename may not survive a crash.
        for n in 6..=8 {
            match store.claim(&bound(n), now).await {
                Ok(_) => answered.push(bound(n)),
                Err(e) => assert!(e.to_string().contains("directory sync"), "{e}"),
            }
        }
        let answered_while_unsynced = answered.len() - 5;

        switch("sync-dir", false);
        for n in 9..=10 {
            store.claim(&bound(n), now).await.expect("store works again").expect("granted");
            answered.push(bound(n));
        }
        drop(store);
        let (reopened, report) = JournalStore::open(&path).expect("reopen");
        assert_eq!(report.skipped, 0);
        for lease in &answered {
            assert_eq!(reopened.lease_by_addr(lease.addr).await.expect("store").as_ref(), Some(lease));
        }
        // This journal refuses appends until the directory is synced; the refused changes
        // stayed in memory and were written before the next ones.
        assert_eq!(answered_while_unsynced, 0, "refused while the directory is not synced");
        assert_eq!(report.leases, 10);
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "compaction keeps the journal's mode");
        assert!(!path.with_extension("compacting").exists());
    }

    fn lease(state: LeaseState, hostname: Option<&str>) -> Lease {
        Lease {
            addr: Ipv4Addr::new(10, 0, 0, 7),
            client: ClientId::from_bytes(&[1, 2, 0, 0, 0, 0, 7]),
            hwaddr: HwAddr::mac([2, 0, 0, 0, 0, 7]),
            subnet: 3,
            state,
            hostname: hostname.map(str::to_owned),
        }
    }

    #[test]
    fn lines_round_trip() {
        let t = Timestamp::from_secs(1_700_000_000);
        for state in [
            LeaseState::Offered { until: t },
            LeaseState::Bound { expires: t },
            LeaseState::Declined { until: t },
            LeaseState::Released,
            LeaseState::Expired,
        ] {
            for hostname in [None, Some("host name, with spaces")] {
                let entry = Entry::Lease(lease(state, hostname));
                let line = entry.line();
                assert_eq!(parse_line(line.trim_end()), Some(entry), "{line}");
            }
        }
        let deleted = Entry::Deleted(Ipv4Addr::new(10, 0, 0, 9));
        assert_eq!(parse_line(deleted.line().trim_end()), Some(deleted));
        let moved = Entry::Moved(lease(LeaseState::Bound { expires: t }, Some("h")), Ipv4Addr::new(10, 0, 0, 3));
        assert_eq!(parse_line(moved.line().trim_end()), Some(moved));
    }

    #[test]
    fn damaged_lines_do_not_parse() {
        let good = Entry::Lease(lease(LeaseState::Bound { expires: Timestamp::from_secs(5) }, Some("host"))).line();
        let good = good.trim_end();
        assert!(parse_line(good).is_some());
        for cut in 1..good.len() {
            // Every proper prefix of a line (a torn write) is refused.
            let prefix = &good[..cut];
            assert!(parse_line(prefix).is_none(), "{prefix:?}");
        }
        assert!(parse_line("L 10.0.0.1 1 bound - 01 020000000001 - .").is_none(), "bound needs a deadline");
        assert!(parse_line("L 10.0.0.1 1 released - 01 020000000001 - .").is_some());
        assert!(parse_line("L 10.0.0.1 1 released 5 01 020000000001 - .").is_none(), "released has no deadline");
        assert!(parse_line("L 10.0.0.1 1 leased 5 01 020000000001 - .").is_none(), "no such state");
        assert!(parse_line("L 10.0.0.1 1 bound 5 +1 020000000001 - .").is_none(), "not hex");
        assert!(parse_line("X 10.0.0.1 .").is_none());
        assert!(parse_line("D 10.0.0.1 extra .").is_none());
    }
}
