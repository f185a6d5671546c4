//! The in-memory lease store.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
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
/// - reclamation pops deadlines in time order, so its cost is proportional to what expired;
/// - a page of a listing ([`LeaseStore::list_page`]) walks the address index in order from
///   where it starts, so its cost is about the page's, not the store's.
///
/// Its bookkeeping stays bounded whatever the traffic: per-pool allocation state is dropped
/// for pools not used lately (a config reload that changes a pool's ranges changes its key,
/// leaving the old state unused) and rebuilt from the ranges when needed again; stale entries
/// of the deadline index (left by renewals and releases) and repeated entries of a pool's
/// queue of freed addresses are pruned once they outnumber the live ones.
///
/// About 100 bytes per lease (see BENCHMARKS.md): records live in one vector, the address index
/// is laid out by address in pages of 256, and both indexes hold 4-byte slot numbers.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

/// Records a listing copies while it holds the lock.
const LIST_SLICE: usize = 4096;

/// Work (pages looked at and slots read in the address index) a page of a listing does while
/// it holds the lock: about a hundred microseconds.
const WALK_BUDGET: usize = 64 * 1024;

/// A state byte for a slab slot that holds no lease: outside the codec's codes, so it never
/// decodes as a state.
const FREE_SLOT: u8 = u8::MAX;

/// At most this many pools keep allocation state; beyond it, the least recently used is dropped.
/// A dropped state is rebuilt from the pool's ranges on its next allocation, at the cost of
/// walking its fresh-address cursor once more over the addresses already leased.
const MAX_POOL_STATES: usize = 1024;

/// A pool state not used for this many allocations (of any pool) is dropped when another is
/// made: what a config reload that changed the ranges leaves behind.
const POOL_IDLE_ALLOCATIONS: u64 = 1 << 20;

/// The deadline index is rebuilt from the leases once it holds more than this many entries
/// beyond twice the number of lease records: at least half of them are then stale.
const DEADLINE_SLACK: usize = 1024;

/// A lease that loses its deadline (released, deleted) takes its entry out of the deadline
/// index when no more than this many addresses share that second; beyond, the entry is left
/// stale rather than searched for (many leases made in one burst). A write that moves the
/// deadline (an offer bound, a renewal) always leaves the old entry stale.
const PRECISE_REMOVAL: usize = 64;

/// A pool's queue of freed addresses is pruned of repeats and of addresses held again once it
/// grows past twice its size after the last pruning, and never below this.
const FREED_MIN_LIMIT: usize = 1024;

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
    /// (claimed again since) and repeats; they are checked when popped, and pruned when the
    /// queue outgrows `freed_limit`.
    freed: VecDeque<u32>,
    /// The queue length that triggers pruning.
    freed_limit: usize,
    /// The store's allocation count when this pool last allocated.
    last_used: u64,
}

impl PoolState {
    fn new(ranges: &[RangeInclusive<u32>]) -> Self {
        let next = ranges.first().map_or(0, |r| *r.start());
        PoolState {
            ranges: ranges.to_vec(),
            range: 0,
            next,
            freed: VecDeque::new(),
            freed_limit: FREED_MIN_LIMIT,
            last_used: 0,
        }
    }

