//! The PostgreSQL store against a real server (127.0.0.1:5432, database `test`, as the test
//! command sets up): the shared contract, each test in its own schema, and several stores with
//! their own connection pools, as several servers would be, allocating from one small pool at once;
//! two servers claiming or allocating two addresses for one client at the same moment leave it
//! one lease; a version-1 schema is migrated; the free-address list stays true when a delete
//! races a claim; `allocate_replacing` reports the record it overwrote, as committed;
//! multi-host strings with `target_session_attrs=read-write` skip a host that is down and never
//! settle on a read-only one; a batch whose connection is killed mid-way stores and answers
//! none of its claims, and a claim PostgreSQL cannot store fails alone.
//!
//! `DHCP_TEST_POSTGRES` overrides where the server is (a libpq key=value string).

#[macro_use]
mod conformance;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

use conformance::{T0, addr, bound, client};
use dhcp_core::{ClientId, HwAddr, Lease, LeaseState, LeaseStore, PoolRef};
use dhcp_store::PostgresStore;

static NEXT: AtomicU32 = AtomicU32::new(0);

fn server() -> String {
    std::env::var("DHCP_TEST_POSTGRES").unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into())
}

/// Whether the test process `pid` (of this machine) still runs, so its schemas are in use:
/// another run of these tests, beside this one. Without `/proc` every process counts as gone.
fn still_running(pid: &str) -> bool {
    std::path::Path::new("/proc/self").exists() && std::path::Path::new("/proc").join(pid).exists()
}

/// A fresh schema of its own; schemas left by earlier runs of this test binary, whose process
/// has ended, are dropped.
async fn fresh_schema() -> String {
    let (client, connection) = tokio_postgres::connect(&server(), tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL must run at 127.0.0.1:5432 (the test command starts it)");
    tokio::spawn(connection);
    let pid = std::process::id();
    let schema = format!("dhcp_t_{pid}_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let stale = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'dhcp\\_t\\_%' AND nspname NOT LIKE $1",
            &[&format!("dhcp\\_t\\_{pid}\\_%")],
        )
        .await
        .expect("list schemas");
    for row in stale {
        let name: String = row.get(0);
        let owner = name.strip_prefix("dhcp_t_").and_then(|rest| rest.split('_').next()).unwrap_or_default();
        if still_running(owner) {
            continue;
        }
        let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).await;
    }
    client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.expect("create schema");
    schema
}

fn url(schema: &str) -> String {
    format!("{} options='-c search_path={schema}'", server())
}

suite!(async {
    let schema = fresh_schema().await;
    PostgresStore::connect(&url(&schema), 4).await.expect("connect")
});

#[tokio::test]
async fn the_schema_is_created_once_and_reused() {
    let schema = fresh_schema().await;
    let first = PostgresStore::connect(&url(&schema), 2).await.expect("create");
    first.claim(&bound(1, addr(1), 3600), T0).await.expect("store").expect("granted");
    let second = PostgresStore::connect(&url(&schema), 2).await.expect("reuse");
    assert_eq!(second.list(None).await.expect("store").len(), 1);
}

