//! The one entry point, end to end on loopback: a config file in, a server that leases, counts,
//! serves its API with last-seen times, and writes the lease dump when it stops.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use dhcp_core::Counter;
use dhcp_net::{ProbeMode, ProbeOptions, probe};
use dhcp_server::api::model::LeaseFilter;
use dhcp_server::api::{AdminClient, ClientError};
use dhcp_server::{ServerConfig, Service};

const TOKEN: &str = "service-test-token";

fn config_text(port: u16, dump: &std::path::Path) -> String {
    format!(
        r#"
lease-time = 600
[server]
listen = ["127.0.0.1"]
server-port = {port}
client-port = {}
api-listen = "127.0.0.1:0"
api-token = "{TOKEN}"
lease-dump = "{}"

[[subnets]]
id = 1
subnet = "192.0.2.0/24"
pools = ["192.0.2.10-192.0.2.20"]
relay-addresses = ["127.0.0.2"]
options = {{ routers = ["192.0.2.1"] }}
"#,
        port + 1,
        dump.display()
    )
}

fn relay_probe(port: u16, mac: u8) -> ProbeOptions {
    let mut options = ProbeOptions::new(ProbeMode::Relay {
        local: Ipv4Addr::new(127, 0, 0, 2),
        server: SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
    });
    options.mac = [2, 0, 0, 0, 0, mac];
    options.timeout = Duration::from_secs(2);
    options.release = false;
    options
}

#[tokio::test(flavor = "current_thread")]
async fn a_config_file_runs_the_whole_server() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = 40_000 + (std::process::id() % 5_000) as u16 * 2;
    let dump = dir.path().join("leases.csv");
    let path = dir.path().join("server.toml");
    std::fs::write(&path, config_text(port, &dump)).expect("write config");

    let running = Service::from_file(&path).expect("valid").start().await.expect("starts");
    let engine = std::sync::Arc::clone(running.engine());
    let api = format!("http://{}", running.api_addr().expect("API bound"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(running.run(async {
        let _ = stopped.await;
    }));

    let lease = tokio::task::spawn_blocking(move || probe(&relay_probe(port, 7))).await.expect("probe thread");
    let lease = lease.expect("a lease from the service");
    assert_eq!(lease.addr, Ipv4Addr::new(192, 0, 2, 10));
    assert_eq!(lease.routers, vec![Ipv4Addr::new(192, 0, 2, 1)]);
    assert_eq!(engine.stats().get(Counter::AckSent), 1);

    // The API, through the typed client: the lease with its last-seen time (the observer the
    // service puts on the sockets), the config file's reservations.
    let listed = tokio::task::spawn_blocking(move || {
        let client = AdminClient::new(&api, TOKEN);
        (client.leases(&LeaseFilter::default()), client.reservations(), client.health())
    })
    .await
    .expect("client thread");
    let leases = listed.0.expect("leases").leases;
    assert_eq!(leases.len(), 1);
    assert_eq!((leases[0].address, leases[0].state.as_str()), (lease.addr, "bound"));
    assert_eq!(leases[0].hw_address, "02:00:00:00:00:07");
    assert!(leases[0].last_seen.is_some_and(|t| t > 1_700_000_000), "{:?}", leases[0]);
    assert!(listed.1.expect("reservations").reservations.is_empty());
    assert!(listed.2.expect("healthy").ready);

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), serving).await.expect("stops").expect("task").expect("served");
    let csv = std::fs::read_to_string(&dump).expect("the lease dump is written at shutdown");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "address,hwaddr,client_id,state,expire,subnet_id,hostname");
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[1].starts_with("192.0.2.10,02:00:00:00:00:07,"), "{csv}");
    assert!(lines[1].contains(",bound,"), "{csv}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_service_without_a_file_refuses_config_edits_and_a_busy_port() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = 45_000 + (std::process::id() % 5_000) as u16 * 2;
    let text = config_text(port, &dir.path().join("leases.csv"));
    let config = ServerConfig::from_toml_str(&text).expect("valid");
    let running = Service::from_config(config.clone()).start().await.expect("starts");
    let api = format!("http://{}", running.api_addr().expect("API bound"));

    // A second service whose API address is taken fails at start, naming the API (its DHCP
    // socket would bind: SO_REUSEADDR).
    let mut busy = config;
    busy.settings.api_listen = running.api_addr();
    let refused = Service::from_config(busy).start().await.expect_err("the API's port is taken");
    assert!(refused.to_string().contains("management API"), "{refused}");

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(running.run(async {
        let _ = stopped.await;
    }));
    let answer =
        tokio::task::spawn_blocking(move || AdminClient::new(&api, TOKEN).reservations()).await.expect("client thread");
    assert!(matches!(answer, Err(ClientError::Api { status: 501, .. })), "{answer:?}");
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), serving).await.expect("stops").expect("task").expect("served");
}