    /// Queues a freed address; prunes the queue when it has grown past its limit, keeping each
    /// address once, at its latest place, and only while `held` says it is not held again.
    fn push_freed(&mut self, addr: u32, held: impl Fn(u32) -> bool) {
        self.freed.push_back(addr);
        if self.freed.len() <= self.freed_limit {
            return;
        }
        let mut seen = HashSet::with_capacity(self.freed.len());
        let mut kept = VecDeque::new();
        // Newest first: an address freed again keeps its latest place, so the client that freed
        // it last is still the last to lose it.
        for &addr in self.freed.iter().rev() {
            if seen.insert(addr) && !held(addr) {
                kept.push_front(addr);
            }
        }
        self.freed = kept;
        self.freed_limit = (2 * self.freed.len()).max(FREED_MIN_LIMIT);
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
    /// Deadline (seconds) to the addresses whose deadline was set to it. Every record with a
    /// deadline has an entry for it. An entry whose record lost its deadline is removed when its
    /// second's list is short ([`PRECISE_REMOVAL`]); one whose record's deadline moved, or in a
    /// long list, is left stale: stale entries are skipped when popped, and the index is
    /// rebuilt when they outnumber the records ([`DEADLINE_SLACK`]).
    deadlines: BTreeMap<u64, Vec<u32>>,
    /// Entries in `deadlines`, stale ones included.
    deadline_entries: usize,
    pools: HashMap<u64, PoolState>,
    /// Allocations so far: the clock that pool states' use is measured by.
    allocations: u64,
    hasher: DefaultHashBuilder,
}

/// The hash both client tables (`by_client`, `offers`) key a client by: computed once per
/// operation and passed to the index functions, since a claim looks in both.
fn client_hash(hasher: &DefaultHashBuilder, subnet: u32, client: &ClientId) -> u64 {
    hasher.hash_one((subnet, client.as_bytes()))
}

/// The slot `table` holds for the client whose [`client_hash`] is `hash`.
fn index_find(table: &HashTable<u32>, slab: &[Record], hash: u64, subnet: u32, client: &ClientId) -> Option<u32> {
    table
        .find(hash, |&s| {
            let r = &slab[s as usize];
            r.subnet == subnet && r.client == *client
        })
        .copied()
}

/// Points `table`'s entry for the client of the record in `slot` (whose [`client_hash`] is
/// `hash`) at `slot`.
fn index_set(table: &mut HashTable<u32>, slab: &[Record], hasher: &DefaultHashBuilder, hash: u64, slot: u32) {
    let record = &slab[slot as usize];
    let matches = |&s: &u32| {
        let r = &slab[s as usize];
        r.subnet == record.subnet && r.client == record.client
    };
    match table.find_mut(hash, matches) {
        Some(existing) => *existing = slot,
        None => {
            table.insert_unique(hash, slot, |&s| {
                let r = &slab[s as usize];
                client_hash(hasher, r.subnet, &r.client)
            });
        }
    }
}

/// Removes `table`'s entry for the client of the record in `slot` (whose [`client_hash`] is
/// `hash`), whichever slot it names.
fn index_forget(table: &mut HashTable<u32>, slab: &[Record], hash: u64, slot: u32) {
    let record = &slab[slot as usize];
    let matches = |&s: &u32| {
        let r = &slab[s as usize];
        r.subnet == record.subnet && r.client == record.client
    };
    if let Ok(entry) = table.find_entry(hash, matches) {
        entry.remove();
    }
}

/// Removes `table`'s entry naming `slot` (whose record's [`client_hash`] is `hash`), if any.
fn index_unlink(table: &mut HashTable<u32>, hash: u64, slot: u32) {
    if let Ok(entry) = table.find_entry(hash, |&s| s == slot) {
        entry.remove();
    }
}

/// Sizes of the store's bookkeeping, for the tests that check it stays bounded.
#[cfg(test)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bookkeeping {
    pub(crate) records: usize,
    pub(crate) deadline_entries: usize,
    pub(crate) deadline_keys: usize,
    pub(crate) pools: usize,
    pub(crate) freed: usize,
    pub(crate) offers: usize,
    pub(crate) clients: usize,
}

impl Inner {
    fn slot_of_addr(&self, addr: u32) -> Option<u32> {
        self.by_addr.get(addr)
    }

    fn slot_of_client(&self, subnet: u32, client: &ClientId) -> Option<u32> {
        index_find(&self.by_client, &self.slab, client_hash(&self.hasher, subnet, client), subnet, client)
    }

