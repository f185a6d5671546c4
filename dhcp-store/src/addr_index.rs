//! The in-memory store's index from address to slot, laid out by address.
//!
//! A hash table scatters consecutive addresses over memory, so a pool's cursor, which hands
//! out consecutive addresses, touches a cold cache line for each one once the table holds a
//! million leases. Here addresses live in pages of 256 (one /24 each): consecutive addresses
//! share a page, and the map of pages stays small (4,096 pages for a million dense leases), so
//! allocating in a /8 touches memory about as locally as in a /24. Dense pools cost 4 bytes per
//! address of each page in use; an empty page is freed.

use hashbrown::HashMap;

const PAGE_BITS: u32 = 8;
const PAGE_SIZE: usize = 1 << PAGE_BITS;

/// Slots of one /24; 0 is "none", otherwise slot + 1.
#[derive(Debug)]
struct Page {
    used: u16,
    slots: Box<[u32; PAGE_SIZE]>,
}

/// Slot numbers by IPv4 address (host order).
#[derive(Debug, Default)]
pub(crate) struct AddrIndex {
    pages: HashMap<u32, Page>,
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

    /// Records `slot` for `addr`, which must have none.
    pub(crate) fn insert(&mut self, addr: u32, slot: u32) {
        let (page, at) = Self::split(addr);
        let page = self.pages.entry(page).or_insert_with(|| Page { used: 0, slots: Box::new([0; PAGE_SIZE]) });
        if page.slots[at] == 0 {
            page.used += 1;
            self.len += 1;
        }
        page.slots[at] = slot + 1;
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
        }
        Some(slot)
    }

    /// How many addresses have a slot.
    pub(crate) fn len(&self) -> usize {
        self.len
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
            index.insert(addr, i as u32);
            assert_eq!(index.get(addr), Some(i as u32));
        }
        assert_eq!(index.len(), 5);
        assert_eq!(index.pages.len(), 4);
        index.insert(255, 9);
        assert_eq!((index.get(255), index.len()), (Some(9), 5));
        assert_eq!(index.remove(255), Some(9));
        assert_eq!(index.remove(255), None);
        assert_eq!(index.remove(0), Some(0));
        assert_eq!(index.pages.len(), 3, "an empty page is freed");
        assert_eq!(index.get(0x0a00_0001), Some(3));
        assert_eq!(index.len(), 3);
    }
}
