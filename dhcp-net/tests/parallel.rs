//! The tokio driver on a multi-threaded runtime, every request in a task of its own, attacked
//! with what redundant relays send: each REQUEST twice at once. The store makes each call
//! atomic, but the engine counts bindings from what it read before the claim; two copies
//! handled at the same moment on two threads would both count one binding. The driver
//! serialises a client's requests, so the gauge must equal the bindings in the store.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use dhcp_core::{Config, Engine, LeaseState, LeaseStore};
use dhcp_net::{Listen, NetSettings, Server};
use dhcp_store::MemoryStore;
use dhcproto::v4::{self, DhcpOption, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};

const CLIENTS: u8 = 200;

fn message(xid: u32, mac: u8, kind: MessageType, relay_port: u16, extra: &[DhcpOption]) -> Vec<u8> {
    let mut msg = Message::default();
    msg.set_opcode(Opcode::BootRequest)
        .set_xid(xid)
        .set_chaddr(&[2, 0, 0, 0, 1, mac])
        .set_giaddr(Ipv4Addr::new(127, 0, 0, 2));
    msg.set_hops(1);
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    for opt in extra {
        opts.insert(opt.clone());
    }
    // RFC 8357: replies to the relay at this port, not 67.
    let mut info = v4::relay::RelayAgentInformation::default();
    let sub = v4::relay::UnknownInfo::new(v4::relay::RelayCode::from(19), relay_port.to_be_bytes().to_vec());
    info.insert(v4::relay::RelayInfo::Unknown(sub));
    opts.insert(DhcpOption::RelayAgentInformation(info));
    let mut bytes = Vec::new();
    msg.encode(&mut Encoder::new(&mut bytes)).expect("encodes");
    bytes
}

/// Waits for the reply to `xid` of type `kind`.
fn reply(socket: &UdpSocket, xid: u32, kind: MessageType) -> Option<Message> {
    let mut buf = [0u8; 1500];
    loop {
        let len = socket.recv(&mut buf).ok()?;
        let Ok(msg) = Message::decode(&mut Decoder::new(&buf[..len])) else { continue };
        let is_kind = matches!(msg.opts().get(OptionCode::MessageType), Some(DhcpOption::MessageType(t)) if *t == kind);
        if msg.xid() == xid && is_kind {
            return Some(msg);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_requests_on_two_threads_count_each_binding_once() {
    let port = 40_000 + (std::process::id() % 10_000) as u16 * 2;
    let config = Config::from_toml_str(
        "lease-time = 600\n[[subnets]]\nid = 1\nsubnet = \"192.0.2.0/24\"\npools = [\"192.0.2.10-192.0.2.250\"]\n\
         relay-addresses = [\"127.0.0.2\"]\n",
    )
    .expect("valid config");
    // As for a store that waits: every request a task, so both copies run at once.
    let settings = NetSettings {
        listen: vec![Listen::Address(Ipv4Addr::LOCALHOST)],
        server_port: port,
        client_port: port + 1,
        max_in_flight: 64,
        inline_first: false,
        ..NetSettings::default()
    };
    let engine = Arc::new(Engine::new(config, MemoryStore::new()));
    let server = Arc::new(Server::bind(Arc::clone(&engine), settings).expect("bind loopback"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(Arc::clone(&server).serve(async {
        let _ = stopped.await;
    }));

    let acked = tokio::task::spawn_blocking(move || {
        let socket = UdpSocket::bind("127.0.0.2:0").expect("relay socket");
        socket.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        let relay_port = socket.local_addr().expect("addr").port();
        let to = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        let mut acked = 0;
        for mac in 0..CLIENTS {
            let xid = 0x5000 + u32::from(mac);
            socket.send_to(&message(xid, mac, MessageType::Discover, relay_port, &[]), to).expect("send");
            let Some(offer) = reply(&socket, xid, MessageType::Offer) else { continue };
            let extra =
                [DhcpOption::RequestedIpAddress(offer.yiaddr()), DhcpOption::ServerIdentifier(Ipv4Addr::LOCALHOST)];
            let request = message(xid, mac, MessageType::Request, relay_port, &extra);
            // The same REQUEST twice, as two relays of one segment forward it.
            socket.send_to(&request, to).expect("send");
            socket.send_to(&request, to).expect("send");
            if reply(&socket, xid, MessageType::Ack).is_some() {
                acked += 1;
            }
        }
        acked
    })
    .await
    .expect("client thread");
    // The second copies' answers, if any, are done before the count is read.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).expect("server still running");
    tokio::time::timeout(Duration::from_secs(5), serving).await.expect("stops").expect("task").expect("served");

    assert!(acked >= usize::from(CLIENTS) * 9 / 10, "only {acked} of {CLIENTS} clients were ACKed");
    let leases = engine.store().list(None).await.expect("store answers");
    let now = dhcp_net::now();
    let bound = leases.iter().filter(|l| matches!(l.state, LeaseState::Bound { .. }) && l.is_held(now)).count();
    assert!(bound >= acked, "{bound} bindings stored for {acked} ACKs");
    let gauge = engine.stats().subnet(1).expect("subnet 1").assigned_addresses();
    assert_eq!(gauge, bound as i64, "the assigned gauge counts each binding once");
}
