//! Store outages: the server's PostgreSQL (a private instance the test starts) and then its
//! Redis (likewise) are stopped in the middle of a run and started again. While the store is
//! down no client gets a lease, since nothing could be stored; once it is back the server
//! recovers by itself, without a restart, and the test reports how long that took.
//!
//! The server listens on loopback on unprivileged ports; `dhcp_net::probe` plays a relay.

mod services;

use std::time::{Duration, Instant};

use dhcp_net::ProbeError;
use services::{PrivatePostgres, PrivateRedis, ServerProc, is_root};

/// Takes leases, stops the store, checks that none is granted, starts it, and returns how long
/// the server took to grant a lease again.
fn outage(server: &ServerProc, stop: impl FnOnce(), start: impl FnOnce()) -> Duration {
    for mac in 1..=3 {
        server.probe(mac).unwrap_or_else(|e| panic!("lease before the outage: {e}\n{}", server.log_text()));
    }
    stop();
    for mac in 10..=12 {
        match server.probe(mac) {
            Err(ProbeError::Timeout(_)) => {}
            other => panic!("a lease was granted while the store was down: {other:?}"),
        }
    }
    assert!(server.log_text().contains("dropped"), "the outage is logged:\n{}", server.log_text());
    start();
    let back = Instant::now();
    let mut mac = 20;
    loop {
        match server.probe(mac) {
            Ok(_) => return back.elapsed(),
            Err(e) => {
                assert!(back.elapsed() < Duration::from_secs(60), "no recovery after 60 s: {e}\n{}", server.log_text());
                mac = mac.wrapping_add(1);
            }
        }
    }
}

#[test]
fn postgres_outage_and_recovery() {
    if !is_root() {
        assert_eq!(std::env::var("DHCP_SKIP_NETNS").as_deref(), Ok("1"), "the outage test needs root (su postgres)");
        return;
    }
    let pg = PrivatePostgres::start(55_400 + (std::process::id() % 500) as u16);
    let server = ServerProc::start(&pg.dir, &pg.url(), 41_000 + (std::process::id() % 1000) as u16 * 2);
    let took = outage(&server, || pg.down(), || pg.up());
    eprintln!("PostgreSQL outage: leases again {:.2} s after the database came back", took.as_secs_f64());
}

#[test]
fn redis_outage_and_recovery() {
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    let server = ServerProc::start(&redis.dir.clone(), &url, 45_000 + (std::process::id() % 1000) as u16 * 2);
    let redis_cell = std::cell::RefCell::new(&mut redis);
    let took = outage(&server, || redis_cell.borrow_mut().down(), || redis_cell.borrow_mut().up());
    eprintln!("Redis outage: leases again {:.2} s after the server came back", took.as_secs_f64());
}
