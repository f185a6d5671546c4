//! The engine, message by message and state by state, over the in-memory store.
//!
//! Replies are decoded with `dhcproto` (an implementation independent of ours) where it can,
//! and with our own parser where the reply uses option overload, which `dhcproto` does not read.

use std::net::{Ipv4Addr, SocketAddrV4};

use dhcp_core::testing::ClientPacket;
use dhcp_core::wire::Packet;
use dhcp_core::{
    Config, Counter, Destination, DropReason, Engine, LeaseState, LeaseStore, MessageType, NoReplyReason, Outcome,
    ParseError, RecvMeta, Reply, Timestamp, block_on,
};
use dhcp_store::MemoryStore;
use dhcproto::v4::{self, Decodable, Decoder, DhcpOption, OptionCode};

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const RELAY: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const T0: u64 = 1_700_000_000;

const CONFIG: &str = r#"
server-id = "192.0.2.1"
lease-time = 3600
offer-hold-time = 30
decline-probation-period = 600
max-offers = 100
options = { domain-name-servers = ["192.0.2.53"], domain-name = "example.test" }

[groups.phones]
options = { tftp-server-name = "tftp.example.test" }
lease-time = 600
match = { vendor-class = "Polycom" }

[groups.vip]
options = { ntp-servers = ["192.0.2.123"] }

[[subnets]]
id = 1
subnet = "192.0.2.0/24"
pools = ["192.0.2.100-192.0.2.109"]
options = { routers = ["192.0.2.1"] }

[[subnets.reservations]]
hw-address = "02:00:00:00:00:99"
ip-address = "192.0.2.50"
hostname = "printer"
group = "vip"
options = { domain-name = "printers.example.test" }

[[subnets.reservations]]
client-id = "01:02:00:00:00:00:98"
ip-address = "192.0.2.51"

[[subnets.reservations]]
hw-address = "02:00:00:00:00:97"
ip-address = "192.0.2.105"

[[subnets]]
id = 2
subnet = "198.51.100.0/24"
pools = ["198.51.100.10-198.51.100.20"]
options = { routers = ["198.51.100.1"] }

[[subnets.reservations]]
circuit-id = "port-7"
ip-address = "198.51.100.77"
"#;

struct Server {
    engine: Engine<MemoryStore>,
    now: Timestamp,
    out: Vec<u8>,
}

/// A reply and its decoding.
struct Got {
    reply: Reply,
    bytes: Vec<u8>,
    msg: v4::Message,
}

impl Got {
    fn opt(&self, code: OptionCode) -> Option<&DhcpOption> {
        self.msg.opts().get(code)
    }

    /// The option codes in the order they appear on the wire.
    fn codes(&self) -> Vec<u8> {
        let p = Packet::parse_reply(&self.bytes).expect("reply parses");
        p.raw_options().iter().map(|(c, _)| *c).collect()
    }

    fn raw(&self, code: u8) -> Option<Vec<u8>> {
        Packet::parse_reply(&self.bytes).expect("reply parses").option(code).map(|c| c.into_owned())
    }
}

fn mac(n: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0, n]
}

fn direct() -> RecvMeta {
    RecvMeta::new(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68)).with_local_addr(SERVER).with_ifindex(3)
}

fn relayed() -> RecvMeta {
    RecvMeta::new(SocketAddrV4::new(RELAY, 67)).with_local_addr(SERVER)
}

impl Server {
    fn new() -> Self {
        Self::with_config(CONFIG)
    }

    fn with_config(text: &str) -> Self {
        let config = Config::from_toml_str(text).expect("test config is valid");
        Server { engine: Engine::new(config, MemoryStore::new()), now: Timestamp::from_secs(T0), out: Vec::new() }
    }

    fn advance(&mut self, secs: u64) {
        self.now = self.now + secs;
    }

    fn send(&mut self, packet: &[u8], meta: &RecvMeta) -> Outcome {
        block_on(self.engine.handle(packet, meta, self.now, &mut self.out)).expect("memory store is ready at once")
    }

