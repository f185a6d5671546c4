//! A store with a pool of its own (the Go Redis DHCP server's `pool` hash): the engine offers
//! its proposals to clients without an entry, held to the offer limits, writes nothing to the
//! store's pool for an offer, and takes the address there only as it binds it for the client it
//! offered it to.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Mutex;

use dhcp_core::testing::{discover, request};
use dhcp_core::{
    ClientId, Config, Counter, Engine, HostQuery, HwAddr, Lease, LeaseState, LeaseStore, MessageType, Outcome, PoolRef,
    RecvMeta, StoreError, StoreHost, Timestamp, block_on,
};
use dhcp_store::MemoryStore;

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// No pool in the config: every dynamic address comes from the store's pool.
const CONFIG: &str = r#"
server-id = "192.0.2.1"
host-source = "store"
lease-time = 3600
offer-hold-time = 30
max-offers = 2

[[subnets]]
id = 1
subnet = "192.0.2.0/24"
"#;

/// The memory store for leases, and a pool of its own: address → holder, as the `pool` hash.
struct PoolStore {
    leases: MemoryStore,
    pool: Mutex<HashMap<Ipv4Addr, Option<HwAddr>>>,
    /// Refuse every take, as when another server took the address meanwhile.
    refuse: bool,
}

impl PoolStore {
    fn new(addrs: &[Ipv4Addr]) -> Self {
        let pool = addrs.iter().map(|a| (*a, None)).collect();
        PoolStore { leases: MemoryStore::new(), pool: Mutex::new(pool), refuse: false }
    }

    fn holder(&self, addr: Ipv4Addr) -> Option<HwAddr> {
        self.pool.lock().expect("not poisoned").get(&addr).copied().flatten()
    }
}

impl LeaseStore for PoolStore {
    async fn host(&self, query: &HostQuery<'_>) -> Result<Option<StoreHost>, StoreError> {
        let pool = self.pool.lock().expect("not poisoned");
        let mut free: Vec<Ipv4Addr> = pool.iter().filter(|(_, h)| h.is_none()).map(|(a, _)| *a).collect();
        free.sort();
        let own = pool.iter().find(|(_, h)| **h == Some(*query.hw)).map(|(a, _)| *a);
        Ok(Some(StoreHost::pooled(None, own.into_iter().chain(free).collect())))
    }

    async fn take_pool_address(&self, query: &HostQuery<'_>, addr: Ipv4Addr) -> Result<bool, StoreError> {
        let mut pool = self.pool.lock().expect("not poisoned");
        match pool.get_mut(&addr) {
            Some(holder) if !self.refuse && holder.is_none_or(|h| h == *query.hw) => {
                *holder = Some(*query.hw);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn lease_by_client(&self, subnet: u32, client: &ClientId) -> Result<Option<Lease>, StoreError> {
        self.leases.lease_by_client(subnet, client).await
    }
    async fn lease_by_addr(&self, addr: Ipv4Addr) -> Result<Option<Lease>, StoreError> {
        self.leases.lease_by_addr(addr).await
    }
    async fn claim(&self, lease: &Lease, now: Timestamp) -> Result<Option<Lease>, StoreError> {
        self.leases.claim(lease, now).await
    }
    async fn allocate(&self, pool: PoolRef<'_>, template: &Lease, now: Timestamp) -> Result<Option<Lease>, StoreError> {
        self.leases.allocate(pool, template, now).await
    }
    async fn update_state(
        &self,
        addr: Ipv4Addr,
        client: &ClientId,
        state: LeaseState,
    ) -> Result<Option<Lease>, StoreError> {
        self.leases.update_state(addr, client, state).await
    }
    async fn reclaim_expired(&self, now: Timestamp, limit: usize) -> Result<Vec<Lease>, StoreError> {
        self.leases.reclaim_expired(now, limit).await
    }
    async fn delete(&self, addr: Ipv4Addr) -> Result<bool, StoreError> {
        self.leases.delete(addr).await
    }
    async fn list(&self, subnet: Option<u32>) -> Result<Vec<Lease>, StoreError> {
        self.leases.list(subnet).await
    }
}

fn addr(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, last)
}

fn mac(n: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0, n]
}

fn engine(store: PoolStore) -> Engine<PoolStore> {
    Engine::new(Config::from_toml_str(CONFIG).expect("valid"), store)
}

fn send(engine: &Engine<PoolStore>, packet: &[u8], now: u64) -> Outcome {
    let meta = RecvMeta::new(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68)).with_local_addr(SERVER);
    let mut out = Vec::new();
    block_on(engine.handle(packet, &meta, Timestamp::from_secs(now), &mut out)).expect("ready")
}

