//! The in-memory lease store.

mod homes;
mod part;

use std::future::{Ready, ready};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

use dhcp_core::{ClientId, Lease, LeaseState, LeaseStore, PoolRef, StoreError, Timestamp};

use homes::{Homes, PARTS, bit, parts};
pub(crate) use part::Claimed;
use part::Inner;

/// Leases in this process's memory. The default store, and the one the benchmarks use.
///
/// Every operation takes a short lock and does a bounded amount of work:
/// - allocation walks each pool once with a cursor for never-used addresses, then reuses
///   freed addresses oldest-first from a queue (so a client that released an address is the
///   last to lose it to someone else), so its cost does not depend on the pool's size;
/// - reclamation pops deadlines in time order, so its cost is proportional to what expired;
/// - a page of a listing ([`LeaseStore::list_page`]) walks the address index in order from
///   where it starts, so its cost is about the page's, not the store's.
///
/// # Partitions
/// The leases are kept in 16 partitions by subnet id (id modulo 16), each with its own lock and
/// its own indexes, so requests in different subnets never wait for each other: no lock is
/// global. A client's lease, its other leases in the subnet and the subnet's pools are all in
/// one partition, so a claim or an allocation takes one lock. An operation that names only an
/// address (a release, a decline, a lookup by address, a delete) finds its partition in a table
/// of which partitions wrote in each block of 256 addresses, read without a lock.
///
/// An address belongs to one subnet, but a reload may give its range another subnet id, while
/// leases of the old id are still held: a record for the address is then in the old id's
/// partition. The store keeps at most one record per address across partitions: a write into
/// a block that another partition has written in takes both partitions' locks, in order, and
/// moves the address's record (`homes.rs` says why no write goes unseen); an
/// allocation skips addresses held in another partition; and an address freed in one
/// partition is given to the pools of every other partition that wrote in its block.
///
/// Its bookkeeping stays bounded whatever the traffic: per-pool allocation state is dropped
/// for pools not used lately (a config reload that changes a pool's ranges changes its key,
/// leaving the old state unused) and rebuilt from the ranges when needed again; stale entries
/// of the deadline index (left by renewals and releases) and repeated entries of a pool's
/// queue of freed addresses are pruned once they outnumber the live ones.
///
/// About 100 bytes per lease (see BENCHMARKS.md): records live in one vector per partition,
/// the address index is laid out by address in pages of 256, and both indexes hold 4-byte slot
/// numbers. The partition table adds 1 MiB per store and 512 bytes per /16 in use.
#[derive(Debug)]
pub struct MemoryStore {
    parts: Box<[Mutex<Inner>]>,
    homes: Homes,
    /// The partition the next reclamation starts at: the one after the partition that filled
    /// the last call's limit, so a partition with much to reclaim cannot keep the others
    /// waiting call after call.
    reclaim_from: AtomicUsize,
}

/// Records a listing copies while it holds the lock.
const LIST_SLICE: usize = 4096;

/// Work (pages looked at and slots read in the address index) a page of a listing does while
/// it holds the lock: about a hundred microseconds.
const WALK_BUDGET: usize = 64 * 1024;

/// An allocation whose address turned out to be taken in another partition, between its
/// search and its claim, looks again at most this many times.
const ALLOCATE_TRIES: usize = 4;

/// The partition of `subnet`'s leases.
fn part_of(subnet: u32) -> usize {
    subnet as usize % PARTS
}