    /// The [`client_hash`] of the record in `slot`.
    fn hash_of(&self, slot: u32) -> u64 {
        let record = &self.slab[slot as usize];
        client_hash(&self.hasher, record.subnet, &record.client)
    }

    /// Removes the client index entries of the record in `slot`, where they point there.
    fn unlink_client(&mut self, slot: u32) {
        let hash = self.hash_of(slot);
        index_unlink(&mut self.by_client, hash, slot);
        // The offers table is empty but while a client with a binding elsewhere is between an
        // offer and its REQUEST: no probe of it then.
        if !self.offers.is_empty() {
            index_unlink(&mut self.offers, hash, slot);
        }
    }

    /// Points the client index for the record in `slot` at it, replacing an older slot; the
    /// client has no offer aside any more.
    fn link_client(&mut self, slot: u32) {
        let hash = self.hash_of(slot);
        index_set(&mut self.by_client, &self.slab, &self.hasher, hash, slot);
        if !self.offers.is_empty() {
            index_forget(&mut self.offers, &self.slab, hash, slot);
        }
    }

    /// Writes `record` at its address, reusing the slot already there, and points the client
    /// index at it when `link`. Returns the slot.
    fn write_linked(&mut self, record: Record, link: bool) -> u32 {
        let addr = record.addr;
        let mut deadline = record.has_deadline().then_some(record.deadline);
        let slot = match self.slot_of_addr(addr) {
            Some(slot) => {
                let old = &self.slab[slot as usize];
                // The old record's entry stands for the new one too when the second is the
                // same (a renewal to it adds none). Otherwise it is left stale, not searched
                // for: this is every REQUEST after its offer, the hot path, and searching cost
                // about a tenth of a claim; the rebuild bounds what stale entries cost.
                if old.has_deadline() && Some(old.deadline) == deadline {
                    deadline = None;
                }
                let old = &self.slab[slot as usize];
                if old.client != record.client || old.subnet != record.subnet {
                    self.unlink_client(slot);
                }
                if self.slab[slot as usize].subnet != record.subnet {
                    self.by_addr.set_subnet(addr, record.subnet);
                }
                self.slab[slot as usize] = record;
                slot
            }
            None => {
                let subnet = record.subnet;
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
                self.by_addr.insert(addr, slot, subnet);
                slot
            }
        };
        if link {
            self.link_client(slot);
        }
        if let Some(deadline) = deadline {
            self.deadlines.entry(deadline).or_default().push(addr);
            self.deadline_entries += 1;
            if self.deadline_entries > 2 * self.by_addr.len() + DEADLINE_SLACK {
                self.rebuild_deadlines();
            }
        }
        slot
    }

    /// Removes the deadline entry of the record in `slot`, which is about to lose its deadline,
    /// when the list of that second is short enough to search ([`PRECISE_REMOVAL`]); otherwise
    /// the entry is left stale, for reclamation to skip or a rebuild to drop.
    fn drop_deadline_entry(&mut self, slot: u32) {
        let Record { deadline, addr, .. } = self.slab[slot as usize];
        let Some(addrs) = self.deadlines.get_mut(&deadline) else { return };
        if addrs.len() > PRECISE_REMOVAL {
            return;
        }
        if let Some(at) = addrs.iter().position(|&a| a == addr) {
            addrs.swap_remove(at);
            self.deadline_entries = self.deadline_entries.saturating_sub(1);
            if addrs.is_empty() {
                self.deadlines.remove(&deadline);
            }
        }
    }

    /// Rebuilds the deadline index from the records, without its stale entries. Called when
    /// they outnumber the records, so its cost is spread over at least as many writes.
    fn rebuild_deadlines(&mut self) {
        let mut due: Vec<(u64, u32)> =
            self.slab.iter().filter(|r| r.has_deadline()).map(|r| (r.deadline, r.addr)).collect();
        due.sort_unstable();
        self.deadline_entries = due.len();
        let mut deadlines: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        for (deadline, addr) in due {
            deadlines.entry(deadline).or_default().push(addr);
        }
        self.deadlines = deadlines;
    }

