//! The in-memory store's index from address to slot, laid out by address.
//!
//! A hash table scatters consecutive addresses over memory, so a pool's cursor, which hands
//! out consecutive addresses, touches a cold cache line for each one once the table holds a
//! million leases. Here addresses live in pages of 256 (one /24 each): consecutive addresses
//! share a page, and the map of pages stays small (4,096 pages for a million dense leases), so
//! allocating in a /8 touches memory about as locally as in a /24. Dense pools cost 4 bytes per
//! address of each page in use; an empty page is freed.
//!
//! The page numbers are also kept in order (a B-tree beside the map, changed only when a page
//! is made or freed), so a listing walks the addresses in order from any point, touching only
//! the pages it lists. Each page notes the subnet of its records while they share one, so a
//! listing of one subnet steps over the pages of others without reading their slots.

use std::collections::BTreeSet;

use hashbrown::HashMap;

const PAGE_BITS: u32 = 8;
const PAGE_SIZE: usize = 1 << PAGE_BITS;

/// Slots of one /24; 0 is "none", otherwise slot + 1.
#[derive(Debug)]
struct Page {
    used: u16,
    /// The subnet of every record in the page, unless `mixed`.
    subnet: u32,
    /// Records of more than one subnet were in the page at once (or a record's subnet changed):
    /// `subnet` says nothing. Cleared only by freeing the page.
    mixed: bool,
    slots: Box<[u32; PAGE_SIZE]>,
}

/// Where a [`walk`](AddrIndex::walk) stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Walked {
    /// The address to go on from (inclusive), or `None` when no address above the walk's last
    /// one has a slot: the visitor asked to stop at the top address, or the index ran out.
    pub(crate) resume: Option<u32>,
    /// Work done: one for each page looked at, one for each slot read.
    pub(crate) work: usize,
}

/// Slot numbers by IPv4 address (host order).
#[derive(Debug, Default)]
pub(crate) struct AddrIndex {
    pages: HashMap<u32, Page>,
    /// The keys of `pages`, in order.
    order: BTreeSet<u32>,
    len: usize,
}

impl AddrIndex {
    fn split(addr: u32) -> (u32, usize) {
        (addr >> PAGE_BITS, (addr as usize) & (PAGE_SIZE - 1))
    }

    /// The slot recorded for `addr`.
    pub(crate) fn get(&self, addr: u32) -> Option<u32> {
        let (page, at) = Self::split(addr);
        let stored = self.pages.get(&page)?.slots[at];
        stored.checked_sub(1)
    }

    /// Records `slot`, holding a record of `subnet`, for `addr`.
    pub(crate) fn insert(&mut self, addr: u32, slot: u32, subnet: u32) {
        let (key, at) = Self::split(addr);
        let page = match self.pages.entry(key) {
            hashbrown::hash_map::Entry::Occupied(page) => page.into_mut(),
            hashbrown::hash_map::Entry::Vacant(vacant) => {
                self.order.insert(key);
                vacant.insert(Page { used: 0, subnet, mixed: false, slots: Box::new([0; PAGE_SIZE]) })
            }
        };
        page.mixed |= page.subnet != subnet;
        if page.slots[at] == 0 {
            page.used += 1;
            self.len += 1;
        }
        page.slots[at] = slot + 1;
    }

    /// Notes that the record at `addr` now belongs to `subnet`.
    pub(crate) fn set_subnet(&mut self, addr: u32, subnet: u32) {
        let (key, _) = Self::split(addr);
        if let Some(page) = self.pages.get_mut(&key) {
            page.mixed |= page.subnet != subnet;
        }
    }

    /// Forgets `addr`; returns the slot it had.
    pub(crate) fn remove(&mut self, addr: u32) -> Option<u32> {
        let (key, at) = Self::split(addr);
        let page = self.pages.get_mut(&key)?;
        let slot = page.slots[at].checked_sub(1)?;
        page.slots[at] = 0;
        page.used -= 1;
        self.len -= 1;
        if page.used == 0 {
            self.pages.remove(&key);
            self.order.remove(&key);
        }
        Some(slot)
    }

