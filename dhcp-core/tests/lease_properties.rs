//! Property tests: random sequences of client actions and clock steps against the engine on
//! the in-memory store, with a model of what each client was told, checked after every step.
//!
//! - no address is bound to two clients at once (in the replies and in the store);
//! - every offered or acknowledged address lies in a pool of the subnet, or is the client's
//!   reservation;
//! - a returning client gets its previous address back while that address is free;
//! - a declined address is not offered or acknowledged during its probation;
//! - a client with a reservation always gets its reserved address.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use dhcp_core::testing::ClientPacket;
use dhcp_core::wire::Packet;
use dhcp_core::{
    ClientId, Config, Engine, HwAddr, LeaseState, LeaseStore, MessageType, NoReplyReason, Outcome, RecvMeta, Timestamp,
    block_on,
};
use dhcp_store::MemoryStore;
use proptest::prelude::*;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const CLIENTS: u8 = 16;
const LEASE: u64 = 60;
const PROBATION: u64 = 120;

const CONFIG: &str = r#"
authoritative = true
lease-time = 60
offer-hold-time = 30
decline-probation-period = 120

[[subnets]]
id = 1
subnet = "10.0.0.0/24"
pools = ["10.0.0.10-10.0.0.21"]

[[subnets.reservations]]
hw-address = "02:00:00:00:00:00"
ip-address = "10.0.0.5"

[[subnets.reservations]]
hw-address = "02:00:00:00:00:01"
ip-address = "10.0.0.15"
"#;

/// What client `n` is reserved, if anything.
fn reserved(n: u8) -> Option<Ipv4Addr> {
    match n {
        0 => Some(Ipv4Addr::new(10, 0, 0, 5)),
        1 => Some(Ipv4Addr::new(10, 0, 0, 15)),
        _ => None,
    }
}

fn in_pool(addr: Ipv4Addr) -> bool {
    let o = addr.octets();
    o[..3] == [10, 0, 0] && (10..=21).contains(&o[3]) && o[3] != 15
}

fn mac(n: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0, n]
}

/// Every third client identifies itself with option 61 rather than its hardware address.
fn uses_client_id(n: u8) -> bool {
    n % 3 == 1
}

fn client_id(n: u8) -> ClientId {
    if uses_client_id(n) {
        ClientId::from_bytes(&[0xff, 0, 0, 0, n])
    } else {
        ClientId::from_hardware(1, &HwAddr::mac(mac(n)))
    }
}

#[derive(Debug, Clone)]
enum Action {
    Discover(u8),
    Select(u8),
    Renew(u8),
    InitReboot(u8),
    Release(u8),
    Decline(u8),
    Inform(u8),
    Wait(u64),
}

fn action() -> impl Strategy<Value = Action> {
    let client = 0..CLIENTS;
    prop_oneof![
        4 => client.clone().prop_map(Action::Discover),
        4 => client.clone().prop_map(Action::Select),
        2 => client.clone().prop_map(Action::Renew),
        1 => client.clone().prop_map(Action::InitReboot),
        2 => client.clone().prop_map(Action::Release),
        1 => (2..CLIENTS).prop_map(Action::Decline),
        1 => client.prop_map(Action::Inform),
        2 => (0u64..=90).prop_map(Action::Wait),
    ]
}

/// What one client has been told.
#[derive(Debug, Default, Clone)]
struct Client {
    offered: Option<Ipv4Addr>,
    bound: Option<(Ipv4Addr, Timestamp)>,
    /// The address of the client's last binding, for affinity.
    last: Option<Ipv4Addr>,
}

struct World {
    engine: Engine<MemoryStore>,
    now: Timestamp,
    clients: Vec<Client>,
    /// Declined addresses and the end of their probation.
    declined: HashMap<Ipv4Addr, Timestamp>,
    out: Vec<u8>,
    xid: u32,
}

impl World {
    fn new() -> World {
        let config = Config::from_toml_str(CONFIG).expect("valid config");
        World {
            engine: Engine::new(config, MemoryStore::new()),
            now: Timestamp::from_secs(1_700_000_000),
            clients: vec![Client::default(); usize::from(CLIENTS)],
            declined: HashMap::new(),
            out: Vec::new(),
            xid: 0,
        }
    }

