//! Bytes of heap the in-memory store uses per lease at a million leases.
//!
//! A counting global allocator measures live heap before and after filling the store. Run with
//! `cargo bench -p dhcp-benches --bench memory_per_lease`; target (BENCHMARKS.md): at most 150
//! bytes per lease.

// The one place in the workspace that needs unsafe: a global allocator is an unsafe trait.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use dhcp_benches::{config_slash8, fill};
use dhcp_store::MemoryStore;

const LEASES: u32 = 1_000_000;

/// Live heap bytes, as the allocator sees requests (not the allocator's own overhead).
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every method forwards to the system allocator with the caller's arguments unchanged
// and only updates a counter, so the GlobalAlloc contract is the system allocator's.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded as received.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded as received.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    let config = config_slash8();
    let before = LIVE.load(Ordering::Relaxed);
    let store = MemoryStore::new();
    fill(&store, &config, 0, LEASES);
    let after = LIVE.load(Ordering::Relaxed);
    // A measurement of an empty or partial store would be meaningless; refuse to report one.
    assert_eq!(store.len(), LEASES as usize, "the store must hold every lease it was given");
    let per_lease = (after - before) as f64 / f64::from(LEASES);
    println!(
        "memory_per_lease: {LEASES} bound leases in {} bytes of heap: {per_lease:.1} bytes per lease",
        after - before
    );
    drop(store);
}
