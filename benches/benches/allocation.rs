//! Allocation cost against pool size: a /24 pool against a /8 pool holding a million leases.
//!
//! Each iteration allocates an address for a new client and deletes it again, so the store
//! stays at its size. Target (BENCHMARKS.md): the /8 within 1.2 times the /24.
//!
//! The /24 is measured twice: in a store holding only its own leases, and in a store that also
//! holds a million leases of another subnet. The second isolates the pool's size from the
//! store's size (a million-entry index no longer fits in cache, whatever the pool).

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use std::cell::Cell;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dhcp_benches::{T0, bound_lease, config_slash8, config_slash24, fill};
use dhcp_core::{Config, LeaseStore, block_on};
use dhcp_store::MemoryStore;

/// Leases held in the /8 while it is measured.
const HELD_IN_SLASH8: u32 = 1_000_000;
/// Leases held in the /24 (of its 200) while it is measured.
const HELD_IN_SLASH24: u32 = 100;

fn bench_pool(c: &mut Criterion, name: &str, config: &Config, held: u32, elsewhere: u32) {
    let store = MemoryStore::new();
    // Leases of another subnet's pool, for clients numbered far from the measured ones.
    fill(&store, &config_slash8(), u32::MAX / 2, elsewhere);
    fill(&store, config, 0, held);
    let pool = config.subnets[0].pools[0].as_ref(1);
    let next = Cell::new(held);
    let mut group = c.benchmark_group("allocate");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter(|| {
            let n = next.get();
            next.set(n.wrapping_add(1));
            let lease = bound_lease(n, std::net::Ipv4Addr::UNSPECIFIED);
            let got = match block_on(store.allocate(pool, black_box(&lease), T0)) {
                Some(Ok(Some(got))) => got,
                other => panic!("allocation failed: {other:?}"),
            };
            let deleted = block_on(store.delete(got.addr));
            black_box(deleted)
        })
    });
    group.finish();
}

fn allocation(c: &mut Criterion) {
    bench_pool(c, "slash24", &config_slash24(), HELD_IN_SLASH24, 0);
    bench_pool(c, "slash24_1m_held_elsewhere", &config_slash24(), HELD_IN_SLASH24, HELD_IN_SLASH8);
    bench_pool(c, "slash8_1m_held", &config_slash8(), HELD_IN_SLASH8, 0);
}

criterion_group!(benches, allocation);
criterion_main!(benches);
