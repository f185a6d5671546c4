//! Store failover: the server's database loses its primary and a replica takes over, through
//! the database's own replication, and the server carries on without a restart.
//!
//! - PostgreSQL: a private primary and a streaming standby (`pg_basebackup -R`), each on its own
//!   Unix socket directory, replicating synchronously (`synchronous_standby_names = '*'`,
//!   `synchronous_commit = on`: a commit returns once the standby has flushed it). The server's
//!   store URL is libpq's multi-host form with `target_session_attrs=read-write`. The primary is
//!   stopped (`pg_ctl stop -m immediate`, a crash as far as its clients see); while the standby
//!   is still read-only the server grants nothing (it must not settle on a server that refuses
//!   writes); then the standby is promoted (`pg_ctl promote`) and the server grants leases
//!   again. Every lease ACKed before the stop must be on the promoted standby: synchronous
//!   replication promises that.
//! - Redis: a private master and replica on loopback ports, three sentinels (quorum 2,
//!   `down-after-milliseconds` 1000). The store URL is `redis+sentinel://`. The master is killed
//!   with SIGKILL; the sentinels promote the replica by themselves and the server finds it.
//!   Redis replicates asynchronously, so only the leases ACKed a second or more before the kill
//!   are asserted kept (the replica had acknowledged their offset); those ACKed just before it
//!   are counted and reported.
//!
//! Both report the time from the failure to the first lease granted again. The server listens
//! on loopback on unprivileged ports; `dhcp_net::probe` plays a relay.

mod lab;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::thread::sleep;
use std::time::{Duration, Instant};

use lab::{LeaseRow, PostgresPair, RedisSentinels, Server};

/// Takes a lease for each client in `macs`; their addresses.
fn take(server: &Server, macs: impl IntoIterator<Item = u8>) -> BTreeMap<u8, Ipv4Addr> {
    macs.into_iter()
        .map(|mac| {
            let addr =
                server.probe(mac).unwrap_or_else(|e| panic!("lease for client {mac}: {e}\n{}", server.log_text()));
            (mac, addr)
        })
        .collect()
}

/// Probes new clients from `first_mac` on until one gets a lease; how long it took from
/// `since`, and the client that got it.
fn first_lease_after(server: &Server, since: Instant, first_mac: u8, limit: Duration) -> (Duration, u8) {
    let mut mac = first_mac;
    loop {
        match server.probe(mac) {
            Ok(_) => return (since.elapsed(), mac),
            Err(e) => {
                assert!(
                    since.elapsed() < limit,
                    "no lease within {limit:?} of the failure: {e}\n{}",
                    server.log_text()
                );
                mac += 1;
            }
        }
    }
}

/// Which of `acked` the server's store still holds, bound, at the same address.
fn kept(server: &Server, acked: &BTreeMap<u8, Ipv4Addr>) -> Vec<u8> {
    let rows: Vec<LeaseRow> = server.leases();
    acked
        .iter()
        .filter(|(mac, addr)| {
            rows.iter().any(|r| {
                r.address == addr.to_string() && r.hwaddr.ends_with(&format!(":{mac:02x}")) && r.state == "bound"
            })
        })
        .map(|(mac, _)| *mac)
        .collect()
}

#[test]
fn postgres_primary_stopped_and_standby_promoted() {
    if !lab::available() {
        return;
    }
    let pair = PostgresPair::start(5432, 5433);
    let url = pair.url();
    assert!(url.contains(",%2F") && url.ends_with("?target_session_attrs=read-write"), "{url}");
    let server = Server::loopback(&pair.primary.dir, &url, lab::server_port(), "");

    let acked = take(&server, 1..=10);
    let on_standby = pair.standby.psql("SELECT count(*) FROM dhcp_leases WHERE state = 1");
    assert_eq!(on_standby.trim(), "10", "synchronous replication: the standby has every ACKed lease");

    pair.primary.down();
    let stopped = Instant::now();
    // The standby takes no writes yet: the server must not use it, so nothing is granted.
    for mac in 30..=31 {
        assert!(server.probe(mac).is_err(), "a lease was granted with the primary down and no primary promoted");
    }
    assert_eq!(pair.standby.psql("SELECT count(*) FROM dhcp_leases").trim(), "10", "nothing written to the standby");

    pair.standby.promote();
    let promoted = Instant::now();
    let (took, _) = first_lease_after(&server, promoted, 40, Duration::from_secs(30));

    // Every lease ACKed before the stop is on the promoted standby, and a returning client
    // gets its address back.
    assert_eq!(kept(&server, &acked), acked.keys().copied().collect::<Vec<_>>(), "ACKed leases lost");
    assert_eq!(server.probe(1).expect("renewal after the failover"), acked[&1], "client 1 keeps its address");
    eprintln!(
        "PostgreSQL failover (synchronous replication): leases again {:.2} s after the promotion, which came \
         {:.2} s after the primary stopped (the test's own checks that nothing is granted meanwhile); \
         {} of {} ACKed leases kept",
        took.as_secs_f64(),
        (promoted - stopped).as_secs_f64(),
        acked.len(),
        acked.len()
    );
}

#[test]
fn redis_master_killed_and_replica_promoted_by_sentinel() {
    if !lab::available() {
        return;
    }
    let mut redis = RedisSentinels::start();
    let url = format!("{}?prefix=failover:", redis.url());
    let server = Server::loopback(&redis.dir, &url, lab::server_port(), "");

    // Leases well before the kill: the replica has acknowledged all of them before it.
    let early = take(&server, 1..=8);
    let settle = Instant::now();
    loop {
        let (master, replica) = redis.offsets();
        if master > 0 && master == replica && settle.elapsed() >= Duration::from_secs(1) {
            break;
        }
        assert!(settle.elapsed() < Duration::from_secs(10), "the replica never caught up: {master} vs {replica}");
        sleep(Duration::from_millis(50));
    }
    // And leases just before it, which asynchronous replication may lose.
    let late = take(&server, 9..=10);

    redis.kill_master();
    let killed = Instant::now();
    let (took, _) = first_lease_after(&server, killed, 40, Duration::from_secs(30));
    assert_eq!(redis.current_master_port(), Some(redis.replica_port), "Sentinel promoted the replica");

    assert_eq!(kept(&server, &early), early.keys().copied().collect::<Vec<_>>(), "leases ACKed before the kill lost");
    let late_kept = kept(&server, &late).len();
    assert_eq!(server.probe(1).expect("renewal after the failover"), early[&1], "client 1 keeps its address");
    eprintln!(
        "Redis failover (Sentinel, asynchronous replication): leases again {:.2} s after SIGKILL of the master; \
         {} of {} leases ACKed a second or more before the kill kept, {} of {} ACKed just before it kept",
        took.as_secs_f64(),
        early.len(),
        early.len(),
        late_kept,
        late.len()
    );
}
