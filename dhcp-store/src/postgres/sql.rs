//! What the PostgreSQL store's layers share: the claim statement, the lease columns and how a
//! row decodes, and error mapping. The lowest layer: it uses neither the store nor its
//! batches, which both use it.

use std::net::Ipv4Addr;

use dhcp_core::{ClientId, HwAddr, Lease, LeaseState, StoreError, Timestamp};
use tokio_postgres::Row;

use crate::codec::{self, sql_secs};

/// The lease columns, in the order [`lease_from_row`] reads them.
pub(super) const COLUMNS: &str = "addr, subnet, client, hwaddr, state, deadline, hostname";

/// How many columns [`COLUMNS`] names: [`CLAIM`]'s answer has one more after them.
pub(super) const COLUMN_COUNT: usize = 7;

/// What a claim stored (or the client's binding an offer met, which it kept), and the row of
/// the record the write overwrote, as it was ([`COLUMNS`] first), not decoded yet.
pub(super) type Claimed = (Lease, Option<Row>);

/// The atomic claim: write the lease unless the address is held by someone else, or declined,
/// or this is an offer over the client's own unexpired binding (which must not be shortened).
/// In the same statement, one lease per client and subnet: once the write is done, the client's
/// other held offer is released, and so is its binding unless this is only an offer.
/// The state codes are the codec's (0 offered, 1 bound, 3 released), checked by a test below.
///
/// It answers one row: the record that was at the address ([`COLUMNS`], all NULL when there was
/// none) and whether the lease was written. That record is read (`old`) with the row locked
/// (`FOR UPDATE`, which waits for a writer in progress and reads its commit), and before the
/// write, which the `INSERT` makes wait for it by reading from it; with the lock held nothing
/// changes the row between that read and the write, so the record is what the write overwrote,
/// or what kept it from writing. The one thing a row lock cannot cover is a row another claim
/// inserted after this statement's snapshot, which `old` misses. That claim was the same
/// client's or another's: the same client's committed before this statement started (the
/// client lock), so `old` sees it; another client's is a lease that client holds, which this
/// claim cannot overwrite, unless that lease was over when it was written (claimed with a
/// deadline already past): the one case where an overwritten record goes unreported.
pub(super) const CLAIM: &str = "
    WITH old AS (
        SELECT addr, subnet, client, hwaddr, state, deadline, hostname FROM dhcp_leases WHERE addr = $1 FOR UPDATE
    ), claimed AS (
        INSERT INTO dhcp_leases AS l (addr, subnet, client, hwaddr, state, deadline, free_at, hostname)
        SELECT $1::BIGINT, $2::BIGINT, $3::BYTEA, $4::BYTEA, $5::SMALLINT, $6::BIGINT, $7::BIGINT, $8::TEXT
        FROM (SELECT count(*) FROM old) AS after_old
        ON CONFLICT (addr) DO UPDATE SET
            subnet = EXCLUDED.subnet, client = EXCLUDED.client, hwaddr = EXCLUDED.hwaddr,
            state = EXCLUDED.state, deadline = EXCLUDED.deadline, free_at = EXCLUDED.free_at,
            hostname = EXCLUDED.hostname
        WHERE (l.free_at <= $9 OR (l.client = EXCLUDED.client AND l.state IN (0, 1)))
          AND NOT (EXCLUDED.state = 0 AND l.state = 1 AND l.client = EXCLUDED.client AND l.deadline > $9)
        RETURNING addr
    ), freed AS (
        UPDATE dhcp_leases SET state = 3, deadline = NULL, free_at = 0
        WHERE EXISTS (SELECT 1 FROM claimed)
          AND subnet = $2 AND client = $3 AND addr <> $1 AND deadline > $9
          AND (state = 0 OR (state = 1 AND $5 <> 0))
        RETURNING addr
    )
    SELECT old.addr, old.subnet, old.client, old.hwaddr, old.state, old.deadline, old.hostname,
           EXISTS (SELECT 1 FROM claimed) AS written
    FROM (SELECT 1) AS one LEFT JOIN old ON true";

pub(super) fn unavailable(e: impl std::error::Error) -> StoreError {
    StoreError::Unavailable(format!("postgres: {}", with_causes(&e)))
}

/// An error and its sources, `: `-joined: "error performing tls handshake" alone does not say
/// that the certificate's issuer is unknown.
pub(super) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

pub(super) fn backend(e: tokio_postgres::Error) -> StoreError {
    // A closed connection or a refused one is an outage, and so is a server that says it is
    // going away, not there yet, or read-only (a primary being failed over); anything else the
    // server said is not.
    let outage = match e.as_db_error() {
        None => true,
        Some(db) => is_outage_code(db.code().code()),
    };
    if e.is_closed() || outage { unavailable(e) } else { StoreError::Backend(format!("postgres: {}", with_causes(&e))) }
}

/// SQLSTATEs of a server that cannot take work now, though it may soon (or another host can):
/// connection exceptions (class 08), operator intervention (57P01 admin shutdown, 57P02 crash
/// shutdown, 57P03 cannot connect now), and 25006, a write in a read-only transaction.
pub(super) fn is_outage_code(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "25006")
}

pub(super) fn secs(t: Timestamp) -> i64 {
    sql_secs(t.as_secs())
}

/// The `state`, `deadline` and `free_at` columns for `state` (`state` is a `SMALLINT`).
pub(super) fn state_columns(state: LeaseState) -> (i16, Option<i64>, i64) {
    let stored = codec::encode(state);
    (i16::from(stored.code), stored.deadline.map(sql_secs), sql_secs(stored.free_at))
}

/// The lease in `row`'s columns from `first` on, in [`COLUMNS`]'s order.
pub(super) fn lease_from_row(row: &Row, first: usize) -> Result<Lease, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("postgres lease row: {what}"));
    let addr: i64 = row.try_get(first).map_err(backend)?;
    let subnet: i64 = row.try_get(first + 1).map_err(backend)?;
    let client: Vec<u8> = row.try_get(first + 2).map_err(backend)?;
    let hwaddr: Vec<u8> = row.try_get(first + 3).map_err(backend)?;
    let state: i16 = row.try_get(first + 4).map_err(backend)?;
    let deadline: Option<i64> = row.try_get(first + 5).map_err(backend)?;
    let hostname: Option<String> = row.try_get(first + 6).map_err(backend)?;
    let state = codec::decode_sql(i64::from(state), deadline).ok_or_else(|| corrupt("state and deadline disagree"))?;
    Ok(Lease {
        addr: Ipv4Addr::from(u32::try_from(addr).map_err(|_| corrupt("address"))?),
        client: ClientId::from_bytes(&client),
        hwaddr: HwAddr::new(&hwaddr).ok_or_else(|| corrupt("hardware address"))?,
        subnet: u32::try_from(subnet).map_err(|_| corrupt("subnet"))?,
        state,
        hostname,
    })
}
