//! The Redis store against a real server (127.0.0.1:6379, as the test command sets up): the
//! shared contract, each test under its own key prefix, and several stores with their own
//! connections, as several servers would be, allocating from one small pool at once.
//!
//! `DHCP_TEST_REDIS` overrides where the server is (a redis:// URL without a prefix).

#[macro_use]
mod conformance;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

use conformance::{T0, addr, bound};
use dhcp_core::{LeaseStore, PoolRef};
use dhcp_store::RedisStore;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A URL with a key prefix no other test uses.
fn fresh_url() -> String {
    let server = std::env::var("DHCP_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    format!("{server}?prefix=dhcptest:{}:{}:", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

suite!(async { RedisStore::connect(&fresh_url()).await.expect("Redis must run at 127.0.0.1:6379") });

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn servers_sharing_redis_never_share_an_address() {
    let url = fresh_url();
    let ranges = [u32::from(addr(10))..=u32::from(addr(49))];
    let mut tasks = Vec::new();
    for server in 0..4u8 {
        let store = RedisStore::connect(&url).await.expect("connect");
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
    assert_eq!(all.len(), 40, "the pool fills exactly");
    let addrs: HashSet<Ipv4Addr> = all.iter().map(|(a, _)| *a).collect();
    assert_eq!(addrs.len(), 40, "no address twice");
    let store = RedisStore::connect(&url).await.expect("connect");
    let stored: HashSet<_> = store.list(None).await.expect("store").into_iter().map(|l| (l.addr, l.client)).collect();
    assert_eq!(stored, all.into_iter().collect());
}

#[tokio::test]
async fn leases_expire_in_redis_a_day_after_their_deadline() {
    let server = std::env::var("DHCP_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("dhcptest:{}:ttl{}:", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let store = RedisStore::connect(&format!("{server}?prefix={prefix}")).await.expect("connect");
    store.claim(&bound(1, addr(1), 3600), T0).await.expect("store").expect("granted");

    let mut conn =
        redis::Client::open(server.as_str()).expect("url").get_multiplexed_async_connection().await.expect("redis");
    let key = format!("{prefix}lease:{}", u32::from(addr(1)));
    let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut conn).await.expect("ttl");
    assert!((3600 + 86_400 - 10..=3600 + 86_400).contains(&ttl), "the lease key lives its lease plus a day: {ttl}");
    let client_keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{prefix}client:*")).query_async(&mut conn).await.expect("keys");
    let client_ttl: i64 = redis::cmd("TTL").arg(&client_keys[0]).query_async(&mut conn).await.expect("ttl");
    assert_eq!(client_ttl, ttl, "the client index expires with its lease");

    // Released: kept a day for affinity, then gone.
    store.update_state(addr(1), &conformance::client(1), dhcp_core::LeaseState::Released).await.expect("store");
    let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut conn).await.expect("ttl");
    assert!((86_400 - 10..=86_400).contains(&ttl), "a released lease is kept a day: {ttl}");

    // A lease whose key expired under the indexes is simply gone; its address is free again.
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut conn).await.expect("del");
    assert_eq!(store.lease_by_client(1, &conformance::client(1)).await.expect("store"), None);
    let granted = store.claim(&bound(2, addr(1), 3600), T0).await.expect("store");
    assert!(granted.is_some(), "the address is free again");
}