    fn expect_reply(&mut self, packet: &[u8], meta: &RecvMeta) -> Got {
        match self.send(packet, meta) {
            Outcome::Reply(reply) => {
                assert_eq!(reply.len, self.out.len());
                let msg = v4::Message::decode(&mut Decoder::new(&self.out)).expect("dhcproto decodes our reply");
                Got { reply, bytes: self.out.clone(), msg }
            }
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn discover(&mut self, n: u8) -> Got {
        self.expect_reply(&dhcp_core::testing::discover(mac(n), u32::from(n)), &direct())
    }

    /// DISCOVER then REQUEST: the bound address.
    fn dora(&mut self, n: u8) -> Ipv4Addr {
        let offer = self.discover(n);
        let addr = offer.reply.yiaddr;
        let ack = self.expect_reply(&dhcp_core::testing::request(mac(n), u32::from(n), addr, SERVER), &direct());
        assert_eq!(ack.reply.message_type, MessageType::Ack);
        assert_eq!(ack.reply.yiaddr, addr);
        addr
    }

    fn lease(&self, addr: Ipv4Addr) -> Option<dhcp_core::Lease> {
        block_on(self.engine.store().lease_by_addr(addr)).expect("ready").expect("store answers")
    }

    fn timers(&mut self) -> dhcp_core::TimerReport {
        block_on(self.engine.handle_timeout(self.now)).expect("ready").expect("store answers")
    }

    fn stat(&self, counter: Counter) -> u64 {
        self.engine.stats().get(counter)
    }
}

fn message_type(got: &Got) -> Option<v4::MessageType> {
    match got.opt(OptionCode::MessageType) {
        Some(DhcpOption::MessageType(t)) => Some(*t),
        _ => None,
    }
}

#[test]
fn discover_offers_a_pool_address_with_lease_times_and_the_requested_options_in_order() {
    let mut s = Server::new();
    let discover = ClientPacket::new(MessageType::Discover, mac(1)).xid(0xabcd).option(55, &[6, 3, 15, 1, 42]).build();
    let offer = s.expect_reply(&discover, &direct());
    assert_eq!(offer.reply.message_type, MessageType::Offer);
    assert_eq!(message_type(&offer), Some(v4::MessageType::Offer));
    assert_eq!(offer.reply.yiaddr, Ipv4Addr::new(192, 0, 2, 100));
    assert_eq!(offer.msg.yiaddr(), Ipv4Addr::new(192, 0, 2, 100));
    assert_eq!(offer.msg.xid(), 0xabcd);
    assert_eq!(offer.msg.chaddr(), &mac(1));
    assert_eq!(
        offer.reply.destination,
        Destination::Hardware { addr: offer.reply.yiaddr, hw: dhcp_core::HwAddr::mac(mac(1)) }
    );
    assert_eq!(offer.reply.ifindex, 3);
    assert_eq!(offer.opt(OptionCode::ServerIdentifier), Some(&DhcpOption::ServerIdentifier(SERVER)));
    assert_eq!(offer.opt(OptionCode::AddressLeaseTime), Some(&DhcpOption::AddressLeaseTime(3600)));
    assert_eq!(offer.opt(OptionCode::Renewal), Some(&DhcpOption::Renewal(1800)));
    assert_eq!(offer.opt(OptionCode::Rebinding), Some(&DhcpOption::Rebinding(3150)));
    assert_eq!(
        offer.opt(OptionCode::DomainNameServer),
        Some(&DhcpOption::DomainNameServer(vec![Ipv4Addr::new(192, 0, 2, 53)]))
    );
    assert_eq!(offer.opt(OptionCode::Router), Some(&DhcpOption::Router(vec![SERVER])));
    assert_eq!(offer.opt(OptionCode::SubnetMask), Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0))));
    assert_eq!(offer.opt(OptionCode::DomainName), Some(&DhcpOption::DomainName("example.test".into())));
    // 42 (NTP) is asked for but not configured for this client: absent.
    assert_eq!(offer.opt(OptionCode::NtpServers), None);
    // Mandatory options first, then the client's order (6, 3, 15, 1).
    assert_eq!(offer.codes(), vec![53, 54, 51, 58, 59, 6, 3, 15, 1]);
    let held = s.lease(offer.reply.yiaddr).expect("offer is held in the store");
    assert_eq!(held.state, LeaseState::Offered { until: s.now + 30 });
    assert_eq!(s.stat(Counter::DiscoverReceived), 1);
    assert_eq!(s.stat(Counter::OfferSent), 1);
}

#[test]
fn discover_with_the_broadcast_flag_is_answered_by_broadcast() {
    let mut s = Server::new();
    let discover = ClientPacket::new(MessageType::Discover, mac(1)).broadcast().build();
    let offer = s.expect_reply(&discover, &direct());
    assert_eq!(offer.reply.destination, Destination::Broadcast);
    assert!(offer.msg.flags().broadcast());
}

