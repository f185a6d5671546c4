//! Group commit for the PostgreSQL store: claims and allocations that arrive while others are
//! being written wait in a queue, and a worker sends all that are waiting as one call of the
//! `dhcp_apply` function in one transaction: one round trip and one commit (one WAL flush) for
//! the lot, where each used to pay its own.
//!
//! What is batched is only how the writes travel, not what each means:
//! - each item is the same atomic claim as before ([`CLAIM`](super::sql::CLAIM), run by the function
//!   `dhcp_apply`), or the same allocation (the pool's cursor, then the free-address list, then
//!   leases that are over);
//! - an item that fails fails its batch: the transaction is rolled back and every item in it is
//!   answered with the error, none stored (the clients retry). Items are not isolated in
//!   subtransactions: a subtransaction that locks a row makes PostgreSQL record the lock as a
//!   multixact, which cost more than the batching saved. What would fail one item every time (a
//!   hostname PostgreSQL's text cannot hold) is refused before it joins a batch;
//! - every client's advisory lock is taken first, in key order, so two batches (of two servers)
//!   never wait for each other's client locks in a cycle;
//! - items run in the order they were queued, and an item sees what the items before it in the
//!   batch wrote (one transaction), as it would have seen their commits;
//! - no caller is answered before the batch's `COMMIT` has succeeded: `BEGIN`, the call and
//!   `COMMIT` are pipelined, and a batch whose commit fails, or whose connection is lost at any
//!   point, answers every item with that error. A lease that did not commit is never reported
//!   stored, so the engine never ACKs it.
//!
//! Workers each take what is waiting, up to [`MAX_BATCH`] items: when requests are few each goes
//! alone at once, and as they grow, batches form while earlier ones commit. Allocations and claims
//! queue apart: every allocation from a pool takes the pool's cursor row, whose lock a batch holds
//! until it commits, so allocation batches would only wait for each other; they have one worker.
//! Claims have up to [`MAX_CLAIM_WORKERS`] (no more than the pool's connections), whose batches
//! run side by side on PostgreSQL's backends. A caller that gives up (the engine's store
//! deadline) leaves its item in the queue or the batch; it may still be written, which at worst
//! stores a lease no client was told of, as a lost reply would.

use std::sync::Arc;

use dhcp_core::{Lease, StoreError, Timestamp};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_postgres::Row;

use super::sql::{CLAIM, COLUMN_COUNT, Claimed, backend, lease_from_row, secs, state_columns, unavailable};

/// The most items one batch takes: enough that a commit's flush is shared widely, few enough
/// that a batch's locks are held briefly.
pub(super) const MAX_BATCH: usize = 32;

/// The most claim batches in flight at once (each holds a pooled connection while it runs).
pub(super) const MAX_CLAIM_WORKERS: usize = 2;