    /// How many addresses have a slot.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Calls `visit(addr, slot)` for the addresses from `from` (inclusive) up that have a slot,
    /// in ascending order, until `visit` returns false or about `budget` work is done (see
    /// [`Walked::work`]; at least one page is always read). With `subnet`, pages whose records
    /// are all of another subnet are stepped over; `visit` still sees records of other subnets
    /// in pages shared between subnets, and must check.
    pub(crate) fn walk(
        &self,
        from: u32,
        subnet: Option<u32>,
        budget: usize,
        mut visit: impl FnMut(u32, u32) -> bool,
    ) -> Walked {
        let mut work = 0;
        let (first, first_at) = Self::split(from);
        for &key in self.order.range(first..) {
            let base = key << PAGE_BITS;
            let start = if key == first { first_at } else { 0 };
            if work >= budget && work > 0 {
                return Walked { resume: Some(base | start as u32), work };
            }
            work += 1;
            let Some(page) = self.pages.get(&key) else { continue };
            if subnet.is_some_and(|s| !page.mixed && page.subnet != s) {
                continue;
            }
            let mut seen = 0;
            for (at, &stored) in page.slots.iter().enumerate().skip(start) {
                work += 1;
                let Some(slot) = stored.checked_sub(1) else { continue };
                seen += 1;
                let addr = base | at as u32;
                if !visit(addr, slot) {
                    return Walked { resume: addr.checked_add(1), work };
                }
                if seen == page.used {
                    break; // The rest of the page is empty (when the walk began at its start).
                }
            }
        }
        Walked { resume: None, work }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_across_pages() {
        let mut index = AddrIndex::default();
        for (i, addr) in [0u32, 255, 256, 0x0a00_0001, u32::MAX].into_iter().enumerate() {
            assert_eq!(index.get(addr), None);
            index.insert(addr, i as u32, 1);
            assert_eq!(index.get(addr), Some(i as u32));
        }
        assert_eq!(index.len(), 5);
        assert_eq!(index.pages.len(), 4);
        index.insert(255, 9, 1);
        assert_eq!((index.get(255), index.len()), (Some(9), 5));
        assert_eq!(index.remove(255), Some(9));
        assert_eq!(index.remove(255), None);
        assert_eq!(index.remove(0), Some(0));
        assert_eq!(index.pages.len(), 3, "an empty page is freed");
        assert_eq!(index.get(0x0a00_0001), Some(3));
        assert_eq!(index.len(), 3);
    }

    /// The addresses a walk from `from` visits, with a visitor that stops after `take`.
    fn walked(index: &AddrIndex, from: u32, subnet: Option<u32>, take: usize) -> (Vec<u32>, Option<u32>) {
        let mut seen = Vec::new();
        let walked = index.walk(from, subnet, usize::MAX, |addr, _| {
            seen.push(addr);
            seen.len() < take
        });
        (seen, walked.resume)
    }

    #[test]
    fn a_walk_goes_in_address_order_from_anywhere() {
        let mut index = AddrIndex::default();
        let addrs = [0x0a00_0105u32, 7, 0x0a00_00ff, u32::MAX, 0x0a00_0100, 0x0b00_0000, 256];
        for (i, &addr) in addrs.iter().enumerate() {
            index.insert(addr, i as u32, 1);
        }
        let mut sorted = addrs.to_vec();
        sorted.sort_unstable();
        assert_eq!(walked(&index, 0, None, usize::MAX), (sorted.clone(), None));
        assert_eq!(walked(&index, 8, None, 3), (vec![256, 0x0a00_00ff, 0x0a00_0100], Some(0x0a00_0101)));
        assert_eq!(walked(&index, 0x0a00_0101, None, 1), (vec![0x0a00_0105], Some(0x0a00_0106)));
        assert_eq!(walked(&index, u32::MAX, None, 1), (vec![u32::MAX], None), "nothing above the top");
        index.remove(256);
        index.remove(u32::MAX);
        assert_eq!(walked(&index, 200, None, usize::MAX).0, [0x0a00_00ff, 0x0a00_0100, 0x0a00_0105, 0x0b00_0000]);
        assert_eq!(index.order.len(), index.pages.len(), "freed pages leave the order too");
    }

    #[test]
    fn a_walk_steps_over_pages_of_other_subnets_and_pauses_on_its_budget() {
        let mut index = AddrIndex::default();
        for page in 0..100u32 {
            index.insert(page << 8, page, 1);
        }
        index.insert(50 << 8 | 9, 1000, 2); // a page shared by both subnets
        index.insert(200 << 8, 1001, 2);
        // Subnet 2: the shared page is read (its subnet-1 record included), the others skipped.
        let (seen, resume) = walked(&index, 0, Some(2), usize::MAX);
        assert_eq!((seen, resume), (vec![50 << 8, 50 << 8 | 9, 200 << 8], None));
        let walked = index.walk(0, Some(2), usize::MAX, |_, _| true);
        assert!(walked.work < 100 + 2 * PAGE_SIZE, "{walked:?}");
        // A record whose subnet changes in place makes its page mixed.
        index.set_subnet(7 << 8, 2);
        assert!(index.pages.get(&7).is_some_and(|p| p.mixed));
        // Out of budget, the walk says where to go on.
        let paused = index.walk(0, None, 10, |_, _| true);
        assert!(matches!(paused.resume, Some(at) if at > 0 && at % 256 == 0), "{paused:?}");
    }
}
