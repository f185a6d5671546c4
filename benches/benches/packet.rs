//! One DHCP exchange through decode, engine and encode, on the in-memory store.
//!
//! Targets (BENCHMARKS.md): DISCOVER to OFFER and REQUEST to ACK in at most 2 µs each.

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use std::cell::Cell;
use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use dhcp_benches::{T0, config_slash8, direct, discover, fill, renew, request};
use dhcp_core::wire::Packet;
use dhcp_core::{Engine, Outcome, Timestamp, block_on};
use dhcp_store::MemoryStore;

/// Clients cycle through this many identities; at each wrap the clock moves past the offer
/// hold time, so a DISCOVER always finds its client's earlier offer lapsed, as a real server
/// sees a client that comes back.
const CLIENTS: u32 = 1 << 20;

/// New clients per simulated second in the REQUEST bench.
const CLIENTS_PER_SECOND: u32 = 4096;

fn handle(engine: &Engine<MemoryStore>, packet: &[u8], now: Timestamp, out: &mut Vec<u8>) -> Ipv4Addr {
    match block_on(engine.handle(packet, &direct(), now, out)) {
        Some(Outcome::Reply(reply)) => reply.yiaddr,
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    let packet = discover(7);
    group.bench_function("discover", |b| {
        b.iter(|| {
            let parsed = Packet::parse(black_box(&packet)).ok();
            black_box(parsed.map(|p| (p.message_type(), p.option(55).map(|o| o.len()))))
        })
    });
    group.finish();
}

fn exchanges(c: &mut Criterion) {
    let mut group = c.benchmark_group("exchange");
    group.throughput(Throughput::Elements(1));

    // A new client each time: decode, allocate a fresh address, assemble and encode the OFFER.
    {
        let engine = Engine::new(config_slash8(), MemoryStore::new());
        let mut out = Vec::with_capacity(576);
        let next = Cell::new(0u32);
        let now = Cell::new(T0);
        group.bench_function("discover_to_offer", |b| {
            b.iter_batched(
                || {
                    let n = next.get();
                    next.set((n + 1) % CLIENTS);
                    if n + 1 == CLIENTS {
                        now.set(now.get() + 60);
                    }
                    discover(n)
                },
                |packet| handle(&engine, &packet, now.get(), &mut out),
                BatchSize::SmallInput,
            )
        });
    }

    // A client that was just offered an address takes it: the SELECTING REQUEST to ACK.
    {
        let engine = Engine::new(config_slash8(), MemoryStore::new());
        let mut offer_buf = Vec::with_capacity(576);
        let mut out = Vec::with_capacity(576);
        let next = Cell::new(0u32);
        group.bench_function("request_to_ack", |b| {
            b.iter_batched(
                || {
                    let n = next.get();
                    next.set(n + 1);
                    // The clock moves a second every few thousand exchanges, as it does for a
                    // busy server, so lease deadlines spread over time as they would.
                    let now = T0 + u64::from(n / CLIENTS_PER_SECOND);
                    let offered = handle(&engine, &discover(n), now, &mut offer_buf);
                    (request(n, offered), now)
                },
                |(packet, now)| handle(&engine, &packet, now, &mut out),
                BatchSize::SmallInput,
            )
        });
    }

    // A bound client renews (RENEWING REQUEST, ciaddr set), among 100k bound clients.
    {
        let config = config_slash8();
        let first_addr = config.subnets[0].pools[0].first;
        let store = MemoryStore::new();
        const BOUND: u32 = 100_000;
        fill(&store, &config, 0, BOUND);
        let engine = Engine::new(config, store);
        let mut out = Vec::with_capacity(576);
        let next = Cell::new(0u32);
        group.bench_function("renew_to_ack", |b| {
            b.iter_batched(
                || {
                    let n = next.get();
                    next.set((n + 1) % BOUND);
                    renew(n, Ipv4Addr::from(u32::from(first_addr) + n))
                },
                |packet| handle(&engine, &packet, T0 + 10, &mut out),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, decode, exchanges);
criterion_main!(benches);