/// A partition's lock. A panic while holding it cannot leave a half-written lease (every write
/// is a single assignment), so a poisoned lock is still safe to use.
fn lock(part: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    part.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            parts: (0..PARTS).map(|_| Mutex::default()).collect(),
            homes: Homes::default(),
            reclaim_from: AtomicUsize::new(0),
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn part(&self, part: usize) -> MutexGuard<'_, Inner> {
        lock(&self.parts[part])
    }

    /// The locks of the partitions in `mask`, taken lowest first (the one order every caller
    /// that holds more than one takes them in).
    fn parts_of(&self, mask: u16) -> Vec<(usize, MutexGuard<'_, Inner>)> {
        parts(mask).map(|p| (p, self.part(p))).collect()
    }

    /// The number of lease records held, in any state.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| lock(p).len()).sum()
    }

    /// Whether the store holds no lease records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `f` on the partition that holds a record for `addr`, if one does.
    fn with_holder<T>(&self, addr: u32, f: impl FnOnce(usize, &mut Inner) -> T) -> Option<T> {
        for p in parts(self.homes.of(addr)) {
            let mut inner = self.part(p);
            if inner.holds(addr) {
                return Some(f(p, &mut inner));
            }
        }
        None
    }

    /// Gives `addr`, just freed in partition `from`, to the pools of the other partitions that
    /// wrote in its block (none but after a reload moved its range to another subnet id).
    /// Called with no lock held.
    fn share_freed(&self, from: usize, addr: u32) {
        for p in parts(self.homes.of(addr) & !bit(from)) {
            self.part(p).return_to_pool(addr);
        }
    }

    /// Whether `addr` is held for someone other than `client` in a partition other than
    /// `home`, whose lock the caller holds: the other locks are only tried (taking them would
    /// be out of order), and a busy one counts as holding it (the address is skipped, and
    /// given back to `home`'s pools by the caller).
    fn held_elsewhere(&self, home: usize, addr: u32, client: &ClientId, now: Timestamp, busy: &mut bool) -> bool {
        parts(self.homes.of(addr) & !bit(home)).any(|p| match self.parts[p].try_lock() {
            Ok(inner) => inner.withholds(addr, client, now),
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner().withholds(addr, client, now),
            Err(TryLockError::WouldBlock) => {
                *busy = true;
                true
            }
        })
    }

    /// Writes `lease` at its address whatever is there: for replaying a journal, whose order
    /// already decided who may hold what.
    #[cfg(feature = "journal")]
    pub(crate) fn restore(&self, lease: &Lease) {
        let (addr, home) = (u32::from(lease.addr), part_of(lease.subnet));
        for p in parts(self.homes.mark(addr, home)) {
            self.part(p).take_out(addr);
        }
        self.part(home).restore(lease);
    }

    /// Marks the lease at `addr` released if `client` still holds it there: for replaying a
    /// journal's move of a client from that address.
    #[cfg(feature = "journal")]
    pub(crate) fn restore_freed(&self, addr: Ipv4Addr, client: &ClientId) {
        self.with_holder(addr.into(), |_, inner| inner.restore_freed(addr.into(), client));
    }

    /// [`LeaseStore::claim`], also saying which other lease of the client it freed.
    pub(crate) fn claim_moving(&self, lease: &Lease, now: Timestamp) -> Claimed {
        let home = part_of(lease.subnet);
        let claimed = match self.homes.mark(lease.addr.into(), home) {
            0 => self.part(home).claim(lease.clone(), now),
            others => self.claim_across(home, others, lease.clone(), now),
        };
        self.after_claim(home, &claimed);
        claimed
    }

    /// A claim in partition `home` of an address that partitions `others` may hold a record
    /// for: every lock taken in order, and the record, if another partition has it, judged as
    /// the address's and moved here.
    fn claim_across(&self, home: usize, others: u16, lease: Lease, now: Timestamp) -> Claimed {
        let addr = u32::from(lease.addr);
        let mut locks = self.parts_of(others | bit(home));
        let mut replaced = None;
        if let Some((_, holder)) = locks.iter_mut().find(|(p, inner)| *p != home && inner.holds(addr)) {
            let Some(existing) = holder.lease_at(addr) else { return Claimed::default() };
            if !existing.available_to(&lease.client, now) {
                return Claimed::default();
            }
            if matches!(lease.state, LeaseState::Offered { .. }) && existing.is_bound_to(&lease.client, now) {
                return Claimed { lease: Some(existing), freed: None, replaced: None };
            }
            holder.take_out(addr);
            replaced = Some(existing);
        }
        let Some((_, inner)) = locks.iter_mut().find(|(p, _)| *p == home) else { return Claimed::default() };
        let mut claimed = inner.claim(lease, now);
        claimed.replaced = claimed.replaced.or(replaced);
        claimed
    }

    /// What a claim in `home` leaves to do with no lock held: the client's other lease it
    /// freed goes to the other partitions' pools too, where any wrote in its block.
    fn after_claim(&self, home: usize, claimed: &Claimed) {
        if let Some(freed) = &claimed.freed {
            self.share_freed(home, freed.addr.into());
        }
    }

    /// [`LeaseStore::allocate`], also saying which other lease of the client it freed and
    /// which record it overwrote.
    pub(crate) fn allocate_moving(&self, pool: PoolRef<'_>, lease: &Lease, now: Timestamp) -> Claimed {
        let home = part_of(lease.subnet);
        for _ in 0..ALLOCATE_TRIES {
            let mut inner = self.part(home);
            let mut skipped_busy = Vec::new();
            let found = inner.find_free(pool.key, pool.ranges, &lease.client, now, &mut |addr| {
                let mut busy = false;
                let held = self.held_elsewhere(home, addr, &lease.client, now, &mut busy);
                if busy {
                    skipped_busy.push(addr);
                }
                held
            });
            for addr in skipped_busy {
                inner.return_to_pool(addr);
            }
            let Some(addr) = found else { return Claimed::default() };
            let lease = Lease { addr: Ipv4Addr::from(addr), ..lease.clone() };
            let claimed = match self.homes.mark(addr, home) {
                0 => inner.claim(lease, now),
                others => {
                    drop(inner);
                    self.claim_across(home, others, lease, now)
                }
            };
            if claimed.lease.is_some() {
                self.after_claim(home, &claimed);
                return claimed;
            }
        }
        Claimed::default()
    }

    /// The sizes of the bookkeeping, for the tests that check it stays bounded: the sums over
    /// the partitions.
    #[cfg(test)]
    pub(crate) fn bookkeeping(&self) -> part::Bookkeeping {
        self.parts.iter().map(|p| lock(p).bookkeeping()).fold(part::Bookkeeping::default(), |sum, b| sum + b)
    }

    /// [`LeaseStore::list_page`], also saying how much work it did in the address indexes
    /// (pages looked at and slots read), for the tests that check a page's cost.
    ///
    /// A subnet's page walks its partition's address index in order from `after`, under the
    /// lock for at most [`LIST_SLICE`] leases and [`WALK_BUDGET`] work at a time, then again
    /// from where it stopped: a page costs about its own size (plus the pages of other subnets
    /// of the partition stepped over), whatever the store holds, and holds up a request for the
    /// time of one slice. A page of every subnet is each partition's page, merged.
    fn page(&self, subnet: Option<u32>, after: Option<Ipv4Addr>, limit: usize) -> (Vec<Lease>, usize) {
        let Some(subnet) = subnet else {
            let mut work = 0;
            let mut leases = Vec::new();
            for p in 0..PARTS {
                let (page, done) = self.page_of(p, None, after, limit);
                leases.extend(page);
                work += done;
            }
            leases.sort_unstable_by_key(|l| l.addr);
            leases.truncate(limit);
            return (leases, work);
        };
        self.page_of(part_of(subnet), Some(subnet), after, limit)
    }

    /// A page of partition `part`'s leases (of `subnet`, or all).
    fn page_of(&self, part: usize, subnet: Option<u32>, after: Option<Ipv4Addr>, limit: usize) -> (Vec<Lease>, usize) {
        let mut leases = Vec::with_capacity(limit.min(LIST_SLICE));
        let mut work = 0;
        let mut from = match after {
            None => Some(0),
            Some(after) => u32::from(after).checked_add(1),
        };
        while let Some(start) = from
            && leases.len() < limit
        {
            let inner = self.part(part);
            let slice_end = leases.len() + (limit - leases.len()).min(LIST_SLICE);
            let (done, resume) = inner.walk(start, subnet, WALK_BUDGET, slice_end, &mut leases);
            work += done;
            from = resume;
        }
        (leases, work)
    }
}

