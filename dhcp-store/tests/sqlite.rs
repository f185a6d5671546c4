//! The SQLite store: the shared contract, persistence across reopening, schema versioning, and
//! atomic claims from several processes' worth of connections.

#[macro_use]
mod conformance;

use std::net::Ipv4Addr;
use std::sync::Arc;

use conformance::{T0, addr, bound, client};
use dhcp_core::{LeaseState, LeaseStore, PoolRef};
use dhcp_store::SqliteStore;

suite!(async {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("leases.db")).expect("open");
    std::mem::forget(dir);
    store
});

#[tokio::test]
async fn leases_survive_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("leases.db");
    {
        let store = SqliteStore::open(&path).expect("open");
        store.claim(&bound(1, addr(1), 3600), T0).await.expect("store").expect("granted");
        store.claim(&bound(2, addr(2), 3600), T0).await.expect("store").expect("granted");
        store.update_state(addr(2), &client(2), LeaseState::Released).await.expect("store").expect("held");
    }
    let store = SqliteStore::open(&path).expect("reopen");
    let leases = store.list(None).await.expect("store");
    assert_eq!(leases, vec![bound(1, addr(1), 3600), conformance::lease(2, addr(2), LeaseState::Released)]);
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("leases.db");
    drop(SqliteStore::open(&path).expect("create"));
    // As a newer server would leave the file.
    let conn = rusqlite::Connection::open(&path).expect("open directly");
    conn.pragma_update(None, "user_version", 99).expect("set version");
    drop(conn);
    let err = SqliteStore::open(&path).expect_err("schema from the future");
    assert!(err.to_string().contains("newer"), "{err}");
}

#[tokio::test]
async fn a_version_1_file_is_migrated() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("leases.db");
    {
        // As a server of schema version 1 left it: one lease, allocated from a pool of one.
        let conn = rusqlite::Connection::open(&path).expect("create");
        conn.execute_batch(
            "CREATE TABLE leases (addr INTEGER PRIMARY KEY, subnet INTEGER NOT NULL, client BLOB NOT NULL,
                 hwaddr BLOB NOT NULL, state INTEGER NOT NULL, deadline INTEGER, free_at INTEGER NOT NULL,
                 hostname TEXT);
             CREATE INDEX leases_by_client ON leases (subnet, client);
             CREATE INDEX leases_by_deadline ON leases (deadline) WHERE deadline IS NOT NULL;
             CREATE INDEX leases_free ON leases (subnet, free_at, addr);
             CREATE TABLE pool_cursor (pool_key INTEGER PRIMARY KEY, next INTEGER NOT NULL);
             PRAGMA user_version = 1;",
        )
        .expect("version 1 schema");
        let (addr5, expires) = (i64::from(u32::from(addr(5))), i64::try_from((T0 + 3600).as_secs()).expect("fits"));
        conn.execute(
            "INSERT INTO leases VALUES (?1, 1, ?2, ?3, 1, ?4, ?4, NULL)",
            rusqlite::params![addr5, client(1).as_bytes(), [2u8, 0, 0, 0, 0, 1], expires],
        )
        .expect("a lease");
        conn.execute("INSERT INTO pool_cursor VALUES (7, ?1)", [addr5 + 1]).expect("the pool's cursor");
    }
    let store = SqliteStore::open(&path).expect("migrated");
    let version: i64 = rusqlite::Connection::open(&path)
        .expect("open directly")
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("version");
    assert_eq!(version, 2);
    let kept = store.lease_by_addr(addr(5)).await.expect("store").expect("kept");
    assert_eq!((kept.client, kept.state), (client(1), LeaseState::Bound { expires: T0 + 3600 }));
    // A deleted lease's address goes back to the pool the cursor has passed.
    assert!(store.delete(addr(5)).await.expect("store"));
    let ranges = [u32::from(addr(5))..=u32::from(addr(5))];
    let pool = PoolRef { key: 7, subnet: 1, ranges: &ranges };
    let got = store.allocate(pool, &bound(2, Ipv4Addr::UNSPECIFIED, 3600), T0).await.expect("store");
    assert_eq!(got.map(|l| l.addr), Some(addr(5)));
}

#[test]
fn concurrent_connections_never_share_an_address() {
    // Four connections to one file, as four server processes would have, allocating from a pool
    // of 20 for 4 x 10 clients: each address goes to exactly one client, and 20 get none.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = Arc::new(dir.path().join("leases.db"));
    drop(SqliteStore::open(path.as_ref()).expect("create"));
    let ranges = [u32::from(addr(10))..=u32::from(addr(29))];
    let granted: Vec<Vec<Ipv4Addr>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4u8)
            .map(|worker| {
                let path = Arc::clone(&path);
                let ranges = &ranges;
                scope.spawn(move || {
                    let store = SqliteStore::open(path.as_ref()).expect("open");
                    let pool = PoolRef { key: 7, subnet: 1, ranges };
                    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
                    (0..10u8)
                        .filter_map(|i| {
                            let lease = bound(worker * 10 + i + 1, Ipv4Addr::UNSPECIFIED, 3600);
                            runtime.block_on(store.allocate(pool, &lease, T0)).expect("store").map(|l| l.addr)
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("worker")).collect()
    });
    let mut all: Vec<Ipv4Addr> = granted.into_iter().flatten().collect();
    assert_eq!(all.len(), 20, "the pool fills exactly");
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 20, "no address twice");
}

#[tokio::test]
async fn writes_in_flight_together_are_all_committed() {
    // They share commits on the writer thread; every answered one is in the file.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("leases.db");
    let store = Arc::new(SqliteStore::open(&path).expect("open"));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 1..=200u8 {
        let store = Arc::clone(&store);
        tasks.spawn(async move { store.claim(&bound(n, Ipv4Addr::new(10, 0, 1, n), 3600), T0).await });
    }
    while let Some(done) = tasks.join_next().await {
        assert!(done.expect("task").expect("store").is_some(), "granted");
    }
    drop(store);
    let reopened = SqliteStore::open(&path).expect("reopen");
    assert_eq!(reopened.list(None).await.expect("store").len(), 200);
}
