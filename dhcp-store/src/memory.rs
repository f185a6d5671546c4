//! The in-memory lease store.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::{Ready, ready};
use std::hash::BuildHasher;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::sync::{Mutex, MutexGuard};

use dhcp_core::{ClientId, HwAddr, Lease, LeaseState, LeaseStore, PoolRef, StoreError, Timestamp};
use hashbrown::{DefaultHashBuilder, HashTable};

use crate::addr_index::AddrIndex;
use crate::codec::{self, BOUND, DECLINED, EXPIRED, OFFERED, RELEASED};

/// Leases in this process's memory. The default store, and the one the benchmarks use.
///
/// Every operation takes one short lock and does a bounded amount of work:
/// - allocation walks each pool once with a cursor for never-used addresses, then reuses
///   freed addresses oldest-first from a queue (so a client that released an address is the
///   last to lose it to someone else), so its cost does not depend on the pool's size;
/// - reclamation pops deadlines in time order, so its cost is proportional to what expired.
///
/// About 100 bytes per lease (see BENCHMARKS.md): records live in one vector, the address index
/// is laid out by address in pages of 256, and both indexes hold 4-byte slot numbers.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

/// Records a listing copies while it holds the lock.
const LIST_SLICE: usize = 4096;

/// A state byte for a slab slot that holds no lease: outside the codec's codes, so it never
/// decodes as a state.
const FREE_SLOT: u8 = u8::MAX;

/// One lease, packed.
#[derive(Debug, Clone)]
struct Record {
    addr: u32,
    subnet: u32,
    /// Unix seconds; meaningful only for a state with a deadline (0 otherwise).
    deadline: u64,
    client: ClientId,
    hwaddr: HwAddr,
    /// The codec's state code, or [`FREE_SLOT`].
    state: u8,
    hostname: Option<Box<str>>,
}

impl Record {
    fn from_lease(lease: &Lease) -> Self {
        let stored = codec::encode(lease.state);
        Record {
            addr: lease.addr.into(),
            subnet: lease.subnet,
            deadline: stored.deadline.unwrap_or(0),
            client: lease.client.clone(),
            hwaddr: lease.hwaddr,
            state: stored.code,
            hostname: lease.hostname.as_deref().map(Box::from),
        }
    }

    fn state(&self) -> LeaseState {
        // Records are only written from a `LeaseState` (through the codec), so the code is valid;
        // a free slot is never read as a lease. Should either ever happen, an expired lease is
        // the harmless answer: it holds the address for nobody.
        codec::decode(self.state, self.has_deadline().then_some(self.deadline)).unwrap_or(LeaseState::Expired)
    }

    fn to_lease(&self) -> Lease {
        Lease {
            addr: Ipv4Addr::from(self.addr),
            client: self.client.clone(),
            hwaddr: self.hwaddr,
            subnet: self.subnet,
            state: self.state(),
            hostname: self.hostname.as_deref().map(String::from),
        }
    }

    fn has_deadline(&self) -> bool {
        matches!(self.state, OFFERED | BOUND | DECLINED)
    }
}

/// Allocation state of one pool.
#[derive(Debug)]
struct PoolState {
    ranges: Vec<RangeInclusive<u32>>,
    /// Index into `ranges` of the fresh-address cursor; `ranges.len()` when every address
    /// has been handed out once.
    range: usize,
    /// The next never-used address in `ranges[range]`.
    next: u32,
    /// Addresses freed after the cursor passed them, oldest first. May hold stale entries
    /// (claimed again since); they are checked when popped.
    freed: VecDeque<u32>,
}

impl PoolState {
    fn new(ranges: &[RangeInclusive<u32>]) -> Self {
        let next = ranges.first().map_or(0, |r| *r.start());
        PoolState { ranges: ranges.to_vec(), range: 0, next, freed: VecDeque::new() }
    }

    fn contains(&self, addr: u32) -> bool {
        self.ranges.iter().any(|r| r.contains(&addr))
    }

    /// Whether the fresh cursor has already passed `addr`.
    fn passed(&self, addr: u32) -> bool {
        match self.ranges.get(self.range) {
            None => true,
            Some(current) => addr < self.next || addr < *current.start(),
        }
    }