/// Schema version 3: `dhcp_apply`, the function a batch calls. It takes the batch as parallel
/// arrays, one element per item: a claim has its address in `p_addr`; an allocation has `p_addr`
/// NULL and its pool in `p_pool` (the cursor's key), `p_size` and its ranges, the `p_rcount`
/// elements of `p_lo` and `p_hi` from index `p_rfirst`. It answers one row per item: the address
/// the item claimed (`r_at`; NULL when an allocation found none), the record the claim met there
/// (`r_addr` to `r_hostname`, as [`CLAIM`] answers it), and whether it wrote.
///
/// Each candidate address is claimed with [`CLAIM`] itself, its `$1` to `$9` read from the
/// function's variables, so PL/pgSQL keeps its plan for the session; then the address is taken
/// off the free-address list (see the store's module docs), in a statement of its
/// own whose snapshot is taken after the claim's. An allocation's candidates are the pool's
/// never-used addresses, one offset at a time from the cursor row, then up to 8 addresses left
/// without a lease and 8 whose lease is over, longest free first, each read through its
/// `(subnet, free time, addr)` index, as far as it takes to find 8 per range.
pub(super) fn migration() -> String {
    let claim =
        ["v_addr", "v_subnet", "v_client", "v_hwaddr", "v_state", "v_deadline", "v_free_at", "v_hostname", "v_now"]
            .iter()
            .enumerate()
            .fold(CLAIM.to_string(), |sql, (n, var)| sql.replace(&format!("${}", n + 1), var));
    format!(
        "
    CREATE FUNCTION dhcp_apply(
        p_addr BIGINT[], p_pool BIGINT[], p_size BIGINT[], p_rfirst INT[], p_rcount INT[],
        p_lo BIGINT[], p_hi BIGINT[], p_subnet BIGINT[], p_client BYTEA[], p_hwaddr BYTEA[],
        p_state SMALLINT[], p_deadline BIGINT[], p_free_at BIGINT[], p_hostname TEXT[],
        p_key BIGINT[], p_now BIGINT[])
    RETURNS TABLE (r_item INT, r_at BIGINT, r_addr BIGINT, r_subnet BIGINT, r_client BYTEA,
                   r_hwaddr BYTEA, r_state SMALLINT, r_deadline BIGINT, r_hostname TEXT,
                   r_written BOOLEAN)
    LANGUAGE plpgsql VOLATILE AS $apply$
    DECLARE
        i INT;
        j INT;
        c RECORD;
        v_addr BIGINT; v_subnet BIGINT; v_client BYTEA; v_hwaddr BYTEA; v_state SMALLINT;
        v_deadline BIGINT; v_free_at BIGINT; v_hostname TEXT; v_now BIGINT;
        v_offset BIGINT;
        v_rest BIGINT;
        v_cursor_done BOOLEAN;
        v_free BIGINT[];
        v_k INT;
    BEGIN
        -- Every client's lock first, in key order: batches never wait for each other in a cycle.
        PERFORM pg_advisory_xact_lock(k) FROM (SELECT DISTINCT unnest(p_key) AS k ORDER BY 1) AS keys;
        -- The cursor rows of the batch's pools next, made where missing and locked in key order:
        -- two batches allocating from two pools in opposite orders would otherwise each hold one
        -- row and wait for the other's. (A new row starts at 0, as the upsert below would.)
        INSERT INTO dhcp_pool_cursor (pool_key, next)
            SELECT DISTINCT k, 0 FROM unnest(p_pool) AS k WHERE k IS NOT NULL ORDER BY 1
            ON CONFLICT (pool_key) DO NOTHING;
        PERFORM 1 FROM dhcp_pool_cursor WHERE pool_key = ANY(p_pool) ORDER BY pool_key FOR UPDATE;
        FOR i IN 1 .. coalesce(array_length(p_key, 1), 0) LOOP
            r_item := i; r_at := NULL; r_addr := NULL; r_subnet := NULL; r_client := NULL;
            r_hwaddr := NULL; r_state := NULL; r_deadline := NULL; r_hostname := NULL;
            r_written := false;
            v_subnet := p_subnet[i]; v_client := p_client[i]; v_hwaddr := p_hwaddr[i];
            v_state := p_state[i]; v_deadline := p_deadline[i]; v_free_at := p_free_at[i];
            v_hostname := p_hostname[i]; v_now := p_now[i];
            v_addr := NULL; v_cursor_done := false; v_free := NULL; v_k := 0;
            LOOP
                IF p_addr[i] IS NOT NULL THEN
                    -- A claim: its one address.
                    EXIT WHEN v_addr IS NOT NULL;
                    v_addr := p_addr[i];
                ELSIF NOT v_cursor_done THEN
                    -- Never-used addresses first: the next offset under the cursor row's lock.
                    INSERT INTO dhcp_pool_cursor AS cur (pool_key, next) VALUES (p_pool[i], 1)
                    ON CONFLICT (pool_key) DO UPDATE SET next = cur.next + 1
                    WHERE cur.next < p_size[i] RETURNING cur.next - 1 INTO v_offset;
                    v_addr := NULL;
                    IF FOUND THEN
                        v_rest := v_offset;
                        FOR j IN p_rfirst[i] .. p_rfirst[i] + p_rcount[i] - 1 LOOP
                            IF v_rest <= p_hi[j] - p_lo[j] THEN
                                v_addr := p_lo[j] + v_rest;
                                EXIT;
                            END IF;
                            v_rest := v_rest - (p_hi[j] - p_lo[j] + 1);
                        END LOOP;
                    END IF;
                    IF v_addr IS NULL THEN
                        v_cursor_done := true;
                        CONTINUE;
                    END IF;
                ELSE
                    -- Then addresses the cursor passed that are free again.
                    IF v_free IS NULL THEN
                        v_free := ARRAY(
                            SELECT cand.addr FROM (
                                (SELECT f.addr, 0 AS pass, f.freed_at AS since
                                 FROM unnest(p_lo[p_rfirst[i] : p_rfirst[i] + p_rcount[i] - 1],
                                             p_hi[p_rfirst[i] : p_rfirst[i] + p_rcount[i] - 1]) AS r (lo, hi),
                                 LATERAL (
                                     SELECT fa.addr, fa.freed_at FROM dhcp_free_addrs fa
                                     WHERE fa.subnet = v_subnet AND fa.freed_at <= v_now
                                       AND fa.addr BETWEEN r.lo AND r.hi
                                     ORDER BY fa.freed_at LIMIT 8
                                 ) AS f
                                 ORDER BY f.freed_at LIMIT 8)
                                UNION ALL
                                (SELECT l.addr, 1, l.free_at
                                 FROM unnest(p_lo[p_rfirst[i] : p_rfirst[i] + p_rcount[i] - 1],
                                             p_hi[p_rfirst[i] : p_rfirst[i] + p_rcount[i] - 1]) AS r (lo, hi),
                                 LATERAL (
                                     SELECT dl.addr, dl.free_at FROM dhcp_leases dl
                                     WHERE dl.subnet = v_subnet AND dl.free_at <= v_now
                                       AND dl.addr BETWEEN r.lo AND r.hi
                                     ORDER BY dl.free_at LIMIT 8
                                 ) AS l
                                 ORDER BY l.free_at LIMIT 8)
                            ) AS cand
                            ORDER BY cand.pass, cand.since);
                    END IF;
                    v_k := v_k + 1;
                    EXIT WHEN v_k > coalesce(array_length(v_free, 1), 0);
                    v_addr := v_free[v_k];
                END IF;
                {claim} INTO c;
                DELETE FROM dhcp_free_addrs WHERE addr = v_addr;
                -- A claim answers whatever it met; an allocation the address it took, or the
                -- client's own binding an offer met (which it keeps).
                IF p_addr[i] IS NOT NULL OR c.written
                   OR (v_state = 0 AND c.state = 1 AND c.client = v_client AND c.deadline > v_now) THEN
                    r_at := v_addr;
                    r_addr := c.addr; r_subnet := c.subnet; r_client := c.client;
                    r_hwaddr := c.hwaddr; r_state := c.state; r_deadline := c.deadline;
                    r_hostname := c.hostname; r_written := c.written;
                    EXIT;
                END IF;
            END LOOP;
            RETURN NEXT;
        END LOOP;
    END
    $apply$;
"
    )
}

