//! The shared SQL store: `postgres://USER@HOST/DB`, for several servers on one lease database.
//!
//! Claims are one `INSERT ... ON CONFLICT (addr) DO UPDATE ... WHERE <the address is available
//! to this client>` statement: PostgreSQL locks the conflicting row and re-checks the condition,
//! so two servers claiming one address at once cannot both win, with no read-then-write race.
//! The same statement releases the client's other held lease in the subnet (one lease per
//! client and subnet). That part reads rows the statement did not lock, as of the statement's
//! snapshot, so two servers claiming two addresses for one client at once would each miss the
//! other's new lease and both keep theirs: each claim therefore runs in a transaction that first
//! takes a per-client advisory lock (`pg_advisory_xact_lock` on a hash of the subnet and the
//! client id), and the claim statement, taking its snapshot after the lock, sees the other
//! server's committed lease and releases it. The lock cannot go into the claim statement itself,
//! whose snapshot predates anything it waits for.
//!
//! Claims and allocations are written in batches (group commit, see `batch`): those that wait
//! while others are being written go together as one call of the `dhcp_apply` function in one
//! transaction, `BEGIN`, the call and `COMMIT` pipelined: one round trip and one commit (one WAL
//! flush) for the lot. The function takes every client's lock first (in key order), then runs
//! each claim as the statement above, then takes the address off the free-address list (below)
//! in a statement of its own. No caller is answered before the `COMMIT` succeeded.
//!
//! Allocation takes never-used addresses from a per-pool cursor row (an upsert that makes the
//! row on first use and answers the offset, which serialises servers on that row), then
//! addresses the cursor passed that are free again: those left without a lease (deleted, or an
//! ended probation: `delete` and reclamation move the address to the `dhcp_free_addrs` table in
//! the statement that deletes the lease, and a claim takes it off again), then those whose last
//! lease is over, each found through an index; each candidate is then claimed with the same
//! atomic statement, all inside the function with the client's lock held, so two servers
//! allocating for one client at once give it one address. A commit is durable (PostgreSQL's
//! default `synchronous_commit`) before the store answers.
//!
//! The schema's version is kept in `dhcp_schema_version` and migrated on open.
//!
//! # Failover: PostgreSQL's own replication
//! The store follows a promoted standby the way libpq does, through a multi-host connection
//! string with `target_session_attrs=read-write`:
//!
//! - `postgresql://dhcp@db1:5432,db2:5432/leases?target_session_attrs=read-write`;
//! - over Unix sockets, the hosts are socket directories, percent-encoded in a URL
//!   (`postgresql://postgres@%2Frun%2Fpg1:5432,%2Frun%2Fpg2:5433/leases?target_session_attrs=read-write`)
//!   or as they are in the key=value form (`host=/run/pg1,/run/pg2 port=5432,5433 user=postgres
//!   dbname=leases target_session_attrs=read-write`).
//!
//! Each new connection tries the hosts in order and keeps the first that takes writes
//! (`SHOW transaction_read_only` is `off`), so a standby is never written to before its
//! promotion, and a promoted one is found without a restart. When the primary goes away, the
//! calls on its connections fail with [`StoreError::Unavailable`] (the engine drops those
//! requests and the clients retransmit); the pool throws closed connections away, and the next
//! call connects again, to whichever host now takes writes. A server that refuses work while
//! shutting down, starting or read-only (SQLSTATE classes 08 and 57P, and 25006) counts as
//! unavailable too.
//!
//! Unless the connection string says otherwise, each host gets `connect_timeout=5` (seconds), so
//! a host that is down without refusing (a dead machine) costs five seconds rather than the
//! kernel's minutes before the next is tried, and TCP connections get `tcp_user_timeout` of ten
//! seconds, so a query sent to a dead machine fails instead of waiting for the kernel to give
//! up. The pool gives up on a caller that waited five seconds for a free connection, and on a
//! new connection that took fifteen. What an acknowledged lease survives is the replication's promise: with a synchronous
//! standby (`synchronous_standby_names` on the primary, `synchronous_commit = on` or stronger)
//! every commit the store answered is on the standby before the client gets its ACK; with
//! asynchronous streaming the last commits before a failover can be lost.

use std::net::Ipv4Addr;

use deadpool_postgres::{Manager, Pool};
use dhcp_core::{ClientId, Lease, LeaseState, LeaseStore, PoolRef, StoreError, Timestamp};
use tokio_postgres::NoTls;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::postgres_tls::TlsParams;

