//! The in-memory store under two threads at once: each thread allocates an address for a new
//! client and deletes it again, in the same subnet as the other thread or in a subnet of its
//! own (another partition of the store). Reported per operation of either thread, so that two
//! threads that never wait for each other show half the time of one.
//!
//! The whole operation runs under a partition's lock, so in one subnet the threads take turns
//! and pass the lock's cache line back and forth; in two subnets they share nothing.

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dhcp_benches::{T0, bound_lease};
use dhcp_core::{LeaseStore, PoolRef, block_on};
use dhcp_store::MemoryStore;

/// A /24's worth of pool for thread `t`, in subnet `subnet`.
fn ranges(t: u32) -> [RangeInclusive<u32>; 1] {
    let base = u32::from(Ipv4Addr::new(10, 0, t as u8, 0));
    [base + 10..=base + 249]
}

/// Allocates and deletes `rounds` times in `subnet` from `ranges`, for clients from `first`.
fn churn(store: &MemoryStore, subnet: u32, ranges: &[RangeInclusive<u32>], first: u32, rounds: u64) {
    let pool = PoolRef { key: u64::from(subnet) << 8 | u64::from(first >> 24), subnet, ranges };
    for i in 0..rounds {
        let mut lease = bound_lease(first.wrapping_add(i as u32), Ipv4Addr::UNSPECIFIED);
        lease.subnet = subnet;
        let got = match block_on(store.allocate(pool, black_box(&lease), T0)) {
            Some(Ok(Some(got))) => got,
            other => panic!("allocation failed: {other:?}"),
        };
        black_box(block_on(store.delete(got.addr)));
    }
}

/// Two threads churning at once, in subnets `subnets` (the same twice, or two), for `rounds`
/// each: the wall time until both are done.
fn two_threads(subnets: [u32; 2], rounds: u64) -> Duration {
    let store = MemoryStore::new();
    let barrier = Barrier::new(2);
    std::thread::scope(|scope| {
        let runs: Vec<_> = (0..2u32)
            .map(|t| {
                let (store, barrier) = (&store, &barrier);
                scope.spawn(move || {
                    let ranges = ranges(t);
                    barrier.wait();
                    let start = Instant::now();
                    churn(store, subnets[t as usize], &ranges, (t + 1) << 24, rounds);
                    start.elapsed()
                })
            })
            .collect();
        runs.into_iter().map(|run| run.join().expect("no panic")).max().unwrap_or_default()
    })
}

fn contention(c: &mut Criterion) {
    let mut group = c.benchmark_group("two_threads");
    // Each iteration is one operation of each thread: two in all.
    group.throughput(Throughput::Elements(2));
    group.bench_function("one_subnet", |b| b.iter_custom(|rounds| two_threads([1, 1], rounds)));
    group.bench_function("two_subnets", |b| b.iter_custom(|rounds| two_threads([1, 2], rounds)));
    group.finish();
    // The same work on one thread, one operation per iteration: what the two are measured against.
    let mut group = c.benchmark_group("one_thread");
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_subnet", |b| {
        b.iter_custom(|rounds| {
            let store = MemoryStore::new();
            let start = Instant::now();
            churn(&store, 1, &ranges(0), 1 << 24, rounds);
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, contention);
criterion_main!(benches);