    /// The next never-used address, advancing the cursor.
    fn next_fresh(&mut self) -> Option<u32> {
        let current = self.ranges.get(self.range)?;
        let addr = self.next;
        if addr == *current.end() {
            self.range += 1;
            self.next = self.ranges.get(self.range).map_or(0, |r| *r.start());
        } else {
            self.next = addr + 1;
        }
        Some(addr)
    }
}

/// What a claim did: the lease stored (or the binding kept), the client's other lease it
/// freed, as that lease now is, and the record the write overwrote, as it was.
#[derive(Debug, Default)]
pub(crate) struct Claimed {
    pub(crate) lease: Option<Lease>,
    pub(crate) freed: Option<Lease>,
    pub(crate) replaced: Option<Lease>,
}

#[derive(Debug, Default)]
struct Inner {
    slab: Vec<Record>,
    free_slots: Vec<u32>,
    by_addr: AddrIndex,
    by_client: HashTable<u32>,
    /// A client's offer that `by_client` does not point at, because it points at the client's
    /// binding at another address (an offer leaves the binding where it is): keyed as
    /// `by_client`, so that the client's next lease elsewhere frees the offer.
    offers: HashTable<u32>,
    /// Deadline (seconds) to the addresses whose deadline was set to it. Lazy: an entry is
    /// stale if the record's deadline has moved since; stale entries are skipped when popped.
    deadlines: BTreeMap<u64, Vec<u32>>,
    pools: HashMap<u64, PoolState>,
    hasher: DefaultHashBuilder,
}

/// The slot `table` (keyed by subnet and client) holds for the client.
fn index_find(
    table: &HashTable<u32>,
    slab: &[Record],
    hasher: &DefaultHashBuilder,
    subnet: u32,
    client: &ClientId,
) -> Option<u32> {
    table
        .find(hasher.hash_one((subnet, client.as_bytes())), |&s| {
            let r = &slab[s as usize];
            r.subnet == subnet && r.client == *client
        })
        .copied()
}

/// Points `table`'s entry for the client of the record in `slot` at `slot`.
fn index_set(table: &mut HashTable<u32>, slab: &[Record], hasher: &DefaultHashBuilder, slot: u32) {
    let record = &slab[slot as usize];
    let hash = hasher.hash_one((record.subnet, record.client.as_bytes()));
    let matches = |&s: &u32| {
        let r = &slab[s as usize];
        r.subnet == record.subnet && r.client == record.client
    };
    match table.find_mut(hash, matches) {
        Some(existing) => *existing = slot,
        None => {
            table.insert_unique(hash, slot, |&s| {
                let r = &slab[s as usize];
                hasher.hash_one((r.subnet, r.client.as_bytes()))
            });
        }
    }
}

/// Removes `table`'s entry for the client of the record in `slot`, whichever slot it names.
fn index_forget(table: &mut HashTable<u32>, slab: &[Record], hasher: &DefaultHashBuilder, slot: u32) {
    let record = &slab[slot as usize];
    let hash = hasher.hash_one((record.subnet, record.client.as_bytes()));
    let matches = |&s: &u32| {
        let r = &slab[s as usize];
        r.subnet == record.subnet && r.client == record.client
    };
    if let Ok(entry) = table.find_entry(hash, matches) {
        entry.remove();
    }
}

/// Removes `table`'s entry naming `slot`, if there is one.
fn index_unlink(table: &mut HashTable<u32>, slab: &[Record], hasher: &DefaultHashBuilder, slot: u32) {
    let record = &slab[slot as usize];
    let hash = hasher.hash_one((record.subnet, record.client.as_bytes()));
    if let Ok(entry) = table.find_entry(hash, |&s| s == slot) {
        entry.remove();
    }
}

impl Inner {
    fn slot_of_addr(&self, addr: u32) -> Option<u32> {
        self.by_addr.get(addr)
    }

    fn slot_of_client(&self, subnet: u32, client: &ClientId) -> Option<u32> {
        index_find(&self.by_client, &self.slab, &self.hasher, subnet, client)
    }

    /// The client's offer that the client index does not point at (see `offers`).
    fn offer_of_client(&self, subnet: u32, client: &ClientId) -> Option<u32> {
        index_find(&self.offers, &self.slab, &self.hasher, subnet, client)
    }