mod batch;
mod sql;

use sql::{COLUMNS, Claimed, backend, lease_from_row, secs, state_columns, unavailable};

const SCHEMA_VERSION: i32 = 3;

/// The schema's migrations: the `n`-th takes version `n` to `n + 1`.
fn migrations() -> [String; 3] {
    [
        "
    CREATE TABLE dhcp_leases (
        addr     BIGINT PRIMARY KEY,    -- IPv4 address, host order
        subnet   BIGINT NOT NULL,
        client   BYTEA  NOT NULL,
        hwaddr   BYTEA  NOT NULL,
        state    SMALLINT NOT NULL,     -- 0 offered, 1 bound, 2 declined, 3 released, 4 expired
        deadline BIGINT,                -- Unix seconds; NULL for released and expired
        free_at  BIGINT NOT NULL,       -- when anyone may take the address (0: now)
        hostname TEXT
    );
    CREATE INDEX dhcp_leases_by_client ON dhcp_leases (subnet, client);
    CREATE INDEX dhcp_leases_by_deadline ON dhcp_leases (deadline) WHERE deadline IS NOT NULL;
    CREATE INDEX dhcp_leases_free ON dhcp_leases (subnet, free_at, addr);
    CREATE TABLE dhcp_pool_cursor (pool_key BIGINT PRIMARY KEY, next BIGINT NOT NULL);
"
        .to_string(),
        // Version 2: addresses left without a lease (deleted, or an ended probation), so that
        // allocation finds them once the pool's cursor has passed them.
        "
    CREATE TABLE dhcp_free_addrs (
        addr     BIGINT PRIMARY KEY,    -- IPv4 address, host order, whose lease was deleted
        subnet   BIGINT NOT NULL,       -- the subnet of the lease that was there
        freed_at BIGINT NOT NULL        -- Unix seconds (0 for a delete): longest free first
    );
    CREATE INDEX dhcp_free_addrs_by_subnet ON dhcp_free_addrs (subnet, freed_at, addr);
"
        .to_string(),
        // Version 3: the functions that write a batch of claims and allocations in one call.
        batch::migration(),
    ]
}

/// Deletes the leases at the addresses `$1` (an array) and keeps each address free for
/// allocation, as freed at `$2` (Unix seconds), in one statement. Returns one row per deleted
/// lease.
const FORGET: &str = "
    WITH gone AS (DELETE FROM dhcp_leases WHERE addr = ANY($1) RETURNING addr, subnet)
    INSERT INTO dhcp_free_addrs (addr, subnet, freed_at) SELECT addr, subnet, $2 FROM gone
    ON CONFLICT (addr) DO UPDATE SET subnet = EXCLUDED.subnet, freed_at = EXCLUDED.freed_at";

/// The condition of `update_state`: only the client's offer or binding moves (a released,
/// expired or declined lease is no longer the client's to change), and only a binding can be
/// declined (`$3` is the new state's code). The codes are the codec's, checked by a test below.
const UPDATE_STATE_HELD: &str = "state IN (0, 1) AND ($3::SMALLINT <> 2 OR state = 1)";

/// The advisory lock key of `client`'s leases in `subnet`: FNV-1a (64 bits) over the subnet id
/// (four bytes, big-endian) and the client id. It must be the same in every server sharing the
/// database, whatever its version or platform, so it is spelled out here rather than left to a
/// hasher that may change. Two clients whose keys collide only wait for each other's claims.
fn client_lock_key(subnet: u32, client: &ClientId) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in subnet.to_be_bytes().iter().chain(client.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_be_bytes(hash.to_be_bytes())
}

/// Leases in PostgreSQL, shared by any number of servers.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// Where claims queue for their batch (see [`batch`]).
    claims: batch::Batcher,
    /// Where allocations queue for theirs.
    allocations: batch::Batcher,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("status", &self.pool.status()).finish()
    }
}

/// Bounded waits for hosts that are down without refusing, unless the URL chose its own.
fn with_default_timeouts(mut config: tokio_postgres::Config) -> tokio_postgres::Config {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    config
}

