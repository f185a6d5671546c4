//! The PostgreSQL store against a real server (127.0.0.1:5432, database `test`, as the test
//! command sets up): the shared contract, each test in its own schema, and several stores with
//! their own connection pools, as several servers would be, allocating from one small pool at once;
//! multi-host strings with `target_session_attrs=read-write` skip a host that is down and never
//! settle on a read-only one.
//!
//! `DHCP_TEST_POSTGRES` overrides where the server is (a libpq key=value string).

#[macro_use]
mod conformance;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

use conformance::{T0, addr, bound};
use dhcp_core::{LeaseStore, PoolRef};
use dhcp_store::PostgresStore;

static NEXT: AtomicU32 = AtomicU32::new(0);

fn server() -> String {
    std::env::var("DHCP_TEST_POSTGRES").unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into())
}

/// A fresh schema of its own; schemas left by earlier runs of this test binary are dropped.
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
