//! Rate limits with real traffic in network namespaces: a host floods the server with
//! DISCOVERs from one MAC; the per-client limit lets its burst and rate through and drops the
//! rest (counted under their own statistic), while dhclient on another host is served at once.

mod lab;

use std::time::Instant;

use lab::{Lab, dhclient, text, values};

const CONFIG: &str = include_str!("../../dhcp-core/tests/fixtures/captured/lab.toml");
const TOKEN: &str = "limits-test-token";
const API: &str = "api-listen = \"127.0.0.1:8067\"\napi-token = \"limits-test-token\"";

/// Sends `count` DISCOVERs with `mac` as chaddr to the broadcast address over `secs` seconds,
/// from a host that has an address of its own (a plain UDP socket, no raw socket needed).
const FLOOD: &str = r#"
import socket, struct, sys, time
count, mac, secs = int(sys.argv[1]), bytes.fromhex(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"vcli")
s.bind(("0.0.0.0", 68))
for i in range(count):
    p = bytearray(240)
    p[0:3] = bytes([1, 1, 6])
    p[4:8] = struct.pack("!I", 0x5a000000 + i)
    p[28:34] = mac
    p[236:240] = bytes([99, 130, 83, 99])
    p += bytes([53, 1, 1, 255])
    s.sendto(bytes(p), ("255.255.255.255", 67))
    time.sleep(secs / count)
"#;

/// `GET /api/v1/stats` through dhcp-cli in the server's namespace.
fn stats(lab: &Lab) -> serde_json::Value {
    lab::cli_stats(lab, "http://127.0.0.1:8067", TOKEN)
}

fn counter(stats: &serde_json::Value, name: &str) -> u64 {
    stats[name].as_u64().unwrap_or_else(|| panic!("no {name} in {stats}"))
}

#[test]
fn a_flooding_mac_is_held_to_its_rate_while_other_clients_are_served() {
    if !lab::available() {
        return;
    }
    let mut lab = Lab::with_clients(2);
    let config = format!("{CONFIG}\n[limits]\nper-client = {{ rate = 1, burst = 5 }}\n");
    lab.start_server_with(&config, API);
    // The flooding host has an address, so that a plain UDP socket can broadcast.
    lab.client(0).ip(&["addr", "add", "10.199.250.250/16", "dev", "vcli"]);

    let started = Instant::now();
    let flood = lab
        .client(0)
        .command("python3")
        .args(["-c", FLOOD, "300", "02aa000000ff", "3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    // While it floods, dhclient on the other host gets its lease without a retry.
    let out = dhclient(&lab, 1, "served", &["-1"]);
    assert!(out.status.success(), "dhclient:\n{}\n{}", text(&out), lab.server_log());
    assert!(!values(&lab.hook_log("served"), "ip").is_empty(), "dhclient bound");
    let out = flood.wait_with_output().expect("the flood ends");
    assert!(out.status.success(), "flood: {}", text(&out));
    let seconds = started.elapsed().as_secs_f64();

    let stats = stats(&lab);
    let limited = counter(&stats, "pkt4-rate-limited-client");
    assert_eq!(counter(&stats, "pkt4-rate-limited"), limited, "only the per-client limit is set");
    // Through: the burst of 5, then 1 a second while it lasted; the rest dropped.
    let allowed = 5 + seconds.ceil() as u64 + 1;
    assert!(limited >= 300 - allowed, "{limited} of 300 dropped in {seconds:.1} s");
    let discovers = counter(&stats, "pkt4-discover-received");
    assert!(discovers <= allowed + 2, "{discovers} DISCOVERs reached the engine: {stats}");
    assert!(lab.server_log().contains("packets dropped over rate limits"), "the drops are logged");
    // The flood's offers are what got through, the rest never reached the engine.
    assert!(counter(&stats, "pkt4-offer-sent") <= allowed + 2, "{stats}");
}
