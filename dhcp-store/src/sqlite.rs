//! The embedded durable store: `sqlite://PATH`.
//!
//! One SQLite file in WAL mode with `synchronous = FULL`, so a lease is on disk when the store
//! answers. Writes run in `BEGIN IMMEDIATE` transactions, which take SQLite's write lock before
//! reading, so a claim's check and its write are atomic even when several processes open the same
//! file. The schema carries its version in `PRAGMA user_version` and is created or migrated
//! when the store opens; indexes added since are made then when missing.
//!
//! Allocation follows the in-memory store: a cursor per pool over never-used addresses (kept in
//! the `pool_cursor` table), then addresses the cursor passed that are free again: those left
//! without a lease (deleted, or an ended probation: the `free_addrs` table), then the lease rows
//! that are free (`free_at <= now`), each found through an index, so its cost does not grow
//! with the pool.
//!
//! Reads run on the caller's thread (SQLite answers from local disk in tens of microseconds).
//! Writes go to a writer thread with a connection of its own, which commits the writes that
//! arrived together in one synced transaction (group commit) and answers each once that commit
//! is on disk: the waiting does not block the caller's thread, and requests in flight at once
//! share one fsync.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use dhcp_core::{ClientId, HwAddr, Lease, LeaseState, LeaseStore, PoolRef, StoreError, Timestamp};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use crate::codec::{self, sql_secs};

mod writer;

use writer::{Writer, backend};

/// The schema version this code writes.
const SCHEMA_VERSION: i64 = 2;

const MIGRATIONS: &[&str] = &[
    // Version 1: leases by address, with the indexes allocation, affinity and reclamation use.
    "CREATE TABLE leases (
         addr     INTEGER PRIMARY KEY,   -- IPv4 address, host order
         subnet   INTEGER NOT NULL,
         client   BLOB    NOT NULL,
         hwaddr   BLOB    NOT NULL,
         state    INTEGER NOT NULL,      -- 0 offered, 1 bound, 2 declined, 3 released, 4 expired
         deadline INTEGER,               -- Unix seconds; NULL for released and expired
         free_at  INTEGER NOT NULL,      -- when anyone may take the address (0: now)
         hostname TEXT
     );
     CREATE INDEX leases_by_client ON leases (subnet, client);
     CREATE INDEX leases_by_deadline ON leases (deadline) WHERE deadline IS NOT NULL;
     CREATE INDEX leases_free ON leases (subnet, free_at, addr);
     CREATE TABLE pool_cursor (pool_key INTEGER PRIMARY KEY, next INTEGER NOT NULL);",
    // Version 2: addresses whose lease was deleted (or whose probation ended) stay free for
    // allocation, though no lease row is left to find them by.
    "CREATE TABLE free_addrs (
         addr     INTEGER PRIMARY KEY,   -- IPv4 address, host order
         subnet   INTEGER NOT NULL,
         freed_at INTEGER NOT NULL       -- Unix seconds (0 when deleted): longest free first
     );
     CREATE INDEX free_addrs_by_subnet ON free_addrs (subnet, freed_at, addr);",
];

/// Indexes added since, made when missing at every open. An index changes nothing a row means,
/// so it needs no schema version: a server that does not know it reads and writes the file as
/// before (SQLite keeps the index up to date for it), and one that does makes it on its next
/// open.
const INDEXES: &str =
    // A subnet's leases in address order (an index holds the rowid, the address, after its
    // columns), so a page of one subnet's listing is read from where it starts; without it
    // SQLite reads the whole subnet through `leases_free` and sorts it, for every page.
    "CREATE INDEX IF NOT EXISTS leases_by_subnet ON leases (subnet);";

const COLUMNS: &str = "addr, subnet, client, hwaddr, state, deadline, hostname";

/// Leases in a SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    /// For reads (and the migration at open).
    conn: Mutex<Connection>,
    writer: Writer,
}

