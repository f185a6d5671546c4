//! Hostile and careless clients against the example server, with real traffic in network
//! namespaces: a client that asks for address after address, a DECLINE of a mere offer,
//! option 82 sent by a directly attached client, and a DISCOVER flood from random MACs.
//!
//! The crafted packets come from a small Python script (stdlib sockets only) run in the
//! client's namespace; the flood from ISC perfdhcp; the clients that must still be served are
//! ISC dhclient. Needs root (DHCP_SKIP_NETNS=1 skips).

mod lab;

use std::time::{Duration, Instant};

use lab::{Lab, LeaseRow, dhclient, mac_of, text};

/// The real-client lab's config, plus a circuit-id reservation in each subnet.
fn config() -> String {
    let base = include_str!("../../dhcp-core/tests/fixtures/captured/lab.toml");
    base.replace(
        "[[subnets]]\nid = 2",
        "[[subnets.reservations]]\ncircuit-id = \"port-7\"\nip-address = \"10.199.0.77\"\n\n[[subnets]]\nid = 2",
    ) + "\n[[subnets.reservations]]\ncircuit-id = \"port-7\"\nip-address = \"10.77.0.77\"\n"
}

/// Sends DHCP messages from vcli (broadcast, from port 68, broadcast flag set) and prints one
/// line per reply: `REPLY type=N yiaddr=A opt82=HEX`. Arguments are steps:
/// `KIND,MAC[,requested=IP][,server=IP][,opt82=HEX]` with KIND discover, request or decline.
const CLIENT_PY: &str = r#"
import random, socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, 25, b"vcli\0")
s.bind(("0.0.0.0", 68))
s.settimeout(0.2)
KINDS = {"discover": 1, "request": 3, "decline": 4}
for step in sys.argv[1:]:
    kind, mac, *rest = step.split(",")
    args = dict(r.split("=", 1) for r in rest)
    xid = random.getrandbits(32)
    chaddr = bytes.fromhex(mac.replace(":", "")).ljust(16, b"\0")
    pkt = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000, bytes(4), bytes(4), bytes(4), bytes(4), chaddr, bytes(64), bytes(128))
    pkt += bytes([99, 130, 83, 99, 53, 1, KINDS[kind]])
    if "requested" in args:
        pkt += bytes([50, 4]) + socket.inet_aton(args["requested"])
    if "server" in args:
        pkt += bytes([54, 4]) + socket.inet_aton(args["server"])
    if "opt82" in args:
        o = bytes.fromhex(args["opt82"])
        pkt += bytes([82, len(o)]) + o
    pkt += bytes([255])
    s.sendto(pkt, ("255.255.255.255", 67))
    deadline = time.time() + 1.5
    while time.time() < deadline:
        try:
            data, _ = s.recvfrom(2048)
        except socket.timeout:
            continue
        if len(data) < 240 or data[0] != 2 or struct.unpack("!I", data[4:8])[0] != xid:
            continue
        opts, i, mtype, o82 = data[240:], 0, 0, ""
        while i < len(opts) and opts[i] != 255:
            if opts[i] == 0:
                i += 1
                continue
            code, ln = opts[i], opts[i + 1]
            val = opts[i + 2:i + 2 + ln]
            if code == 53:
                mtype = val[0]
            if code == 82:
                o82 = val.hex()
            i += 2 + ln
        print("REPLY step=%s type=%d yiaddr=%s opt82=%s" % (kind, mtype, socket.inet_ntoa(data[16:20]), o82 or "-"), flush=True)
        break
    else:
        print("NOREPLY step=%s" % kind, flush=True)
"#;

/// One reply line of [`CLIENT_PY`]: (message type, yiaddr, option 82 in hex or "-"), or None.
fn replies(out: &str) -> Vec<Option<(u8, String, String)>> {
    out.lines()
        .filter(|l| l.starts_with("REPLY") || l.starts_with("NOREPLY"))
        .map(|l| {
            if l.starts_with("NOREPLY") {
                return None;
            }
            let field = |k: &str| {
                l.split_whitespace().find_map(|w| w.strip_prefix(&format!("{k}="))).unwrap_or_default().to_owned()
            };
            Some((field("type").parse().unwrap_or(0), field("yiaddr"), field("opt82")))
        })
        .collect()
}

