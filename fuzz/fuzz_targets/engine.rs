//! Whatever arrives, the engine answers with a well-formed reply, stays silent, or drops and
//! counts the packet; it never panics.
//!
//! Each input gets a fresh engine and a fresh clock, so a crash reproduces from its input
//! alone: a fixed prelude leases addresses to two clients (one relayed), then the input is
//! handled as one datagram, handled again later (the client is known by then: renewals, a
//! second DISCOVER, a RELEASE of what the first one bound), and the timers run past every
//! deadline. Subnet 2 checks addresses by ping before it offers them: the first byte says
//! whether the checks find the addresses in use, and one more pass hands the datagram in with
//! a ping answer about an address the input picks. The input is a raw datagram, so the packets in `corpus/engine/captured-*` (and
//! anything `scripts/pcap-to-corpus.py` writes) are seeds as they are.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, OnceLock};

use dhcp_core::wire::Packet;
use dhcp_core::{Config, Engine, Outcome, PingAnswer, RecvMeta, Timestamp, block_on, testing};
use dhcp_store::MemoryStore;
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
server-id = "192.0.2.1"
lease-time = 600
[[subnets]]
id = 1
subnet = "192.0.2.0/24"
pools = ["192.0.2.100-192.0.2.120"]
options = { routers = ["192.0.2.1"], domain-name = "fuzz.test", option-224 = "HEX" }
[[subnets.reservations]]
hw-address = "02:00:00:00:00:01"
ip-address = "192.0.2.10"
[[subnets]]
id = 2
subnet = "198.51.100.0/24"
pools = ["198.51.100.10-198.51.100.20"]
ping-check = true
"#;

/// Where every input's clock starts.
const START: u64 = 1_700_000_000;
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const RELAY: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

/// The parsed config: a constant, so parsing it once is no state carried between inputs.
fn config() -> Arc<Config> {
    static CONFIG_ONCE: OnceLock<Arc<Config>> = OnceLock::new();
    CONFIG_ONCE
        .get_or_init(|| {
            // A long option, so that overload and RFC 3396 splitting are exercised.
            let hex: String = (0..400).map(|i| format!("{:02x}", i % 256)).collect();
            Arc::new(Config::from_toml_str(&CONFIG.replace("HEX", &hex)).expect("fuzz config is valid"))
        })
        .clone()
}

/// Handles one datagram and checks what came back; ping checks the engine asks for find the
/// address in use when `in_use` says so (at most three times, as the driver does).
fn handle_pinging(
    engine: &Engine<MemoryStore>,
    datagram: &[u8],
    meta: &RecvMeta,
    now: Timestamp,
    in_use: bool,
) -> Outcome {
    let mut out = Vec::new();
    let mut outcome =
        block_on(engine.handle(datagram, meta, now, &mut out)).expect("the memory store answers at once");
    let mut checks = 0;
    while let Outcome::PingFirst(check) = outcome {
        checks += 1;
        assert!(checks <= 32, "the engine keeps asking for checks: {check:?}");
        let answer = PingAnswer { addr: check.addr, in_use: in_use && checks <= 3 };
        outcome = block_on(engine.handle(datagram, &meta.with_ping_answer(answer), now, &mut out))
            .expect("the memory store answers at once");
    }
    if let Outcome::Reply(reply) = &outcome {
        assert_eq!(reply.len, out.len());
        assert!(out.len() <= 1472);
        Packet::parse_reply(&out).expect("every reply parses");
    }
    outcome
}

/// Handles one datagram; ping checks find nothing.
fn handle(engine: &Engine<MemoryStore>, datagram: &[u8], meta: &RecvMeta, now: Timestamp) -> Outcome {
    handle_pinging(engine, datagram, meta, now, false)
}

/// DISCOVER then REQUEST, as a client that takes the first offer.
fn dora(engine: &Engine<MemoryStore>, mac: [u8; 6], relayed: bool, now: Timestamp) {
    let (meta, relay) = if relayed {
        (RecvMeta::new(SocketAddrV4::new(RELAY, 67)), Some(RELAY))
    } else {
        (RecvMeta::new(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68)).with_local_addr(SERVER), None)
    };
    let with_relay = |p: testing::ClientPacket| match relay {
        Some(giaddr) => p.giaddr(giaddr),
        None => p,
    };
    let discover = with_relay(testing::ClientPacket::new(dhcp_core::MessageType::Discover, mac).xid(1)).build();
    let Outcome::Reply(offer) = handle(engine, &discover, &meta, now) else {
        panic!("the prelude's DISCOVER is offered")
    };
    let request = with_relay(
        testing::ClientPacket::new(dhcp_core::MessageType::Request, mac)
            .xid(2)
            .addr_option(dhcp_core::wire::code::REQUESTED_IP_ADDRESS, offer.yiaddr)
            .addr_option(dhcp_core::wire::code::SERVER_IDENTIFIER, SERVER),
    )
    .build();
    let Outcome::Reply(ack) = handle(engine, &request, &meta, now) else { panic!("the prelude's REQUEST is ACKed") };
    assert_eq!(ack.yiaddr, offer.yiaddr);
}

fuzz_target!(|data: &[u8]| {
    let engine = Engine::with_shared_config(config(), MemoryStore::new());
    let start = Timestamp::from_secs(START);
    // Two bound clients: the one with a reservation, and a relayed one (the captured clients
    // use other MACs, so they meet a store that holds someone else's leases).
    dora(&engine, [2, 0, 0, 0, 0, 1], false, start);
    dora(&engine, [2, 0, 0, 0, 0, 2], true, start);

    let direct = RecvMeta::new(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68)).with_local_addr(SERVER);
    let _ = handle(&engine, data, &direct, start);
    // Again later, by as much as the last byte says: up to 2040 s, past the 600 s leases.
    let later = start + data.last().map_or(0, |&b| u64::from(b) * 8);
    let _ = handle(&engine, data, &direct, later);
    // As if relayed to subnet 2 from its relay's address, whose ping checks find what the
    // first byte says; then with a ping answer about an address the input picks.
    let relayed = RecvMeta::new(SocketAddrV4::new(RELAY, 67));
    let in_use = data.first().is_some_and(|b| b & 1 == 1);
    let _ = handle_pinging(&engine, data, &relayed, later, in_use);
    let picked = match data {
        [.., a, b, c, d, _] => Ipv4Addr::new(*a, *b, *c, *d),
        _ => Ipv4Addr::new(198, 51, 100, 10),
    };
    let _ = handle_pinging(&engine, data, &relayed.with_ping_answer(PingAnswer { addr: picked, in_use }), later, in_use);
    let _ = block_on(engine.handle_timeout(later)).expect("the memory store answers at once");
    let _ = block_on(engine.handle_timeout(later + 1_000_000)).expect("the memory store answers at once");
});
