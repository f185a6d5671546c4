//! Packets captured from real clients (dhclient, udhcpc, dhcpcd, nmap, perfdhcp) talking to
//! the example server in the network-namespace lab, replayed through the engine.
//!
//! Each capture holds the clients' requests and the server's replies as they crossed the wire.
//! Replaying the requests, at their capture times, into a fresh engine with the lab's config
//! must give the same kind of reply, to the same address, as the server sent then: OFFER for
//! OFFER, ACK for ACK, NAK for NAK, and nothing where it sent nothing (RELEASE, DECLINE).
//! The captures were taken with `DHCP_CAPTURE_DIR=DIR cargo test -p dhcp-examples --test
//! real_clients` (see the README).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

use dhcp_core::wire::Packet;
use dhcp_core::{Config, Engine, MessageType, Outcome, RecvMeta, Timestamp, block_on};
use dhcp_store::MemoryStore;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 199, 0, 1);

/// One UDP datagram from a capture.
struct Datagram {
    time: u64,
    src: SocketAddrV4,
    dst_port: u16,
    payload: Vec<u8>,
}

fn u32_le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("four bytes"))
}

/// Reads the UDP datagrams of a little-endian, Ethernet, microsecond pcap file.
fn read_pcap(path: &Path) -> Vec<Datagram> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(u32_le(&bytes, 0), 0xa1b2_c3d4, "{}: not a little-endian pcap", path.display());
    assert_eq!(u32_le(&bytes, 20), 1, "{}: not Ethernet", path.display());
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let time = u64::from(u32_le(&bytes, at));
        let len = u32_le(&bytes, at + 8) as usize;
        let frame = &bytes[at + 16..at + 16 + len];
        at += 16 + len;
        if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &frame[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if ip[9] != 17 {
            continue;
        }
        let src_ip = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let udp = &ip[ihl..];
        let src_port = u16::from_be_bytes([udp[0], udp[1]]);
        let dst_port = u16::from_be_bytes([udp[2], udp[3]]);
        let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
        out.push(Datagram {
            time,
            src: SocketAddrV4::new(src_ip, src_port),
            dst_port,
            payload: udp[8..udp_len].to_vec(),
        });
    }
    out
}

/// What the server sent for a request: message type and yiaddr, or nothing.
fn captured_answer(datagrams: &[Datagram], request: usize) -> Option<(MessageType, Ipv4Addr)> {
    let asked = Packet::parse(&datagrams[request].payload).expect("captured request parses");
    datagrams[request + 1..].iter().filter(|d| d.src.ip() == &SERVER || d.src.port() == 67).find_map(|d| {
        let reply = Packet::parse_reply(&d.payload).ok()?;
        (reply.xid() == asked.xid() && reply.chaddr() == asked.chaddr()).then(|| (reply.message_type(), reply.yiaddr()))
    })
}

fn replay(name: &str) -> usize {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/captured").join(format!("{name}.pcap"));
    let datagrams = read_pcap(&path);
    let config = Config::from_toml_str(include_str!("fixtures/captured/lab.toml")).expect("lab config");
    let engine = Engine::new(config, MemoryStore::new());
    let mut out = Vec::new();
    let mut checked = 0;
    for (i, d) in datagrams.iter().enumerate() {
        // Requests are what clients and relays sent to the server port, not the server's own.
        if d.dst_port != 67 || d.src.ip() == &SERVER {
            continue;
        }
        let request = Packet::parse(&d.payload).unwrap_or_else(|e| panic!("{name} packet {i}: {e}"));
        let expected = captured_answer(&datagrams, i);
        // A full capture stops at 40 packets: a request near its end may have lost its reply.
        if expected.is_none() && datagrams.len() >= 40 && i + 3 >= datagrams.len() {
            continue;
        }
        let meta = RecvMeta::new(d.src).with_local_addr(SERVER).with_ifindex(2);
        let outcome = block_on(engine.handle(&d.payload, &meta, Timestamp::from_secs(d.time), &mut out))
            .expect("memory store is ready at once");
        let got = match outcome {
            Outcome::Reply(reply) => Some((reply.message_type, reply.yiaddr)),
            Outcome::NoReply(_) => None,
            Outcome::PingFirst(check) => panic!("{name} packet {i}: no subnet here checks by ping: {check:?}"),
            Outcome::Dropped(reason) => panic!("{name} packet {i} ({:?}) dropped: {reason:?}", request.message_type()),
        };
        assert_eq!(got, expected, "{name} packet {i}: a {:?}", request.message_type());
        checked += 1;
    }
    checked
}

#[test]
fn dhclient_discover_request_renew_release() {
    assert!(replay("dhclient") >= 4);
}

#[test]
fn udhcpc_discover_request() {
    assert!(replay("udhcpc") >= 2);
}

#[test]
fn dhcpcd_discover_request() {
    assert!(replay("dhcpcd") >= 2);
}

#[test]
fn nmap_discover() {
    assert!(replay("nmap") >= 1);
}

#[test]
fn perfdhcp_relayed_dora() {
    assert!(replay("perfdhcp") >= 10);
}

#[test]
fn dhclient_init_reboot_from_another_network_is_naked() {
    assert!(replay("init_reboot") >= 3);
}

#[test]
fn udhcpc_decline_then_new_address() {
    assert!(replay("declined") >= 4);
}

#[test]
fn reserved_and_dynamic_clients_on_one_segment() {
    assert!(replay("reservation") >= 4);
}