/// The leases of [`lease_listings_page_by_address_and_stream_the_same_leases`]: `n` of them in two
/// subnets and every state, stored in an order other than their addresses'.
fn scattered_leases(n: u32, now: dhcp_core::Timestamp) -> Vec<dhcp_core::Lease> {
    use dhcp_core::{ClientId, HwAddr, Lease, LeaseState};
    (0..n)
        .map(|i| (i * 7_919) % n)
        .map(|i| {
            let hw = HwAddr::mac([2, 0, 0, 0, (i >> 8) as u8, i as u8]);
            let until = now.plus_secs(3_600);
            let state = match i % 5 {
                0 => LeaseState::Bound { expires: until },
                1 => LeaseState::Offered { until },
                2 => LeaseState::Declined { until },
                3 => LeaseState::Released,
                _ => LeaseState::Expired,
            };
            Lease {
                // Across /24 boundaries: 10.9.0.0 to 10.9.11.183 for 3,000.
                addr: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 9, 0, 0)) + i),
                client: ClientId::from_hardware(1, &hw),
                hwaddr: hw,
                subnet: if i % 3 == 0 { 2 } else { 1 },
                state,
                hostname: (i % 2 == 0).then(|| format!("host-{i}")),
            }
        })
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn lease_listings_page_by_address_and_stream_the_same_leases() {
    use dhcp_core::LeaseStore;
    use dhcp_server::api::model::{LeaseInfo, MAX_LEASE_LIMIT};

    let dir = tempfile::tempdir().expect("tmp");
    let port = 30_000 + (std::process::id() % 5_000) as u16 * 2;
    let config = ServerConfig::from_toml_str(&config_text(port, &dir.path().join("leases.csv"))).expect("valid");
    let running = Service::from_config(config).start().await.expect("starts");
    let api = format!("http://{}", running.api_addr().expect("API bound"));
    let now = dhcp_net::now();
    let stored = scattered_leases(3_000, now);
    for lease in &stored {
        let claimed = running.engine().store().claim(lease, now).await.expect("the store answers");
        assert!(claimed.is_some(), "{lease:?} is stored");
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(running.run(async {
        let _ = stopped.await;
    }));

    let checked = tokio::task::spawn_blocking(move || {
        let client = AdminClient::new(&api, TOKEN);
        let one_mac = "02-00-00-00-07-D0".to_owned(); // lease 2,000, spelt another way
        let filters = [
            LeaseFilter::default(),
            LeaseFilter { subnet: Some(2), ..LeaseFilter::default() },
            LeaseFilter { state: Some("bound".into()), ..LeaseFilter::default() },
            LeaseFilter { subnet: Some(1), state: Some("released".into()), ..LeaseFilter::default() },
            LeaseFilter { mac: Some(one_mac), ..LeaseFilter::default() },
            LeaseFilter { subnet: Some(9), ..LeaseFilter::default() },
        ];
        for filter in &filters {
            let mut expected: Vec<LeaseInfo> = stored
                .iter()
                .filter(|l| filter.subnet.is_none_or(|s| l.subnet == s))
                .filter(|l| filter.state.as_deref().is_none_or(|s| l.state.name() == s))
                .filter(|l| filter.mac.is_none() || l.addr == Ipv4Addr::new(10, 9, 7, 208))
                .map(|l| LeaseInfo::new(l, None))
                .collect();
            expected.sort_by_key(|l| l.address);
            // The whole list, streamed, in address order.
            let whole = client.leases(filter).expect("the whole list");
            assert_eq!(whole.next, None);
            assert_eq!(whole.leases, expected, "{filter:?}");
            // Page by page, across page boundaries, the same leases.
            for limit in [7, 1_000, MAX_LEASE_LIMIT] {
                let mut union = Vec::new();
                let mut after = None;
                loop {
                    let page = client.leases_page(filter, after, limit).expect("a page");
                    assert!(page.leases.len() <= limit, "{filter:?} limit {limit}");
                    union.extend(page.leases.iter().cloned());
                    match page.next {
                        Some(next) => {
                            assert_eq!(page.leases.len(), limit, "only the last page is short");
                            assert_eq!(Some(next), page.leases.last().map(|l| l.address), "next is the page's last");
                            after = Some(next);
                        }
                        None => break,
                    }
                }
                assert_eq!(union, whole.leases, "{filter:?} in pages of {limit}");
            }
        }
        // `after` without `limit`: the rest of the list, streamed.
        let tail = client.get("/api/v1/leases?subnet=2&after=10.9.11.0").expect("the tail");
        // Lease numbers 2,817 to 2,997 in steps of 3.
        assert_eq!(tail["leases"].as_array().map(Vec::len), Some(61));
        assert!(tail.get("next").is_none(), "a whole listing has no next");
        let page = client.get("/api/v1/leases?limit=2&state=bound").expect("a page");
        assert_eq!(page["next"], serde_json::json!("10.9.0.5"), "{page}");

        let refused = |query: &str| match client.get(&format!("/api/v1/leases?{query}")) {
            Err(ClientError::Api { status, field, .. }) => (status, field),
            other => panic!("{query}: expected a refusal, got {other:?}"),
        };
        for (query, field) in [
            ("limit=0", "limit"),
            ("limit=10001", "limit"),
            ("limit=many", "limit"),
            ("after=10.9.0", "after"),
            ("after=10.9.0.1&limit=", "limit"),
            ("limit=5&after=ten", "after"),
            ("subnet=x", "subnet"),
            ("state=happy", "state"),
            ("cursor=10.9.0.1", "cursor"),
        ] {
            assert_eq!(refused(query), (400, Some(field.to_owned())), "{query}");
        }
    })
    .await;

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), serving).await.expect("stops").expect("task").expect("served");
    checked.expect("the listing checks");
}

