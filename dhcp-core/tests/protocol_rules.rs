//! The engine's protection rules, message by message over the in-memory store: one lease per
//! client, DECLINE and RELEASE only for the client's own binding, relay information only from
//! trusted relays, a reserved address held by another client, and the bound on offers.

use std::net::{Ipv4Addr, SocketAddrV4};

use dhcp_core::testing::{ClientPacket, discover, request};
use dhcp_core::wire::Packet;
use dhcp_core::{
    ClientId, Config, Counter, Destination, DropReason, Engine, HwAddr, Lease, LeaseState, LeaseStore, MessageType,
    NoReplyReason, Outcome, PingAnswer, PingCheck, RecvMeta, Reply, Timestamp, block_on,
};
use dhcp_store::MemoryStore;

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const RELAY: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const T0: u64 = 1_700_000_000;

const CONFIG: &str = r#"
server-id = "192.0.2.1"
lease-time = 3600
offer-hold-time = 30
max-offers = 100

[[subnets]]
id = 1
subnet = "192.0.2.0/24"
pools = ["192.0.2.100-192.0.2.109"]

[[subnets.reservations]]
hw-address = "02:00:00:00:00:97"
ip-address = "192.0.2.105"

[[subnets]]
id = 2
subnet = "198.51.100.0/24"
pools = ["198.51.100.10-198.51.100.20"]

[[subnets.reservations]]
circuit-id = "port-7"
ip-address = "198.51.100.77"
"#;

struct Server {
    engine: Engine<MemoryStore>,
    now: Timestamp,
    out: Vec<u8>,
}

fn mac(n: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0, n]
}

fn direct() -> RecvMeta {
    RecvMeta::new(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68)).with_local_addr(SERVER).with_ifindex(3)
}

fn relayed_from(relay: Ipv4Addr, port: u16) -> RecvMeta {
    RecvMeta::new(SocketAddrV4::new(relay, port)).with_local_addr(SERVER)
}

fn relay_info(suboptions: &[(u8, &[u8])]) -> Vec<u8> {
    suboptions.iter().flat_map(|(code, data)| [&[*code, data.len() as u8][..], data].concat()).collect()
}

impl Server {
    fn new(text: &str) -> Self {
        let config = Config::from_toml_str(text).expect("test config is valid");
        Server { engine: Engine::new(config, MemoryStore::new()), now: Timestamp::from_secs(T0), out: Vec::new() }
    }

    fn send(&mut self, packet: &[u8], meta: &RecvMeta) -> Outcome {
        block_on(self.engine.handle(packet, meta, self.now, &mut self.out)).expect("memory store is ready at once")
    }