type Answer<T> = Ready<Result<T, StoreError>>;

// The futures are `Ready`: callers that hold a `MemoryStore` by type may rely on that.
#[allow(refining_impl_trait)]
impl LeaseStore for MemoryStore {
    fn lease_by_client(&self, subnet: u32, client: &ClientId) -> Answer<Option<Lease>> {
        ready(Ok(self.part(part_of(subnet)).lease_of(subnet, client)))
    }

    fn lease_by_addr(&self, addr: Ipv4Addr) -> Answer<Option<Lease>> {
        ready(Ok(self.with_holder(addr.into(), |_, inner| inner.lease_at(addr.into())).flatten()))
    }

    fn lease_by_addr_and_client(
        &self,
        addr: Ipv4Addr,
        subnet: u32,
        client: &ClientId,
    ) -> Answer<(Option<Lease>, Option<Lease>)> {
        let home = part_of(subnet);
        if self.homes.of(addr.into()) & !bit(home) != 0 {
            let at = self.with_holder(addr.into(), |_, inner| inner.lease_at(addr.into())).flatten();
            return ready(Ok((at, self.part(home).lease_of(subnet, client))));
        }
        // The usual case: both answers from the one partition, under one lock.
        let inner = self.part(home);
        ready(Ok((inner.lease_at(addr.into()), inner.lease_of(subnet, client))))
    }

