//! Which partitions of the in-memory store may hold a record for an address: read on every
//! operation that names only an address, without a lock.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU16, Ordering};

/// Partitions: at most 16, one bit each in a block's mask.
pub(super) const PARTS: usize = 16;

/// Blocks of 256 addresses in a /16: the second level of the table.
type Blocks = [AtomicU16; 256];

/// For each block of 256 addresses, a bit for each partition that has written a record in
/// it. A bit is set before its partition writes (see [`Homes::mark`]) and never cleared, so a
/// mask may name a partition that holds nothing there any more: that costs a look, not a wrong
/// answer.
///
/// Two levels (a /16, then its 256 blocks), the second made on first use: exact per block (a
/// hashed table would make unrelated subnets share masks and send every write down the
/// cross-partition path), at 16 bytes per /16 and 512 per /16 in use.
#[derive(Debug)]
pub(super) struct Homes {
    top: Box<[OnceLock<Box<Blocks>>]>,
}

impl Default for Homes {
    fn default() -> Self {
        Homes { top: (0..1 << 16).map(|_| OnceLock::new()).collect() }
    }
}

/// The bit of `part` in a mask.
pub(super) fn bit(part: usize) -> u16 {
    1 << part
}

/// The partitions of `mask`, lowest first.
pub(super) fn parts(mask: u16) -> impl Iterator<Item = usize> {
    (0..PARTS).filter(move |&p| mask & bit(p) != 0)
}

impl Homes {
    fn cell(&self, addr: u32) -> Option<&AtomicU16> {
        let blocks = self.top.get((addr >> 16) as usize)?.get()?;
        blocks.get(((addr >> 8) & 0xff) as usize)
    }

    /// The partitions that may hold a record for `addr`.
    pub(super) fn of(&self, addr: u32) -> u16 {
        // SeqCst, as `mark`: see there.
        self.cell(addr).map_or(0, |cell| cell.load(Ordering::SeqCst))
    }

    /// Notes that `part` is about to write a record for `addr`; returns the other partitions
    /// that may hold one.
    ///
    /// Called before the partition's write, and its answer decides which locks the write takes:
    /// none besides its own when no other partition is named, else every named one, in order.
    /// Of two writers of one block in different partitions, the second to set its bit sees
    /// the first's (the updates of one atomic are in one order, and every access is `SeqCst`,
    /// so a writer that finds its bit already set reads at least what set it): so at least one
    /// of them takes both locks, and the two writes cannot both go unseen by each other.
    pub(super) fn mark(&self, addr: u32, part: usize) -> u16 {
        let blocks = match self.top.get((addr >> 16) as usize) {
            Some(level) => level.get_or_init(|| Box::new(std::array::from_fn(|_| AtomicU16::new(0)))),
            None => return 0,
        };
        let cell = &blocks[((addr >> 8) & 0xff) as usize];
        let seen = cell.load(Ordering::SeqCst);
        // Set once, then only read: no shared cache line is written per request.
        let mask = if seen & bit(part) != 0 { seen } else { cell.fetch_or(bit(part), Ordering::SeqCst) };
        mask & !bit(part)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_names_the_partitions_that_wrote_in_it_and_no_other() {
        let homes = Homes::default();
        let a = u32::from(std::net::Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(homes.of(a), 0);
        assert_eq!(homes.mark(a, 3), 0, "the first writer sees nobody");
        assert_eq!(homes.mark(a + 1, 3), 0, "its own bit is not another partition");
        assert_eq!(homes.mark(a + 2, 5), bit(3), "the second writer sees the first");
        assert_eq!(homes.mark(a, 3), bit(5), "and the first sees the second afterwards");
        assert_eq!(homes.of(a), bit(3) | bit(5));
        assert_eq!(homes.of(a + 256), 0, "the next block is apart");
        assert_eq!(parts(homes.of(a)).collect::<Vec<_>>(), vec![3, 5]);
    }
}
