//! One partition of the in-memory store: the leases of the subnets that hash to it, with their
//! indexes (by address, by client, by deadline) and their pools' allocation state, behind the
//! partition's lock.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use dhcp_core::{ClientId, HwAddr, Lease, LeaseState, Timestamp};
use hashbrown::{DefaultHashBuilder, HashTable};

use crate::addr_index::AddrIndex;
use crate::codec::{self, BOUND, DECLINED, EXPIRED, OFFERED, RELEASED};

/// A state byte for a slab slot that holds no lease: outside the codec's codes, so it never
/// decodes as a state.
const FREE_SLOT: u8 = u8::MAX;

/// At most this many pools keep allocation state; beyond it, the least recently used is dropped.
/// A dropped state is rebuilt from the pool's ranges on its next allocation, at the cost of
/// walking its fresh-address cursor once more over the addresses already leased.
pub(super) const MAX_POOL_STATES: usize = 1024;

/// A pool state not used for this many allocations (of any pool) is dropped when another is
/// made: what a config reload that changed the ranges leaves behind.
pub(super) const POOL_IDLE_ALLOCATIONS: u64 = 1 << 20;

/// The deadline index is rebuilt from the leases once it holds more than this many entries
/// beyond twice the number of lease records: at least half of them are then stale.
pub(super) const DEADLINE_SLACK: usize = 1024;

/// A lease that loses its deadline (released, deleted) takes its entry out of the deadline
/// index when no more than this many addresses share that second; beyond, the entry is left
/// stale rather than searched for (many leases made in one burst). A write that moves the
/// deadline (an offer bound, a renewal) always leaves the old entry stale.
pub(super) const PRECISE_REMOVAL: usize = 64;

/// A pool's queue of freed addresses is pruned of repeats and of addresses held again once it
/// grows past twice its size after the last pruning, and never below this.
pub(super) const FREED_MIN_LIMIT: usize = 1024;

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

/// The leases and indexes of one partition.
#[derive(Debug, Default)]
pub(super) struct Inner {
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
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Bookkeeping {
    pub(crate) records: usize,
    pub(crate) deadline_entries: usize,
    pub(crate) deadline_keys: usize,
    pub(crate) pools: usize,
    pub(crate) freed: usize,
    pub(crate) offers: usize,
    pub(crate) clients: usize,
}

#[cfg(test)]
impl std::ops::Add for Bookkeeping {
    type Output = Bookkeeping;