fn lease_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Lease, StoreError>> {
    let addr: i64 = row.get(0)?;
    let subnet: i64 = row.get(1)?;
    let client: Vec<u8> = row.get(2)?;
    let hwaddr: Vec<u8> = row.get(3)?;
    let state: i64 = row.get(4)?;
    let deadline: Option<i64> = row.get(5)?;
    let hostname: Option<String> = row.get(6)?;
    let Some(state) = codec::decode_sql(state, deadline) else {
        return Ok(Err(StoreError::Corrupt(format!("lease state {state} with deadline {deadline:?}"))));
    };
    let (Ok(addr), Ok(subnet), Some(hwaddr)) = (u32::try_from(addr), u32::try_from(subnet), HwAddr::new(&hwaddr))
    else {
        return Ok(Err(StoreError::Corrupt(format!("lease row for address {addr}"))));
    };
    Ok(Ok(Lease { addr: Ipv4Addr::from(addr), client: ClientId::from_bytes(&client), hwaddr, subnet, state, hostname }))
}

/// Runs `sql` with `params` and decodes the leases it returns.
fn query_leases(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Lease>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
    let rows = stmt.query_map(params, lease_from_row).map_err(backend)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row.map_err(backend)??);
    }
    Ok(out)
}

fn lease_at(conn: &Connection, addr: u32) -> Result<Option<Lease>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM leases WHERE addr = ?1");
    Ok(query_leases(conn, &sql, [i64::from(addr)])?.pop())
}

fn write(conn: &Connection, lease: &Lease) -> Result<(), StoreError> {
    let stored = codec::encode(lease.state);
    conn.prepare_cached(
        "INSERT OR REPLACE INTO leases (addr, subnet, client, hwaddr, state, deadline, free_at, hostname)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            i64::from(u32::from(lease.addr)),
            i64::from(lease.subnet),
            lease.client.as_bytes(),
            lease.hwaddr.as_bytes(),
            i64::from(stored.code),
            stored.deadline.map(sql_secs),
            sql_secs(stored.free_at),
            lease.hostname,
        ])
    })
    .map_err(backend)?;
    conn.prepare_cached("DELETE FROM free_addrs WHERE addr = ?1")
        .and_then(|mut stmt| stmt.execute([i64::from(u32::from(lease.addr))]))
        .map_err(backend)?;
    Ok(())
}

/// Deletes the lease at `addr`, keeping the address free for allocation (as freed at
/// `freed_at`, Unix seconds). Returns whether there was a lease.
fn forget(conn: &Connection, addr: u32, freed_at: u64) -> Result<bool, StoreError> {
    let addr = i64::from(addr);
    let subnet: Option<i64> = conn
        .prepare_cached("SELECT subnet FROM leases WHERE addr = ?1")
        .and_then(|mut stmt| stmt.query_row([addr], |r| r.get(0)).optional())
        .map_err(backend)?;
    let Some(subnet) = subnet else { return Ok(false) };
    conn.execute("DELETE FROM leases WHERE addr = ?1", [addr]).map_err(backend)?;
    conn.prepare_cached("INSERT OR REPLACE INTO free_addrs (addr, subnet, freed_at) VALUES (?1, ?2, ?3)")
        .and_then(|mut stmt| stmt.execute(params![addr, subnet, sql_secs(freed_at)]))
        .map_err(backend)?;
    Ok(true)
}

/// What a claim stored (or the binding it kept), and the record it overwrote, as it was.
type Claimed = (Lease, Option<Lease>);