/// What an item asks for: a claim of the lease's own address, or an allocation from a pool.
pub(super) enum Want {
    Claim,
    /// The pool's cursor key, its size, and its ranges (first and last address, host order).
    Allocate {
        pool_key: i64,
        size: i64,
        ranges: Vec<(i64, i64)>,
    },
}

/// One write a batch carries: what it asks for, the lease, the client's advisory lock key and
/// the time of the request.
struct Write {
    want: Want,
    lease: Lease,
    lock_key: i64,
    now: Timestamp,
}

/// One queued write and where its answer goes.
struct Item {
    write: Write,
    reply: oneshot::Sender<Result<Option<Claimed>, StoreError>>,
}

/// The queue of writes waiting for a batch, shared by the store's clones; its workers end when
/// the last clone is dropped.
#[derive(Clone)]
pub(super) struct Batcher {
    queue: mpsc::UnboundedSender<Item>,
}

impl Batcher {
    /// Starts `workers` workers (at least one) on the current tokio runtime, taking connections
    /// from `pool`.
    pub(super) fn start(pool: &deadpool_postgres::Pool, workers: usize) -> Batcher {
        let (queue, waiting) = mpsc::unbounded_channel();
        let waiting = Arc::new(Mutex::new(waiting));
        for _ in 0..workers.max(1) {
            tokio::spawn(work(pool.clone(), Arc::clone(&waiting)));
        }
        Batcher { queue }
    }