    fn packet(&mut self, kind: MessageType, n: u8) -> ClientPacket {
        self.xid += 1;
        let p = ClientPacket::new(kind, mac(n)).xid(self.xid).option(55, &[1, 3, 6]);
        if uses_client_id(n) { p.option(61, &[0xff, 0, 0, 0, n]) } else { p }
    }

    fn send(&mut self, packet: &[u8], src: Ipv4Addr) -> Outcome {
        let meta = RecvMeta::new(SocketAddrV4::new(src, 68)).with_local_addr(SERVER).with_ifindex(1);
        block_on(self.engine.handle(packet, &meta, self.now, &mut self.out)).expect("memory store is ready")
    }

    /// Whether `addr` is free for client `n` in the store right now.
    fn free_for(&self, addr: Ipv4Addr, n: u8) -> bool {
        match block_on(self.engine.store().lease_by_addr(addr)).expect("ready").expect("store") {
            None => true,
            Some(lease) => lease.available_to(&client_id(n), self.now),
        }
    }

    /// Runs one action and checks every property; returns a description of a violation.
    fn step(&mut self, action: &Action) -> Result<(), String> {
        let (n, outcome, affinity) = match *action {
            Action::Wait(secs) => {
                self.now = self.now + secs;
                let _reclaimed =
                    block_on(self.engine.handle_timeout(self.now)).expect("ready").map_err(|e| e.to_string())?;
                return self.check_store();
            }
            Action::Discover(n) => {
                let c = &self.clients[usize::from(n)];
                // Affinity is owed when the client's binding is over and its address is free.
                let owed = match (c.bound, c.last) {
                    (None, Some(last)) if reserved(n).is_none() && self.free_for(last, n) => Some(last),
                    _ => None,
                };
                let p = self.packet(MessageType::Discover, n).build();
                (n, self.send(&p, Ipv4Addr::UNSPECIFIED), owed)
            }
            Action::Select(n) => {
                let Some(addr) = self.clients[usize::from(n)].offered else { return Ok(()) };
                let p = self.packet(MessageType::Request, n).addr_option(50, addr).addr_option(54, SERVER).build();
                (n, self.send(&p, Ipv4Addr::UNSPECIFIED), None)
            }
            Action::Renew(n) => {
                let Some((addr, _)) = self.clients[usize::from(n)].bound else { return Ok(()) };
                let p = self.packet(MessageType::Request, n).ciaddr(addr).build();
                (n, self.send(&p, addr), None)
            }
            Action::InitReboot(n) => {
                let Some(addr) = self.clients[usize::from(n)].last else { return Ok(()) };
                let p = self.packet(MessageType::Request, n).addr_option(50, addr).build();
                (n, self.send(&p, Ipv4Addr::UNSPECIFIED), None)
            }
            Action::Release(n) => {
                let Some((addr, _)) = self.clients[usize::from(n)].bound else { return Ok(()) };
                let p = self.packet(MessageType::Release, n).ciaddr(addr).addr_option(54, SERVER).build();
                let outcome = self.send(&p, addr);
                let c = &mut self.clients[usize::from(n)];
                c.bound = None;
                c.offered = None;
                (n, outcome, None)
            }
            Action::Decline(n) => {
                let Some((addr, _)) = self.clients[usize::from(n)].bound else { return Ok(()) };
                let p = self.packet(MessageType::Decline, n).addr_option(50, addr).addr_option(54, SERVER).build();
                let outcome = self.send(&p, Ipv4Addr::UNSPECIFIED);
                if outcome == Outcome::NoReply(NoReplyReason::Declined) {
                    self.declined.insert(addr, self.now + PROBATION);
                }
                let c = &mut self.clients[usize::from(n)];
                c.bound = None;
                c.offered = None;
                c.last = None;
                (n, outcome, None)
            }
            Action::Inform(n) => {
                let Some((addr, _)) = self.clients[usize::from(n)].bound else { return Ok(()) };
                let p = self.packet(MessageType::Inform, n).ciaddr(addr).build();
                (n, self.send(&p, addr), None)
            }
        };
        self.observe(n, action, outcome, affinity)?;
        self.check_store()
    }