    fn claim(&self, lease: &Lease, now: Timestamp) -> Answer<Option<Lease>> {
        ready(Ok(self.claim_moving(lease, now).lease))
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
        let Some((from, updated)) =
            self.with_holder(addr.into(), |p, inner| (p, inner.update_state(addr, client, state)))
        else {
            return ready(Ok(None));
        };
        if updated.as_ref().is_some_and(|l| l.state.deadline().is_none()) {
            self.share_freed(from, addr.into());
        }
        ready(Ok(updated))
    }

    fn reclaim_expired(&self, now: Timestamp, limit: usize) -> Answer<Vec<Lease>> {
        let mut reclaimed = Vec::new();
        let first = self.reclaim_from.load(Ordering::Relaxed);
        for i in 0..PARTS {
            if reclaimed.len() >= limit {
                break;
            }
            let p = (first + i) % PARTS;
            let got = self.part(p).reclaim(now, limit - reclaimed.len());
            for lease in &got {
                self.share_freed(p, lease.addr.into());
            }
            reclaimed.extend(got);
            if reclaimed.len() >= limit {
                // The next call starts after the partition that filled this one.
                self.reclaim_from.store((p + 1) % PARTS, Ordering::Relaxed);
            }
        }
        ready(Ok(reclaimed))
    }

    fn delete(&self, addr: Ipv4Addr) -> Answer<bool> {
        let Some(from) = self.with_holder(addr.into(), |p, inner| inner.delete(addr.into()).then_some(p)).flatten()
        else {
            return ready(Ok(false));
        };
        self.share_freed(from, addr.into());
        ready(Ok(true))
    }