    /// Queues a write and waits for its batch to commit.
    pub(super) async fn run(
        &self,
        want: Want,
        lease: Lease,
        lock_key: i64,
        now: Timestamp,
    ) -> Result<Option<Claimed>, StoreError> {
        if lease.hostname.as_deref().is_some_and(|name| name.contains('\0')) {
            // PostgreSQL's text cannot hold it, and the whole batch's call would be refused:
            // refused here, alone.
            return Err(StoreError::Backend("postgres: a hostname with a NUL character cannot be stored".into()));
        }
        let (reply, answer) = oneshot::channel();
        let gone = || StoreError::Unavailable("postgres: the store's batch workers have stopped".into());
        let write = Write { want, lease, lock_key, now };
        self.queue.send(Item { write, reply }).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// A worker: takes what waits (up to [`MAX_BATCH`]), writes it as one batch, answers, again.
async fn work(pool: deadpool_postgres::Pool, waiting: Arc<Mutex<mpsc::UnboundedReceiver<Item>>>) {
    loop {
        let batch = {
            let mut queue = waiting.lock().await;
            let Some(first) = queue.recv().await else { return };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
            batch
        };
        let (writes, replies): (Vec<Write>, Vec<_>) = batch.into_iter().map(|item| (item.write, item.reply)).unzip();
        // `write` answers every item or fails the batch; a caller that gave up has dropped its
        // receiver, and there is nothing to tell it.
        match write(&pool, &writes).await {
            Ok(answers) => {
                for (answer, reply) in answers.into_iter().zip(replies) {
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Writes one batch and answers each item, in order, once the commit has succeeded.
async fn write(
    pool: &deadpool_postgres::Pool,
    items: &[Write],
) -> Result<Vec<Result<Option<Claimed>, StoreError>>, StoreError> {
    let client = pool.get().await.map_err(unavailable)?;
    let apply = client
        .prepare_cached(
            "SELECT * FROM dhcp_apply($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .await
        .map_err(backend)?;
    let mut args = Args::default();
    for item in items {
        args.push(item);
    }
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 16] = [
        &args.addr,
        &args.pool,
        &args.size,
        &args.rfirst,
        &args.rcount,
        &args.lo,
        &args.hi,
        &args.subnet,
        &args.client,
        &args.hwaddr,
        &args.state,
        &args.deadline,
        &args.free_at,
        &args.hostname,
        &args.key,
        &args.now,
    ];
    // A batch that PostgreSQL picked as a deadlock's victim (two batches locking lease rows in
    // opposite orders) or a serialization failure was rolled back whole: it runs once more, by
    // when the other has committed.
    let mut retried = false;
    let rows = loop {
        let ((begun, rows), committed) =
            both(both(client.batch_execute("BEGIN"), client.query(&apply, &params)), client.batch_execute("COMMIT"))
                .await;
        // After a failed statement the server rolls the transaction back at the COMMIT, and a
        // lost connection fails whichever of the three it met: either way nothing is answered
        // as stored.
        begun.map_err(backend)?;
        match rows {
            Ok(rows) => {
                committed.map_err(backend)?;
                break rows;
            }
            Err(e) if !retried && is_retryable(&e) && committed.is_ok() => retried = true,
            Err(e) => return Err(backend(e)),
        }
    };
    if rows.len() != items.len() {
        return Err(StoreError::Backend(format!(
            "postgres: dhcp_apply answered {} rows for {} items",
            rows.len(),
            items.len()
        )));
    }
    Ok(rows.into_iter().zip(items).map(|(row, item)| answer(row, &item.lease, item.now)).collect())
}

/// Runs two futures at once and returns both outputs. Requests on one connection made this way
/// are pipelined: tokio-postgres sends each request when its future is first polled, and this
/// polls both at once, `a` first, so both are on their way, in order, before either answer.
async fn both<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    use std::task::Poll;
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    let (mut out_a, mut out_b) = (None, None);
    std::future::poll_fn(|cx| {
        if out_a.is_none()
            && let Poll::Ready(v) = a.as_mut().poll(cx)
        {
            out_a = Some(v);
        }
        if out_b.is_none()
            && let Poll::Ready(v) = b.as_mut().poll(cx)
        {
            out_b = Some(v);
        }
        match (out_a.take(), out_b.take()) {
            (Some(a), Some(b)) => Poll::Ready((a, b)),
            (a, b) => {
                (out_a, out_b) = (a, b);
                Poll::Pending
            }
        }
    })
    .await
}

/// A deadlock's victim or a serialization failure: the transaction was rolled back, and the
/// same work may succeed at once.
fn is_retryable(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code()
        .is_some_and(|code| *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE)
}

/// The answer to one item from its row of `dhcp_apply`, as a single claim answers: the lease
/// stored (at the address the item took), or the client's own binding an offer met, or nothing.
fn answer(row: Row, lease: &Lease, now: Timestamp) -> Result<Option<Claimed>, StoreError> {
    let Some(at) = row.try_get::<_, Option<i64>>(1).map_err(backend)? else { return Ok(None) };
    let at = u32::try_from(at).map_err(|_| StoreError::Corrupt(format!("postgres: claimed address {at}")))?;
    let written: bool = row.try_get(OLD_RECORD + COLUMN_COUNT).map_err(backend)?;
    let had_record = row.try_get::<_, Option<i64>>(OLD_RECORD).map_err(backend)?.is_some();
    let old = had_record.then_some(row);
    if written {
        let stored = Lease { addr: at.into(), ..lease.clone() };
        return Ok(Some((stored, old)));
    }
    // Not written: someone else holds it, or this offer met the client's own binding (the
    // record read under the row lock, so what kept the claim from writing).
    if matches!(lease.state, dhcp_core::LeaseState::Offered { .. })
        && let Some(row) = old
        && let existing = lease_from_row(&row, OLD_RECORD)?
        && existing.is_bound_to(&lease.client, now)
    {
        return Ok(Some((existing, None)));
    }
    Ok(None)
}

/// Where the record a claim met starts in a row of `dhcp_apply` (`r_addr`, after `r_item` and
/// `r_at`), in [`COLUMNS`](super::sql::COLUMNS)'s order.
pub(super) const OLD_RECORD: usize = 2;

/// The batch's parameters as `dhcp_apply` takes them: one element per item in each array.
#[derive(Default)]
struct Args {
    addr: Vec<Option<i64>>,
    pool: Vec<Option<i64>>,
    size: Vec<Option<i64>>,
    rfirst: Vec<i32>,
    rcount: Vec<i32>,
    lo: Vec<i64>,
    hi: Vec<i64>,
    subnet: Vec<i64>,
    client: Vec<Vec<u8>>,
    hwaddr: Vec<Vec<u8>>,
    state: Vec<i16>,
    deadline: Vec<Option<i64>>,
    free_at: Vec<i64>,
    hostname: Vec<Option<String>>,
    key: Vec<i64>,
    now: Vec<i64>,
}

impl Args {
    fn push(&mut self, item: &Write) {
        let Write { want, lease, lock_key, now } = item;
        // Arrays in SQL count from 1.
        let first = i32::try_from(self.lo.len() + 1).unwrap_or(i32::MAX);
        match want {
            Want::Claim => {
                self.addr.push(Some(i64::from(u32::from(lease.addr))));
                self.pool.push(None);
                self.size.push(None);
                self.rcount.push(0);
            }
            Want::Allocate { pool_key, size, ranges } => {
                self.addr.push(None);
                self.pool.push(Some(*pool_key));
                self.size.push(Some(*size));
                self.rcount.push(i32::try_from(ranges.len()).unwrap_or(0));
                for (lo, hi) in ranges {
                    self.lo.push(*lo);
                    self.hi.push(*hi);
                }
            }
        }
        self.rfirst.push(first);
        let (state, deadline, free_at) = state_columns(lease.state);
        self.subnet.push(i64::from(lease.subnet));
        self.client.push(lease.client.as_bytes().to_vec());
        self.hwaddr.push(lease.hwaddr.as_bytes().to_vec());
        self.state.push(state);
        self.deadline.push(deadline);
        self.free_at.push(free_at);
        self.hostname.push(lease.hostname.clone());
        self.key.push(*lock_key);
        self.now.push(secs(*now));
    }
}