#[test]
fn selecting_request_is_acked_and_bound_in_the_store() {
    let mut s = Server::new();
    let offer = s.discover(1);
    let addr = offer.reply.yiaddr;
    let ack = s.expect_reply(&dhcp_core::testing::request(mac(1), 1, addr, SERVER), &direct());
    assert_eq!(message_type(&ack), Some(v4::MessageType::Ack));
    assert_eq!(ack.reply.yiaddr, addr);
    assert_eq!(ack.msg.ciaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(ack.reply.destination, Destination::Hardware { addr, hw: dhcp_core::HwAddr::mac(mac(1)) });
    assert_eq!(ack.opt(OptionCode::AddressLeaseTime), Some(&DhcpOption::AddressLeaseTime(3600)));
    assert_eq!(ack.opt(OptionCode::Router), Some(&DhcpOption::Router(vec![SERVER])));
    let lease = s.lease(addr).expect("bound");
    assert_eq!(lease.state, LeaseState::Bound { expires: s.now + 3600 });
    assert_eq!(lease.hwaddr, dhcp_core::HwAddr::mac(mac(1)));
    assert_eq!(s.engine.stats().subnet(1).expect("subnet 1").assigned_addresses(), 1);
    assert_eq!(s.stat(Counter::AckSent), 1);
}

#[test]
fn selecting_another_server_withdraws_our_offer_silently() {
    let mut s = Server::new();
    let addr = s.discover(1).reply.yiaddr;
    let other_server = Ipv4Addr::new(192, 0, 2, 2);
    let outcome = s.send(&dhcp_core::testing::request(mac(1), 1, addr, other_server), &direct());
    assert_eq!(outcome, Outcome::NoReply(NoReplyReason::OtherServerChosen));
    assert_eq!(s.lease(addr).expect("record kept").state, LeaseState::Released);
    // The address is free for the next client at once, not after the offer hold.
    let wants_it = ClientPacket::new(MessageType::Discover, mac(2)).addr_option(50, addr).build();
    assert_eq!(s.expect_reply(&wants_it, &direct()).reply.yiaddr, addr);
}

#[test]
fn selecting_an_address_held_by_another_client_is_naked_by_broadcast() {
    let mut s = Server::new();
    let taken = s.dora(1);
    let nak = s.expect_reply(&dhcp_core::testing::request(mac(2), 2, taken, SERVER), &direct());
    assert_eq!(message_type(&nak), Some(v4::MessageType::Nak));
    assert_eq!(nak.reply.destination, Destination::Broadcast);
    assert_eq!(nak.reply.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(nak.opt(OptionCode::AddressLeaseTime), None);
    assert_eq!(nak.opt(OptionCode::ServerIdentifier), Some(&DhcpOption::ServerIdentifier(SERVER)));
    assert_eq!(s.lease(taken).expect("kept").client.as_bytes(), &[1, 2, 0, 0, 0, 0, 1]);
    assert_eq!(s.stat(Counter::NakSent), 1);
}

#[test]
fn selecting_outside_every_pool_is_naked() {
    let mut s = Server::new();
    let nak = s.expect_reply(&dhcp_core::testing::request(mac(1), 1, Ipv4Addr::new(192, 0, 2, 200), SERVER), &direct());
    assert_eq!(nak.reply.message_type, MessageType::Nak);
    assert_eq!(s.lease(Ipv4Addr::new(192, 0, 2, 200)), None);
}

fn init_reboot(n: u8, addr: Ipv4Addr) -> Vec<u8> {
    ClientPacket::new(MessageType::Request, mac(n)).xid(9).addr_option(50, addr).option(55, &[1, 3]).build()
}

#[test]
fn init_reboot_of_a_known_lease_is_acked() {
    let mut s = Server::new();
    let addr = s.dora(1);
    s.advance(100);
    let ack = s.expect_reply(&init_reboot(1, addr), &direct());
    assert_eq!(ack.reply.message_type, MessageType::Ack);
    assert_eq!(ack.reply.yiaddr, addr);
    assert_eq!(s.lease(addr).expect("bound").state, LeaseState::Bound { expires: s.now + 3600 });
}

#[test]
fn init_reboot_on_the_wrong_network_is_naked() {
    let mut s = Server::new();
    s.dora(1);
    let nak = s.expect_reply(&init_reboot(1, Ipv4Addr::new(203, 0, 113, 9)), &direct());
    assert_eq!(nak.reply.message_type, MessageType::Nak);
    assert_eq!(nak.reply.destination, Destination::Broadcast);
}

#[test]
fn init_reboot_with_another_address_than_ours_is_naked() {
    let mut s = Server::new();
    let addr = s.dora(1);
    let other = Ipv4Addr::new(192, 0, 2, 108);
    assert_ne!(addr, other);
    let nak = s.expect_reply(&init_reboot(1, other), &direct());
    assert_eq!(nak.reply.message_type, MessageType::Nak);
}

#[test]
fn init_reboot_from_an_unknown_client_is_ignored_unless_authoritative() {
    let mut s = Server::new();
    let addr = Ipv4Addr::new(192, 0, 2, 101);
    assert_eq!(s.send(&init_reboot(1, addr), &direct()), Outcome::NoReply(NoReplyReason::UnknownClient));

    let mut auth = Server::with_config(&format!("authoritative = true\n{CONFIG}"));
    // A free pool address: the authority grants it.
    let ack = auth.expect_reply(&init_reboot(1, addr), &direct());
    assert_eq!(ack.reply.message_type, MessageType::Ack);
    // Held by another client: the authority refuses it.
    let nak = auth.expect_reply(&init_reboot(2, addr), &direct());
    assert_eq!(nak.reply.message_type, MessageType::Nak);
    // Outside the pools: refused.
    let nak = auth.expect_reply(&init_reboot(3, Ipv4Addr::new(192, 0, 2, 20)), &direct());
    assert_eq!(nak.reply.message_type, MessageType::Nak);
}

fn renew(n: u8, addr: Ipv4Addr) -> Vec<u8> {
    ClientPacket::new(MessageType::Request, mac(n)).xid(77).ciaddr(addr).option(55, &[1, 3]).build()
}

#[test]
fn renewing_extends_the_lease_and_answers_ciaddr() {
    let mut s = Server::new();
    let addr = s.dora(1);
    s.advance(1800);
    let meta = RecvMeta::new(SocketAddrV4::new(addr, 68)).with_local_addr(SERVER);
    let ack = s.expect_reply(&renew(1, addr), &meta);
    assert_eq!(ack.reply.message_type, MessageType::Ack);
    assert_eq!(ack.reply.destination, Destination::Unicast(addr));
    assert_eq!(ack.msg.ciaddr(), addr);
    assert_eq!(ack.reply.yiaddr, addr);
    assert_eq!(s.lease(addr).expect("bound").state, LeaseState::Bound { expires: s.now + 3600 });
    // Still one assigned address: a renewal is not a new binding.
    assert_eq!(s.engine.stats().subnet(1).expect("subnet").assigned_addresses(), 1);
}

#[test]
fn rebinding_is_acked_by_the_holder_and_ignored_for_unknown_clients() {
    let mut s = Server::new();
    let addr = s.dora(1);
    s.advance(3200);
    let rebind = ClientPacket::new(MessageType::Request, mac(1)).ciaddr(addr).broadcast().build();
    let ack = s.expect_reply(&rebind, &direct());
    assert_eq!(ack.reply.message_type, MessageType::Ack);
    assert_eq!(ack.reply.destination, Destination::Unicast(addr));
    let stranger =
        ClientPacket::new(MessageType::Request, mac(5)).ciaddr(Ipv4Addr::new(192, 0, 2, 107)).broadcast().build();
    assert_eq!(s.send(&stranger, &direct()), Outcome::NoReply(NoReplyReason::UnknownClient));
}

#[test]
fn renewing_an_address_another_client_holds_is_naked() {
    let mut s = Server::new();
    let addr = s.dora(1);
    let nak = s.expect_reply(&renew(2, addr), &direct());
    assert_eq!(nak.reply.message_type, MessageType::Nak);
    assert_eq!(nak.reply.destination, Destination::Broadcast);
}

#[test]
fn decline_puts_the_address_in_probation() {
    let mut s = Server::new();
    let addr = s.dora(1);
    let decline = ClientPacket::new(MessageType::Decline, mac(1)).addr_option(50, addr).addr_option(54, SERVER).build();
    assert_eq!(s.send(&decline, &direct()), Outcome::NoReply(NoReplyReason::Declined));
    assert_eq!(s.lease(addr).expect("kept").state, LeaseState::Declined { until: s.now + 600 });
    let stats = s.engine.stats().subnet(1).expect("subnet");
    assert_eq!(stats.declined_addresses(), 1);
    assert_eq!(stats.assigned_addresses(), 0);
    // Not offered again during probation, not even to the client that declined it: the
    // other eight pool addresses go, then the pool is exhausted.
    for n in 1..=8 {
        assert_ne!(s.discover(n).reply.yiaddr, addr, "client {n} was offered a declined address");
    }
    assert_eq!(
        s.send(&dhcp_core::testing::discover(mac(9), 9), &direct()),
        Outcome::Dropped(DropReason::PoolExhausted)
    );
    s.advance(600);
    let report = s.timers();
    assert_eq!(report.probations_ended, 1);
    assert_eq!(s.engine.stats().subnet(1).expect("subnet").declined_addresses(), 0);
    let offered: Vec<Ipv4Addr> = (20..29).map(|n| s.discover(n).reply.yiaddr).collect();
    assert!(offered.contains(&addr), "{addr} is offered again once probation ends: {offered:?}");
}

#[test]
fn release_frees_the_address_and_the_client_gets_it_back() {
    let mut s = Server::new();
    let addr = s.dora(1);
    let release = ClientPacket::new(MessageType::Release, mac(1)).ciaddr(addr).addr_option(54, SERVER).build();
    assert_eq!(s.send(&release, &direct()), Outcome::NoReply(NoReplyReason::Released));
    assert_eq!(s.lease(addr).expect("kept for affinity").state, LeaseState::Released);
    assert_eq!(s.engine.stats().subnet(1).expect("subnet").assigned_addresses(), 0);
    // Another client takes a fresh address first; the releasing client gets its own back.
    assert_ne!(s.discover(2).reply.yiaddr, addr);
    assert_eq!(s.discover(1).reply.yiaddr, addr);
    // A RELEASE of an address the client does not hold changes nothing.
    let bogus = ClientPacket::new(MessageType::Release, mac(3)).ciaddr(addr).build();
    assert_eq!(s.send(&bogus, &direct()), Outcome::NoReply(NoReplyReason::NotHeld));
}

#[test]
fn inform_gets_options_without_a_lease() {
    let mut s = Server::new();
    let ciaddr = Ipv4Addr::new(192, 0, 2, 30);
    let inform = ClientPacket::new(MessageType::Inform, mac(1)).ciaddr(ciaddr).option(55, &[6, 15]).build();
    let meta = RecvMeta::new(SocketAddrV4::new(ciaddr, 68)).with_local_addr(SERVER);
    let ack = s.expect_reply(&inform, &meta);
    assert_eq!(ack.reply.message_type, MessageType::Ack);
    assert_eq!(ack.reply.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(ack.msg.ciaddr(), ciaddr);
    assert_eq!(ack.reply.destination, Destination::Unicast(ciaddr));
    assert_eq!(ack.opt(OptionCode::AddressLeaseTime), None);
    assert_eq!(ack.opt(OptionCode::Renewal), None);
    assert_eq!(ack.opt(OptionCode::DomainName), Some(&DhcpOption::DomainName("example.test".into())));
    assert_eq!(s.lease(ciaddr), None);
    assert_eq!(s.stat(Counter::InformReceived), 1);
}

fn relay_agent_info(suboptions: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (code, data) in suboptions {
        out.push(*code);
        out.push(data.len() as u8);
        out.extend_from_slice(data);
    }
    out
}

#[test]
fn relayed_discover_is_served_from_the_relay_subnet_and_echoes_option_82_last() {
    let mut s = Server::new();
    let info = relay_agent_info(&[(1, b"port-1"), (2, b"switch-a")]);
    let discover =
        ClientPacket::new(MessageType::Discover, mac(1)).option(55, &[3, 1]).giaddr(RELAY).option(82, &info).build();
    let offer = s.expect_reply(&discover, &relayed());
    assert_eq!(offer.reply.yiaddr, Ipv4Addr::new(198, 51, 100, 10));
    assert_eq!(offer.reply.destination, Destination::Relay { addr: RELAY, port: 67 });
    assert_eq!(offer.msg.giaddr(), RELAY);
    assert_eq!(offer.opt(OptionCode::Router), Some(&DhcpOption::Router(vec![RELAY])));
    assert_eq!(offer.codes().last(), Some(&82));
    assert_eq!(offer.raw(82), Some(info));
}

#[test]
fn relay_port_suboption_sends_the_reply_to_the_relays_source_port() {
    let mut s = Server::new();
    let info = relay_agent_info(&[(19, &[0, 0])]);
    let discover = ClientPacket::new(MessageType::Discover, mac(1)).giaddr(RELAY).option(82, &info).build();
    let meta = RecvMeta::new(SocketAddrV4::new(RELAY, 6767)).with_local_addr(SERVER);
    let offer = s.expect_reply(&discover, &meta);
    assert_eq!(offer.reply.destination, Destination::Relay { addr: RELAY, port: 6767 });
}

#[test]
fn nak_to_a_relayed_client_sets_the_broadcast_bit() {
    let mut s = Server::new();
    let request = dhcp_core::testing::request(mac(1), 1, Ipv4Addr::new(198, 51, 100, 200), SERVER);
    let mut relayed_request = request.clone();
    relayed_request[24..28].copy_from_slice(&RELAY.octets());
    let nak = s.expect_reply(&relayed_request, &relayed());
    assert_eq!(nak.reply.message_type, MessageType::Nak);
    assert_eq!(nak.reply.destination, Destination::Relay { addr: RELAY, port: 67 });
    assert!(nak.msg.flags().broadcast());
}

#[test]
fn circuit_id_reservation_is_honoured_for_relayed_clients() {
    let mut s = Server::new();
    let info = relay_agent_info(&[(1, b"port-7")]);
    let discover = ClientPacket::new(MessageType::Discover, mac(1)).giaddr(RELAY).option(82, &info).build();
    assert_eq!(s.expect_reply(&discover, &relayed()).reply.yiaddr, Ipv4Addr::new(198, 51, 100, 77));
}

#[test]
fn option_118_selects_the_subnet() {
    let mut s = Server::new();
    // Relay information is believed from relays only (see tests/protocol_rules.rs for the rest).
    let discover = ClientPacket::new(MessageType::Discover, mac(1))
        .giaddr(RELAY)
        .addr_option(118, Ipv4Addr::new(192, 0, 2, 0))
        .build();
    assert_eq!(s.expect_reply(&discover, &relayed()).reply.yiaddr, Ipv4Addr::new(192, 0, 2, 100));
}

#[test]
fn client_identifier_is_the_identity_and_is_echoed() {
    let mut s = Server::new();
    let with_id = |id: &[u8]| ClientPacket::new(MessageType::Discover, mac(1)).option(61, id).build();
    let a = s.expect_reply(&with_id(&[0xff, 1, 2, 3, 4]), &direct());
    let b = s.expect_reply(&with_id(&[0xff, 9, 9, 9, 9]), &direct());
    // Same chaddr, different identifiers: two clients, two addresses.
    assert_ne!(a.reply.yiaddr, b.reply.yiaddr);
    assert_eq!(a.raw(61), Some(vec![0xff, 1, 2, 3, 4]));
    let lease = s.lease(a.reply.yiaddr).expect("offered");
    assert_eq!(lease.client.as_bytes(), &[0xff, 1, 2, 3, 4]);
}

#[test]
fn mac_reservation_gives_its_address_hostname_group_and_options() {
    let mut s = Server::new();
    let discover = ClientPacket::new(MessageType::Discover, mac(0x99)).option(55, &[1, 3, 12, 15, 42]).build();
    let offer = s.expect_reply(&discover, &direct());
    assert_eq!(offer.reply.yiaddr, Ipv4Addr::new(192, 0, 2, 50));
    assert_eq!(offer.opt(OptionCode::Hostname), Some(&DhcpOption::Hostname("printer".into())));
    // Reservation options win over global ones; group options apply.
    assert_eq!(offer.opt(OptionCode::DomainName), Some(&DhcpOption::DomainName("printers.example.test".into())));
    assert_eq!(offer.opt(OptionCode::NtpServers), Some(&DhcpOption::NtpServers(vec![Ipv4Addr::new(192, 0, 2, 123)])));
    assert_eq!(s.lease(offer.reply.yiaddr).expect("held").hostname.as_deref(), Some("printer"));
}

#[test]
fn client_id_reservation_gives_its_address() {
    let mut s = Server::new();
    let discover = ClientPacket::new(MessageType::Discover, mac(0x42)).option(61, &[1, 2, 0, 0, 0, 0, 0x98]).build();
    assert_eq!(s.expect_reply(&discover, &direct()).reply.yiaddr, Ipv4Addr::new(192, 0, 2, 51));
}

#[test]
fn a_reserved_address_inside_a_pool_is_never_given_to_others() {
    let mut s = Server::new();
    let mut given = Vec::new();
    // .100-.109 less the reserved .105: nine addresses.
    for n in 1..=9 {
        given.push(s.dora(n));
    }
    assert!(!given.contains(&Ipv4Addr::new(192, 0, 2, 105)));
    let exhausted = s.send(&dhcp_core::testing::discover(mac(10), 10), &direct());
    assert_eq!(exhausted, Outcome::Dropped(DropReason::PoolExhausted));
    assert_eq!(s.stat(Counter::AllocationFail), 1);
    assert_eq!(s.discover(0x97).reply.yiaddr, Ipv4Addr::new(192, 0, 2, 105));
}

#[test]
fn vendor_class_selects_a_group_with_its_options_and_lease_time() {
    let mut s = Server::new();
    let discover =
        ClientPacket::new(MessageType::Discover, mac(1)).option(60, b"Polycom-VVX").option(55, &[66]).build();
    let offer = s.expect_reply(&discover, &direct());
    assert_eq!(offer.opt(OptionCode::AddressLeaseTime), Some(&DhcpOption::AddressLeaseTime(600)));
    assert_eq!(offer.raw(66), Some(b"tftp.example.test".to_vec()));
    let plain = s.expect_reply(&ClientPacket::new(MessageType::Discover, mac(2)).option(55, &[66]).build(), &direct());
    assert_eq!(plain.raw(66), None);
}

const BIG_OPTION_CONFIG: &str = r#"
server-id = "192.0.2.1"
[[subnets]]
id = 1
subnet = "192.0.2.0/24"
pools = ["192.0.2.100-192.0.2.109"]
options = { routers = ["192.0.2.1"], option-224 = "HEX" }
"#;

fn big_option_server(len: usize) -> (Server, Vec<u8>) {
    let value: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
    (Server::with_config(&BIG_OPTION_CONFIG.replace("HEX", &hex)), value)
}

#[test]
fn options_over_the_default_size_spill_into_file_and_sname() {
    let (mut s, value) = big_option_server(300);
    let discover = ClientPacket::new(MessageType::Discover, mac(1)).option(55, &[224, 3]).build();
    let offer = s.expect_reply(&discover, &direct());
    assert!(offer.bytes.len() <= 548, "reply of {} bytes exceeds 576-byte datagram", offer.bytes.len());
    assert!(offer.raw(52).is_some(), "option overload is used");
    assert_eq!(offer.raw(224), Some(value));
    assert_eq!(offer.raw(3), Some(vec![192, 0, 2, 1]));
}

#[test]
fn maximum_message_size_lets_long_options_fit_without_overload() {
    let (mut s, value) = big_option_server(300);
    let discover =
        ClientPacket::new(MessageType::Discover, mac(1)).option(57, &1500u16.to_be_bytes()).option(55, &[224]).build();
    let offer = s.expect_reply(&discover, &direct());
    assert_eq!(offer.raw(52), None);
    // RFC 3396: split into two instances of the same code, joined by the reader.
    assert_eq!(offer.codes().iter().filter(|c| **c == 224).count(), 2);
    assert_eq!(offer.raw(224), Some(value));
}

#[test]
fn lease_expiry_is_reclaimed_and_counted() {
    let mut s = Server::new();
    let addr = s.dora(1);
    s.advance(3599);
    assert_eq!(s.timers().expired, 0);
    s.advance(1);
    let report = s.timers();
    assert_eq!(report.expired, 1);
    assert_eq!(s.lease(addr).expect("kept for affinity").state, LeaseState::Expired);
    let stats = s.engine.stats().subnet(1).expect("subnet");
    assert_eq!(stats.reclaimed_leases(), 1);
    assert_eq!(stats.assigned_addresses(), 0);
    assert_eq!(s.engine.poll_timeout(), s.now + 5);
}

#[test]
fn a_lapsed_offer_frees_the_address() {
    let mut s = Server::new();
    for n in 1..=9 {
        s.discover(n);
    }
    assert_eq!(
        s.send(&dhcp_core::testing::discover(mac(10), 10), &direct()),
        Outcome::Dropped(DropReason::PoolExhausted)
    );
    s.advance(30);
    assert_eq!(s.timers().offers_lapsed, 9);
    assert_eq!(s.discover(10).reply.message_type, MessageType::Offer);
}

#[test]
fn unknown_relay_and_server_messages_are_dropped_and_counted() {
    let mut s = Server::new();
    let stray = ClientPacket::new(MessageType::Discover, mac(1)).giaddr(Ipv4Addr::new(203, 0, 113, 1)).build();
    assert_eq!(s.send(&stray, &relayed()), Outcome::Dropped(DropReason::NoSubnet(Ipv4Addr::new(203, 0, 113, 1))));
    let offer_to_server = ClientPacket::new(MessageType::Offer, mac(1)).build();
    assert_eq!(
        s.send(&offer_to_server, &direct()),
        Outcome::Dropped(DropReason::UnexpectedMessageType(MessageType::Offer))
    );
    assert_eq!(s.stat(Counter::ReceiveDrop), 2);
    assert_eq!(s.stat(Counter::UnknownReceived), 1);
    assert_eq!(s.stat(Counter::Received), 2);
}

/// One valid DISCOVER, damaged in each way the issue names.
fn malformed_packets() -> Vec<(&'static str, Vec<u8>, ParseError)> {
    let good = ClientPacket::new(MessageType::Discover, mac(1)).option(55, &[1, 3]).build();
    let mut cases = Vec::new();
    cases.push(("empty", Vec::new(), ParseError::Truncated { len: 0 }));
    cases.push(("truncated header", good[..100].to_vec(), ParseError::Truncated { len: 100 }));
    cases.push(("header without cookie", good[..236].to_vec(), ParseError::Truncated { len: 236 }));
    let mut cookie = good.clone();
    cookie[236..240].copy_from_slice(&[1, 2, 3, 4]);
    cases.push(("wrong magic cookie", cookie, ParseError::BadMagicCookie));
    let mut reply = good.clone();
    reply[0] = 2;
    cases.push(("BOOTREPLY sent to the server", reply, ParseError::WrongOp(2)));
    let mut hlen = good.clone();
    hlen[2] = 17;
    cases.push(("hlen over 16", hlen, ParseError::HlenTooLong(17)));
    let mut overrun = good[..good.len() - 1].to_vec();
    overrun.extend_from_slice(&[12, 40, b'x']);
    let offset = overrun.len() - 3;
    cases.push(("option overrunning the packet", overrun, ParseError::OptionOverrun { code: 12, offset }));
    let empty_id = ClientPacket::new(MessageType::Discover, mac(1)).option(61, &[]).build();
    cases.push(("empty client identifier", empty_id, ParseError::BadClientId));
    let mut no_type = good.clone();
    no_type[240] = 0; // pad over the message type option
    no_type[241] = 0;
    no_type[242] = 0;
    cases.push(("message type missing", no_type, ParseError::MissingMessageType));
    cases
}

#[test]
fn malformed_input_is_dropped_and_counted() {
    let mut s = Server::new();
    let cases = malformed_packets();
    for (what, bytes, want) in &cases {
        let outcome = s.send(bytes, &direct());
        assert_eq!(outcome, Outcome::Dropped(DropReason::Malformed(*want)), "{what}");
    }
    let n = cases.len() as u64;
    assert_eq!(s.stat(Counter::ParseFailed), n);
    assert_eq!(s.stat(Counter::ReceiveDrop), n);
    assert_eq!(s.stat(Counter::Received), n);
    assert_eq!(s.stat(Counter::OfferSent), 0);
}

#[test]
fn random_damage_never_panics() {
    let mut s = Server::new();
    let seeds = [
        dhcp_core::testing::discover(mac(1), 1),
        dhcp_core::testing::request(mac(1), 1, Ipv4Addr::new(192, 0, 2, 100), SERVER),
        ClientPacket::new(MessageType::Discover, mac(1))
            .giaddr(RELAY)
            .option(82, &relay_agent_info(&[(1, b"x"), (19, &[0, 0])]))
            .build(),
    ];
    // xorshift: deterministic, no dependency.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut replies = 0;
    for round in 0..20_000 {
        let mut bytes = seeds[round % seeds.len()].clone();
        for _ in 0..(next() % 6 + 1) {
            match next() % 4 {
                0 if !bytes.is_empty() => {
                    let i = (next() as usize) % bytes.len();
                    bytes[i] = next() as u8;
                }
                0 => {}
                1 => bytes.truncate((next() as usize) % (bytes.len() + 1)),
                2 => bytes.extend((0..next() % 40).map(|_| next() as u8)),
                _ => {
                    let i = 240 + (next() as usize) % 20;
                    if i < bytes.len() {
                        bytes[i] = [0, 52, 53, 55, 61, 82, 255][(next() % 7) as usize];
                    }
                }
            }
        }
        if let Outcome::Reply(r) = s.send(&bytes, &direct()) {
            replies += 1;
            assert!(r.len >= 300 && r.len <= 1472, "reply length {}", r.len);
            Packet::parse_reply(&s.out).expect("every reply we send parses");
        }
    }
    assert!(replies > 0, "some damaged packets are still valid requests");
    assert!(s.stat(Counter::ParseFailed) > 0);
}

#[test]
fn engine_futures_are_send_so_a_runtime_can_spawn_them() {
    fn assert_send<T: Send>(value: T) -> T {
        value
    }
    let s = Server::new();
    let packet = dhcp_core::testing::discover(mac(1), 1);
    let meta = direct();
    let mut out = Vec::new();
    let outcome = block_on(assert_send(s.engine.handle(&packet, &meta, s.now, &mut out))).expect("ready");
    assert!(matches!(outcome, Outcome::Reply(_)));
    let report = block_on(assert_send(s.engine.handle_timeout(s.now))).expect("ready").expect("store answers");
    assert_eq!(report, dhcp_core::TimerReport::default());
}