/// Stores [`scattered_leases`] in a service on the store `url` and checks that its listings,
/// whole and in pages of each of `limits`, give them in address order: on a store that reads
/// pages natively (SQLite) and one that does not (Redis), where the other test runs the memory
/// store.
async fn listings_on_a_store(url: &str, port: u16, limits: &'static [usize]) {
    use dhcp_core::LeaseStore;
    use dhcp_server::api::model::LeaseInfo;

    let dir = tempfile::tempdir().expect("tmp");
    let text = config_text(port, &dir.path().join("leases.csv")).replacen(
        "[server]\n",
        &format!("[server]\nstore = \"{url}\"\n"),
        1,
    );
    let config = ServerConfig::from_toml_str(&text).expect("valid");
    let running = Service::from_config(config).start().await.expect("starts");
    let api = format!("http://{}", running.api_addr().expect("API bound"));
    let now = dhcp_net::now();
    let stored = scattered_leases(700, now);
    for lease in &stored {
        let claimed = running.engine().store().claim(lease, now).await.expect("the store answers");
        assert!(claimed.is_some(), "{lease:?} is stored");
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(running.run(async {
        let _ = stopped.await;
    }));

    let checked = tokio::task::spawn_blocking(move || {
        let client = AdminClient::new(&api, TOKEN);
        let filters = [
            LeaseFilter::default(),
            LeaseFilter { subnet: Some(2), ..LeaseFilter::default() },
            LeaseFilter { subnet: Some(1), state: Some("declined".into()), ..LeaseFilter::default() },
        ];
        for filter in &filters {
            let mut expected: Vec<LeaseInfo> = stored
                .iter()
                .filter(|l| filter.subnet.is_none_or(|s| l.subnet == s))
                .filter(|l| filter.state.as_deref().is_none_or(|s| l.state.name() == s))
                .map(|l| LeaseInfo::new(l, None))
                .collect();
            expected.sort_by_key(|l| l.address);
            let whole = client.leases(filter).expect("the whole list");
            assert_eq!(whole.leases, expected, "{filter:?}");
            for &limit in limits {
                let mut union = Vec::new();
                let mut after = None;
                loop {
                    let page = client.leases_page(filter, after, limit).expect("a page");
                    union.extend(page.leases.iter().cloned());
                    match page.next {
                        Some(next) => {
                            assert_eq!(page.leases.len(), limit, "only the last page is short");
                            after = Some(next);
                        }
                        None => break,
                    }
                }
                assert_eq!(union, expected, "{filter:?} in pages of {limit}");
            }
        }
    })
    .await;

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), serving).await.expect("stops").expect("task").expect("served");
    checked.expect("the listing checks");
}

#[tokio::test(flavor = "current_thread")]
async fn lease_listings_on_sqlite_read_pages_of_the_store() {
    let dir = tempfile::tempdir().expect("tmp");
    let url = format!("sqlite://{}", dir.path().join("leases.db").display());
    listings_on_a_store(&url, 20_000 + (std::process::id() % 5_000) as u16 * 2, &[9, 256]).await;
}

#[tokio::test(flavor = "current_thread")]
async fn lease_listings_on_redis_page_through_whole_listings() {
    let server = std::env::var("DHCP_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let url = format!("{server}?prefix=dhcptest-listing:{}:", std::process::id());
    // Every page is a whole listing of Redis: large pages only, to keep the test short.
    listings_on_a_store(&url, 55_000 + (std::process::id() % 5_000) as u16 * 2, &[256]).await;
}