    fn reply(&mut self, packet: &[u8], meta: &RecvMeta) -> Reply {
        match self.send(packet, meta) {
            Outcome::Reply(reply) => reply,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn dora(&mut self, n: u8) -> Ipv4Addr {
        let offer = self.reply(&discover(mac(n), u32::from(n)), &direct());
        let ack = self.reply(&request(mac(n), u32::from(n), offer.yiaddr, SERVER), &direct());
        assert_eq!((ack.message_type, ack.yiaddr), (MessageType::Ack, offer.yiaddr));
        ack.yiaddr
    }

    fn lease(&self, addr: Ipv4Addr) -> Option<Lease> {
        block_on(self.engine.store().lease_by_addr(addr)).expect("ready").expect("store answers")
    }

    /// The addresses client `n` holds (offered or bound) in any subnet.
    fn held_by(&self, n: u8) -> Vec<Ipv4Addr> {
        let id = ClientId::from_hardware(1, &HwAddr::mac(mac(n)));
        let all = block_on(self.engine.store().list(None)).expect("ready").expect("store answers");
        all.into_iter().filter(|l| l.client == id && l.is_held(self.now)).map(|l| l.addr).collect()
    }

    fn assigned(&self, subnet: u32) -> i64 {
        self.engine.stats().subnet(subnet).expect("subnet").assigned_addresses()
    }
}

fn pool_addr(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, last)
}

// Rule 1: one lease per client and subnet.

#[test]
fn selecting_another_address_moves_the_client_and_keeps_the_gauge() {
    let mut s = Server::new(CONFIG);
    let first = s.dora(1);
    for last in [101, 102, 103, 104, 106] {
        // A REQUEST in SELECTING state for an address never offered to it: Kea moves the
        // client's lease; it never ends with two.
        let ack = s.reply(&request(mac(1), 7, pool_addr(last), SERVER), &direct());
        assert_eq!((ack.message_type, ack.yiaddr), (MessageType::Ack, pool_addr(last)));
        assert_eq!(s.held_by(1), vec![pool_addr(last)]);
        assert_eq!(s.assigned(1), 1);
    }
    assert_eq!(s.lease(first).expect("kept for affinity").state, LeaseState::Released);
    // The freed address is anyone's.
    let other = s.reply(&request(mac(2), 8, first, SERVER), &direct());
    assert_eq!((other.message_type, other.yiaddr), (MessageType::Ack, first));
    assert_eq!(s.assigned(1), 2);
}

#[test]
fn init_reboot_for_another_address_is_naked_and_keeps_the_lease() {
    let mut s = Server::new(CONFIG);
    let bound = s.dora(1);
    let reboot =
        ClientPacket::new(MessageType::Request, mac(1)).addr_option(50, pool_addr(108)).option(55, &[1, 3]).build();
    assert_eq!(s.reply(&reboot, &direct()).message_type, MessageType::Nak);
    assert_eq!(s.held_by(1), vec![bound]);
}

#[test]
fn an_authoritative_renewal_of_another_address_moves_the_client() {
    let mut s = Server::new(&CONFIG.replace("lease-time = 3600", "lease-time = 3600\nauthoritative = true"));
    let bound = s.dora(1);
    let renew = ClientPacket::new(MessageType::Request, mac(1)).ciaddr(pool_addr(108)).build();
    let meta = RecvMeta::new(SocketAddrV4::new(pool_addr(108), 68)).with_local_addr(SERVER);
    assert_eq!(s.reply(&renew, &meta).message_type, MessageType::Ack);
    assert_eq!(s.held_by(1), vec![pool_addr(108)]);
    assert_eq!(s.lease(bound).expect("kept").state, LeaseState::Released);
    assert_eq!(s.assigned(1), 1);
}

#[test]
fn a_changed_client_identifier_is_another_client() {
    // The config has no setting that makes a MAC and a client identifier one client, so only
    // the same identity (option 61, else chaddr) is one client.
    let mut s = Server::new(CONFIG);
    let a = s.dora(1);
    let with_id = ClientPacket::new(MessageType::Request, mac(1))
        .option(61, &[0xff, 1, 2, 3])
        .addr_option(50, pool_addr(108))
        .addr_option(54, SERVER)
        .build();
    assert_eq!(s.reply(&with_id, &direct()).message_type, MessageType::Ack);
    assert_eq!(s.lease(a).expect("kept").state.name(), "bound");
}

// Rule 2: DECLINE and RELEASE only for the client's own binding.

fn decline(n: u8, addr: Ipv4Addr) -> Vec<u8> {
    ClientPacket::new(MessageType::Decline, mac(n)).addr_option(50, addr).addr_option(54, SERVER).build()
}

#[test]
fn a_decline_of_an_offer_or_of_another_clients_lease_changes_nothing() {
    let mut s = Server::new(CONFIG);
    let offered = s.reply(&discover(mac(1), 1), &direct()).yiaddr;
    assert_eq!(s.send(&decline(1, offered), &direct()), Outcome::NoReply(NoReplyReason::NotHeld));
    assert_eq!(s.lease(offered).expect("offer kept").state.name(), "offered");
    let bound = s.dora(2);
    assert_eq!(s.send(&decline(1, bound), &direct()), Outcome::NoReply(NoReplyReason::NotHeld));
    assert_eq!(s.lease(bound).expect("kept").state.name(), "bound");
    let stats = s.engine.stats().subnet(1).expect("subnet");
    assert_eq!((stats.declined_addresses(), stats.assigned_addresses()), (0, 1));
    // The holder's own decline counts.
    assert_eq!(s.send(&decline(2, bound), &direct()), Outcome::NoReply(NoReplyReason::Declined));
    assert_eq!((stats.declined_addresses(), stats.assigned_addresses()), (1, 0));
}

#[test]
fn a_release_of_another_clients_lease_changes_nothing() {
    let mut s = Server::new(CONFIG);
    let bound = s.dora(1);
    let release = ClientPacket::new(MessageType::Release, mac(2)).ciaddr(bound).addr_option(54, SERVER).build();
    assert_eq!(s.send(&release, &direct()), Outcome::NoReply(NoReplyReason::NotHeld));
    assert_eq!(s.lease(bound).expect("kept").state.name(), "bound");
    assert_eq!(s.assigned(1), 1);
}

// Rule 3: relay information only in relayed packets, from trusted relays.

#[test]
fn option_82_from_a_directly_attached_client_is_ignored() {
    let mut s = Server::new(CONFIG);
    let circuit = relay_info(&[(1, b"port-7"), (5, &[198, 51, 100, 0]), (19, &[])]);
    let spoof = ClientPacket::new(MessageType::Discover, mac(1)).option(82, &circuit).build();
    let offer = s.reply(&spoof, &direct());
    assert_eq!(offer.yiaddr, pool_addr(100), "no circuit reservation, no other subnet");
    assert!(matches!(offer.destination, Destination::Hardware { .. }));
    let bytes = s.out.clone();
    assert_eq!(Packet::parse_reply(&bytes).expect("parses").option(82), None, "not echoed to a client");
    let selecting = ClientPacket::new(MessageType::Discover, mac(2)).addr_option(118, Ipv4Addr::new(198, 51, 100, 0));
    assert_eq!(s.reply(&selecting.build(), &direct()).yiaddr, pool_addr(101), "option 118 ignored too");
}

#[test]
fn relay_information_is_honoured_only_from_listed_relays_once_any_are_listed() {
    let listed = CONFIG
        .replace("subnet = \"198.51.100.0/24\"", "subnet = \"198.51.100.0/24\"\nrelay-addresses = [\"203.0.113.9\"]");
    let info = relay_info(&[(1, b"port-7"), (19, &[])]);
    for (config, relay, trusted) in
        [(CONFIG, RELAY, true), (listed.as_str(), RELAY, false), (listed.as_str(), Ipv4Addr::new(203, 0, 113, 9), true)]
    {
        let mut s = Server::new(config);
        let pkt = ClientPacket::new(MessageType::Discover, mac(1)).giaddr(relay).option(82, &info).build();
        let offer = s.reply(&pkt, &relayed_from(relay, 6767));
        let want = if trusted { Ipv4Addr::new(198, 51, 100, 77) } else { Ipv4Addr::new(198, 51, 100, 10) };
        assert_eq!(offer.yiaddr, want, "relay {relay}, trusted {trusted}");
        let port = if trusted { 6767 } else { 67 };
        assert_eq!(offer.destination, Destination::Relay { addr: relay, port }, "RFC 8357 port");
        let bytes = s.out.clone();
        assert_eq!(Packet::parse_reply(&bytes).expect("parses").option(82).as_deref(), Some(&info[..]), "echoed");
    }
}

// Rule 4: a reserved address another client still holds.

#[test]
fn a_reserved_client_whose_address_is_taken_is_served_from_the_pool_until_it_frees() {
    let mut s = Server::new(CONFIG);
    let reserved = pool_addr(105);
    // A lease from before the reservation existed.
    let squatter = Lease {
        addr: reserved,
        client: ClientId::from_hardware(1, &HwAddr::mac(mac(50))),
        hwaddr: HwAddr::mac(mac(50)),
        subnet: 1,
        state: LeaseState::Bound { expires: s.now + 3600 },
        hostname: None,
    };
    block_on(s.engine.store().claim(&squatter, s.now)).expect("ready").expect("store").expect("granted");
    let naks = s.engine.stats().get(Counter::NakSent);
    let got = s.dora(0x97);
    assert_ne!(got, reserved);
    // Its renewals are answered, not NAKed.
    let renew = ClientPacket::new(MessageType::Request, mac(0x97)).ciaddr(got).build();
    let meta = RecvMeta::new(SocketAddrV4::new(got, 68)).with_local_addr(SERVER);
    assert_eq!(s.reply(&renew, &meta).message_type, MessageType::Ack);
    assert_eq!(s.engine.stats().get(Counter::NakSent), naks, "no NAK loop");
    // The squatter's own renewal is refused (the address is reserved now); once it is gone the
    // reserved client is moved to its address at its next renewal.
    let squat = ClientPacket::new(MessageType::Request, mac(50)).ciaddr(reserved).build();
    let meta50 = RecvMeta::new(SocketAddrV4::new(reserved, 68)).with_local_addr(SERVER);
    assert_eq!(s.reply(&squat, &meta50).message_type, MessageType::Nak);
    block_on(s.engine.store().update_state(reserved, &squatter.client, LeaseState::Released))
        .expect("ready")
        .expect("store");
    assert_eq!(s.reply(&renew, &meta).message_type, MessageType::Nak);
    assert_eq!(s.dora(0x97), reserved);
    assert_eq!(s.held_by(0x97), vec![reserved], "the pool address went with the move");
}

// Rule 5: the bound on offers.

const LIMITED: &str = r#"
server-id = "192.0.2.1"
offer-hold-time = 30
max-offers-per-relay = 2

[[subnets]]
id = 1
subnet = "192.0.2.0/24"
pools = ["192.0.2.100-192.0.2.109"]
max-offers = 3

[[subnets.reservations]]
hw-address = "02:00:00:00:00:97"
ip-address = "192.0.2.50"

[[subnets]]
id = 2
subnet = "198.51.100.0/24"
pools = ["198.51.100.10-198.51.100.99"]
"#;

#[test]
fn a_discover_flood_holds_no_more_than_max_offers() {
    let mut s = Server::new(LIMITED);
    let known = s.dora(1);
    let mut offers = 0;
    for n in 10..40 {
        match s.send(&discover(mac(n), u32::from(n)), &direct()) {
            Outcome::Reply(_) => offers += 1,
            Outcome::Dropped(DropReason::OfferLimit) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(offers, 3);
    assert_eq!(s.engine.stats().get(Counter::OfferLimitDrop), 27);
    // Retransmissions of a counted client's DISCOVER are answered and not counted again.
    assert_eq!(s.reply(&discover(mac(10), 1), &direct()).message_type, MessageType::Offer);
    // A client with a lease and a reserved client are still served.
    assert_eq!(s.reply(&discover(mac(1), 2), &direct()).yiaddr, known);
    assert_eq!(s.dora(0x97), pool_addr(50));
    assert_eq!(s.engine.stats().subnet(1).expect("subnet").offered_addresses(s.now, 30), 3);
    // A counted offer taken up makes room for one more new client.
    let taken = s.reply(&request(mac(10), 4, s.lease_of(10), SERVER), &direct());
    assert_eq!(taken.message_type, MessageType::Ack);
    assert_eq!(s.reply(&discover(mac(41), 5), &direct()).message_type, MessageType::Offer);
    assert_eq!(s.send(&discover(mac(42), 6), &direct()), Outcome::Dropped(DropReason::OfferLimit));
    // Offers age out with their hold.
    s.now = s.now + 60;
    assert_eq!(s.reply(&discover(mac(42), 7), &direct()).message_type, MessageType::Offer);
}

#[test]
fn one_relay_cannot_take_every_offer() {
    let mut s = Server::new(LIMITED);
    let a = Ipv4Addr::new(198, 51, 100, 1);
    let b = Ipv4Addr::new(198, 51, 100, 2);
    let from = |relay: Ipv4Addr, n: u8| ClientPacket::new(MessageType::Discover, mac(n)).giaddr(relay).build();
    assert_eq!(s.reply(&from(a, 1), &relayed_from(a, 67)).message_type, MessageType::Offer);
    assert_eq!(s.reply(&from(a, 2), &relayed_from(a, 67)).message_type, MessageType::Offer);
    assert_eq!(s.send(&from(a, 3), &relayed_from(a, 67)), Outcome::Dropped(DropReason::OfferLimit));
    assert_eq!(s.reply(&from(b, 4), &relayed_from(b, 67)).message_type, MessageType::Offer);
}

#[test]
fn the_default_bound_is_half_the_pool() {
    let config = Config::from_toml_str(CONFIG.replace("max-offers = 100\n", "").as_str()).expect("valid");
    // .100-.109 less the reserved .105: nine dynamic addresses.
    assert_eq!(config.subnet_by_id(1).expect("subnet").max_offers, 5);
}

impl Server {
    fn lease_of(&self, n: u8) -> Ipv4Addr {
        *self.held_by(n).first().expect("client holds an address")
    }
}

// The gauges count a binding until reclamation takes it, also once its time is up (found by
// the `sequences` fuzz target: a renewal after expiry counted the client twice).

#[test]
fn a_renewal_after_expiry_before_reclamation_counts_the_client_once() {
    let mut s = Server::new(CONFIG);
    let addr = s.dora(1);
    assert_eq!(s.assigned(1), 1);
    s.now = Timestamp::from_secs(T0 + 3600 + 5);
    let renew = ClientPacket::new(MessageType::Request, mac(1)).ciaddr(addr).build();
    assert_eq!(s.reply(&renew, &direct()).message_type, MessageType::Ack, "its address is still free");
    assert_eq!(s.assigned(1), 1, "rebound, not counted twice");
    let report = block_on(s.engine.handle_timeout(s.now)).expect("ready").expect("reclaims");
    assert_eq!(report.expired, 0);
    assert_eq!(s.assigned(1), 1, "nothing to reclaim: the binding is live again");
}

#[test]
fn a_release_after_expiry_and_a_restart_over_expired_bindings_keep_the_gauge_at_zero() {
    let mut s = Server::new(CONFIG);
    let addr = s.dora(1);
    s.now = Timestamp::from_secs(T0 + 3600 + 5);
    let release = ClientPacket::new(MessageType::Release, mac(1)).ciaddr(addr).addr_option(54, SERVER).build();
    assert_eq!(s.send(&release, &direct()), Outcome::NoReply(NoReplyReason::Released));
    let _ = block_on(s.engine.handle_timeout(s.now)).expect("ready").expect("reclaims");
    assert_eq!(s.assigned(1), 0, "released once, never below zero");

    // A server that starts over a store whose binding ran out while it was down.
    let store = MemoryStore::new();
    let lease = Lease {
        addr: pool_addr(101),
        client: ClientId::from_hardware(1, &HwAddr::mac(mac(2))),
        hwaddr: HwAddr::mac(mac(2)),
        subnet: 1,
        state: LeaseState::Bound { expires: Timestamp::from_secs(T0 - 10) },
        hostname: None,
    };
    let claimed = block_on(store.claim(&lease, Timestamp::from_secs(T0 - 3600))).expect("ready");
    assert!(claimed.expect("store answers").is_some());
    let engine = Engine::new(Config::from_toml_str(CONFIG).expect("valid"), store);
    block_on(engine.count_leases()).expect("ready").expect("counts");
    assert_eq!(engine.stats().subnet(1).map(|s| s.assigned_addresses()), Some(1), "counted until reclaimed");
    let report = block_on(engine.handle_timeout(Timestamp::from_secs(T0))).expect("ready").expect("reclaims");
    assert_eq!(report.expired, 1);
    assert_eq!(engine.stats().subnet(1).map(|s| s.assigned_addresses()), Some(0), "reclaimed, not below zero");
}

#[test]
fn an_expired_binding_taken_by_its_client_as_an_offer_or_by_another_client_leaves_the_gauge_once() {
    let mut s = Server::new(CONFIG);
    let addr = s.dora(1);
    s.now = Timestamp::from_secs(T0 + 3600 + 5);
    // Its own client comes back with a DISCOVER: the run-out binding becomes an offer.
    let offer = s.reply(&discover(mac(1), 11), &direct());
    assert_eq!(offer.yiaddr, addr, "the same address again");
    assert_eq!(s.assigned(1), 0, "an offer is no binding");
    // Another client asks for that address once the offer lapsed... and one more binding
    // that ran out is taken over by a second client's REQUEST.
    let other = s.dora(2);
    s.now = Timestamp::from_secs(T0 + 2 * 3600 + 10);
    assert_eq!(s.reply(&request(mac(3), 33, other, SERVER), &direct()).message_type, MessageType::Ack);
    assert_eq!(s.assigned(1), 1, "client 2's run-out binding left, client 3's came");
    let _ = block_on(s.engine.handle_timeout(s.now)).expect("ready").expect("reclaims");
    assert_eq!(s.assigned(1), 1, "and reclamation does not take it off again");
}

// Ping check before an offer.

fn pinging() -> Server {
    Server::new(
        &CONFIG.replace("[[subnets]]\nid = 1\n", "[[subnets]]\nid = 1\nping-check = true\nping-timeout-ms = 250\n"),
    )
}

impl Server {
    /// Sends `packet` and expects the engine to ask for a ping check first.
    fn ping_first(&mut self, packet: &[u8], meta: &RecvMeta) -> PingCheck {
        match self.send(packet, meta) {
            Outcome::PingFirst(check) => check,
            other => panic!("expected a ping check, got {other:?}"),
        }
    }
}

#[test]
fn a_new_address_is_pinged_before_it_is_offered_and_the_datagram_counted_once() {
    let mut s = pinging();
    let packet = discover(mac(1), 1);
    let check = s.ping_first(&packet, &direct());
    assert_eq!(check, PingCheck { addr: pool_addr(100), timeout_ms: 250 });
    assert_eq!(s.held_by(1), vec![pool_addr(100)], "the offer is held while the check runs");
    assert_eq!(s.engine.stats().get(Counter::OfferSent), 0, "nothing goes out before the answer");
    let nobody = direct().with_ping_answer(PingAnswer { addr: check.addr, in_use: false });
    let offer = s.reply(&packet, &nobody);
    assert_eq!((offer.message_type, offer.yiaddr), (MessageType::Offer, pool_addr(100)));
    let stats = s.engine.stats();
    assert_eq!((stats.get(Counter::Received), stats.get(Counter::DiscoverReceived)), (1, 1), "one datagram");
    assert_eq!(stats.get(Counter::OfferSent), 1);
    assert_eq!(stats.subnet(1).expect("subnet").offered_addresses(s.now, 30), 1, "one offer counted");
    // A retransmitted DISCOVER is offered the same address, checked again (the engine keeps
    // no record that a check ended: the driver may have given up on it), counted once.
    let again = discover(mac(1), 2);
    assert_eq!(s.ping_first(&again, &direct()).addr, pool_addr(100));
    let offer = s.reply(&again, &direct().with_ping_answer(PingAnswer { addr: pool_addr(100), in_use: false }));
    assert_eq!(offer.yiaddr, pool_addr(100));
    assert_eq!(s.engine.stats().subnet(1).expect("subnet").offered_addresses(s.now, 30), 1, "still one offer");
}

#[test]
fn an_address_that_answers_is_set_aside_and_another_offered() {
    let mut s = pinging();
    let packet = discover(mac(1), 1);
    let first = s.ping_first(&packet, &direct());
    let squatted = direct().with_ping_answer(PingAnswer { addr: first.addr, in_use: true });
    let second = s.ping_first(&packet, &squatted);
    assert_ne!(second.addr, first.addr, "another address is checked");
    let lease = s.lease(first.addr).expect("the answering address is recorded");
    assert!(matches!(lease.state, LeaseState::Declined { .. }), "set aside like a declined one: {lease:?}");
    assert_eq!(s.held_by(1), vec![second.addr], "the client holds only the new offer");
    let stats = s.engine.stats().subnet(1).expect("subnet");
    assert_eq!((stats.declined_addresses(), stats.offered_addresses(s.now, 30)), (1, 1));
    assert_eq!(s.engine.stats().get(Counter::PingConflicts), 1);
    let offer = s.reply(&packet, &direct().with_ping_answer(PingAnswer { addr: second.addr, in_use: false }));
    assert_eq!(offer.yiaddr, second.addr);
    // No other client is offered the squatted address while its probation lasts.
    for n in 2..8 {
        let check = s.ping_first(&discover(mac(n), u32::from(n)), &direct());
        assert_ne!(check.addr, first.addr, "client {n}");
    }
    // An answer about an address that is no longer this client's offer changes nothing.
    let stale = direct().with_ping_answer(PingAnswer { addr: pool_addr(103), in_use: true });
    let _ = s.send(&discover(mac(9), 9), &stale);
    assert_eq!(s.engine.stats().get(Counter::PingConflicts), 1, "not the client's offer: not set aside");
    assert!(s.lease(pool_addr(103)).is_some_and(|l| matches!(l.state, LeaseState::Offered { .. })));
}

#[test]
fn no_ping_for_the_clients_own_address_a_reservation_or_a_request() {
    let mut s = pinging();
    let packet = discover(mac(1), 1);
    let check = s.ping_first(&packet, &direct());
    let offer = s.reply(&packet, &direct().with_ping_answer(PingAnswer { addr: check.addr, in_use: false }));
    let ack = s.reply(&request(mac(1), 1, offer.yiaddr, SERVER), &direct());
    assert_eq!(ack.message_type, MessageType::Ack, "a REQUEST is never held up");
    // The bound client's next DISCOVER (a reboot) is offered its own address at once: the
    // client itself may be the one answering a ping.
    assert_eq!(s.reply(&discover(mac(1), 3), &direct()).yiaddr, offer.yiaddr);
    // A reserved client gets its address without a check.
    assert_eq!(s.reply(&discover(mac(0x97), 4), &direct()).yiaddr, pool_addr(105));
    // A subnet without ping-check offers at once.
    let relayed = ClientPacket::new(MessageType::Discover, mac(5)).giaddr(RELAY).build();
    assert_eq!(s.reply(&relayed, &relayed_from(RELAY, 67)).message_type, MessageType::Offer);
}

// Gauges when an allocation or a claim overwrites a record reclamation would have counted.

#[test]
fn an_expired_binding_or_ended_probation_taken_over_leaves_the_gauges_once() {
    let one = CONFIG.replace("192.0.2.100-192.0.2.109", "192.0.2.100-192.0.2.100");
    let mut s = Server::new(&one);
    let addr = s.dora(1);
    s.now = s.now + 3600 + 5;
    // The pool's one address is another client's binding that ran out, not reclaimed yet:
    // the allocator gives it to client 2, and the gauge counts client 2's binding only.
    assert_eq!(s.dora(2), addr);
    assert_eq!(s.assigned(1), 1, "client 1's run-out binding left the gauge when it was overwritten");
    let _ = block_on(s.engine.handle_timeout(s.now + 10_000)).expect("ready").expect("reclaims");
    assert_eq!(s.assigned(1), 0, "and client 2's binding leaves at its own reclamation, once");

    // A requested address (option 50) that is another client's run-out binding.
    let mut s = Server::new(CONFIG);
    let first = s.dora(1);
    s.now = s.now + 3600 + 5;
    let asking = ClientPacket::new(MessageType::Discover, mac(3)).addr_option(50, first).build();
    assert_eq!(s.reply(&asking, &direct()).yiaddr, first);
    assert_eq!(s.assigned(1), 0, "the run-out binding became client 3's offer");
    let _ = block_on(s.engine.handle_timeout(s.now + 10_000)).expect("ready").expect("reclaims");
    assert_eq!(s.assigned(1), 0, "not taken off twice");

    // An ended probation overwritten by an allocation.
    let mut s = Server::new(&one.replace("max-offers = 100", "max-offers = 100\ndecline-probation-period = 60"));
    let addr = s.dora(1);
    let decline = ClientPacket::new(MessageType::Decline, mac(1)).addr_option(50, addr).addr_option(54, SERVER).build();
    assert_eq!(s.send(&decline, &direct()), Outcome::NoReply(NoReplyReason::Declined));
    assert_eq!(s.engine.stats().subnet(1).expect("subnet").declined_addresses(), 1);
    s.now = s.now + 61;
    assert_eq!(s.dora(2), addr, "the address is free again once its probation ended");
    assert_eq!(s.engine.stats().subnet(1).expect("subnet").declined_addresses(), 0);
    let _ = block_on(s.engine.handle_timeout(s.now)).expect("ready").expect("reclaims");
    assert_eq!(s.engine.stats().subnet(1).expect("subnet").declined_addresses(), 0, "not below zero");
    assert_eq!(s.assigned(1), 1);
}

#[test]
fn a_release_that_arrives_by_another_subnets_path_counts_in_the_leases_subnet() {
    // Found by the sequences fuzz target with the gauge check on: a lease bound through the
    // relay of subnet 2, released by a datagram that arrived directly (which selects subnet 1).
    let mut s = Server::new(CONFIG);
    let relayed = |kind| ClientPacket::new(kind, mac(7)).giaddr(RELAY);
    let offer = s.reply(&relayed(MessageType::Discover).build(), &relayed_from(RELAY, 67));
    let request = relayed(MessageType::Request).addr_option(50, offer.yiaddr).addr_option(54, SERVER).build();
    assert_eq!(s.reply(&request, &relayed_from(RELAY, 67)).message_type, MessageType::Ack);
    assert_eq!((s.assigned(1), s.assigned(2)), (0, 1));
    let release = ClientPacket::new(MessageType::Release, mac(7)).ciaddr(offer.yiaddr).addr_option(54, SERVER).build();
    assert_eq!(s.send(&release, &direct()), Outcome::NoReply(NoReplyReason::Released));
    assert_eq!((s.assigned(1), s.assigned(2)), (0, 0), "the gauge of the lease's own subnet");
}