    fn remove(&mut self, slot: u32) {
        if self.slab[slot as usize].has_deadline() {
            self.drop_deadline_entry(slot);
        }
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
        let Inner { pools, slab, by_addr, .. } = self;
        let held = |a: u32| by_addr.get(a).is_some_and(|s| slab[s as usize].has_deadline());
        for pool in pools.values_mut() {
            if pool.contains(addr) && pool.passed(addr) {
                pool.push_freed(addr, held);
            }
        }
    }

    /// Takes the lease by value: it is what the claim answers with, so an allocation that
    /// built it does not copy it again.
    fn claim(&mut self, lease: Lease, now: Timestamp) -> Claimed {
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
        let hash = client_hash(&self.hasher, lease.subnet, &lease.client);
        if let Some(other) = index_find(&self.by_client, &self.slab, hash, lease.subnet, &lease.client)
            && held_elsewhere(&self.slab[other as usize])
        {
            if offer && self.slab[other as usize].state == BOUND {
                link = false;
            } else {
                freed = Some(self.release_slot(other));
            }
        }
        if !self.offers.is_empty()
            && let Some(aside) = index_find(&self.offers, &self.slab, hash, lease.subnet, &lease.client)
            && held_elsewhere(&self.slab[aside as usize])
        {
            let released = self.release_slot(aside);
            freed.get_or_insert(released);
        }
        let slot = self.write_linked(Record::from_lease(&lease), link);
        if !link {
            index_set(&mut self.offers, &self.slab, &self.hasher, hash, slot);
        }
        Claimed { lease: Some(lease), freed, replaced }
    }

    /// Marks the lease in `slot` released and gives its address back to its pool. Returns it
    /// as it now is.
    fn release_slot(&mut self, slot: u32) -> Lease {
        if self.slab[slot as usize].has_deadline() {
            self.drop_deadline_entry(slot);
        }
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
        self.allocations += 1;
        let mut pool = match self.pools.remove(&key) {
            Some(pool) => pool,
            None => {
                self.make_room_for_a_pool();
                // A new pool, or one whose state was dropped: its cursor starts over, and
                // `available` skips the addresses leased meanwhile.
                PoolState::new(ranges)
            }
        };
        pool.last_used = self.allocations;
        let found = self.take_from(&mut pool, client, now);
        self.pools.insert(key, pool);
        found
    }

    /// Before a pool state is added: drops the states not used for [`POOL_IDLE_ALLOCATIONS`],
    /// then the least recently used ones beyond [`MAX_POOL_STATES`]. Runs only when a state is
    /// made (a reload, or a state dropped earlier), so its scan of the states is rare.
    fn make_room_for_a_pool(&mut self) {
        let now = self.allocations;
        self.pools.retain(|_, p| now.saturating_sub(p.last_used) <= POOL_IDLE_ALLOCATIONS);
        while self.pools.len() >= MAX_POOL_STATES {
            let Some(oldest) = self.pools.iter().min_by_key(|(_, p)| p.last_used).map(|(k, _)| *k) else {
                break;
            };
            self.pools.remove(&oldest);
        }
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
            self.deadline_entries = self.deadline_entries.saturating_sub(1);
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
        self.lock().claim(lease.clone(), now)
    }

    /// The sizes of the bookkeeping, for the tests that check it stays bounded.
    #[cfg(test)]
    pub(crate) fn bookkeeping(&self) -> Bookkeeping {
        let inner = self.lock();
        Bookkeeping {
            records: inner.by_addr.len(),
            deadline_entries: inner.deadline_entries,
            deadline_keys: inner.deadlines.len(),
            pools: inner.pools.len(),
            freed: inner.pools.values().map(|p| p.freed.len()).sum(),
            offers: inner.offers.len(),
            clients: inner.by_client.len(),
        }
    }