/// The claim rule, inside a write transaction.
fn claim_in(conn: &Connection, lease: &Lease, now: Timestamp) -> Result<Option<Claimed>, StoreError> {
    let existing = lease_at(conn, lease.addr.into())?;
    if let Some(existing) = &existing {
        if !existing.available_to(&lease.client, now) {
            return Ok(None);
        }
        if matches!(lease.state, LeaseState::Offered { .. }) && existing.is_bound_to(&lease.client, now) {
            return Ok(Some((existing.clone(), None)));
        }
    }
    // One lease per client and subnet, in the same transaction: the client's other held offer
    // goes, and so does its binding unless this is only an offer (which never shortens a lease).
    let released = codec::encode(LeaseState::Released);
    let freed_states: &[u8] = match lease.state {
        LeaseState::Offered { .. } => &[codec::OFFERED, codec::OFFERED],
        _ => &[codec::OFFERED, codec::BOUND],
    };
    conn.prepare_cached(
        "UPDATE leases SET state = ?5, deadline = NULL, free_at = ?6
         WHERE subnet = ?1 AND client = ?2 AND addr <> ?3 AND deadline > ?4 AND state IN (?7, ?8)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            i64::from(lease.subnet),
            lease.client.as_bytes(),
            i64::from(u32::from(lease.addr)),
            sql_secs(now.as_secs()),
            i64::from(released.code),
            sql_secs(released.free_at),
            i64::from(freed_states[0]),
            i64::from(freed_states[1]),
        ])
    })
    .map_err(backend)?;
    write(conn, lease)?;
    Ok(Some((lease.clone(), existing)))
}

