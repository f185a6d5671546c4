//! Store outages: the server's PostgreSQL (a private instance the test starts) and then its
//! Redis (likewise) are stopped in the middle of a run and started again. While the store is
//! down no client gets a lease, since nothing could be stored; once it is back the server
//! recovers by itself, without a restart, and the test reports how long that took.
//!
//! A store that hangs instead (a Redis frozen with SIGSTOP, a PostgreSQL whose lease table
//! another session keeps locked) holds up only the requests that need it, each for at most the
//! store deadline: the management API, which runs on a thread of its own, answers at once
//! throughout.
//!
//! The server listens on loopback on unprivileged ports; `dhcp_net::probe` plays a relay.

mod lab;

use std::time::{Duration, Instant};

use dhcp_net::ProbeError;
use dhcp_server::api::{AdminClient, ClientError};
use lab::{PrivatePostgres, PrivateRedis, Proc, Server};

/// Takes leases, stops the store, checks that none is granted, starts it, and returns how long
/// the server took to grant a lease again.
fn outage(server: &Server, stop: impl FnOnce(), start: impl FnOnce()) -> Duration {
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
    // The store calls of those requests fail within its timeouts; the failure is logged then.
    let logged = Instant::now();
    while !server.log_text().contains("dropped") {
        assert!(logged.elapsed() < Duration::from_secs(10), "the outage is logged:\n{}", server.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
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
    if !lab::available() {
        return;
    }
    let pg = PrivatePostgres::start(55_400 + (std::process::id() % 500) as u16);
    let server = Server::loopback(&pg.dir, &pg.url(), 41_000 + (std::process::id() % 1000) as u16 * 2, "");
    let took = outage(&server, || pg.down(), || pg.up());
    eprintln!("PostgreSQL outage: leases again {:.2} s after the database came back", took.as_secs_f64());
}

#[test]
fn redis_outage_and_recovery() {
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    // With the management API on: its health check says "not ready" while the store is away.
    let api_port = lab::free_port();
    let lines = format!("api-listen = \"127.0.0.1:{api_port}\"\napi-token = \"outage-token\"");
    let port = 45_000 + (std::process::id() % 1000) as u16 * 2;
    let server = Server::loopback(&redis.dir, &url, port, &lines);
    let api = AdminClient::new(&format!("http://127.0.0.1:{api_port}"), "outage-token");
    assert_eq!(api.get("/api/v1/health").expect("healthy")["ready"], true);
    let redis_cell = std::cell::RefCell::new(&mut redis);
    let took = outage(
        &server,
        || {
            redis_cell.borrow_mut().down();
            match api.get("/api/v1/health") {
                Err(ClientError::Api { status: 503, .. }) => {}
                other => panic!("health while Redis is down: {other:?}"),
            }
        },
        || redis_cell.borrow_mut().up(),
    );
    assert_eq!(api.get("/api/v1/health").expect("healthy again")["ready"], true);
    eprintln!("Redis outage: leases again {:.2} s after the server came back", took.as_secs_f64());
}

#[test]
fn a_hung_redis_delays_only_the_requests_that_need_it() {
    let redis = PrivateRedis::start();
    let api_port = lab::free_port();
    let lines = format!("api-listen = \"127.0.0.1:{api_port}\"\napi-token = \"hang-token\"\nstore-timeout-ms = 500");
    let port = 47_000 + (std::process::id() % 1000) as u16 * 2;
    let server = Server::loopback(&redis.dir, &redis.url(), port, &lines);
    let api = AdminClient::new(&format!("http://127.0.0.1:{api_port}"), "hang-token");
    server.probe(1).unwrap_or_else(|e| panic!("a lease before the hang: {e}\n{}", server.log_text()));
    let acks = |api: &AdminClient| api.get("/api/v1/stats").expect("stats")["pkt4-ack-sent"].as_u64();
    let acked_before = acks(&api);

    redis.pause(true);
    // The clients' requests wait for the store, each at most the deadline, and get nothing.
    let probing = std::thread::spawn(move || (server.probe(2), server));
    // Meanwhile the API answers at once, its statistics included.
    for _ in 0..5 {
        let asked = Instant::now();
        let stats = api.get("/api/v1/stats").expect("stats while the store hangs");
        assert!(asked.elapsed() < Duration::from_millis(300), "stats took {:?}", asked.elapsed());
        assert_eq!(stats["pkt4-ack-sent"].as_u64(), acked_before, "nothing ACKed while the store hangs");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (probed, server) = probing.join().expect("the probe ran");
    assert!(matches!(probed, Err(ProbeError::Timeout(_))), "no lease from a hung store: {probed:?}");
    let metrics = api.get("/metrics").expect("metrics");
    let metrics = metrics.as_str().unwrap_or_default();
    let timeouts = metrics
        .lines()
        .find_map(|l| l.strip_prefix("dhcp4_store_timeouts_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(timeouts >= 1.0, "store calls past the deadline are counted:\n{metrics}");
    // The health check says why, within its own two seconds.
    let asked = Instant::now();
    match api.get("/api/v1/health") {
        Err(ClientError::Api { status: 503, .. }) => {}
        other => panic!("health while the store hangs: {other:?}"),
    }
    assert!(asked.elapsed() < Duration::from_secs(3), "health took {:?}", asked.elapsed());

    redis.pause(false);
    let back = Instant::now();
    let mut mac = 30;
    while server.probe(mac).is_err() {
        assert!(back.elapsed() < Duration::from_secs(20), "no lease after the thaw:\n{}", server.log_text());
        mac += 1;
    }
    eprintln!(
        "hung Redis: {timeouts} store calls past the deadline; leases again {:.2} s after the thaw",
        back.elapsed().as_secs_f64()
    );
}

/// The value of a Prometheus counter in the server's `/metrics`, 0 when it is not there.
fn counter(api: &AdminClient, name: &str) -> f64 {
    let metrics = api.get("/metrics").expect("metrics");
    let prefix = format!("{name} ");
    metrics
        .as_str()
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_slow_postgres_delays_only_the_requests_that_need_it() {
    if !lab::available() {
        return;
    }
    // A cluster of the test's own (so the lock below stops no other test), on its Unix socket.
    let pg = PrivatePostgres::start(lab::free_port());
    let api_port = lab::free_port();
    let lines = format!("api-listen = \"127.0.0.1:{api_port}\"\napi-token = \"slow-token\"\nstore-timeout-ms = 500");
    let server = Server::loopback(&pg.dir, &pg.url(), lab::server_port(), &lines);
    let api = AdminClient::new(&format!("http://127.0.0.1:{api_port}"), "slow-token");
    server.probe(1).unwrap_or_else(|e| panic!("a lease before the lock: {e}\n{}", server.log_text()));
    let acks = |api: &AdminClient| api.get("/api/v1/stats").expect("stats")["pkt4-ack-sent"].as_u64();
    let acked_before = acks(&api);
    let timeouts_before = counter(&api, "dhcp4_store_timeouts_total");

    // Another session locks the lease table and sleeps in its transaction: every read and
    // write of the server waits behind it (psql, killed on drop; the cluster is stopped then).
    let (socket_dir, port) = (lab::path_str(&pg.dir), pg.port.to_string());
    let holder = Proc::spawn(
        std::process::Command::new("psql")
            .args(["-X", "-U", "postgres", "-d", "postgres", "-h", &socket_dir, "-p", &port, "-c"])
            .arg("BEGIN; LOCK TABLE dhcp_leases IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120)")
            .env("PGAPPNAME", "dhcp-test-lock"),
        &pg.dir.join("lock-holder.log"),
    );
    let held = "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                WHERE c.relname = 'dhcp_leases' AND l.mode = 'AccessExclusiveLock' AND l.granted";
    let asked = Instant::now();
    while pg.psql(held).trim() != "1" {
        assert!(asked.elapsed() < Duration::from_secs(10), "the lock was never taken:\n{}", holder.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }

    // The clients' requests wait for the store, each at most the deadline, and get nothing.
    let probing = std::thread::spawn(move || (server.probe(2), server));
    // Meanwhile the API answers at once, its statistics included.
    for _ in 0..5 {
        let asked = Instant::now();
        let stats = api.get("/api/v1/stats").expect("stats while the store is locked");
        assert!(asked.elapsed() < Duration::from_millis(300), "stats took {:?}", asked.elapsed());
        assert_eq!(stats["pkt4-ack-sent"].as_u64(), acked_before, "nothing ACKed while the store is locked");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (probed, server) = probing.join().expect("the probe ran");
    assert!(matches!(probed, Err(ProbeError::Timeout(_))), "no lease from a locked store: {probed:?}");
    // What held them up was the lock: the server's sessions wait for it.
    let waiting = "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                   WHERE c.relname = 'dhcp_leases' AND NOT l.granted";
    let waiting: u32 = pg.psql(waiting).trim().parse().expect("a count");
    assert!(waiting >= 1, "no session of the server waits for the lock");
    let timeouts = counter(&api, "dhcp4_store_timeouts_total") - timeouts_before;
    assert!(timeouts >= 1.0, "store calls past the deadline are counted:\n{}", server.log_text());
    // The health check says why, within its own two seconds.
    let asked = Instant::now();
    match api.get("/api/v1/health") {
        Err(ClientError::Api { status: 503, .. }) => {}
        other => panic!("health while the store is locked: {other:?}"),
    }
    assert!(asked.elapsed() < Duration::from_secs(3), "health took {:?}", asked.elapsed());

    // The lock goes with the holder's transaction, cancelled; the server serves again.
    pg.psql("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'dhcp-test-lock'");
    assert!(holder.wait(Duration::from_secs(10)).is_some(), "the lock holder was not cancelled");
    let back = Instant::now();
    let mut mac = 30;
    while server.probe(mac).is_err() {
        assert!(back.elapsed() < Duration::from_secs(20), "no lease after the lock went:\n{}", server.log_text());
        mac += 1;
    }
    assert_eq!(api.get("/api/v1/health").expect("healthy again")["ready"], true);
    eprintln!(
        "locked PostgreSQL: {timeouts} store calls past the deadline, {waiting} sessions waiting; \
         leases again {:.2} s after the lock went",
        back.elapsed().as_secs_f64()
    );
}
