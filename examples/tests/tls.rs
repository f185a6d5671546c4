//! TLS to the shared stores: a PostgreSQL and a Redis of the test's own that take only TLS
//! connections, with a certificate authority the test makes. The example server stores its
//! leases there over TLS with the certificate checked; a plain connection and a certificate
//! from another authority are refused, and the server says why and stops.

mod lab;

use std::time::Duration;

use lab::{Certs, PrivatePostgres, PrivateRedis, Server, TempDir, free_port, path_str, run, server_port};

/// Starting the server on `store` fails, and its log names `why`.
fn refused(dir: &TempDir, store: &str, why: &str) {
    let server = Server::spawn_loopback(dir, store, server_port(), "");
    assert!(server.exited_within(Duration::from_secs(15)), "server started on {store}:\n{}", server.log_text());
    let log = server.log_text().to_lowercase();
    assert!(log.contains(why), "the refusal of {store} should mention {why:?}:\n{log}");
}

#[test]
fn postgres_over_tls_with_a_checked_certificate() {
    if !lab::available() {
        return;
    }
    let dir = TempDir::new("tls-pg");
    let certs = Certs::make(&dir, "pg");
    let stranger = Certs::make(&dir, "stranger");
    let pg = PrivatePostgres::start_tls(free_port(), &certs);
    let url = |mode: &str, ca: &std::path::Path| {
        format!("postgresql://postgres@127.0.0.1:{}/postgres?sslmode={mode}&sslrootcert={}", pg.port, ca.display())
    };

    let server = Server::loopback(&dir, &url("verify-full", &certs.ca), server_port(), "");
    let addr = server.probe(1).unwrap_or_else(|e| panic!("no lease over TLS: {e}\n{}", server.log_text()));
    let stored = pg.psql(&format!("SELECT count(*) FROM dhcp_leases WHERE state = 1 AND addr = {}", u32::from(addr)));
    assert_eq!(stored.trim(), "1", "the lease is in the TLS-only database");
    let encrypted = pg.psql(
        "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND client_addr IS NOT NULL",
    );
    assert_ne!(encrypted.trim(), "0", "the server's connections are encrypted");
    drop(server);

    // verify-ca checks the chain but not the name: connecting as "localhost" works too.
    let by_name = format!(
        "postgresql://postgres@localhost:{}/postgres?sslmode=verify-ca&sslrootcert={}",
        pg.port,
        certs.ca.display()
    );
    let server = Server::loopback(&dir, &by_name, server_port(), "");
    server.probe(2).unwrap_or_else(|e| panic!("no lease with verify-ca: {e}\n{}", server.log_text()));
    drop(server);

    refused(&dir, &url("verify-full", &stranger.ca), "certificate");
    refused(&dir, &format!("postgresql://postgres@127.0.0.1:{}/postgres?sslmode=disable", pg.port), "no encryption");
}

#[test]
fn redis_over_tls_with_a_checked_certificate() {
    let dir = TempDir::new("tls-redis");
    let certs = Certs::make(&dir, "redis");
    let stranger = Certs::make(&dir, "stranger");
    let port = free_port();
    let redis = PrivateRedis::start_tls(port, &certs);

    let store = format!("{}?prefix=tls:&tls-ca={}", redis.url(), certs.ca.display());
    let server = Server::loopback(&dir, &store, server_port(), "");
    let addr = server.probe(1).unwrap_or_else(|e| panic!("no lease over TLS: {e}\n{}", server.log_text()));
    let key = format!("tls:lease:{}", u32::from(addr));
    let state =
        run(["redis-cli", "--tls", "--cacert", &path_str(&certs.ca), "-p", &port.to_string(), "hget", &key, "state"]);
    assert_eq!(state.trim(), "1", "the bound lease is in the TLS-only Redis");
    drop(server);

    refused(&dir, &format!("{}?prefix=tls:&tls-ca={}", redis.url(), stranger.ca.display()), "certificate");
    refused(&dir, &format!("redis://localhost:{port}/?prefix=tls:"), "redis");
}