/// How long a caller waits for a free connection of the pool (and a returned connection's
/// check may take) before the call fails as the store being unavailable.
const POOL_WAIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long one host may take to accept a connection before the next is tried.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long data sent on a TCP connection may stay unacknowledged before the connection counts
/// as lost (Linux's `TCP_USER_TIMEOUT`).
const TCP_USER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl PostgresStore {
    /// Connects to the database a `postgres://` URL names (tokio-postgres's URL and key=value
    /// forms, with libpq's `sslmode` and `sslrootcert`: see the TLS table in the crate docs;
    /// several hosts with `target_session_attrs=read-write` for failover: see the module docs)
    /// with a pool of up to `max_connections`, and creates or migrates the schema.
    pub async fn connect(url: &str, max_connections: usize) -> Result<PostgresStore, StoreError> {
        let bad = |why: String| StoreError::Backend(format!("postgres URL: {why}"));
        let tls = TlsParams::parse(url).map_err(bad)?;
        let config = with_default_timeouts(tls.url.parse().map_err(|e| bad(format!("{e}")))?);
        let manager = if tls.wanted(config.get_hosts()) {
            Manager::new(config, MakeRustlsConnect::new(tls.client_config().map_err(bad)?))
        } else {
            Manager::new(config, NoTls)
        };
        // Nothing waits on the pool without end: a caller waits POOL_WAIT_TIMEOUT for a free
        // connection, a new one may take as long as the hosts' connect timeouts together, and
        // the check of a returned one is bounded too.
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT * 3))
            .recycle_timeout(Some(POOL_WAIT_TIMEOUT))
            .build()
            .map_err(unavailable)?;
        migrate(&pool).await?;
        let claims = batch::Batcher::start(&pool, max_connections.min(batch::MAX_CLAIM_WORKERS));
        let allocations = batch::Batcher::start(&pool, 1);
        Ok(PostgresStore { pool, claims, allocations })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(unavailable)
    }

    async fn lease_at(&self, client: &deadpool_postgres::Client, addr: u32) -> Result<Option<Lease>, StoreError> {
        let stmt = client
            .prepare_cached(&format!("SELECT {COLUMNS} FROM dhcp_leases WHERE addr = $1"))
            .await
            .map_err(backend)?;
        client.query_opt(&stmt, &[&i64::from(addr)]).await.map_err(backend)?.map(|r| lease_from_row(&r, 0)).transpose()
    }

    /// A claim of `lease`'s own address, through the batcher (see [`batch`]): answers the stored
    /// lease (or the client's own binding an offer met, which is kept) and, when the lease was
    /// written over a record, that record's row as it was, not decoded yet (at
    /// [`batch::OLD_RECORD`]): only [`allocate_replacing`](LeaseStore::allocate_replacing) needs it.
    async fn claim_batched(&self, lease: &Lease, now: Timestamp) -> Result<Option<Claimed>, StoreError> {
        let key = client_lock_key(lease.subnet, &lease.client);
        self.claims.run(batch::Want::Claim, lease.clone(), key, now).await
    }

    /// Allocation (see the module docs) through the batcher, answering as
    /// [`claim_batched`](Self::claim_batched) does.
    async fn allocate_batched(
        &self,
        pool: PoolRef<'_>,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Option<Claimed>, StoreError> {
        let want = batch::Want::Allocate {
            pool_key: pool.key as i64,
            size: i64::try_from(pool.size()).unwrap_or(i64::MAX),
            ranges: pool.ranges.iter().map(|r| (i64::from(*r.start()), i64::from(*r.end()))).collect(),
        };
        let template = Lease { subnet: pool.subnet, ..lease.clone() };
        let key = client_lock_key(template.subnet, &template.client);
        self.allocations.run(want, template, key, now).await
    }
}

/// Creates the schema or brings it up to [`SCHEMA_VERSION`], one migrator at a time.
async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(unavailable)?;
    let tx = client.transaction().await.map_err(backend)?;
    // One migrator at a time, whichever server starts first.
    tx.execute("SELECT pg_advisory_xact_lock(7478424)", &[]).await.map_err(backend)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS dhcp_schema_version (version INT NOT NULL)").await.map_err(backend)?;
    let version: i32 = match tx.query_opt("SELECT version FROM dhcp_schema_version", &[]).await.map_err(backend)? {
        Some(row) => row.try_get(0).map_err(backend)?,
        None => {
            tx.execute("INSERT INTO dhcp_schema_version VALUES (0)", &[]).await.map_err(backend)?;
            0
        }
    };
    if version > SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "postgres schema version {version} is newer than this server's {SCHEMA_VERSION}"
        )));
    }
    for (index, step) in migrations().iter().enumerate().skip(usize::try_from(version).unwrap_or(0)) {
        tx.batch_execute(step).await.map_err(backend)?;
        let reached = i32::try_from(index + 1).unwrap_or(i32::MAX);
        tx.execute("UPDATE dhcp_schema_version SET version = $1", &[&reached]).await.map_err(backend)?;
    }
    tx.commit().await.map_err(backend)
}