#[tokio::test]
async fn a_version_1_schema_is_migrated_with_its_leases() {
    // A database as version 1 of the schema left it (no free-address list, no batch functions),
    // with a lease the cursor has passed: opening it migrates to the current version, the lease
    // stays, and the address is found again once deleted.
    let schema = fresh_schema().await;
    let ranges = [u32::from(addr(5))..=u32::from(addr(5))];
    let pool = PoolRef { key: 5, subnet: 1, ranges: &ranges };
    let first = PostgresStore::connect(&url(&schema), 1).await.expect("create");
    let held = first.allocate(pool, &bound(1, Ipv4Addr::UNSPECIFIED, 3600), T0).await.expect("store").expect("room");
    drop(first);
    let (raw, connection) = tokio_postgres::connect(&url(&schema), tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    raw.batch_execute(
        "DROP TABLE dhcp_free_addrs; DROP FUNCTION dhcp_apply;
         UPDATE dhcp_schema_version SET version = 1",
    )
    .await
    .expect("v1");
    let store = PostgresStore::connect(&url(&schema), 1).await.expect("migrate");
    let version: i32 = raw.query_one("SELECT version FROM dhcp_schema_version", &[]).await.expect("read").get(0);
    assert_eq!(version, 3);
    assert_eq!(store.lease_by_addr(addr(5)).await.expect("store"), Some(held));
    assert!(store.delete(addr(5)).await.expect("store"));
    let got = store.allocate(pool, &bound(2, Ipv4Addr::UNSPECIFIED, 3600), T0).await.expect("store");
    assert_eq!(got.map(|l| l.addr), Some(addr(5)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_racing_a_claim_leaves_the_free_list_true() {
    // Round after round, one server deletes an address's lease while another claims the address
    // for a new client. Whichever wins, an address with a lease is never on the free list
    // (allocation would try it in vain, ahead of really free ones), and one without is.
    let schema = fresh_schema().await;
    let first = PostgresStore::connect(&url(&schema), 1).await.expect("connect");
    let second = PostgresStore::connect(&url(&schema), 1).await.expect("connect");
    let (raw, connection) = tokio_postgres::connect(&url(&schema), tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    for round in 0..RACE_ROUNDS {
        let at = race_addr(round, 0);
        first.claim(&race_lease(round, at, LeaseState::Bound { expires: T0 + 60 }), T0).await.expect("store");
        first.update_state(at, &race_client(round), LeaseState::Released).await.expect("store").expect("held");
        let newcomer = bound(1, at, 3600);
        let (deleted, claimed) = tokio::join!(first.delete(at), second.claim(&newcomer, T0));
        deleted.expect("store");
        claimed.expect("store").expect("a released address is free");
        let stored = second.lease_by_addr(at).await.expect("store");
        let listed = raw
            .query_opt("SELECT addr FROM dhcp_free_addrs WHERE addr = $1", &[&i64::from(u32::from(at))])
            .await
            .expect("read")
            .is_some();
        assert_eq!(listed, stored.is_none(), "round {round}: stored {stored:?}, on the free list: {listed}");
        first.delete(at).await.expect("store");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn servers_sharing_the_database_never_share_an_address() {
    // Four stores, each with its own pool of connections (as four server processes would
    // have), allocate for 4 x 15 clients from a pool of 40 at once.
    let schema = fresh_schema().await;
    let ranges = [u32::from(addr(10))..=u32::from(addr(49))];
    let mut tasks = Vec::new();
    for server in 0..4u8 {
        let store = PostgresStore::connect(&url(&schema), 4).await.expect("connect");
        let ranges = ranges.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..15u8 {
                let pool = PoolRef { key: 11, subnet: 1, ranges: &ranges };
                let lease = bound(server * 15 + i + 1, Ipv4Addr::UNSPECIFIED, 3600);
                if let Some(l) = store.allocate(pool, &lease, T0).await.expect("store") {
                    got.push((l.addr, l.client));
                }
            }
            got
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("task"));
    }
    assert_eq!(all.len(), 40, "the pool fills exactly: {all:?}");
    let addrs: HashSet<Ipv4Addr> = all.iter().map(|(a, _)| *a).collect();
    assert_eq!(addrs.len(), 40, "no address twice");
    // And the database agrees with what each server was told.
    let store = PostgresStore::connect(&url(&schema), 1).await.expect("connect");
    let stored: HashSet<_> = store.list(None).await.expect("store").into_iter().map(|l| (l.addr, l.client)).collect();
    assert_eq!(stored, all.into_iter().collect());
}

/// The test server's host and port, and the rest of its connection string, for building
/// multi-host strings around it.
fn host_port_and_rest() -> (String, u16, String) {
    let config: tokio_postgres::Config = server().parse().expect("DHCP_TEST_POSTGRES parses");
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let all = server();
    let rest: Vec<&str> = all
        .split_whitespace()
        .filter(|p| !p.starts_with("host=") && !p.starts_with("port=") && !p.starts_with("hostaddr="))
        .collect();
    (host, port, rest.join(" "))
}

#[tokio::test]
async fn a_multi_host_string_skips_a_host_that_is_down() {
    // The first host is a socket directory with no server (a stopped primary); the store goes
    // on to the next, which takes writes, as a promoted standby would.
    let schema = fresh_schema().await;
    let (host, port, rest) = host_port_and_rest();
    let url = format!(
        "host=/nonexistent-dhcp-test-dir,{host} port=5432,{port} {rest} target_session_attrs=read-write \
         options='-c search_path={schema}'"
    );
    let store = PostgresStore::connect(&url, 2).await.expect("the second host answers");
    store.claim(&bound(1, addr(1), 3600), T0).await.expect("store").expect("granted");
    assert_eq!(store.list(None).await.expect("store").len(), 1);
}

#[tokio::test]
async fn a_read_only_server_is_never_written_to() {
    // Sessions that are read-only, as on a standby before its promotion: with
    // target_session_attrs=read-write no host qualifies, and the store refuses to open rather
    // than write where writes fail; the failure is an outage (another host may take writes).
    let schema = fresh_schema().await;
    let (host, port, rest) = host_port_and_rest();
    let url = format!(
        "host={host},{host} port={port},{port} {rest} target_session_attrs=read-write \
         options='-c default_transaction_read_only=on -c search_path={schema}'"
    );
    match PostgresStore::connect(&url, 2).await {
        Err(dhcp_core::StoreError::Unavailable(why)) => assert!(why.contains("writes"), "{why}"),
        other => panic!("a read-only server was accepted: {other:?}"),
    }
    // Without target_session_attrs the store connects, and the first write is refused as an
    // outage (SQLSTATE 25006), not as a broken store.
    let url =
        format!("host={host} port={port} {rest} options='-c default_transaction_read_only=on -c search_path={schema}'");
    match PostgresStore::connect(&url, 2).await {
        Err(dhcp_core::StoreError::Unavailable(why)) => assert!(why.contains("read-only"), "{why}"),
        other => panic!("a write on a read-only server: {other:?}"),
    }
}

/// Rounds of each race below. Without the store's per-client lock, 80-92% of the claim rounds
/// and 45-49% of the allocation rounds ended with the client holding two leases (one machine,
/// four runs of 200 rounds each): 100 rounds leave no chance of missing it.
const RACE_ROUNDS: u16 = 100;

fn race_addr(round: u16, which: u8) -> Ipv4Addr {
    let [hi, lo] = round.to_be_bytes();
    Ipv4Addr::new(10, 100 + which + 2 * hi, lo, 1)
}

/// The client of a race's round: a fresh one each round, so that what one round leaves (an
/// offer leaves the client's binding alone) is no part of the next.
fn race_client(round: u16) -> ClientId {
    let [hi, lo] = round.to_be_bytes();
    ClientId::from_bytes(&[b'r', b'a', b'c', b'e', hi, lo])
}

fn race_lease(round: u16, at: Ipv4Addr, state: LeaseState) -> Lease {
    Lease {
        addr: at,
        client: race_client(round),
        hwaddr: HwAddr::mac([2, 0, 0, 0, 0, 0xee]),
        subnet: 1,
        state,
        hostname: None,
    }
}

/// The leases of `round`'s client in subnet 1 that are held (offered or bound, unexpired) at `T0`.
async fn held_by_the_racing_client(store: &PostgresStore, round: u16) -> Vec<Lease> {
    let client = race_client(round);
    let all = store.list(Some(1)).await.expect("store");
    all.into_iter()
        .filter(|l| l.client == client && l.is_held(T0))
        .filter(|l| matches!(l.state, LeaseState::Offered { .. } | LeaseState::Bound { .. }))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_claiming_two_addresses_for_one_client_at_once_leave_it_one() {
    // Two servers (stores with their own connections) each claim a different address for the
    // same client at the same moment, round after round with fresh addresses: whichever commits
    // second must release the other's, so the client never ends a round holding two leases.
    let schema = fresh_schema().await;
    let first = PostgresStore::connect(&url(&schema), 1).await.expect("connect");
    let second = PostgresStore::connect(&url(&schema), 1).await.expect("connect");
    let mut doubled = Vec::new();
    for round in 0..RACE_ROUNDS {
        let state = if round % 2 == 0 {
            LeaseState::Bound { expires: T0 + 3600 }
        } else {
            LeaseState::Offered { until: T0 + 60 }
        };
        let (x, y) = (race_lease(round, race_addr(round, 0), state), race_lease(round, race_addr(round, 1), state));
        let (got_x, got_y) = tokio::join!(first.claim(&x, T0), second.claim(&y, T0));
        assert!(got_x.expect("store").is_some() && got_y.expect("store").is_some(), "both addresses were free");
        let held = held_by_the_racing_client(&first, round).await;
        if held.len() > 1 {
            doubled.push((round, held.len()));
        }
    }
    assert!(
        doubled.is_empty(),
        "{} of {RACE_ROUNDS} rounds left the client more than one lease: {doubled:?}",
        doubled.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_allocating_for_one_client_at_once_leave_it_one() {
    // Both servers see the same broadcast DISCOVER and allocate from one pool for the client at
    // once; the pool's cursor hands them different addresses, and one offer must go.
    let schema = fresh_schema().await;
    let first = PostgresStore::connect(&url(&schema), 1).await.expect("connect");
    let second = PostgresStore::connect(&url(&schema), 1).await.expect("connect");
    let mut doubled = Vec::new();
    for round in 0..RACE_ROUNDS {
        let ranges = [
            u32::from(race_addr(round, 0))..=u32::from(race_addr(round, 0)),
            u32::from(race_addr(round, 1))..=u32::from(race_addr(round, 1)),
        ];
        let pool = PoolRef { key: 1000 + u64::from(round), subnet: 1, ranges: &ranges };
        let state = if round % 2 == 0 {
            LeaseState::Offered { until: T0 + 60 }
        } else {
            LeaseState::Bound { expires: T0 + 3600 }
        };
        let lease = race_lease(round, Ipv4Addr::UNSPECIFIED, state);
        let (got_x, got_y) = tokio::join!(first.allocate(pool, &lease, T0), second.allocate(pool, &lease, T0));
        let (got_x, got_y) = (got_x.expect("store").expect("granted"), got_y.expect("store").expect("granted"));
        assert_ne!(got_x.addr, got_y.addr, "the cursor hands out each address once");
        let held = held_by_the_racing_client(&first, round).await;
        if held.len() > 1 {
            doubled.push((round, held.len()));
        }
    }
    assert!(
        doubled.is_empty(),
        "{} of {RACE_ROUNDS} rounds left the client more than one lease: {doubled:?}",
        doubled.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_allocating_a_deleted_address_for_one_client_give_it_once() {
    // The pool's one address was deleted, so both servers would find it on the free list and
    // claim it for the same client at once. An allocation takes the client's lock before it
    // looks for an address, so the second looks only once the first has committed: the first
    // gets the address (over no record: the delete left none), the second finds none free, and
    // the client holds one lease.
    let schema = fresh_schema().await;
    let first = PostgresStore::connect(&url(&schema), 1).await.expect("connect");
    let second = PostgresStore::connect(&url(&schema), 1).await.expect("connect");
    for round in 0..RACE_ROUNDS {
        let at = race_addr(round, 0);
        let ranges = [u32::from(at)..=u32::from(at)];
        let pool = PoolRef { key: 2000 + u64::from(round), subnet: 1, ranges: &ranges };
        first.allocate(pool, &bound(1, Ipv4Addr::UNSPECIFIED, 3600), T0).await.expect("store").expect("room");
        assert!(first.delete(at).await.expect("store"));
        let lease = race_lease(round, Ipv4Addr::UNSPECIFIED, LeaseState::Bound { expires: T0 + 3600 });
        let (got_x, got_y) =
            tokio::join!(first.allocate_replacing(pool, &lease, T0), second.allocate_replacing(pool, &lease, T0));
        let got: Vec<_> = [got_x.expect("store"), got_y.expect("store")].into_iter().flatten().collect();
        let stored = Lease { addr: at, ..lease.clone() };
        assert_eq!(got, [(stored.clone(), None)], "round {round}");
        let held = first.lease_by_client(1, &lease.client).await.expect("store");
        assert_eq!(held, Some(stored), "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_replaced_is_the_one_overwritten_not_an_earlier_one() {
    // Another session changes the record at the address while the allocation's claim waits for
    // its row: the allocation reports the record as that session committed it, which is the
    // one it overwrote, not the version its statement's snapshot held.
    let schema = fresh_schema().await;
    let store = PostgresStore::connect(&url(&schema), 1).await.expect("connect");
    let ranges = [u32::from(addr(5))..=u32::from(addr(5))];
    let pool = PoolRef { key: 5, subnet: 1, ranges: &ranges };
    let expired = bound(1, Ipv4Addr::UNSPECIFIED, 100);
    store.allocate(pool, &expired, T0).await.expect("store").expect("room");
    let (mut other, connection) = tokio_postgres::connect(&url(&schema), tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    let editor = other.transaction().await.expect("begin");
    editor.batch_execute("UPDATE dhcp_leases SET hostname = 'edited'").await.expect("edit");
    let task = {
        let store = store.clone();
        tokio::spawn(async move {
            let ranges = [u32::from(addr(5))..=u32::from(addr(5))];
            let pool = PoolRef { key: 5, subnet: 1, ranges: &ranges };
            store.allocate_replacing(pool, &bound(2, Ipv4Addr::UNSPECIFIED, 3600), T0 + 200).await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!task.is_finished(), "the allocation waits for the edited row");
    editor.commit().await.expect("commit");
    let (stored, replaced) = task.await.expect("task").expect("store").expect("an expired binding is free");
    assert_eq!(stored, bound(2, addr(5), 3600));
    let edited = Lease { addr: addr(5), hostname: Some("edited".into()), ..expired };
    assert_eq!(replaced, Some(edited));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_given_up_on_leaves_no_transaction_open() {
    // A claim goes in a batch: BEGIN, the batch's call and COMMIT, sent together by the store's
    // worker, not by the caller. A caller that gives up on it (the engine's store deadline)
    // while the server waits (here for a table lock another session holds) must not leave the
    // pooled connection inside the transaction: the next call on that connection would never
    // commit.
    let schema = fresh_schema().await;
    let store = PostgresStore::connect(&url(&schema), 1).await.expect("connect");
    // One claim first, so its statements are prepared: preparing also waits for the table lock,
    // and a caller that gives up then has sent nothing of the transaction.
    store.claim(&bound(3, addr(3), 3600), T0).await.expect("store").expect("granted");
    let (mut other, connection) = tokio_postgres::connect(&url(&schema), tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    let blocker = other.transaction().await.expect("begin");
    blocker.batch_execute("LOCK TABLE dhcp_leases IN ACCESS EXCLUSIVE MODE").await.expect("lock");
    let first = bound(1, addr(1), 3600);
    let gave_up = tokio::time::timeout(std::time::Duration::from_millis(300), store.claim(&first, T0)).await;
    assert!(gave_up.is_err(), "the claim waited for the table lock: {gave_up:?}");
    blocker.commit().await.expect("unlock");
    // The same (only) connection again, for a statement of its own (it runs once the abandoned
    // claim is through): what it writes is committed, so another connection sees it, and so is
    // the abandoned claim, sent whole.
    let released = store.update_state(addr(3), &client(3), LeaseState::Released).await.expect("store");
    assert_eq!(released.map(|l| l.state), Some(LeaseState::Released));
    let fresh = PostgresStore::connect(&url(&schema), 1).await.expect("connect");
    assert_eq!(fresh.lease_by_addr(addr(3)).await.expect("store").map(|l| l.state), Some(LeaseState::Released));
    assert_eq!(fresh.lease_by_addr(addr(1)).await.expect("store"), Some(first), "sent whole, so done whole");
}

/// The pid of the backend that waits for a lock `holder` (a backend pid) holds, once there is one.
async fn backend_waiting_on(watcher: &tokio_postgres::Client, holder: i32) -> i32 {
    for _ in 0..200 {
        let row = watcher
            .query_opt("SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)) LIMIT 1", &[&holder])
            .await
            .expect("pg_stat_activity");
        if let Some(row) = row {
            return row.get(0);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no backend ever waited on {holder}'s lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_connection_dies_mid_way_stores_and_acknowledges_nothing() {
    // Claims that wait together go as one batch, one transaction. Here the batch holds four:
    // it writes the first two, then waits for a row another session locked, and its connection
    // is killed there. None of the four may be answered as stored, and none may be stored; the
    // batch before it, which committed, is; and the store works again on a new connection.
    let schema = fresh_schema().await;
    // One connection, so one worker per queue: the batches go one after the other.
    let store = PostgresStore::connect(&url(&schema), 1).await.expect("connect");
    let (watcher, connection) = tokio_postgres::connect(&url(&schema), tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    let (y, x) = (addr(20), addr(30));
    // Rows at Y and X, free (released), that other sessions can lock.
    for at in [y, x] {
        store.claim(&bound(9, at, 3600), T0).await.expect("store").expect("granted");
        store.update_state(at, &client(9), LeaseState::Released).await.expect("store").expect("held");
    }
    let (holder_y, y_pid) = lock_session(&schema, y).await;
    let (holder_x, x_pid) = lock_session(&schema, x).await;
    let spawn_claim = |n: u8, at: Ipv4Addr| {
        let store = store.clone();
        tokio::spawn(async move { store.claim(&bound(n, at, 3600), T0).await })
    };
    // The first batch: Y alone, waiting for Y's row.
    let first = spawn_claim(1, y);
    let first_backend = backend_waiting_on(&watcher, y_pid).await;
    // Four more queue behind it, in this order.
    let (a, b, c) = (addr(40), addr(41), addr(42));
    let mut queued = Vec::new();
    for (n, at) in [(2, a), (3, b), (4, x), (5, c)] {
        queued.push(spawn_claim(n, at));
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    // Y's row free: the first batch commits, and the four go as the next batch, which writes A
    // and B and waits for X's row.
    holder_y.batch_execute("ROLLBACK").await.expect("release Y");
    assert_eq!(first.await.expect("task").expect("store"), Some(bound(1, y, 3600)), "the first batch committed");
    let batch_backend = backend_waiting_on(&watcher, x_pid).await;
    assert_eq!(batch_backend, first_backend, "the second batch runs on the store's one connection");
    let killed: bool =
        watcher.query_one("SELECT pg_terminate_backend($1)", &[&batch_backend]).await.expect("terminate").get(0);
    assert!(killed);
    for (task, at) in queued.into_iter().zip([a, b, x, c]) {
        let answer = task.await.expect("task");
        assert!(
            matches!(answer, Err(dhcp_core::StoreError::Unavailable(_))),
            "the claim of {at} in the killed batch: {answer:?}"
        );
    }
    holder_x.batch_execute("ROLLBACK").await.expect("release X");
    let fresh = PostgresStore::connect(&url(&schema), 1).await.expect("connect");
    for at in [a, b, c] {
        assert_eq!(fresh.lease_by_addr(at).await.expect("store"), None, "{at} was not committed");
    }
    let at_x = fresh.lease_by_addr(x).await.expect("store").expect("the row is still there");
    assert_eq!((at_x.client, at_x.state), (client(9), LeaseState::Released), "X is as it was");
    // The store itself recovers: a new connection from its pool.
    assert_eq!(store.claim(&bound(2, a, 3600), T0).await.expect("store"), Some(bound(2, a, 3600)));
}

/// A session of its own that has locked the lease row at `at` in an open transaction, and its
/// backend's pid.
async fn lock_session(schema: &str, at: Ipv4Addr) -> (tokio_postgres::Client, i32) {
    let (session, connection) = tokio_postgres::connect(&url(schema), tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    let pid: i32 = session.query_one("SELECT pg_backend_pid()", &[]).await.expect("pid").get(0);
    session.batch_execute("BEGIN").await.expect("begin");
    session
        .execute("SELECT 1 FROM dhcp_leases WHERE addr = $1 FOR UPDATE", &[&i64::from(u32::from(at))])
        .await
        .expect("lock the row");
    (session, pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_postgres_cannot_store_fails_alone() {
    // A hostname with a NUL character cannot be bound as PostgreSQL text, which would fail the
    // whole batch's call: such a claim is refused before it joins one, and claims beside it
    // are stored.
    let schema = fresh_schema().await;
    let store = PostgresStore::connect(&url(&schema), 1).await.expect("connect");
    let poisoned = Lease { hostname: Some("bad\0name".into()), ..bound(1, addr(1), 3600) };
    let claims: Vec<_> = [poisoned, bound(2, addr(2), 3600), bound(3, addr(3), 3600)]
        .into_iter()
        .map(|lease| {
            let store = store.clone();
            tokio::spawn(async move { store.claim(&lease, T0).await })
        })
        .collect();
    let mut answers = Vec::new();
    for claim in claims {
        answers.push(claim.await.expect("task"));
    }
    assert!(matches!(answers[0], Err(dhcp_core::StoreError::Backend(_))), "{:?}", answers[0]);
    assert_eq!(answers[1], Ok(Some(bound(2, addr(2), 3600))));
    assert_eq!(answers[2], Ok(Some(bound(3, addr(3), 3600))));
    assert_eq!(store.lease_by_addr(addr(1)).await.expect("store"), None);
}