    /// [`LeaseStore::list_page`], also saying how much work it did in the address index
    /// (pages looked at and slots read), for the tests that check a page's cost.
    ///
    /// The address index is walked in order from `after`, under the lock for at most
    /// [`LIST_SLICE`] leases and [`WALK_BUDGET`] work at a time, then again from where it
    /// stopped: a page costs about its own size (plus the pages of other subnets stepped over
    /// when a subnet is asked for), whatever the store holds, and holds up a request for the
    /// time of one slice.
    fn page(&self, subnet: Option<u32>, after: Option<Ipv4Addr>, limit: usize) -> (Vec<Lease>, usize) {
        let mut leases = Vec::with_capacity(limit.min(LIST_SLICE));
        let mut work = 0;
        let mut from = match after {
            None => Some(0),
            Some(after) => u32::from(after).checked_add(1),
        };
        while let Some(start) = from
            && leases.len() < limit
        {
            let inner = self.lock();
            let slice_end = leases.len() + (limit - leases.len()).min(LIST_SLICE);
            let walked = inner.by_addr.walk(start, subnet, WALK_BUDGET, |_, slot| {
                let record = &inner.slab[slot as usize];
                if record.state != FREE_SLOT && subnet.is_none_or(|s| record.subnet == s) {
                    leases.push(record.to_lease());
                }
                leases.len() < slice_end
            });
            work += walked.work;
            from = walked.resume;
        }
        (leases, work)
    }