impl LeaseStore for PostgresStore {
    async fn lease_by_client(&self, subnet: u32, client_id: &ClientId) -> Result<Option<Lease>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM dhcp_leases WHERE subnet = $1 AND client = $2
                 ORDER BY COALESCE(deadline, 0) DESC LIMIT 1"
            ))
            .await
            .map_err(backend)?;
        let row = client.query_opt(&stmt, &[&i64::from(subnet), &client_id.as_bytes()]).await.map_err(backend)?;
        row.map(|r| lease_from_row(&r, 0)).transpose()
    }

    async fn lease_by_addr(&self, addr: Ipv4Addr) -> Result<Option<Lease>, StoreError> {
        let client = self.client().await?;
        self.lease_at(&client, addr.into()).await
    }

    async fn lease_by_addr_and_client(
        &self,
        addr: Ipv4Addr,
        subnet: u32,
        client_id: &ClientId,
    ) -> Result<(Option<Lease>, Option<Lease>), StoreError> {
        let client = self.client().await?;
        // One statement, so one snapshot: the row at the address first (`which` 0), then the
        // client's lease as `lease_by_client` picks it (1).
        let stmt = client
            .prepare_cached(&format!(
                "SELECT 0 AS which, {COLUMNS} FROM dhcp_leases WHERE addr = $1
                 UNION ALL
                 (SELECT 1, {COLUMNS} FROM dhcp_leases WHERE subnet = $2 AND client = $3
                  ORDER BY COALESCE(deadline, 0) DESC LIMIT 1)"
            ))
            .await
            .map_err(backend)?;
        let rows = client
            .query(&stmt, &[&i64::from(u32::from(addr)), &i64::from(subnet), &client_id.as_bytes()])
            .await
            .map_err(backend)?;
        let (mut at, mut of) = (None, None);
        for row in &rows {
            let which: i32 = row.try_get(0).map_err(backend)?;
            let lease = lease_from_row(row, 1)?;
            if which == 0 { at = Some(lease) } else { of = Some(lease) }
        }
        Ok((at, of))
    }

    async fn claim(&self, lease: &Lease, now: Timestamp) -> Result<Option<Lease>, StoreError> {
        Ok(self.claim_batched(lease, now).await?.map(|(stored, _)| stored))
    }

    async fn allocate(&self, pool: PoolRef<'_>, lease: &Lease, now: Timestamp) -> Result<Option<Lease>, StoreError> {
        // As `allocate_replacing`, without decoding the record replaced.
        Ok(self.allocate_batched(pool, lease, now).await?.map(|(stored, _)| stored))
    }

    async fn allocate_replacing(
        &self,
        pool: PoolRef<'_>,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Option<(Lease, Option<Lease>)>, StoreError> {
        let Some((stored, replaced)) = self.allocate_batched(pool, lease, now).await? else { return Ok(None) };
        // The lease is stored; a record it overwrote that does not decode is still reported,
        // as corrupt.
        let replaced = replaced.map(|row| lease_from_row(&row, batch::OLD_RECORD)).transpose()?;
        Ok(Some((stored, replaced)))
    }

    async fn update_state(
        &self,
        addr: Ipv4Addr,
        client_id: &ClientId,
        state: LeaseState,
    ) -> Result<Option<Lease>, StoreError> {
        let client = self.client().await?;
        let (code, deadline, free_at) = state_columns(state);
        let stmt = client
            .prepare_cached(&format!(
                "UPDATE dhcp_leases SET state = $3, deadline = $4, free_at = $5
                 WHERE addr = $1 AND client = $2 AND {UPDATE_STATE_HELD} RETURNING {COLUMNS}"
            ))
            .await
            .map_err(backend)?;
        let row = client
            .query_opt(&stmt, &[&i64::from(u32::from(addr)), &client_id.as_bytes(), &code, &deadline, &free_at])
            .await
            .map_err(backend)?;
        row.map(|r| lease_from_row(&r, 0)).transpose()
    }

    async fn reclaim_expired(&self, now: Timestamp, limit: usize) -> Result<Vec<Lease>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        // SKIP LOCKED: several servers reclaiming at once split the work instead of waiting.
        let due = tx
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM dhcp_leases WHERE deadline IS NOT NULL AND deadline <= $1
                     ORDER BY deadline LIMIT $2 FOR UPDATE SKIP LOCKED"
                ),
                &[&secs(now), &i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await
            .map_err(backend)?
            .iter()
            .map(|r| lease_from_row(r, 0))
            .collect::<Result<Vec<_>, _>>()?;
        let (declined, expired): (Vec<&Lease>, Vec<&Lease>) =
            due.iter().partition(|l| matches!(l.state, LeaseState::Declined { .. }));
        let addrs = |ls: &[&Lease]| ls.iter().map(|l| i64::from(u32::from(l.addr))).collect::<Vec<i64>>();
        // No affinity to an address a client said was in use: the lease goes, and its address
        // joins the free-address list, as freed now.
        tx.execute(FORGET, &[&addrs(&declined), &secs(now)]).await.map_err(backend)?;
        let (code, deadline, free_at) = state_columns(LeaseState::Expired);
        tx.execute(
            "UPDATE dhcp_leases SET state = $2, deadline = $3, free_at = $4 WHERE addr = ANY($1)",
            &[&addrs(&expired), &code, &deadline, &free_at],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(due)
    }

    async fn delete(&self, addr: Ipv4Addr) -> Result<bool, StoreError> {
        let client = self.client().await?;
        // The address joins the free-address list, as freed at 0 (`delete` has no `now`): before
        // any address a reclamation freed.
        let stmt = client.prepare_cached(FORGET).await.map_err(backend)?;
        let n = client.execute(&stmt, &[&vec![i64::from(u32::from(addr))], &0i64]).await.map_err(backend)?;
        Ok(n > 0)
    }

    async fn list(&self, subnet: Option<u32>) -> Result<Vec<Lease>, StoreError> {
        let client = self.client().await?;
        let rows = match subnet {
            Some(s) => client
                .query(&format!("SELECT {COLUMNS} FROM dhcp_leases WHERE subnet = $1 ORDER BY addr"), &[&i64::from(s)])
                .await
                .map_err(backend)?,
            None => {
                client.query(&format!("SELECT {COLUMNS} FROM dhcp_leases ORDER BY addr"), &[]).await.map_err(backend)?
            }
        };
        rows.iter().map(|r| lease_from_row(r, 0)).collect()
    }

    async fn list_page(
        &self,
        subnet: Option<u32>,
        after: Option<Ipv4Addr>,
        limit: usize,
    ) -> Result<Vec<Lease>, StoreError> {
        let client = self.client().await?;
        // Every address is above -1; LIMIT takes a BIGINT, and no table holds more rows.
        let after = after.map_or(-1, |a| i64::from(u32::from(a)));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match subnet {
            Some(s) => {
                let stmt = client.prepare_cached(&page_sql(true)).await.map_err(backend)?;
                client.query(&stmt, &[&after, &limit, &i64::from(s)]).await.map_err(backend)?
            }
            None => {
                let stmt = client.prepare_cached(&page_sql(false)).await.map_err(backend)?;
                client.query(&stmt, &[&after, &limit]).await.map_err(backend)?
            }
        };
        rows.iter().map(|r| lease_from_row(r, 0)).collect()
    }

    fn list_page_native(&self) -> bool {
        true
    }
}