    fn list(&self, subnet: Option<u32>) -> Answer<Vec<Lease>> {
        // A slice of a partition's slab at a time, letting go of the lock between slices:
        // listing a million leases (the management API, a lease dump) holds up a request for
        // the time of one slice, not of the whole list. Each lease is whole; the list as a
        // whole is not one instant's, as with any store a server keeps serving from meanwhile.
        let mut leases = Vec::new();
        let partitions: Vec<usize> = match subnet {
            Some(subnet) => vec![part_of(subnet)],
            None => (0..PARTS).collect(),
        };
        for p in partitions {
            let mut from = Some(0);
            while let Some(start) = from {
                from = self.part(p).list_slice(start, LIST_SLICE, subnet, &mut leases);
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
    use super::part::{DEADLINE_SLACK, FREED_MIN_LIMIT, MAX_POOL_STATES, POOL_IDLE_ALLOCATIONS, PRECISE_REMOVAL};
    use super::*;
    use dhcp_core::HwAddr;
    use dhcp_core::block_on;
    use std::ops::RangeInclusive;

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
        store.part(part_of(1)).age_pools(POOL_IDLE_ALLOCATIONS + 1);
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
        assert!(!store.part(part_of(1)).has_pool(7), "dropped");
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
        // Subnet 17 (in subnet 1's partition, 17 modulo 16) above subnet 1's 100,000 leases (391 pages).
        let top = BASE + 0x10_0000;
        for n in 0..10 {
            let mut lease = bound(1_000_000 + n, top + n, 3600);
            lease.subnet = 17;
            assert!(claim(&store, &lease, at(0)).is_some());
        }
        let (page, work) = store.page(Some(17), None, 5);
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
        lease.subnet = 17;
        assert!(claim(&store, &lease, at(0)).is_some());
        let (page, work) = store.page(Some(17), None, 10);
        assert_eq!(page, vec![lease]);
        assert!(work > WALK_BUDGET, "paused and resumed: {work}");
        // And every lease, in more than one slice of the lock, in order.
        let (all, _) = store.page(None, None, usize::MAX);
        assert_eq!(all.len(), n as usize + 1);
        assert!(all.windows(2).all(|w| w[0].addr < w[1].addr));
        let (rest, _) = store.page(None, Some(Ipv4Addr::from(BASE + 256 * (n - 3))), usize::MAX);
        assert_eq!(rest.len(), 3);
    }

    fn in_subnet(mut lease: Lease, subnet: u32) -> Lease {
        lease.subnet = subnet;
        lease
    }

    fn allocate_in(
        store: &MemoryStore,
        subnet: u32,
        ranges: &[RangeInclusive<u32>],
        n: u32,
        now: Timestamp,
    ) -> Option<u32> {
        let pool = PoolRef { key: u64::from(subnet), subnet, ranges };
        let lease = in_subnet(bound(n, 0, 3600), subnet);
        let got = block_on(store.allocate(pool, &lease, now)).and_then(Result::ok).flatten();
        got.map(|l| u32::from(l.addr))
    }

    #[test]
    fn an_address_renumbered_to_another_subnet_is_held_once_across_partitions() {
        // A reload gave the range subnet 2 (another partition) while subnet 1's binding holds it.
        let store = MemoryStore::new();
        assert!(claim(&store, &bound(1, BASE + 5, 3600), at(0)).is_some());
        let other = in_subnet(bound(2, BASE + 5, 7200), 2);
        assert!(claim(&store, &other, at(10)).is_none(), "held under the old subnet id");
        assert_eq!(allocate_in(&store, 2, &[BASE + 5..=BASE + 6], 3, at(10)), Some(BASE + 6), "skipped while held");
        assert_eq!(allocate_in(&store, 2, &[BASE + 5..=BASE + 6], 4, at(10)), None, "the pool is full");
        // Once the old binding has run out, the address moves: one record, in the new subnet.
        let moved = claim(&store, &other, at(3601)).expect("free after the old binding");
        assert_eq!(moved.subnet, 2);
        assert_eq!(block_on(store.lease_by_addr(Ipv4Addr::from(BASE + 5))).and_then(Result::ok).flatten(), Some(moved));
        assert!(block_on(store.list(Some(1))).and_then(Result::ok).expect("ready").is_empty());
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn an_address_freed_under_the_old_subnet_returns_to_the_new_subnets_pool() {
        let store = MemoryStore::new();
        assert!(claim(&store, &bound(1, BASE + 5, 3600), at(0)).is_some());
        let ranges = [BASE + 5..=BASE + 6];
        assert_eq!(allocate_in(&store, 2, &ranges, 3, at(10)), Some(BASE + 6));
        assert_eq!(allocate_in(&store, 2, &ranges, 4, at(10)), None);
        assert!(release(&store, BASE + 5, 1).is_some(), "released under subnet 1");
        assert_eq!(allocate_in(&store, 2, &ranges, 4, at(11)), Some(BASE + 5), "subnet 2's pool has it back");
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn claims_racing_in_two_partitions_for_the_same_addresses_grant_each_once() {
        // Eight threads, each with clients of its own, claim 64 addresses in subnet 1 or 2 (two
        // partitions) at random, with bindings that never run out: every address goes to one
        // client, whichever partition won it, and no thread deadlocks on the ordered locks.
        let store = std::sync::Arc::new(MemoryStore::new());
        let threads: Vec<_> = (0..8u32)
            .map(|t| {
                let store = std::sync::Arc::clone(&store);
                std::thread::spawn(move || {
                    let mut won = Vec::new();
                    let mut seed = 0x9E37_79B9u32.wrapping_mul(t + 1);
                    for i in 0..2_000u32 {
                        seed ^= seed << 13;
                        seed ^= seed >> 17;
                        seed ^= seed << 5;
                        let addr = BASE + seed % 64;
                        let client = t * 1_000_000 + i;
                        let lease = in_subnet(bound(client, addr, 1 << 30), 1 + (seed >> 16) % 2);
                        if claim(&store, &lease, at(0)).is_some() {
                            won.push((addr, client));
                        }
                    }
                    won
                })
            })
            .collect();
        let mut owner = std::collections::HashMap::new();
        for thread in threads {
            for (addr, client) in thread.join().expect("no panic") {
                assert!(owner.insert(addr, client).is_none(), "{addr:#x} granted twice");
            }
        }
        assert_eq!(owner.len(), 64, "every address was won");
        assert_eq!(store.len(), 64, "one record per address");
        for (addr, client) in owner {
            let stored = block_on(store.lease_by_addr(Ipv4Addr::from(addr))).and_then(Result::ok).flatten();
            assert_eq!(stored.map(|l| l.client), Some(ClientId::from_bytes(&client.to_be_bytes())));
        }
    }

    #[test]
    fn reclamation_takes_turns_between_partitions() {
        // Subnet 1 has many expired leases, subnet 2 one: a reclaimer that asks for one at a
        // time still gets subnet 2's on its second call.
        let store = MemoryStore::new();
        for n in 0..10 {
            assert!(claim(&store, &bound(n, BASE + n, 60), at(0)).is_some());
        }
        assert!(claim(&store, &in_subnet(bound(100, BASE + 0x100, 60), 2), at(0)).is_some());
        let subnets: Vec<u32> = (0..2)
            .flat_map(|_| block_on(store.reclaim_expired(at(61), 1)).and_then(Result::ok).expect("ready"))
            .map(|l| l.subnet)
            .collect();
        assert_eq!(subnets.len(), 2);
        assert!(subnets.contains(&2), "{subnets:?}");
    }
}
