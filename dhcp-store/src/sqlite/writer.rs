//! The SQLite store's writer: one thread with its own connection runs every write, and commits
//! the writes that arrived together in one transaction (group commit), so requests in flight at
//! once share one synced commit instead of each waiting for its own.
//!
//! Each write runs inside a savepoint of the batch's transaction: a write that fails is rolled
//! back alone. No caller hears its answer before the batch has committed, so nothing is ACKed
//! that is not on disk.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use dhcp_core::StoreError;
use rusqlite::Connection;

/// A SQLite error as the store reports it: a busy or locked database is an outage the caller may
/// retry, anything else a backend failure. Here, beside the lowest layer that talks to SQLite, so
/// that the store above uses it and the writer depends on nothing of the store's.
pub(super) fn backend(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(format!("sqlite: {e}"))
        }
        _ => StoreError::Backend(format!("sqlite: {e}")),
    }
}

/// A write waiting for its batch.
trait Write: Send {
    /// Runs inside the batch's transaction; whether its changes are to be kept.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the batch's commit is known.
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);
}

/// A write's answer, once there is one, and who to wake for it.
type Pending<T> = (Option<Result<T, StoreError>>, Option<Waker>);

/// Where a write's answer waits for its caller.
struct Slot<T> {
    answer: Mutex<Pending<T>>,
}

impl<T> Slot<T> {
    fn fill(&self, result: Result<T, StoreError>) {
        let waker = {
            let mut answer = self.answer.lock().unwrap_or_else(PoisonError::into_inner);
            answer.0 = Some(result);
            answer.1.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

struct Job<T, F> {
    work: Option<F>,
    result: Option<Result<T, StoreError>>,
    slot: Arc<Slot<T>>,
}

impl<T: Send, F: FnOnce(&Connection) -> Result<T, StoreError> + Send> Write for Job<T, F> {
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else { return false };
        let result = work(conn);
        let keep = result.is_ok();
        self.result = Some(result);
        keep
    }

    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        let result = match (commit, self.result) {
            (Ok(()), Some(result)) => result,
            (Err(e), _) => Err(e),
            (Ok(()), None) => Err(StoreError::Backend("sqlite: the write did not run".into())),
        };
        self.slot.fill(result);
    }
}

/// Resolves to a write's answer.
pub(super) struct Answer<T> {
    slot: Arc<Slot<T>>,
}

impl<T> Future for Answer<T> {
    type Output = Result<T, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut answer = self.slot.answer.lock().unwrap_or_else(PoisonError::into_inner);
        match answer.0.take() {
            Some(result) => Poll::Ready(result),
            None => {
                answer.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[derive(Default)]
struct Queue {
    writes: VecDeque<Box<dyn Write>>,
    stop: bool,
}

/// The writer thread's queue; stops the thread when dropped.
pub(super) struct Writer {
    queue: Arc<(Mutex<Queue>, Condvar)>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub(super) fn start(conn: Connection) -> std::io::Result<Writer> {
        let queue: Arc<(Mutex<Queue>, Condvar)> = Arc::default();
        let theirs = Arc::clone(&queue);
        std::thread::Builder::new().name("sqlite-writer".into()).spawn(move || run(&conn, &theirs))?;
        Ok(Writer { queue })
    }

    /// Queues `work` for the next batch; the answer comes once that batch has committed.
    pub(super) fn write<T, F>(&self, work: F) -> Answer<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let slot = Arc::new(Slot { answer: Mutex::new((None, None)) });
        let job = Job { work: Some(work), result: None, slot: Arc::clone(&slot) };
        let (queue, ready) = &*self.queue;
        lock(queue).writes.push_back(Box::new(job));
        ready.notify_one();
        Answer { slot }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let (queue, ready) = &*self.queue;
        lock(queue).stop = true;
        ready.notify_all();
    }
}

/// The writer thread: takes every write queued, runs them in one transaction, commits, answers.
fn run(conn: &Connection, queue: &(Mutex<Queue>, Condvar)) {
    let (queue, ready) = queue;
    loop {
        let batch: Vec<Box<dyn Write>> = {
            let mut q = lock(queue);
            while q.writes.is_empty() && !q.stop {
                q = ready.wait(q).unwrap_or_else(PoisonError::into_inner);
            }
            if q.writes.is_empty() {
                return;
            }
            q.writes.drain(..).collect()
        };
        let commit = commit_batch(conn, batch);
        for write in commit.0 {
            write.finish(commit.1.clone());
        }
    }
}

/// Runs `batch` in one `BEGIN IMMEDIATE` transaction, each write in a savepoint.
fn commit_batch(conn: &Connection, mut batch: Vec<Box<dyn Write>>) -> (Vec<Box<dyn Write>>, Result<(), StoreError>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        return (batch, Err(backend(e)));
    }
    for write in &mut batch {
        let step = conn.execute_batch("SAVEPOINT write").map_err(backend).and_then(|()| {
            let keep = write.run(conn);
            let end = if keep { "RELEASE write" } else { "ROLLBACK TO write; RELEASE write" };
            conn.execute_batch(end).map_err(backend)
        });
        if let Err(e) = step {
            let _ = conn.execute_batch("ROLLBACK");
            return (batch, Err(e));
        }
    }
    match conn.execute_batch("COMMIT") {
        Ok(()) => (batch, Ok(())),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            (batch, Err(backend(e)))
        }
    }
}