/// A page of the listing, leases in every state: `$1` the address to list above (-1 for all),
/// `$2` the limit, `$3` the subnet when `by_subnet`. A range scan of the primary key from `$1`,
/// in address order, that stops after `$2` rows. With a subnet, the rows of other subnets the
/// scan meets are read and skipped: a subnet's leases lie in its prefix, so once a walk is in
/// the subnet, its pages read about their own rows, but the first page (from -1) also reads
/// every lease of a lower address, once per walk; still less than the default `list_page`,
/// which reads the whole subnet for every page. (An index on `(subnet, addr)` would spare that
/// first pass, for one more index to keep up to date on every claim.)
fn page_sql(by_subnet: bool) -> String {
    let subnet = if by_subnet { " AND subnet = $3" } else { "" };
    format!("SELECT {COLUMNS} FROM dhcp_leases WHERE addr > $1{subnet} ORDER BY addr LIMIT $2")
}

#[cfg(test)]
mod tests {
    use super::sql::{CLAIM, COLUMN_COUNT, is_outage_code};
    use super::*;
    use crate::codec;

    #[test]
    fn multi_host_urls_reach_tokio_postgres_whole() {
        use tokio_postgres::config::{Host, TargetSessionAttrs};
        let parse = |url: &str| -> tokio_postgres::Config {
            with_default_timeouts(TlsParams::parse(url).expect("valid").url.parse().expect("tokio-postgres parses it"))
        };
        let sockets = [Host::Unix("/tmp/a".into()), Host::Unix("/tmp/b".into())];
        for url in [
            "postgresql://postgres@%2Ftmp%2Fa:5432,%2Ftmp%2Fb:5433/test?target_session_attrs=read-write",
            "host=/tmp/a,/tmp/b port=5432,5433 user=postgres dbname=test target_session_attrs=read-write",
        ] {
            let config = parse(url);
            assert_eq!(config.get_hosts(), sockets, "{url}");
            assert_eq!(config.get_ports(), [5432, 5433], "{url}");
            assert_eq!(config.get_target_session_attrs(), TargetSessionAttrs::ReadWrite, "{url}");
            assert_eq!(config.get_dbname(), Some("test"), "{url}");
        }
        let config = parse(
            "postgresql://dhcp@db1:5432,db2/leases?target_session_attrs=read-write&sslmode=verify-full\
             &sslrootcert=%2Fca.pem&connect_timeout=2",
        );
        assert_eq!(config.get_hosts(), [Host::Tcp("db1".into()), Host::Tcp("db2".into())]);
        assert_eq!(config.get_ports(), [5432, 5432]);
        assert_eq!(config.get_target_session_attrs(), TargetSessionAttrs::ReadWrite);
        assert_eq!(config.get_connect_timeout(), Some(&std::time::Duration::from_secs(2)), "the URL's own wins");
        assert_eq!(config.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
        assert_eq!(parse("postgres://h/db").get_connect_timeout(), Some(&CONNECT_TIMEOUT));
    }

    #[test]
    fn a_server_going_away_or_read_only_is_an_outage() {
        for code in ["08006", "08001", "57P01", "57P02", "57P03", "25006"] {
            assert!(is_outage_code(code), "{code}");
        }
        for code in ["23505", "42P01", "40001", "57014"] {
            assert!(!is_outage_code(code), "{code}");
        }
    }

    #[test]
    fn the_client_lock_key_never_changes() {
        // Servers of different versions share one database: they must lock the same key.
        assert_eq!(client_lock_key(1, &ClientId::from_bytes(&[1, 2, 3])), -0x1fbf_49f3_9ac0_8b3a);
        assert_ne!(
            client_lock_key(2, &ClientId::from_bytes(&[1, 2, 3])),
            client_lock_key(1, &ClientId::from_bytes(&[1, 2, 3]))
        );
    }

    #[test]
    fn the_claim_answers_the_old_record_then_whether_it_wrote() {
        assert_eq!(COLUMNS.split(", ").count(), COLUMN_COUNT);
        let old = format!("SELECT {COLUMNS} FROM dhcp_leases WHERE addr = $1 FOR UPDATE");
        assert!(CLAIM.contains(&old), "{CLAIM}");
        let answer: Vec<String> = COLUMNS.split(", ").map(|c| format!("old.{c}")).collect();
        let answer = format!("SELECT {},\n           EXISTS (SELECT 1 FROM claimed)", answer.join(", "));
        assert!(CLAIM.contains(&answer), "{CLAIM}");
    }

    #[test]
    fn the_claim_statement_uses_the_codecs_codes() {
        // The claim's condition spells the codes out in SQL; they must be the codec's.
        let own = format!("l.state IN ({}, {})", codec::OFFERED, codec::BOUND);
        let keep = format!("EXCLUDED.state = {} AND l.state = {}", codec::OFFERED, codec::BOUND);
        assert!(CLAIM.contains(&own), "{CLAIM}");
        assert!(CLAIM.contains(&keep), "{CLAIM}");
        let released = codec::encode(LeaseState::Released);
        let free = format!("SET state = {}, deadline = NULL, free_at = {}", released.code, released.free_at);
        assert!(CLAIM.contains(&free), "{CLAIM}");
        let moved = format!("(state = {} OR (state = {} AND $5 <> {}))", codec::OFFERED, codec::BOUND, codec::OFFERED);
        assert!(CLAIM.contains(&moved), "{CLAIM}");
        let held = format!(
            "state IN ({}, {}) AND ($3::SMALLINT <> {} OR state = {})",
            codec::OFFERED,
            codec::BOUND,
            codec::DECLINED,
            codec::BOUND
        );
        assert_eq!(UPDATE_STATE_HELD, held);
    }
}
