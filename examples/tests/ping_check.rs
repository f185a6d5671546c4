//! The ping check before an offer, with real traffic in network namespaces: a host squatting
//! on a pool address (an address configured by hand, answering pings) is found, the address is
//! set aside like a declined one and dhclient is offered another; and while a check waits for
//! its timeout, other clients are served. Needs root (DHCP_SKIP_NETNS=1 skips).

mod lab;

use std::time::{Duration, Instant};

use lab::{Lab, dhclient, text, values};

const CONFIG: &str = include_str!("../../dhcp-core/tests/fixtures/captured/lab.toml");
const TOKEN: &str = "ping-test-token";
const API: &str = "api-listen = \"127.0.0.1:8067\"\napi-token = \"ping-test-token\"";
/// The first address the allocator hands out from the lab's pools.
const FIRST_POOL_ADDRESS: &str = "10.199.1.10";

/// The lab's config with ping checks on, waiting `timeout_ms` for an answer.
fn config(timeout_ms: u32) -> String {
    format!("ping-check = true\nping-timeout-ms = {timeout_ms}\n{CONFIG}")
}

/// `GET /api/v1/stats` through dhcp-cli in the server's namespace.
fn stats(lab: &Lab) -> serde_json::Value {
    lab::cli_stats(lab, "http://127.0.0.1:8067", TOKEN)
}

/// The address dhclient's hook last bound for `name`.
fn bound(lab: &Lab, name: &str) -> Option<String> {
    values(&lab.hook_log(name), "ip").into_iter().rfind(|v| !v.is_empty())
}

#[test]
fn a_host_squatting_on_a_pool_address_is_found_and_another_address_offered() {
    if !lab::available() {
        return;
    }
    let mut lab = Lab::with_clients(2);
    // Host 0 uses the pool's first address without a lease: it answers pings for it.
    lab.client(0).ip(&["addr", "add", &format!("{FIRST_POOL_ADDRESS}/16"), "dev", "vcli"]);
    lab.start_server_with(&config(500), API);

    let out = dhclient(&lab, 1, "newcomer", &["-1"]);
    assert!(out.status.success(), "dhclient:\n{}\n{}", text(&out), lab.server_log());
    let got = bound(&lab, "newcomer").expect("dhclient bound an address");
    assert_ne!(got, FIRST_POOL_ADDRESS, "the squatted address was offered");
    assert!(got.starts_with("10.199."), "an address of the lab's subnet: {got}");

    let leases = lab.leases();
    let squatted = leases.iter().find(|l| l.address == FIRST_POOL_ADDRESS).expect("the squatted address is recorded");
    assert_eq!(squatted.state, "declined", "set aside like a declined address: {squatted:?}");
    let stats = stats(&lab);
    assert_eq!(stats["v4-ping-check-conflicts"].as_u64(), Some(1), "{stats}");
    assert_eq!(stats["subnet[1].declined-addresses"].as_u64(), Some(1), "{stats}");
    assert!(lab.server_log().contains("answered a ping"), "the conflict is logged");

    // The next new client is not offered the squatted address either.
    lab.client(0).ip(&["addr", "flush", "dev", "vcli"]);
    let out = dhclient(&lab, 0, "second", &["-1"]);
    assert!(out.status.success(), "dhclient:\n{}", text(&out));
    let second = bound(&lab, "second").expect("bound");
    assert!(second != FIRST_POOL_ADDRESS && second != got, "{second}");
}

#[test]
fn a_ping_check_waiting_for_its_timeout_holds_up_no_other_client() {
    if !lab::available() {
        return;
    }
    const TIMEOUT: Duration = Duration::from_millis(3000);
    let mut lab = Lab::with_clients(2);
    lab.client(1).ip(&["link", "set", "vcli", "address", "02:00:00:00:00:42"]);
    lab.start_server_with(&config(3000), API);

    // Host 0 is new: its offer waits for the check of a free address to time out. Host 1 has
    // a reservation (no check): it is served meanwhile.
    let started = Instant::now();
    let ((ok, waited), (out, reserved_took)) = std::thread::scope(|scope| {
        let waiting = scope.spawn(|| {
            let result = dhclient(&lab, 0, "waiting", &["-1"]);
            (result.status.success(), started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(300));
        let reserved_start = Instant::now();
        let out = dhclient(&lab, 1, "reserved", &["-1"]);
        let reserved = (out, reserved_start.elapsed());
        (waiting.join().expect("the waiting client's thread"), reserved)
    });
    assert!(out.status.success(), "dhclient:\n{}", text(&out));
    assert_eq!(bound(&lab, "reserved").as_deref(), Some("10.199.0.42"));
    assert!(ok, "the checked client is served in the end:\n{}", lab.server_log());
    eprintln!("reserved client bound in {reserved_took:?}; the checked one in {waited:?}");
    assert!(waited >= TIMEOUT, "the checked client's offer came after the check: {waited:?}");
    assert!(
        reserved_took + Duration::from_millis(300) < waited,
        "the reserved client ({reserved_took:?}) was served before the check ended ({waited:?})"
    );
    assert!(reserved_took < TIMEOUT, "the reserved client waited for the other's check: {reserved_took:?}");
    let stats = stats(&lab);
    assert_eq!(stats["v4-ping-check-conflicts"].as_u64(), Some(0), "nothing answered: {stats}");
}