/// Runs [`CLIENT_PY`] in client 0's namespace (vcli gets 10.199.0.2 to send from).
fn crafted(lab: &Lab, steps: &[String]) -> Vec<Option<(u8, String, String)>> {
    let script = lab.write("client.py", CLIENT_PY);
    let ns = lab.client(0);
    if ns.addrs("vcli").is_empty() {
        ns.ip(&["addr", "add", "10.199.0.2/16", "dev", "vcli"]);
    }
    let mut args = vec!["timeout", "60", "/usr/bin/python3", script.to_str().expect("utf-8 path")];
    args.extend(steps.iter().map(String::as_str));
    let out = ns.output(&args);
    assert!(out.status.success(), "client script failed:\n{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let got = replies(&stdout);
    assert_eq!(got.len(), steps.len(), "{stdout}");
    got
}

const OFFER: u8 = 2;
const ACK: u8 = 5;
const SERVER: &str = "10.199.0.1";
const MAC: &str = "02:00:00:00:0b:01";

fn held_by<'a>(leases: &'a [LeaseRow], mac: &str) -> Vec<&'a LeaseRow> {
    leases.iter().filter(|l| l.hwaddr == mac && (l.state == "bound" || l.state == "offered")).collect()
}

#[test]
fn a_client_that_asks_for_many_addresses_ends_with_one() {
    if !lab::available() {
        return;
    }
    let mut lab = Lab::pair();
    lab.start_server(&config());
    let mut steps = vec![format!("discover,{MAC}")];
    let got = crafted(&lab, &steps);
    let offered = got[0].clone().expect("an offer").1;
    steps = vec![format!("request,{MAC},requested={offered},server={SERVER}")];
    // Then REQUESTs in SELECTING state for five other addresses, never offered to it.
    let wanted: Vec<String> = (100..105).map(|n| format!("10.199.1.{n}")).collect();
    steps.extend(wanted.iter().map(|a| format!("request,{MAC},requested={a},server={SERVER}")));
    let got = crafted(&lab, &steps);
    for (step, reply) in steps.iter().zip(&got) {
        let (kind, _, _) = reply.clone().unwrap_or_else(|| panic!("no reply to {step}"));
        assert_eq!(kind, ACK, "{step}");
    }
    let leases = lab.leases();
    let held = held_by(&leases, MAC);
    assert_eq!(held.len(), 1, "one lease per client: {leases:#?}");
    assert_eq!((held[0].address.as_str(), held[0].state.as_str()), (wanted[4].as_str(), "bound"));
    for addr in std::iter::once(&offered).chain(&wanted[..4]) {
        let row = leases.iter().find(|l| l.address == *addr).expect("kept for affinity");
        assert_eq!(row.state, "released", "{addr} was freed when the client moved");
    }
}

#[test]
fn a_decline_of_an_offer_changes_nothing() {
    if !lab::available() {
        return;
    }
    let mut lab = Lab::pair();
    lab.start_server(&config());
    let got = crafted(&lab, &[format!("discover,{MAC}")]);
    let offered = got[0].clone().expect("an offer").1;
    let got = crafted(&lab, &[format!("decline,{MAC},requested={offered},server={SERVER}")]);
    assert_eq!(got, vec![None], "no reply to a DECLINE");
    let leases = lab.leases();
    let row = leases.iter().find(|l| l.address == offered).expect("the offer");
    assert_eq!(row.state, "offered", "the offered address is not put in probation: {leases:#?}");
    assert!(!leases.iter().any(|l| l.state == "declined"), "{leases:#?}");
    // The client can still take the address it was offered.
    let got = crafted(&lab, &[format!("request,{MAC},requested={offered},server={SERVER}")]);
    assert_eq!(got[0].clone().map(|r| (r.0, r.1)), Some((ACK, offered)));
}