    fn observe(&mut self, n: u8, action: &Action, outcome: Outcome, affinity: Option<Ipv4Addr>) -> Result<(), String> {
        let Outcome::Reply(reply) = outcome else { return Ok(()) };
        let packet = Packet::parse_reply(&self.out[..reply.len]).map_err(|e| format!("reply does not parse: {e}"))?;
        let addr = packet.yiaddr();
        let granted = matches!(reply.message_type, MessageType::Offer | MessageType::Ack) && !addr.is_unspecified();
        if granted {
            if let Some(r) = reserved(n) {
                if addr != r {
                    return Err(format!("client {n} got {addr} instead of its reservation {r} ({action:?})"));
                }
            } else if !in_pool(addr) {
                return Err(format!("client {n} got {addr}, outside the pools ({action:?})"));
            }
            if let Some(until) = self.declined.get(&addr)
                && self.now < *until
            {
                return Err(format!("{addr} given to client {n} during its probation ({action:?})"));
            }
        }
        if granted {
            // The address's record is this client's now: another's affinity to it is gone.
            for (m, c) in self.clients.iter_mut().enumerate() {
                if m != usize::from(n) && c.last == Some(addr) {
                    c.last = None;
                }
            }
        }
        if let Some(owed) = affinity
            && reply.message_type == MessageType::Offer
            && addr != owed
        {
            return Err(format!("client {n} came back and was offered {addr}, not its free {owed}"));
        }
        let c = &mut self.clients[usize::from(n)];
        match reply.message_type {
            MessageType::Offer => c.offered = Some(addr),
            MessageType::Ack if granted => {
                let lease_time = packet.option(51).map(|t| u32::from_be_bytes([t[0], t[1], t[2], t[3]]));
                if lease_time != Some(LEASE as u32) {
                    return Err(format!("ACK lease time {lease_time:?}"));
                }
                c.bound = Some((addr, self.now + LEASE));
                c.last = Some(addr);
                let now = self.now;
                for (other, oc) in self.clients.iter().enumerate() {
                    if other != usize::from(n)
                        && let Some((a, expires)) = oc.bound
                        && a == addr
                        && expires > now
                    {
                        return Err(format!("{addr} bound to clients {n} and {other} at once"));
                    }
                }
            }
            MessageType::Nak => {
                c.bound = None;
                c.offered = None;
            }
            _ => {}
        }
        Ok(())
    }

    /// The store agrees: each unexpired binding belongs to the client the model says.
    fn check_store(&mut self) -> Result<(), String> {
        let now = self.now;
        // Bindings the model holds past their expiry are over.
        for c in &mut self.clients {
            if c.bound.is_some_and(|(_, expires)| expires <= now) {
                c.bound = None;
            }
        }
        let leases = block_on(self.engine.store().list(None)).expect("ready").map_err(|e| e.to_string())?;
        for lease in leases {
            if let LeaseState::Bound { expires } = lease.state
                && expires > now
            {
                let holder = (0..CLIENTS).find(|n| client_id(*n) == lease.client);
                let Some(holder) = holder else { return Err(format!("store binds {} to a stranger", lease.addr)) };
                let model = self.clients[usize::from(holder)].bound.map(|(a, _)| a);
                if model != Some(lease.addr) {
                    return Err(format!("store binds {} to client {holder}, which was told {model:?}", lease.addr));
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn leases_stay_consistent(actions in proptest::collection::vec(action(), 1..80)) {
        let mut world = World::new();
        for (i, action) in actions.iter().enumerate() {
            if let Err(violation) = world.step(action) {
                prop_assert!(false, "step {i} {action:?}: {violation}");
            }
        }
    }
}

/// Found by CI (2026-11-29), a flaw of the model, not of the engine: client 6's binding ran
/// out, client 11 was offered the free address and let the offer lapse, and client 6, back,
/// was owed it by the model. The store keeps one record an address: the offer to client 11
/// replaced client 6's, so nothing ties client 6 to it any more (Kea's memfile behaves alike).
#[test]
fn a_returning_client_gets_its_address_back_after_other_clients_came_and_went() {
    use Action::*;
    let actions = [
        Discover(6),
        Wait(1),
        Discover(7),
        Discover(14),
        Discover(4),
        Discover(9),
        Discover(8),
        Wait(39),
        Discover(10),
        Discover(3),
        Discover(2),
        Discover(12),
        Select(6),
        Wait(6),
        Wait(54),
        Discover(5),
        Discover(11),
        Wait(30),
        Discover(6),
    ];
    let mut world = World::new();
    for (i, action) in actions.iter().enumerate() {
        if let Err(violation) = world.step(action) {
            panic!("step {i} {action:?}: {violation}");
        }
    }
}