    fn add(self, other: Bookkeeping) -> Bookkeeping {
        Bookkeeping {
            records: self.records + other.records,
            deadline_entries: self.deadline_entries + other.deadline_entries,
            deadline_keys: self.deadline_keys + other.deadline_keys,
            pools: self.pools + other.pools,
            freed: self.freed + other.freed,
            offers: self.offers + other.offers,
            clients: self.clients + other.clients,
        }
    }
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
    pub(super) fn return_to_pool(&mut self, addr: u32) {
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
    pub(super) fn claim(&mut self, lease: Lease, now: Timestamp) -> Claimed {
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

    /// An address of the pool (`key`, `ranges`) free for `client` at `now` here, and not held
    /// in another partition by `elsewhere`'s answer.
    pub(super) fn find_free(
        &mut self,
        key: u64,
        ranges: &[RangeInclusive<u32>],
        client: &ClientId,
        now: Timestamp,
        elsewhere: &mut dyn FnMut(u32) -> bool,
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
        let found = self.take_from(&mut pool, client, now, elsewhere);
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

    fn take_from(
        &mut self,
        pool: &mut PoolState,
        client: &ClientId,
        now: Timestamp,
        elsewhere: &mut dyn FnMut(u32) -> bool,
    ) -> Option<u32> {
        let mut free = |inner: &Self, addr: u32| inner.available(addr, client, now) && !elsewhere(addr);
        while let Some(addr) = pool.next_fresh() {
            if free(self, addr) {
                return Some(addr);
            }
        }
        while let Some(addr) = pool.freed.pop_front() {
            if free(self, addr) {
                return Some(addr);
            }
        }
        // Leases that expired since the last reclamation are free too; the deadline index
        // finds them in time order, so this costs what expired, not the pool's size.
        self.deadlines
            .range(..=now.as_secs())
            .flat_map(|(_, addrs)| addrs.iter().copied())
            .find(|&addr| pool.contains(addr) && free(self, addr))
    }

    pub(super) fn reclaim(&mut self, now: Timestamp, limit: usize) -> Vec<Lease> {
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

    pub(super) fn update_state(&mut self, addr: Ipv4Addr, client: &ClientId, state: LeaseState) -> Option<Lease> {
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

    /// The lease recorded here for `addr`, in any state.
    pub(super) fn lease_at(&self, addr: u32) -> Option<Lease> {
        self.slot_of_addr(addr).map(|s| self.slab[s as usize].to_lease())
    }

    /// Whether a record for `addr` is here.
    pub(super) fn holds(&self, addr: u32) -> bool {
        self.slot_of_addr(addr).is_some()
    }

    /// The lease `client` holds or last held in `subnet`.
    pub(super) fn lease_of(&self, subnet: u32, client: &ClientId) -> Option<Lease> {
        self.slot_of_client(subnet, client).map(|s| self.slab[s as usize].to_lease())
    }

    /// Whether the record here for `addr` (if any) keeps it from `client` at `now`.
    pub(super) fn withholds(&self, addr: u32, client: &ClientId, now: Timestamp) -> bool {
        !self.available(addr, client, now)
    }

    /// Deletes the lease at `addr` and gives the address back to its pools. Returns whether
    /// there was one.
    pub(super) fn delete(&mut self, addr: u32) -> bool {
        let Some(slot) = self.slot_of_addr(addr) else { return false };
        self.remove(slot);
        self.return_to_pool(addr);
        true
    }

    /// Takes the record for `addr` out, without giving the address back to a pool: another
    /// partition is writing the address (its subnet changed with a reload).
    pub(super) fn take_out(&mut self, addr: u32) {
        if let Some(slot) = self.slot_of_addr(addr) {
            self.remove(slot);
        }
    }

    /// Writes `lease` at its address whatever is there (a journal's replay).
    #[cfg(feature = "journal")]
    pub(super) fn restore(&mut self, lease: &Lease) {
        self.write_linked(Record::from_lease(lease), true);
    }

    /// Marks the lease at `addr` released if `client` still holds it there (a journal's
    /// replay of a client's move). Returns whether a record for `addr` is here at all.
    #[cfg(feature = "journal")]
    pub(super) fn restore_freed(&mut self, addr: u32, client: &ClientId) -> bool {
        let Some(slot) = self.slot_of_addr(addr) else { return false };
        if self.slab[slot as usize].client == *client && self.slab[slot as usize].state != FREE_SLOT {
            self.release_slot(slot);
        }
        true
    }

    /// The number of lease records here, in any state.
    pub(super) fn len(&self) -> usize {
        self.by_addr.len()
    }

    /// Appends to `out` the leases (of `subnet`, or all) in at most `slice` slab slots from
    /// `from`. Returns where the next slice starts, or `None` at the slab's end.
    pub(super) fn list_slice(
        &self,
        from: usize,
        slice: usize,
        subnet: Option<u32>,
        out: &mut Vec<Lease>,
    ) -> Option<usize> {
        let records = self.slab.get(from..)?;
        let records = &records[..records.len().min(slice)];
        out.extend(
            records
                .iter()
                .filter(|r| r.state != FREE_SLOT && subnet.is_none_or(|s| r.subnet == s))
                .map(Record::to_lease),
        );
        (records.len() == slice).then_some(from + slice)
    }

    /// Walks the address index in order from `start`, appending the leases (of `subnet`, or
    /// all) to `out` until it holds `until` leases or `budget` work is done. Returns the work
    /// done and where to resume (`None` past the last address).
    pub(super) fn walk(
        &self,
        start: u32,
        subnet: Option<u32>,
        budget: usize,
        until: usize,
        out: &mut Vec<Lease>,
    ) -> (usize, Option<u32>) {
        let walked = self.by_addr.walk(start, subnet, budget, |_, slot| {
            let record = &self.slab[slot as usize];
            if record.state != FREE_SLOT && subnet.is_none_or(|s| record.subnet == s) {
                out.push(record.to_lease());
            }
            out.len() < until
        });
        (walked.work, walked.resume)
    }

    /// Makes every pool state look unused for `allocations` more allocations, for the test of
    /// their dropping.
    #[cfg(test)]
    pub(super) fn age_pools(&mut self, allocations: u64) {
        self.allocations += allocations;
    }

    /// Whether the pool `key` has allocation state here, for the test of its dropping.
    #[cfg(test)]
    pub(super) fn has_pool(&self, key: u64) -> bool {
        self.pools.contains_key(&key)
    }

    /// The sizes of the bookkeeping, for the tests that check it stays bounded.
    #[cfg(test)]
    pub(super) fn bookkeeping(&self) -> Bookkeeping {
        Bookkeeping {
            records: self.by_addr.len(),
            deadline_entries: self.deadline_entries,
            deadline_keys: self.deadlines.len(),
            pools: self.pools.len(),
            freed: self.pools.values().map(|p| p.freed.len()).sum(),
            offers: self.offers.len(),
            clients: self.by_client.len(),
        }
    }
}