#[test]
fn option_82_from_a_directly_attached_client_is_ignored() {
    if !lab::available() {
        return;
    }
    let mut lab = Lab::pair();
    lab.start_server(&config());
    // Circuit id "port-7" (reserved 10.199.0.77 and 10.77.0.77), link selection 10.77.0.0 and
    // the RFC 8357 relay port: all a relay's to say, none a client's.
    let opt82 = format!("0106{}0504{}1300", hex(b"port-7"), hex(&[10, 77, 0, 0]));
    let got = crafted(&lab, &[format!("discover,{MAC},opt82={opt82}")]);
    let (kind, yiaddr, echoed) = got[0].clone().expect("the client is still served");
    assert_eq!(kind, OFFER);
    assert!(yiaddr.starts_with("10.199.1."), "a pool address of its own segment, not a reservation: {yiaddr}");
    assert_eq!(echoed, "-", "option 82 is not echoed to a client");
    let got = crafted(&lab, &[format!("request,{MAC},requested=10.199.0.77,server={SERVER}")]);
    assert_eq!(got[0].clone().map(|r| r.0), Some(6), "the circuit's reserved address is NAKed");
    assert!(!lab.leases().iter().any(|l| l.address.ends_with(".77")), "{:#?}", lab.leases());
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_discover_flood_holds_no_more_offers_than_the_bound_and_known_clients_are_served() {
    if !lab::available() {
        return;
    }
    const BOUND: usize = 40;
    // Client 0 floods; client 1 has a reservation; client 2 has a lease from before.
    let mut lab = Lab::with_clients(3);
    lab.client(1).ip(&["link", "set", "vcli", "address", "02:00:00:00:00:42"]);
    lab.start_server(&config().replace("lease-time = 3600", &format!("lease-time = 3600\nmax-offers = {BOUND}")));
    let out = dhclient(&lab, 2, "before", &["-1"]);
    assert!(out.status.success(), "dhclient failed:\n{}", text(&out));
    let _ = dhclient(&lab, 2, "before", &["-x"]);
    lab.client(2).ip(&["addr", "flush", "dev", "vcli"]);
    let known = mac_of(&lab, 2);
    let before = held_by(&lab.leases(), &known)[0].address.clone();

    // DISCOVER-only exchanges (-i) from 100,000 random MACs at 5,000 per second for 20 s, as a
    // relay at 10.199.0.2 (perfdhcp always relays in DHCPv4).
    lab.client(0).ip(&["addr", "add", "10.199.0.2/16", "dev", "vcli"]);
    let flood = lab.client(0).spawn(
        &["perfdhcp", "-4", "-g", "single", "-i", "-r", "5000", "-R", "100000", "-p", "20", "-l", "vcli", SERVER],
        &lab.path("perfdhcp.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        let offered = lab.leases().iter().filter(|l| l.state == "offered").count();
        assert!(offered <= BOUND, "{offered} offers held, the bound is {BOUND}");
    }
    let offered = lab.leases().iter().filter(|l| l.state == "offered").count();
    assert!(offered >= BOUND / 2, "the flood got offers until the bound: {offered}");

    // Under the flood, the reserved client and the one with a lease get theirs at once.
    for (client, name, want) in [(1, "reserved", "10.199.0.42".to_owned()), (2, "returning", before)] {
        let start = Instant::now();
        let out = dhclient(&lab, client, name, &["-1"]);
        assert!(out.status.success(), "{name}: dhclient failed under the flood:\n{}", text(&out));
        let took = start.elapsed();
        assert!(took < Duration::from_secs(10), "{name}: {took:?}, beyond dhclient's first retries");
        let ip = lab::values(&lab.hook_log(name), "ip").into_iter().rfind(|v| !v.is_empty());
        assert_eq!(ip.as_deref(), Some(want.as_str()), "{name}");
        eprintln!("{name}: bound in {took:?} under the flood");
    }
    let offered = lab.leases().iter().filter(|l| l.state == "offered").count();
    assert!(offered <= BOUND, "{offered} offers held, the bound is {BOUND}");
    let log = lab.server_log();
    assert!(log.contains("OfferLimit"), "the flood's DISCOVERs over the bound were dropped:\n{}", tail(&log));
    // The flood ran its course: perfdhcp reports what it sent.
    let status = flood.wait(Duration::from_secs(40));
    assert!(status.is_some(), "perfdhcp ended");
    let report = std::fs::read_to_string(lab.path("perfdhcp.log")).unwrap_or_default();
    let sent = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("sent packets: "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("perfdhcp reports what it sent:\n{report}"));
    eprintln!("perfdhcp sent {sent} DISCOVERs");
    assert!(sent >= 90_000, "the flood sent {sent} DISCOVERs, not the 100,000 asked for:\n{report}");
}

fn tail(log: &str) -> String {
    log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
}