    /// Removes the client index entries of the record in `slot`, where they point there.
    fn unlink_client(&mut self, slot: u32) {
        index_unlink(&mut self.by_client, &self.slab, &self.hasher, slot);
        index_unlink(&mut self.offers, &self.slab, &self.hasher, slot);
    }

    /// Points the client index for the record in `slot` at it, replacing an older slot; the
    /// client has no offer aside any more.
    fn link_client(&mut self, slot: u32) {
        index_set(&mut self.by_client, &self.slab, &self.hasher, slot);
        index_forget(&mut self.offers, &self.slab, &self.hasher, slot);
    }

    /// Writes `record` at its address, reusing the slot already there, and points the client
    /// index at it when `link`. Returns the slot.
    fn write_linked(&mut self, record: Record, link: bool) -> u32 {
        let addr = record.addr;
        let deadline = record.has_deadline().then_some(record.deadline);
        let slot = match self.slot_of_addr(addr) {
            Some(slot) => {
                let old = &self.slab[slot as usize];
                if old.client != record.client || old.subnet != record.subnet {
                    self.unlink_client(slot);
                }
                self.slab[slot as usize] = record;
                slot
            }
            None => {
                let slot = match self.free_slots.pop() {
                    Some(slot) => {
                        self.slab[slot as usize] = record;
                        slot
                    }
                    None => {
                        self.slab.push(record);
                        (self.slab.len() - 1) as u32
                    }
                };
                self.by_addr.insert(addr, slot);
                slot
            }
        };
        if link {
            self.link_client(slot);
        }
        if let Some(deadline) = deadline {
            self.deadlines.entry(deadline).or_default().push(addr);
        }
        slot
    }

    fn remove(&mut self, slot: u32) {
        self.unlink_client(slot);
        let addr = self.slab[slot as usize].addr;
        self.by_addr.remove(addr);
        let record = &mut self.slab[slot as usize];
        record.state = FREE_SLOT;
        record.hostname = None;
        self.free_slots.push(slot);
    }

    /// Whether `addr` may go to `client` now, by the shared rule.
    fn available(&self, addr: u32, client: &ClientId, now: Timestamp) -> bool {
        match self.slot_of_addr(addr) {
            None => true,
            Some(slot) => self.slab[slot as usize].to_lease().available_to(client, now),
        }
    }

    /// Gives a freed address back to the pools that hold it, where their cursor has passed
    /// it. Every pool state that covers the address gets it: after a reload, the old state
    /// and the new one may both cover it, and only the new one is used.
    fn return_to_pool(&mut self, addr: u32) {
        for pool in self.pools.values_mut() {
            if pool.contains(addr) && pool.passed(addr) {
                pool.freed.push_back(addr);
            }
        }
    }

    fn claim(&mut self, lease: &Lease, now: Timestamp) -> Claimed {
        let addr = u32::from(lease.addr);
        let offer = matches!(lease.state, LeaseState::Offered { .. });
        let mut replaced = None;
        if let Some(slot) = self.slot_of_addr(addr) {
            let existing = self.slab[slot as usize].to_lease();
            if !existing.available_to(&lease.client, now) {
                return Claimed::default();
            }
            if offer && existing.is_bound_to(&lease.client, now) {
                return Claimed { lease: Some(existing), freed: None, replaced: None };
            }
            replaced = Some(existing);
        }
        // One lease per client and subnet: the client's other held lease goes in the same step,
        // except that an offer leaves the client's binding alone (offering never shortens a
        // lease), and the client index stays on the binding so the REQUEST that moves the client
        // finds it; the offer is then kept aside in `offers`, so that it goes in its turn.
        let held_elsewhere =
            |r: &Record| matches!(r.state, OFFERED | BOUND) && r.deadline > now.as_secs() && r.addr != addr;
        let mut link = true;
        let mut freed = None;
        if let Some(other) = self.slot_of_client(lease.subnet, &lease.client)
            && held_elsewhere(&self.slab[other as usize])
        {
            if offer && self.slab[other as usize].state == BOUND {
                link = false;
            } else {
                freed = Some(self.release_slot(other));
            }
        }
        if let Some(aside) = self.offer_of_client(lease.subnet, &lease.client)
            && held_elsewhere(&self.slab[aside as usize])
        {
            let released = self.release_slot(aside);
            freed.get_or_insert(released);
        }
        let slot = self.write_linked(Record::from_lease(lease), link);
        if !link {
            index_set(&mut self.offers, &self.slab, &self.hasher, slot);
        }
        Claimed { lease: Some(lease.clone()), freed, replaced }
    }