    /// [`LeaseStore::allocate`], also saying which other lease of the client it freed and
    /// which record it overwrote.
    pub(crate) fn allocate_moving(&self, pool: PoolRef<'_>, lease: &Lease, now: Timestamp) -> Claimed {
        let mut inner = self.lock();
        let Some(addr) = inner.find_free(pool.key, pool.ranges, &lease.client, now) else {
            return Claimed::default();
        };
        inner.claim(Lease { addr: Ipv4Addr::from(addr), ..lease.clone() }, now)
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
        ready(Ok(self.lock().claim(lease.clone(), now).lease))
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

    fn list_page(&self, subnet: Option<u32>, after: Option<Ipv4Addr>, limit: usize) -> Answer<Vec<Lease>> {
        ready(Ok(self.page(subnet, after, limit).0))
    }

    fn list_page_native(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcp_core::block_on;

    /// Floods run this many times: a million in release builds, fewer in debug ones, which are
    /// about ten times slower.
    const FLOOD: u32 = if cfg!(debug_assertions) { 200_000 } else { 1_000_000 };

    const T0: u64 = 1_700_000_000;

    fn at(secs: u64) -> Timestamp {
        Timestamp::from_secs(T0 + secs)
    }

    fn lease(n: u32, addr: u32, state: LeaseState) -> Lease {
        Lease {
            addr: Ipv4Addr::from(addr),
            client: ClientId::from_bytes(&n.to_be_bytes()),
            hwaddr: HwAddr::default(),
            subnet: 1,
            state,
            hostname: None,
        }
    }

    fn bound(n: u32, addr: u32, expires: u64) -> Lease {
        lease(n, addr, LeaseState::Bound { expires: at(expires) })
    }

    const BASE: u32 = 0x0a00_0000;

    fn claim(store: &MemoryStore, lease: &Lease, now: Timestamp) -> Option<Lease> {
        block_on(store.claim(lease, now)).and_then(Result::ok).flatten()
    }

    fn allocate(store: &MemoryStore, key: u64, ranges: &[RangeInclusive<u32>], n: u32, now: Timestamp) -> Option<u32> {
        let pool = PoolRef { key, subnet: 1, ranges };
        let got = block_on(store.allocate(pool, &bound(n, 0, 3600), now)).and_then(Result::ok).flatten();
        got.map(|l| u32::from(l.addr))
    }

    fn release(store: &MemoryStore, addr: u32, n: u32) -> Option<Lease> {
        let client = ClientId::from_bytes(&n.to_be_bytes());
        block_on(store.update_state(Ipv4Addr::from(addr), &client, LeaseState::Released)).and_then(Result::ok).flatten()
    }

    /// The deadline index holds no more than its bound: twice the records plus the slack.
    fn assert_deadlines_bounded(store: &MemoryStore) {
        let b = store.bookkeeping();
        assert!(b.deadline_entries <= 2 * b.records + DEADLINE_SLACK, "{b:?}");
        assert!(b.deadline_keys <= b.deadline_entries, "{b:?}");
    }

    #[test]
    fn a_renewal_flood_leaves_the_deadline_index_bounded() {
        let store = MemoryStore::new();
        // Each renewal a second later, so to a deadline of its own: each leaves a stale entry.
        for i in 0..u64::from(FLOOD) {
            assert!(claim(&store, &bound(1, BASE + 1, i + 3600), at(i)).is_some());
        }
        assert_deadlines_bounded(&store);
        // Renewals to the same deadline add nothing.
        let last = u64::from(FLOOD) - 1 + 3600;
        let before = store.bookkeeping().deadline_entries;
        for _ in 0..1000 {
            assert!(claim(&store, &bound(1, BASE + 1, last), at(last - 3600)).is_some());
        }
        assert_eq!(store.bookkeeping().deadline_entries, before);
        // Reclamation still finds the binding once, at its last deadline.
        assert!(block_on(store.reclaim_expired(at(last - 1), 10)).and_then(Result::ok).expect("ready").is_empty());
        let reclaimed = block_on(store.reclaim_expired(at(last), usize::MAX)).and_then(Result::ok).expect("ready");
        assert_eq!(reclaimed, vec![bound(1, BASE + 1, last)]);
        let b = store.bookkeeping();
        assert_eq!((b.records, b.clients, b.offers), (1, 1, 0), "{b:?}");
    }

    #[test]
    fn renewals_in_bursts_leave_the_deadline_index_bounded() {
        let store = MemoryStore::new();
        // A hundred clients renewing together, so to one second: more than is searched for an
        // entry to take out, so each renewal leaves a stale one and the index is rebuilt.
        let clients = 2 * PRECISE_REMOVAL as u32;
        let rounds = u64::from(FLOOD / clients);
        for round in 0..rounds {
            for n in 0..clients {
                assert!(claim(&store, &bound(n, BASE + n, round + 3600), at(round)).is_some());
            }
            assert_deadlines_bounded(&store);
        }
        let last = rounds - 1 + 3600;
        assert!(block_on(store.reclaim_expired(at(last - 1), 10)).and_then(Result::ok).expect("ready").is_empty());
        let reclaimed = block_on(store.reclaim_expired(at(last), usize::MAX)).and_then(Result::ok).expect("ready");
        assert_eq!(reclaimed.len(), clients as usize);
        assert_eq!(store.bookkeeping().deadline_entries, 0);
    }

    #[test]
    fn a_release_flood_leaves_the_queues_bounded() {
        let store = MemoryStore::new();
        let ranges = [BASE + 10..=BASE + 12];
        // The pool's cursor passes every address, so freed ones go to its queue.
        for n in 1..=3 {
            assert!(allocate(&store, 7, &ranges, n, at(0)).is_some());
        }
        assert_eq!(release(&store, BASE + 11, 2).map(|l| l.state), Some(LeaseState::Released));
        // Claimed directly and released, over and over: the queue is never popped.
        for i in 0..FLOOD {
            let n = 100 + i % 2;
            assert!(claim(&store, &bound(n, BASE + 11, 3600 + u64::from(i)), at(0)).is_some());
            assert!(release(&store, BASE + 11, n).is_some());
        }
        let b = store.bookkeeping();
        assert!(b.freed <= FREED_MIN_LIMIT + 1, "{b:?}");
        assert_deadlines_bounded(&store);
        // Allocated and released: each allocation pops what the release pushed.
        for i in 0..FLOOD / 10 {
            assert_eq!(allocate(&store, 7, &ranges, 200, at(1)), Some(BASE + 11), "round {i}");
            assert!(release(&store, BASE + 11, 200).is_some());
        }
        let b = store.bookkeeping();
        assert!(b.freed <= FREED_MIN_LIMIT + 1, "{b:?}");
        assert_deadlines_bounded(&store);
        // The queue still works: the address comes back once, then the pool is full.
        assert_eq!(allocate(&store, 7, &ranges, 300, at(2)), Some(BASE + 11));
        assert_eq!(allocate(&store, 7, &ranges, 301, at(2)), None);
        assert_eq!((b.records, b.offers), (3, 0), "{b:?}");
    }

    #[test]
    fn an_offer_flood_beside_a_binding_keeps_one_offer_aside() {
        let store = MemoryStore::new();
        assert!(claim(&store, &bound(1, BASE + 1, 3600), at(0)).is_some());
        for i in 0..10_000u32 {
            let offer = lease(1, BASE + 2 + i % 100, LeaseState::Offered { until: at(u64::from(i) + 30) });
            assert!(claim(&store, &offer, at(u64::from(i) / 10)).is_some());
        }
        let b = store.bookkeeping();
        assert_eq!((b.clients, b.offers), (1, 1), "{b:?}");
        let held = block_on(store.list(None)).and_then(Result::ok).expect("ready");
        let held: Vec<_> = held.iter().filter(|l| l.is_held(at(1000))).map(|l| l.addr).collect();
        assert_eq!(held.len(), 2, "the binding and the last offer: {held:?}");
        assert_deadlines_bounded(&store);
    }

    #[test]
    fn pool_states_stay_bounded_over_reloads() {
        let store = MemoryStore::new();
        // Every reload moves the pool, so its key changes; each new pool is used once.
        for reload in 0..(4 * MAX_POOL_STATES as u32) {
            let start = BASE + 0x1_0000 + reload * 4;
            assert!(allocate(&store, u64::from(reload) + 1000, &[start..=start + 3], reload, at(0)).is_some());
        }
        assert_eq!(store.bookkeeping().pools, MAX_POOL_STATES);
        // States unused for long are dropped when a new one is made.
        store.lock().allocations += POOL_IDLE_ALLOCATIONS + 1;
        let start = BASE + 0x2_0000;
        assert!(allocate(&store, 1, &[start..=start + 3], 1, at(0)).is_some());
        assert_eq!(store.bookkeeping().pools, 1);
    }

    #[test]
    fn a_dropped_pool_state_is_rebuilt_correctly() {
        let store = MemoryStore::new();
        let ranges = [BASE + 10..=BASE + 13, BASE + 20..=BASE + 21];
        let mut granted: Vec<u32> = (1..=3).filter_map(|n| allocate(&store, 7, &ranges, n, at(0))).collect();
        assert_eq!(granted, [BASE + 10, BASE + 11, BASE + 12]);
        // Someone takes the next fresh address directly, and the second one is released.
        assert!(claim(&store, &bound(50, BASE + 13, 3600), at(0)).is_some());
        assert!(release(&store, BASE + 11, 2).is_some());
        granted.retain(|&a| a != BASE + 11);
        // Enough other pools to push this one's state out.
        for other in 0..=(MAX_POOL_STATES as u32) {
            let start = BASE + 0x1_0000 + other * 4;
            assert!(allocate(&store, u64::from(other) + 1000, &[start..=start + 3], 1000 + other, at(0)).is_some());
        }
        assert!(!store.lock().pools.contains_key(&7), "dropped");
        // Rebuilt from the ranges: the cursor starts over and passes what is leased.
        let mut more: Vec<u32> = (4..=10).filter_map(|n| allocate(&store, 7, &ranges, n, at(1))).collect();
        more.sort_unstable();
        assert_eq!(more, [BASE + 11, BASE + 20, BASE + 21], "the free ones, each once");
        granted.extend(more);
        granted.push(BASE + 13);
        granted.sort_unstable();
        let leased: Vec<u32> = block_on(store.list(Some(1)))
            .and_then(Result::ok)
            .expect("ready")
            .iter()
            .filter(|l| l.is_held(at(1)) && ranges.iter().any(|r| r.contains(&u32::from(l.addr))))
            .map(|l| u32::from(l.addr))
            .collect();
        assert_eq!(leased, granted);
    }

    /// A store of `n` bound leases in subnet 1 from `first` up, one every `step` addresses,
    /// written in an order other than their addresses'.
    fn spread(n: u32, first: u32, step: u32) -> MemoryStore {
        let store = MemoryStore::new();
        for i in 0..n {
            let i = (i * 7_919) % n;
            assert!(claim(&store, &bound(i, first + i * step, 3600), at(0)).is_some());
        }
        store
    }

    #[test]
    fn a_page_costs_about_its_size_whatever_the_store_holds() {
        let mid = |n: u32| Some(Ipv4Addr::from(BASE + n / 2));
        let (small, large) = (spread(2_000, BASE, 1), spread(200_000, BASE, 1));
        let (page, small_work) = small.page(None, mid(2_000), 100);
        let (large_page, large_work) = large.page(None, mid(200_000), 100);
        let addrs = |page: &[Lease]| page.iter().map(|l| u32::from(l.addr)).collect::<Vec<_>>();
        assert_eq!(addrs(&page), (BASE + 1_001..BASE + 1_101).collect::<Vec<_>>());
        assert_eq!(addrs(&large_page), (BASE + 100_001..BASE + 100_101).collect::<Vec<_>>());
        // A hundred slots and a page or two, not the 200,000 records a whole listing copies.
        assert!(large_work <= 100 + 2 * 256, "{large_work}");
        assert!(large_work <= small_work + 256, "{small_work} {large_work}");
    }

    #[test]
    fn a_page_of_one_subnet_steps_over_the_others() {
        let store = spread(100_000, BASE, 1);
        // Subnet 2 above subnet 1's 100,000 leases (391 pages).
        let top = BASE + 0x10_0000;
        for n in 0..10 {
            let mut lease = bound(1_000_000 + n, top + n, 3600);
            lease.subnet = 2;
            assert!(claim(&store, &lease, at(0)).is_some());
        }
        let (page, work) = store.page(Some(2), None, 5);
        assert_eq!(page.iter().map(|l| u32::from(l.addr)).collect::<Vec<_>>(), (top..top + 5).collect::<Vec<_>>());
        assert!(work < 1_000, "{work}");
    }

    #[test]
    fn a_long_walk_over_sparse_pages_resumes_where_it_paused() {
        // One lease per /24: stepping over them takes more than one turn of the lock.
        let n = 100_000;
        let store = spread(n, BASE, 256);
        let top = BASE + n * 256;
        let mut lease = bound(n + 1, top, 3600);
        lease.subnet = 2;
        assert!(claim(&store, &lease, at(0)).is_some());
        let (page, work) = store.page(Some(2), None, 10);
        assert_eq!(page, vec![lease]);
        assert!(work > WALK_BUDGET, "paused and resumed: {work}");
        // And every lease, in more than one slice of the lock, in order.
        let (all, _) = store.page(None, None, usize::MAX);
        assert_eq!(all.len(), n as usize + 1);
        assert!(all.windows(2).all(|w| w[0].addr < w[1].addr));
        let (rest, _) = store.page(None, Some(Ipv4Addr::from(BASE + 256 * (n - 3))), usize::MAX);
        assert_eq!(rest.len(), 3);
    }
}
