//! Both drivers serving a relayed client over loopback, on unprivileged ports: the probe acts
//! as a relay at 127.0.0.2 and asks for replies on its own port (RFC 8357).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dhcp_core::{Config, Engine, LeaseState, LeaseStore, block_on};
use dhcp_net::{Listen, NetSettings, ProbeMode, ProbeOptions, Server, probe};
use dhcp_store::MemoryStore;

/// The engine's config and the sockets: the server on 127.0.0.1:`port`, clients on `port + 1`.
fn config(port: u16) -> (Config, NetSettings) {
    let text = r#"
lease-time = 600
options = { domain-name-servers = ["192.0.2.53"], domain-name = "loop.test" }

[[subnets]]
id = 1
subnet = "192.0.2.0/24"
pools = ["192.0.2.10-192.0.2.20"]
relay-addresses = ["127.0.0.2"]
options = { routers = ["192.0.2.1"] }
"#;
    let settings = NetSettings {
        listen: vec![Listen::Address(Ipv4Addr::LOCALHOST)],
        server_port: port,
        client_port: port + 1,
        ..NetSettings::default()
    };
    (Config::from_toml_str(text).expect("valid config"), settings)
}

fn probe_options(port: u16, mac: u8, release: bool) -> ProbeOptions {
    let mut options = ProbeOptions::new(ProbeMode::Relay {
        local: Ipv4Addr::new(127, 0, 0, 2),
        server: SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
    });
    options.mac = [2, 0, 0, 0, 0, mac];
    options.timeout = Duration::from_secs(2);
    options.release = release;
    options
}

#[test]
fn blocking_driver_serves_a_relayed_dora_and_release() {
    let port = 20_000 + (std::process::id() % 10_000) as u16 * 2;
    let (config, settings) = config(port);
    let engine = Arc::new(Engine::new(config, MemoryStore::new()));
    let server = Server::bind(Arc::clone(&engine), settings).expect("bind loopback");
    let stop = Arc::new(AtomicBool::new(false));
    let lease = std::thread::scope(|scope| {
        let stop_flag = Arc::clone(&stop);
        let serving = scope.spawn(move || server.run_blocking(&stop_flag));
        let kept = probe(&probe_options(port, 1, false));
        let released = probe(&probe_options(port, 2, true));
        // The probe sends its RELEASE without waiting for anything; give the server a moment.
        if let Ok(lease) = &released {
            for _ in 0..100 {
                let stored = block_on(engine.store().lease_by_addr(lease.addr)).and_then(Result::ok).flatten();
                if stored.is_some_and(|l| l.state == LeaseState::Released) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        stop.store(true, Ordering::Relaxed);
        serving.join().expect("server thread").expect("server ran");
        (kept, released)
    });
    let kept = lease.0.expect("a lease");
    assert_eq!(kept.addr, Ipv4Addr::new(192, 0, 2, 10));
    assert_eq!(kept.routers, vec![Ipv4Addr::new(192, 0, 2, 1)]);
    assert_eq!(kept.dns_servers, vec![Ipv4Addr::new(192, 0, 2, 53)]);
    assert_eq!(kept.domain_name.as_deref(), Some("loop.test"));
    assert_eq!(kept.lease_time, Some(600));
    let released = lease.1.expect("a second lease");
    assert_eq!(released.addr, Ipv4Addr::new(192, 0, 2, 11));

    let stored = block_on(engine.store().lease_by_addr(kept.addr)).expect("ready").expect("store").expect("lease");
    assert!(matches!(stored.state, LeaseState::Bound { .. }), "{stored:?}");
    let freed = block_on(engine.store().lease_by_addr(released.addr)).expect("ready").expect("store").expect("lease");
    assert_eq!(freed.state, LeaseState::Released);
}

#[tokio::test(flavor = "current_thread")]
async fn tokio_driver_serves_and_shuts_down() {
    let port = 30_000 + (std::process::id() % 10_000) as u16 * 2;
    let (config, settings) = config(port);
    let engine = Arc::new(Engine::new(config, MemoryStore::new()));
    let server = Arc::new(Server::bind(Arc::clone(&engine), settings).expect("bind loopback"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(Arc::clone(&server).serve(async {
        let _ = rx.await;
    }));
    let got = tokio::task::spawn_blocking(move || probe(&probe_options(port, 3, false))).await.expect("probe thread");
    let lease = got.expect("a lease through the tokio driver");
    assert_eq!(lease.addr, Ipv4Addr::new(192, 0, 2, 10));
    tx.send(()).expect("server still running");
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("shuts down promptly")
        .expect("task")
        .expect("served");
    assert_eq!(engine.stats().get(dhcp_core::Counter::AckSent), 1);
}

/// The blocking driver's ping check, on loopback, where every 127/8 address answers: each
/// address of the pool is found in use and set aside, and the DISCOVER is given up after
/// three. Needs an ICMP socket (root); skipped without one.
#[test]
fn blocking_driver_sets_aside_addresses_that_answer_a_ping() {
    let root = std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root {
        return;
    }
    let port = 24_000 + (std::process::id() % 10_000) as u16 * 2;
    let text = r#"
decline-probation-period = 600
ping-check = true
ping-timeout-ms = 1000

[[subnets]]
id = 1
subnet = "127.100.0.0/24"
pools = ["127.100.0.10-127.100.0.14"]
relay-addresses = ["127.0.0.2"]
"#;
    let (_, settings) = config(port);
    let engine = Arc::new(Engine::new(Config::from_toml_str(text).expect("valid config"), MemoryStore::new()));
    let server = Server::bind(Arc::clone(&engine), settings).expect("bind loopback");
    let stop = Arc::new(AtomicBool::new(false));
    let got = std::thread::scope(|scope| {
        let stop_flag = Arc::clone(&stop);
        let serving = scope.spawn(move || server.run_blocking(&stop_flag));
        let got = probe(&probe_options(port, 4, false));
        stop.store(true, Ordering::Relaxed);
        serving.join().expect("server thread").expect("server ran");
        got
    });
    assert!(got.is_err(), "every address answered, so nothing was offered: {got:?}");
    let leases = block_on(engine.store().list(None)).expect("ready").expect("store");
    let declined: Vec<_> = leases.iter().filter(|l| matches!(l.state, LeaseState::Declined { .. })).collect();
    // The probe's DISCOVER and its retransmissions each find up to three answering addresses.
    assert!(declined.len() >= 3, "addresses that answered are set aside: {leases:?}");
    assert_eq!(engine.stats().get(dhcp_core::Counter::PingConflicts), declined.len() as u64);
    assert_eq!(engine.stats().get(dhcp_core::Counter::OfferSent), 0, "no unchecked offer went out");
}