    /// Marks the lease in `slot` released and gives its address back to its pool. Returns it
    /// as it now is.
    fn release_slot(&mut self, slot: u32) -> Lease {
        let record = &mut self.slab[slot as usize];
        record.state = RELEASED;
        record.deadline = 0;
        let (lease, addr) = (record.to_lease(), record.addr);
        self.return_to_pool(addr);
        lease
    }

    fn find_free(
        &mut self,
        key: u64,
        ranges: &[RangeInclusive<u32>],
        client: &ClientId,
        now: Timestamp,
    ) -> Option<u32> {
        let mut pool = self.pools.remove(&key).unwrap_or_else(|| PoolState::new(ranges));
        let found = self.take_from(&mut pool, client, now);
        self.pools.insert(key, pool);
        found
    }

    fn take_from(&mut self, pool: &mut PoolState, client: &ClientId, now: Timestamp) -> Option<u32> {
        while let Some(addr) = pool.next_fresh() {
            if self.available(addr, client, now) {
                return Some(addr);
            }
        }
        while let Some(addr) = pool.freed.pop_front() {
            if self.available(addr, client, now) {
                return Some(addr);
            }
        }
        // Leases that expired since the last reclamation are free too; the deadline index
        // finds them in time order, so this costs what expired, not the pool's size.
        self.deadlines
            .range(..=now.as_secs())
            .flat_map(|(_, addrs)| addrs.iter().copied())
            .find(|&addr| pool.contains(addr) && self.available(addr, client, now))
    }

    fn reclaim(&mut self, now: Timestamp, limit: usize) -> Vec<Lease> {
        let mut reclaimed = Vec::new();
        while reclaimed.len() < limit {
            let Some(mut entry) = self.deadlines.first_entry() else {
                break;
            };
            if *entry.key() > now.as_secs() {
                break;
            }
            let deadline = *entry.key();
            let Some(addr) = entry.get_mut().pop() else {
                entry.remove();
                continue;
            };
            let Some(slot) = self.slot_of_addr(addr) else {
                continue;
            };
            let record = &self.slab[slot as usize];
            if !record.has_deadline() || record.deadline != deadline {
                continue;
            }
            reclaimed.push(record.to_lease());
            if record.state == DECLINED {
                // No affinity to an address the client said was in use.
                self.remove(slot);
            } else {
                self.slab[slot as usize].state = EXPIRED;
            }
            self.return_to_pool(addr);
        }
        reclaimed
    }