fn reply(outcome: Outcome) -> (MessageType, Ipv4Addr) {
    match outcome {
        Outcome::Reply(r) => (r.message_type, r.yiaddr),
        other => panic!("expected a reply, got {other:?}"),
    }
}

const T0: u64 = 1_700_000_000;

#[test]
fn an_offer_takes_nothing_and_the_binding_takes_the_address_for_its_client() {
    let engine = engine(PoolStore::new(&[addr(200), addr(201), addr(202)]));
    let (kind, offered) = reply(send(&engine, &discover(mac(1), 1), T0));
    assert_eq!((kind, offered), (MessageType::Offer, addr(200)));
    assert_eq!(engine.store().holder(offered), None, "an offer writes nothing to the store's pool");

    let (kind, bound) = reply(send(&engine, &request(mac(1), 2, offered, SERVER), T0 + 1));
    assert_eq!((kind, bound), (MessageType::Ack, offered));
    assert_eq!(engine.store().holder(offered), Some(HwAddr::mac(mac(1))), "bound: the client's in the pool");

    // The next client is offered another address: the first is held by the lease, then taken.
    let (_, second) = reply(send(&engine, &discover(mac(2), 3), T0 + 2));
    assert_eq!(second, addr(201));
}

#[test]
fn a_flood_of_discovers_takes_nothing_for_good_and_is_held_to_the_offer_limit() {
    let engine = engine(PoolStore::new(&[addr(200), addr(201), addr(202), addr(203)]));
    let mut offers = 0;
    for n in 1..=20 {
        if let Outcome::Reply(_) = send(&engine, &discover(mac(n), u32::from(n)), T0) {
            offers += 1;
        }
    }
    assert_eq!(offers, 2, "max-offers = 2 bounds the store's pool as it bounds the config's");
    assert_eq!(engine.stats().get(Counter::OfferLimitDrop), 18);
    let pool = engine.store().pool.lock().expect("not poisoned").clone();
    assert!(pool.values().all(Option::is_none), "nothing taken: {pool:?}");
}

#[test]
fn a_request_for_a_pool_address_never_offered_is_naked_and_takes_nothing() {
    let engine = engine(PoolStore::new(&[addr(200), addr(201)]));
    let (kind, _) = reply(send(&engine, &request(mac(9), 1, addr(201), SERVER), T0));
    assert_eq!(kind, MessageType::Nak);
    assert_eq!(engine.store().holder(addr(201)), None);
}

#[test]
fn an_address_taken_elsewhere_meanwhile_is_naked_and_counted() {
    let mut store = PoolStore::new(&[addr(200)]);
    store.refuse = true;
    let engine = engine(store);
    let (_, offered) = reply(send(&engine, &discover(mac(1), 1), T0));
    let (kind, _) = reply(send(&engine, &request(mac(1), 2, offered, SERVER), T0 + 1));
    assert_eq!(kind, MessageType::Nak);
    assert_eq!(engine.stats().get(Counter::StorePoolTakeRefused), 1);
    let stored = block_on(engine.store().leases.lease_by_addr(offered)).expect("ready").expect("answers");
    assert!(stored.is_some_and(|l| !matches!(l.state, LeaseState::Bound { .. })), "no binding stored");
}