/// Allocation inside a write transaction: never-used addresses through the pool's cursor, then
/// addresses whose last lease is over.
fn allocate_in(
    conn: &Connection,
    key: i64,
    subnet: u32,
    ranges: &[std::ops::RangeInclusive<u32>],
    lease: &Lease,
    now: Timestamp,
) -> Result<Option<Claimed>, StoreError> {
    let cursor: Option<i64> = conn
        .query_row("SELECT next FROM pool_cursor WHERE pool_key = ?1", [key], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    let mut next = cursor.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
    let mut found = None;
    // Never-used addresses first, advancing the cursor past any that are taken.
    while let Some(addr) = next_in(ranges, next) {
        next = u64::from(addr) + 1;
        let candidate = Lease { addr: Ipv4Addr::from(addr), ..lease.clone() };
        if let Some(got) = claim_in(conn, &candidate, now)? {
            found = Some(got);
            break;
        }
    }
    conn.execute(
        "INSERT OR REPLACE INTO pool_cursor (pool_key, next) VALUES (?1, ?2)",
        params![key, i64::try_from(next).unwrap_or(i64::MAX)],
    )
    .map_err(backend)?;
    if found.is_some() {
        return Ok(found);
    }
    // Then addresses the cursor passed that are free again, longest free first: those without
    // a lease first, so that a released or expired lease stays its client's as long as it can.
    let now_secs = sql_secs(now.as_secs());
    for sql in [
        "SELECT addr FROM free_addrs WHERE subnet = ?1 AND freed_at <= ?2 AND addr BETWEEN ?3 AND ?4
         ORDER BY freed_at LIMIT 8",
        "SELECT addr FROM leases WHERE subnet = ?1 AND free_at <= ?2 AND addr BETWEEN ?3 AND ?4
         ORDER BY free_at LIMIT 8",
    ] {
        for range in ranges {
            let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
            let bounds = params![i64::from(subnet), now_secs, i64::from(*range.start()), i64::from(*range.end())];
            let free: Vec<i64> =
                stmt.query_map(bounds, |r| r.get(0)).map_err(backend)?.collect::<Result<_, _>>().map_err(backend)?;
            for addr in free.into_iter().filter_map(|a| u32::try_from(a).ok()) {
                let candidate = Lease { addr: Ipv4Addr::from(addr), ..lease.clone() };
                if let Some(got) = claim_in(conn, &candidate, now)? {
                    return Ok(Some(got));
                }
            }
        }
    }
    Ok(None)
}

/// The first address of `ranges` at or after `from`.
fn next_in(ranges: &[std::ops::RangeInclusive<u32>], from: u64) -> Option<u32> {
    ranges.iter().find_map(|r| {
        let start = u64::from(*r.start()).max(from);
        (start <= u64::from(*r.end())).then(|| u32::try_from(start).ok()).flatten()
    })
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`, and creates or migrates its schema.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let connect = || -> Result<Connection, StoreError> {
            let conn = Connection::open(path.as_ref()).map_err(backend)?;
            conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(backend)?;
            conn.pragma_update(None, "journal_mode", "WAL").map_err(backend)?;
            conn.pragma_update(None, "synchronous", "FULL").map_err(backend)?;
            Ok(conn)
        };
        let mut reader = connect()?;
        migrate(&mut reader)?;
        let writer = Writer::start(connect()?)
            .map_err(|e| StoreError::Backend(format!("sqlite: cannot start the writer thread: {e}")))?;
        Ok(SqliteStore { conn: Mutex::new(reader), writer })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // rusqlite leaves the connection usable after a panic elsewhere; an open transaction
        // was rolled back when its guard dropped during the unwind.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Creates or migrates the schema.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    // IMMEDIATE takes the write lock first: one migrator at a time, whichever process opens first.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(backend)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "sqlite schema version {version} is newer than this server's {SCHEMA_VERSION}"
        )));
    }
    for (index, step) in MIGRATIONS.iter().enumerate().skip(usize::try_from(version).unwrap_or(0)) {
        tx.execute_batch(step).map_err(backend)?;
        tx.pragma_update(None, "user_version", index as i64 + 1).map_err(backend)?;
    }
    tx.execute_batch(INDEXES).map_err(backend)?;
    tx.commit().map_err(backend)
}

/// A page of the listing: `?1` the address to list above, `?2` the limit, `?3` the subnet when
/// `by_subnet`.
fn page_sql(by_subnet: bool) -> String {
    let subnet = if by_subnet { "subnet = ?3 AND " } else { "" };
    format!("SELECT {COLUMNS} FROM leases WHERE {subnet}addr > ?1 ORDER BY addr LIMIT ?2")
}

impl LeaseStore for SqliteStore {
    async fn lease_by_client(&self, subnet: u32, client: &ClientId) -> Result<Option<Lease>, StoreError> {
        let conn = self.lock();
        // A client may have left older records at other addresses; the most recent wins.
        let sql = format!(
            "SELECT {COLUMNS} FROM leases WHERE subnet = ?1 AND client = ?2 ORDER BY COALESCE(deadline, 0) DESC LIMIT 1"
        );
        Ok(query_leases(&conn, &sql, params![i64::from(subnet), client.as_bytes()])?.pop())
    }

    async fn lease_by_addr(&self, addr: Ipv4Addr) -> Result<Option<Lease>, StoreError> {
        lease_at(&self.lock(), addr.into())
    }

    async fn claim(&self, lease: &Lease, now: Timestamp) -> Result<Option<Lease>, StoreError> {
        let lease = lease.clone();
        Ok(self.writer.write(move |conn| claim_in(conn, &lease, now)).await?.map(|(stored, _)| stored))
    }

    async fn allocate(&self, pool: PoolRef<'_>, lease: &Lease, now: Timestamp) -> Result<Option<Lease>, StoreError> {
        Ok(self.allocate_replacing(pool, lease, now).await?.map(|(stored, _)| stored))
    }

    async fn allocate_replacing(
        &self,
        pool: PoolRef<'_>,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Option<(Lease, Option<Lease>)>, StoreError> {
        let key = pool.key as i64;
        let (subnet, ranges, lease) = (pool.subnet, pool.ranges.to_vec(), lease.clone());
        self.writer.write(move |conn| allocate_in(conn, key, subnet, &ranges, &lease, now)).await
    }

    async fn update_state(
        &self,
        addr: Ipv4Addr,
        client: &ClientId,
        state: LeaseState,
    ) -> Result<Option<Lease>, StoreError> {
        let client = client.clone();
        self.writer
            .write(move |conn| {
                let Some(existing) = lease_at(conn, addr.into())? else { return Ok(None) };
                // Only the client's offer or binding: a released, expired or declined lease is
                // no longer the client's to change.
                let held = matches!(existing.state, LeaseState::Offered { .. } | LeaseState::Bound { .. });
                if existing.client != client || !held {
                    return Ok(None);
                }
                // Only a binding can be declined: an offer the client never took is not its to decline.
                if matches!(state, LeaseState::Declined { .. }) && !matches!(existing.state, LeaseState::Bound { .. }) {
                    return Ok(None);
                }
                let updated = Lease { state, ..existing };
                write(conn, &updated)?;
                Ok(Some(updated))
            })
            .await
    }

    async fn reclaim_expired(&self, now: Timestamp, limit: usize) -> Result<Vec<Lease>, StoreError> {
        let now_secs = sql_secs(now.as_secs());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let expired = codec::encode(LeaseState::Expired);
        self.writer.write(move |conn| {
            let sql = format!(
                "SELECT {COLUMNS} FROM leases WHERE deadline IS NOT NULL AND deadline <= ?1 ORDER BY deadline LIMIT ?2"
            );
            let due = query_leases(conn, &sql, params![now_secs, limit])?;
            for lease in &due {
                let addr = i64::from(u32::from(lease.addr));
                if matches!(lease.state, LeaseState::Declined { .. }) {
                    // No affinity to an address a client said was in use.
                    forget(conn, u32::from(lease.addr), now.as_secs())?;
                } else {
                    conn.execute(
                        "UPDATE leases SET state = ?2, deadline = ?3, free_at = ?4 WHERE addr = ?1",
                        params![addr, i64::from(expired.code), expired.deadline.map(sql_secs), sql_secs(expired.free_at)],
                    )
                    .map_err(backend)?;
                }
            }
            Ok(due)
        })
        .await
    }

    async fn delete(&self, addr: Ipv4Addr) -> Result<bool, StoreError> {
        self.writer.write(move |conn| forget(conn, u32::from(addr), 0)).await
    }

    async fn list(&self, subnet: Option<u32>) -> Result<Vec<Lease>, StoreError> {
        let conn = self.lock();
        match subnet {
            Some(s) => query_leases(
                &conn,
                &format!("SELECT {COLUMNS} FROM leases WHERE subnet = ?1 ORDER BY addr"),
                [i64::from(s)],
            ),
            None => query_leases(&conn, &format!("SELECT {COLUMNS} FROM leases ORDER BY addr"), []),
        }
    }

    /// One query through the primary key (the address), or with a subnet through
    /// `leases_by_subnet`: it reads the page's rows and no others.
    async fn list_page(
        &self,
        subnet: Option<u32>,
        after: Option<Ipv4Addr>,
        limit: usize,
    ) -> Result<Vec<Lease>, StoreError> {
        // Addresses are 0 and up: -1 is below them all.
        let after = after.map_or(-1, |a| i64::from(u32::from(a)));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.lock();
        match subnet {
            Some(s) => query_leases(&conn, &page_sql(true), params![after, limit, i64::from(s)]),
            None => query_leases(&conn, &page_sql(false), params![after, limit]),
        }
    }

    fn list_page_native(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_reads_from_where_it_starts_without_sorting() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = SqliteStore::open(dir.path().join("leases.db")).expect("opens");
        let conn = store.lock();
        for (by_subnet, index) in [(false, "INTEGER PRIMARY KEY"), (true, "INDEX leases_by_subnet")] {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {}", page_sql(by_subnet))).expect("plan");
            let params: &[i64] = if by_subnet { &[1, 10, 1] } else { &[1, 10] };
            let mut rows = stmt.query(rusqlite::params_from_iter(params)).expect("plan");
            let mut plan = String::new();
            while let Some(row) = rows.next().expect("plan") {
                plan.push_str(&row.get::<_, String>(3).expect("detail"));
                plan.push('\n');
            }
            assert!(plan.contains(index) && !plan.contains("TEMP B-TREE"), "{plan}");
        }
    }
}