    fn update_state(&mut self, addr: Ipv4Addr, client: &ClientId, state: LeaseState) -> Option<Lease> {
        let slot = self.slot_of_addr(addr.into())?;
        let record = &self.slab[slot as usize];
        if record.client != *client || !matches!(record.state, OFFERED | BOUND) {
            return None;
        }
        // Only a binding can be declined: an offer the client never took is not its to decline.
        if matches!(state, LeaseState::Declined { .. }) && record.state != BOUND {
            return None;
        }
        let mut lease = record.to_lease();
        lease.state = state;
        // The client index stays where it is: releasing an offer made aside must not hide the
        // client's binding elsewhere from `lease_by_client`.
        self.write_linked(Record::from_lease(&lease), false);
        if !matches!(state, LeaseState::Offered { .. } | LeaseState::Bound { .. } | LeaseState::Declined { .. }) {
            self.return_to_pool(addr.into());
        }
        Some(lease)
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-written lease (every write is a
        // single assignment), so a poisoned lock is still safe to use.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The number of lease records held, in any state.
    pub fn len(&self) -> usize {
        self.lock().by_addr.len()
    }

    /// Whether the store holds no lease records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes `lease` at its address whatever is there: for replaying a journal, whose order
    /// already decided who may hold what.
    #[cfg(feature = "journal")]
    pub(crate) fn restore(&self, lease: &Lease) {
        self.lock().write_linked(Record::from_lease(lease), true);
    }

    /// Marks the lease at `addr` released if `client` still holds it there: for replaying a
    /// journal's move of a client from that address.
    #[cfg(feature = "journal")]
    pub(crate) fn restore_freed(&self, addr: Ipv4Addr, client: &ClientId) {
        let mut inner = self.lock();
        if let Some(slot) = inner.slot_of_addr(addr.into())
            && inner.slab[slot as usize].client == *client
            && inner.slab[slot as usize].state != FREE_SLOT
        {
            inner.release_slot(slot);
        }
    }

    /// [`LeaseStore::claim`], also saying which other lease of the client it freed.
    pub(crate) fn claim_moving(&self, lease: &Lease, now: Timestamp) -> Claimed {
        self.lock().claim(lease, now)
    }

    /// [`LeaseStore::allocate`], also saying which other lease of the client it freed and
    /// which record it overwrote.
    pub(crate) fn allocate_moving(&self, pool: PoolRef<'_>, lease: &Lease, now: Timestamp) -> Claimed {
        let mut inner = self.lock();
        let Some(addr) = inner.find_free(pool.key, pool.ranges, &lease.client, now) else {
            return Claimed::default();
        };
        inner.claim(&Lease { addr: Ipv4Addr::from(addr), ..lease.clone() }, now)
    }
}

type Answer<T> = Ready<Result<T, StoreError>>;

// The futures are `Ready`: callers that hold a `MemoryStore` by type may rely on that.
#[allow(refining_impl_trait)]
impl LeaseStore for MemoryStore {
    fn lease_by_client(&self, subnet: u32, client: &ClientId) -> Answer<Option<Lease>> {
        let inner = self.lock();
        ready(Ok(inner.slot_of_client(subnet, client).map(|s| inner.slab[s as usize].to_lease())))
    }

    fn lease_by_addr(&self, addr: Ipv4Addr) -> Answer<Option<Lease>> {
        let inner = self.lock();
        ready(Ok(inner.slot_of_addr(addr.into()).map(|s| inner.slab[s as usize].to_lease())))
    }

    fn claim(&self, lease: &Lease, now: Timestamp) -> Answer<Option<Lease>> {
        ready(Ok(self.lock().claim(lease, now).lease))
    }

    fn allocate(&self, pool: PoolRef<'_>, lease: &Lease, now: Timestamp) -> Answer<Option<Lease>> {
        ready(Ok(self.allocate_moving(pool, lease, now).lease))
    }

    fn allocate_replacing(
        &self,
        pool: PoolRef<'_>,
        lease: &Lease,
        now: Timestamp,
    ) -> Answer<Option<(Lease, Option<Lease>)>> {
        let claimed = self.allocate_moving(pool, lease, now);
        ready(Ok(claimed.lease.map(|stored| (stored, claimed.replaced))))
    }

    fn update_state(&self, addr: Ipv4Addr, client: &ClientId, state: LeaseState) -> Answer<Option<Lease>> {
        ready(Ok(self.lock().update_state(addr, client, state)))
    }

    fn reclaim_expired(&self, now: Timestamp, limit: usize) -> Answer<Vec<Lease>> {
        ready(Ok(self.lock().reclaim(now, limit)))
    }

    fn delete(&self, addr: Ipv4Addr) -> Answer<bool> {
        let mut inner = self.lock();
        let Some(slot) = inner.slot_of_addr(addr.into()) else {
            return ready(Ok(false));
        };
        inner.remove(slot);
        inner.return_to_pool(addr.into());
        ready(Ok(true))
    }

    fn list(&self, subnet: Option<u32>) -> Answer<Vec<Lease>> {
        // A slice of the slab at a time, letting go of the lock between slices: listing a
        // million leases (the management API, a lease dump) holds up a request for the time
        // of one slice, not of the whole list. Each lease is whole; the list as a whole is
        // not one instant's, as with any store a server keeps serving from meanwhile.
        let mut leases = Vec::new();
        let mut from = 0;
        loop {
            let inner = self.lock();
            let Some(slice) = inner.slab.get(from..) else { break };
            let slice = &slice[..slice.len().min(LIST_SLICE)];
            leases.extend(
                slice
                    .iter()
                    .filter(|r| r.state != FREE_SLOT && subnet.is_none_or(|s| r.subnet == s))
                    .map(Record::to_lease),
            );
            from += slice.len();
            if slice.len() < LIST_SLICE {
                break;
            }
        }
        ready(Ok(leases))
    }
}
