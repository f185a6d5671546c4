//! The `LeaseStore` contract, written once and run against every store.
//!
//! Each check takes a fresh, empty store. `suite!(factory)` expands to one `#[tokio::test]` per
//! check, where `factory` is an async expression giving a new empty store.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use dhcp_core::{ClientId, HwAddr, Lease, LeaseState, LeaseStore, PoolRef, Timestamp};

pub const T0: Timestamp = Timestamp::from_secs(1_700_000_000);

pub fn addr(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, last)
}

pub fn client(n: u8) -> ClientId {
    ClientId::from_bytes(&[1, 2, 0, 0, 0, 0, n])
}

pub fn lease(n: u8, at: Ipv4Addr, state: LeaseState) -> Lease {
    Lease {
        addr: at,
        client: client(n),
        hwaddr: HwAddr::mac([2, 0, 0, 0, 0, n]),
        subnet: 1,
        state,
        hostname: Some(format!("host-{n}")),
    }
}

pub fn bound(n: u8, at: Ipv4Addr, secs: u64) -> Lease {
    lease(n, at, LeaseState::Bound { expires: T0 + secs })
}

pub fn offered(n: u8, at: Ipv4Addr, secs: u64) -> Lease {
    lease(n, at, LeaseState::Offered { until: T0 + secs })
}

/// A pool over `ranges`, with a key derived from them.
pub fn pool(ranges: &[RangeInclusive<u32>]) -> PoolRef<'_> {
    PoolRef { key: 0x5eed ^ u64::from(*ranges[0].start()), subnet: 1, ranges }
}

pub fn range(first: u8, last: u8) -> RangeInclusive<u32> {
    u32::from(addr(first))..=u32::from(addr(last))
}

pub async fn claim_grants_a_free_address(store: impl LeaseStore) {
    let want = bound(1, addr(5), 3600);
    assert_eq!(store.claim(&want, T0).await.expect("store"), Some(want.clone()));
    assert_eq!(store.lease_by_addr(addr(5)).await.expect("store"), Some(want.clone()));
    assert_eq!(store.lease_by_client(1, &client(1)).await.expect("store"), Some(want));
}

pub async fn claim_refuses_what_another_client_holds(store: impl LeaseStore) {
    store.claim(&bound(1, addr(5), 3600), T0).await.expect("store").expect("granted");
    assert_eq!(store.claim(&bound(2, addr(5), 3600), T0).await.expect("store"), None);
    assert_eq!(store.claim(&offered(2, addr(5), 30), T0 + 100).await.expect("store"), None);
    // Once the binding has expired, the address is free for anyone.
    let later = bound(2, addr(5), 7200);
    assert_eq!(store.claim(&later, T0 + 3600).await.expect("store"), Some(later));
}

pub async fn claim_renews_the_holders_own_lease(store: impl LeaseStore) {
    store.claim(&bound(1, addr(5), 3600), T0).await.expect("store").expect("granted");
    let renewed = bound(1, addr(5), 5000);
    assert_eq!(store.claim(&renewed, T0 + 1000).await.expect("store"), Some(renewed.clone()));
    assert_eq!(store.lease_by_addr(addr(5)).await.expect("store"), Some(renewed));
}

pub async fn an_offer_never_shortens_a_binding(store: impl LeaseStore) {
    let binding = bound(1, addr(5), 3600);
    store.claim(&binding, T0).await.expect("store").expect("granted");
    let got = store.claim(&offered(1, addr(5), 30), T0 + 10).await.expect("store");
    assert_eq!(got, Some(binding.clone()), "the binding is returned unchanged");
    assert_eq!(store.lease_by_addr(addr(5)).await.expect("store"), Some(binding));
}

pub async fn declined_addresses_wait_out_their_probation(store: impl LeaseStore) {
    store.claim(&bound(1, addr(5), 3600), T0).await.expect("store").expect("granted");
    let declined = store
        .update_state(addr(5), &client(1), LeaseState::Declined { until: T0 + 600 })
        .await
        .expect("store")
        .expect("the holder may decline");
    assert_eq!(declined.state, LeaseState::Declined { until: T0 + 600 });
    // Nobody, not even the client that declined it, gets it during probation.
    assert_eq!(store.claim(&offered(1, addr(5), 30), T0 + 10).await.expect("store"), None);
    assert_eq!(store.claim(&offered(2, addr(5), 30), T0 + 599).await.expect("store"), None);
    assert!(store.claim(&offered(2, addr(5), 30), T0 + 600).await.expect("store").is_some());
}

pub async fn only_the_holder_releases(store: impl LeaseStore) {
    store.claim(&bound(1, addr(5), 3600), T0).await.expect("store").expect("granted");
    assert_eq!(store.update_state(addr(5), &client(2), LeaseState::Released).await.expect("store"), None);
    assert_eq!(store.update_state(addr(6), &client(1), LeaseState::Released).await.expect("store"), None);
    let released = store.update_state(addr(5), &client(1), LeaseState::Released).await.expect("store");
    assert_eq!(released.map(|l| l.state), Some(LeaseState::Released));
    // The released lease is remembered for affinity, and the address is free for anyone.
    let remembered = store.lease_by_client(1, &client(1)).await.expect("store").expect("kept");
    assert_eq!((remembered.addr, remembered.state), (addr(5), LeaseState::Released));
    assert!(store.claim(&bound(2, addr(5), 3600), T0 + 1).await.expect("store").is_some());
}

pub async fn allocate_fills_the_pool_exactly(store: impl LeaseStore) {
    let ranges = [range(10, 14), range(20, 21)];
    let pool = pool(&ranges);
    // Someone already holds 10.0.0.12, claimed directly.
    store.claim(&bound(99, addr(12), 3600), T0).await.expect("store").expect("granted");
    let mut got = Vec::new();
    for n in 1..=6 {
        let lease = store.allocate(pool, &bound(n, Ipv4Addr::UNSPECIFIED, 3600), T0).await.expect("store");
        let lease = lease.expect("the pool has room");
        assert_eq!(lease.client, client(n));
        got.push(lease.addr);
    }
    got.sort();
    assert_eq!(got, vec![addr(10), addr(11), addr(13), addr(14), addr(20), addr(21)]);
    assert_eq!(store.allocate(pool, &bound(7, Ipv4Addr::UNSPECIFIED, 3600), T0).await.expect("store"), None);
    // A lapsed offer or an expired binding makes room again.
    let later = T0 + 3600;
    assert!(store.allocate(pool, &bound(7, Ipv4Addr::UNSPECIFIED, 3600), later).await.expect("store").is_some());
}

pub async fn allocate_reuses_released_addresses(store: impl LeaseStore) {
    let ranges = [range(10, 11)];
    let pool = pool(&ranges);
    let a = store.allocate(pool, &bound(1, Ipv4Addr::UNSPECIFIED, 3600), T0).await.expect("store").expect("room");
    store.allocate(pool, &bound(2, Ipv4Addr::UNSPECIFIED, 3600), T0).await.expect("store").expect("room");
    store.update_state(a.addr, &client(1), LeaseState::Released).await.expect("store").expect("held");
    let c = store.allocate(pool, &bound(3, Ipv4Addr::UNSPECIFIED, 3600), T0).await.expect("store").expect("room");
    assert_eq!(c.addr, a.addr);
}

pub async fn reclaim_returns_what_expired(store: impl LeaseStore) {
    store.claim(&bound(1, addr(5), 100), T0).await.expect("store").expect("granted");
    store.claim(&offered(2, addr(6), 30), T0).await.expect("store").expect("granted");
    store.claim(&bound(3, addr(7), 1000), T0).await.expect("store").expect("granted");
    store.claim(&bound(4, addr(8), 50), T0).await.expect("store").expect("granted");
    store.update_state(addr(8), &client(4), LeaseState::Declined { until: T0 + 60 }).await.expect("store");

    assert!(store.reclaim_expired(T0 + 20, 100).await.expect("store").is_empty());
    let mut reclaimed = store.reclaim_expired(T0 + 100, 100).await.expect("store");
    reclaimed.sort_by_key(|l| l.addr);
    let states: Vec<_> = reclaimed.iter().map(|l| (l.addr, l.state)).collect();
    assert_eq!(
        states,
        vec![
            (addr(5), LeaseState::Bound { expires: T0 + 100 }),
            (addr(6), LeaseState::Offered { until: T0 + 30 }),
            (addr(8), LeaseState::Declined { until: T0 + 60 }),
        ]
    );
    // The expired binding and the lapsed offer are kept as expired, for affinity; the ended
    // probation is gone.
    for (at, n) in [(addr(5), 1), (addr(6), 2)] {
        let kept = store.lease_by_addr(at).await.expect("store").expect("kept");
        assert_eq!((kept.state, kept.client), (LeaseState::Expired, client(n)));
    }
    assert_eq!(store.lease_by_addr(addr(8)).await.expect("store"), None);
    assert!(store.reclaim_expired(T0 + 100, 100).await.expect("store").is_empty(), "nothing twice");
}

pub async fn reclaim_respects_its_limit(store: impl LeaseStore) {
    for n in 1..=10 {
        store.claim(&bound(n, addr(n), 10), T0).await.expect("store").expect("granted");
    }
    assert_eq!(store.reclaim_expired(T0 + 10, 4).await.expect("store").len(), 4);
    assert_eq!(store.reclaim_expired(T0 + 10, 100).await.expect("store").len(), 6);
}

pub async fn delete_and_list(store: impl LeaseStore) {
    store.claim(&bound(1, addr(5), 3600), T0).await.expect("store").expect("granted");
    let mut other = bound(2, Ipv4Addr::new(10, 1, 0, 5), 3600);
    other.subnet = 2;
    store.claim(&other, T0).await.expect("store").expect("granted");
    assert_eq!(store.list(None).await.expect("store").len(), 2);
    assert_eq!(store.list(Some(2)).await.expect("store"), vec![other]);
    assert!(store.delete(addr(5)).await.expect("store"));
    assert!(!store.delete(addr(5)).await.expect("store"));
    assert_eq!(store.lease_by_addr(addr(5)).await.expect("store"), None);
    assert_eq!(store.lease_by_client(1, &client(1)).await.expect("store"), None);
}

pub async fn both_reads_at_once_answer_as_each_alone(store: impl LeaseStore) {
    // The client's lease at one address, another client's at a second, none at a third: each
    // combined read answers what the two reads alone answer.
    store.claim(&bound(1, addr(5), 100), T0).await.expect("store").expect("granted");
    store.claim(&bound(1, addr(9), 3600), T0 + 200).await.expect("store").expect("granted");
    store.claim(&offered(2, addr(7), 60), T0 + 200).await.expect("store").expect("granted");
    for at in [addr(5), addr(7), addr(9), addr(11)] {
        for who in [client(1), client(2), client(3)] {
            let both = store.lease_by_addr_and_client(at, 1, &who).await.expect("store");
            let alone =
                (store.lease_by_addr(at).await.expect("store"), store.lease_by_client(1, &who).await.expect("store"));
            assert_eq!(both, alone, "{at}, {who:?}");
        }
    }
    assert_eq!(store.lease_by_addr_and_client(addr(9), 2, &client(1)).await.expect("store").1, None, "other subnet");
}

pub async fn a_moved_client_is_found_at_its_new_address(store: impl LeaseStore) {
    store.claim(&bound(1, addr(5), 100), T0).await.expect("store").expect("granted");
    store.claim(&bound(1, addr(9), 3600), T0 + 200).await.expect("store").expect("granted");
    assert_eq!(store.lease_by_client(1, &client(1)).await.expect("store").map(|l| l.addr), Some(addr(9)));
}

pub async fn long_client_ids_and_no_hostname(store: impl LeaseStore) {
    let mut l = bound(1, addr(5), 3600);
    l.client = ClientId::from_bytes(&(0u8..64).collect::<Vec<_>>());
    l.hostname = None;
    store.claim(&l, T0).await.expect("store").expect("granted");
    assert_eq!(store.lease_by_client(1, &l.client).await.expect("store"), Some(l));
}

async fn state_at(store: &impl LeaseStore, at: Ipv4Addr) -> Option<LeaseState> {
    store.lease_by_addr(at).await.expect("store").map(|l| l.state)
}

/// One lease per client and subnet: binding a new address frees the client's old binding in
/// the same operation, and leaves other clients' leases and the client's other subnets alone.
pub async fn a_binding_elsewhere_frees_the_old_one(store: impl LeaseStore) {
    store.claim(&bound(1, addr(5), 3600), T0).await.expect("store").expect("granted");
    store.claim(&bound(2, addr(6), 3600), T0).await.expect("store").expect("granted");
    let mut elsewhere = bound(1, Ipv4Addr::new(10, 1, 0, 5), 3600);
    elsewhere.subnet = 2;
    store.claim(&elsewhere, T0).await.expect("store").expect("granted");

    let moved = bound(1, addr(9), 3600);
    assert_eq!(store.claim(&moved, T0 + 10).await.expect("store"), Some(moved.clone()));
    assert_eq!(state_at(&store, addr(5)).await, Some(LeaseState::Released), "the old binding is freed");
    assert_eq!(store.lease_by_client(1, &client(1)).await.expect("store"), Some(moved));
    assert_eq!(state_at(&store, addr(6)).await, Some(LeaseState::Bound { expires: T0 + 3600 }), "another client's");
    assert_eq!(state_at(&store, elsewhere.addr).await, Some(elsewhere.state), "another subnet's");
    // The freed address is anyone's at once.
    assert!(store.claim(&bound(3, addr(5), 3600), T0 + 11).await.expect("store").is_some());
    let held: Vec<Lease> = store
        .list(Some(1))
        .await
        .expect("store")
        .into_iter()
        .filter(|l| l.client == client(1) && l.is_held(T0 + 11))
        .collect();
    assert_eq!(held.len(), 1, "{held:?}");
}

/// An offer of another address leaves the client's binding as it is (offering never shortens a
/// lease); the REQUEST that binds the offered address then frees the old binding.
pub async fn an_offer_elsewhere_keeps_the_binding_until_the_move(store: impl LeaseStore) {
    store.claim(&bound(1, addr(5), 3600), T0).await.expect("store").expect("granted");
    store.claim(&offered(1, addr(9), 40), T0 + 10).await.expect("store").expect("granted");
    assert_eq!(state_at(&store, addr(5)).await, Some(LeaseState::Bound { expires: T0 + 3600 }));
    assert_eq!(store.lease_by_client(1, &client(1)).await.expect("store").map(|l| l.addr), Some(addr(5)));
    store.claim(&bound(1, addr(9), 3600), T0 + 20).await.expect("store").expect("granted");
    assert_eq!(state_at(&store, addr(5)).await, Some(LeaseState::Released));
    assert_eq!(store.lease_by_client(1, &client(1)).await.expect("store").map(|l| l.addr), Some(addr(9)));
}

/// A new offer to a client frees its older offer at another address.
pub async fn a_new_offer_frees_the_old_offer(store: impl LeaseStore) {
    store.claim(&offered(1, addr(5), 30), T0).await.expect("store").expect("granted");
    store.claim(&offered(1, addr(9), 30), T0 + 1).await.expect("store").expect("granted");
    assert_eq!(state_at(&store, addr(5)).await, Some(LeaseState::Released));
    assert!(store.claim(&offered(2, addr(5), 30), T0 + 2).await.expect("store").is_some());
}

/// Allocation moves the client as a claim does.
pub async fn an_allocation_frees_the_old_binding(store: impl LeaseStore) {
    store.claim(&bound(1, addr(5), 3600), T0).await.expect("store").expect("granted");
    let ranges = [range(10, 12)];
    let got = store.allocate(pool(&ranges), &bound(1, Ipv4Addr::UNSPECIFIED, 3600), T0 + 1).await.expect("store");
    let got = got.expect("room");
    assert_ne!(got.addr, addr(5));
    assert_eq!(state_at(&store, addr(5)).await, Some(LeaseState::Released));
    assert_eq!(store.lease_by_client(1, &client(1)).await.expect("store").map(|l| l.addr), Some(got.addr));
}

/// A binding that has already expired is not freed by a move: reclamation still finds it as an
/// expired binding, so the server's gauges and reclaimed count stay right.
pub async fn an_expired_binding_is_left_to_reclamation(store: impl LeaseStore) {
    store.claim(&bound(1, addr(5), 100), T0).await.expect("store").expect("granted");
    store.claim(&bound(1, addr(9), 3600), T0 + 200).await.expect("store").expect("granted");
    let reclaimed = store.reclaim_expired(T0 + 200, 100).await.expect("store");
    let states: Vec<_> = reclaimed.iter().map(|l| (l.addr, l.state)).collect();
    assert_eq!(states, vec![(addr(5), LeaseState::Bound { expires: T0 + 100 })]);
}

/// Only a binding can be declined, and only by its holder.
pub async fn only_a_binding_is_declined(store: impl LeaseStore) {
    let probation = LeaseState::Declined { until: T0 + 600 };
    store.claim(&offered(1, addr(5), 30), T0).await.expect("store").expect("granted");
    assert_eq!(store.update_state(addr(5), &client(1), probation).await.expect("store"), None, "an offer");
    assert_eq!(state_at(&store, addr(5)).await, Some(LeaseState::Offered { until: T0 + 30 }));
    store.claim(&bound(1, addr(5), 3600), T0 + 1).await.expect("store").expect("granted");
    assert_eq!(store.update_state(addr(5), &client(2), probation).await.expect("store"), None, "another's");
    assert_eq!(state_at(&store, addr(5)).await, Some(LeaseState::Bound { expires: T0 + 3600 }));
    let declined = store.update_state(addr(5), &client(1), probation).await.expect("store");
    assert_eq!(declined.map(|l| l.state), Some(probation));
}

/// A lapsed offer or binding is free for anyone; an offer still held is not.
pub async fn claim_refuses_another_clients_offer(store: impl LeaseStore) {
    store.claim(&offered(1, addr(5), 30), T0).await.expect("store").expect("granted");
    assert_eq!(store.claim(&bound(2, addr(5), 3600), T0 + 10).await.expect("store"), None);
    assert_eq!(store.claim(&offered(2, addr(5), 30), T0 + 29).await.expect("store"), None);
    assert_eq!(state_at(&store, addr(5)).await, Some(LeaseState::Offered { until: T0 + 30 }), "unchanged");
    let taken = offered(2, addr(5), 60);
    assert_eq!(store.claim(&taken, T0 + 30).await.expect("store"), Some(taken.clone()), "the hold is over");
    assert_eq!(store.lease_by_addr(addr(5)).await.expect("store"), Some(taken));
}

/// An offer meets the client's binding only while the binding runs: over a binding that ran
/// out (not reclaimed yet) the offer is written.
pub async fn an_offer_over_the_clients_expired_binding_is_written(store: impl LeaseStore) {
    store.claim(&bound(1, addr(5), 100), T0).await.expect("store").expect("granted");
    let offer = offered(1, addr(5), 130);
    assert_eq!(store.claim(&offer, T0 + 100).await.expect("store"), Some(offer.clone()));
    assert_eq!(store.lease_by_addr(addr(5)).await.expect("store"), Some(offer));
}

/// Allocation passes over offers and probations, whoever asks.
pub async fn allocate_skips_offers_and_probations(store: impl LeaseStore) {
    store.claim(&offered(8, addr(10), 30), T0).await.expect("store").expect("granted");
    store.claim(&bound(9, addr(11), 3600), T0).await.expect("store").expect("granted");
    let probation = LeaseState::Declined { until: T0 + 600 };
    store.update_state(addr(11), &client(9), probation).await.expect("store").expect("declined");
    let ranges = [range(10, 12)];
    let got = store.allocate(pool(&ranges), &bound(1, Ipv4Addr::UNSPECIFIED, 3600), T0 + 1).await.expect("store");
    assert_eq!(got.map(|l| l.addr), Some(addr(12)));
    for n in [2, 9] {
        let got = store.allocate(pool(&ranges), &bound(n, Ipv4Addr::UNSPECIFIED, 3600), T0 + 2).await.expect("store");
        assert_eq!(got, None, "client {n}: the pool is full");
    }
    assert_eq!(state_at(&store, addr(10)).await, Some(LeaseState::Offered { until: T0 + 30 }));
    assert_eq!(state_at(&store, addr(11)).await, Some(probation));
}

/// A claim that is refused changes nothing: the client keeps the lease it holds.
pub async fn a_refused_claim_changes_nothing(store: impl LeaseStore) {
    store.claim(&bound(1, addr(5), 3600), T0).await.expect("store").expect("granted");
    store.claim(&bound(2, addr(6), 3600), T0).await.expect("store").expect("granted");
    assert_eq!(store.claim(&bound(1, addr(6), 3600), T0 + 10).await.expect("store"), None);
    assert_eq!(store.claim(&offered(1, addr(6), 30), T0 + 10).await.expect("store"), None);
    assert_eq!(store.lease_by_addr(addr(5)).await.expect("store"), Some(bound(1, addr(5), 3600)));
    assert_eq!(store.lease_by_addr(addr(6)).await.expect("store"), Some(bound(2, addr(6), 3600)));
    assert_eq!(store.lease_by_client(1, &client(1)).await.expect("store"), Some(bound(1, addr(5), 3600)));
}

/// A binding frees the client's offer at another address.
pub async fn a_binding_frees_the_clients_offer_elsewhere(store: impl LeaseStore) {
    store.claim(&offered(1, addr(5), 30), T0).await.expect("store").expect("granted");
    store.claim(&bound(1, addr(9), 3600), T0 + 1).await.expect("store").expect("granted");
    assert_eq!(state_at(&store, addr(5)).await, Some(LeaseState::Released));
    assert_eq!(store.lease_by_client(1, &client(1)).await.expect("store").map(|l| l.addr), Some(addr(9)));
    assert!(store.claim(&offered(2, addr(5), 30), T0 + 2).await.expect("store").is_some());
}

/// While the client is bound, a second offer elsewhere frees the first one and still leaves the
/// binding; the binding of the offered address then frees the old binding. The client never
/// holds more than its binding and one offer.
pub async fn a_second_offer_elsewhere_frees_the_first_and_keeps_the_binding(store: impl LeaseStore) {
    store.claim(&bound(1, addr(5), 3600), T0).await.expect("store").expect("granted");
    store.claim(&offered(1, addr(9), 40), T0 + 10).await.expect("store").expect("granted");
    store.claim(&offered(1, addr(11), 40), T0 + 20).await.expect("store").expect("granted");
    assert_eq!(state_at(&store, addr(9)).await, Some(LeaseState::Released), "the first offer is freed");
    assert_eq!(state_at(&store, addr(5)).await, Some(LeaseState::Bound { expires: T0 + 3600 }));
    assert_eq!(store.lease_by_client(1, &client(1)).await.expect("store").map(|l| l.addr), Some(addr(5)));
    assert!(store.claim(&offered(2, addr(9), 30), T0 + 21).await.expect("store").is_some(), "free for others");

    store.claim(&bound(1, addr(11), 3600), T0 + 30).await.expect("store").expect("granted");
    assert_eq!(state_at(&store, addr(5)).await, Some(LeaseState::Released));
    let held: Vec<Ipv4Addr> = store
        .list(Some(1))
        .await
        .expect("store")
        .into_iter()
        .filter(|l| l.client == client(1) && l.is_held(T0 + 30))
        .map(|l| l.addr)
        .collect();
    assert_eq!(held, vec![addr(11)]);
}

/// An allocated offer leaves the client's binding as a claimed one does.
pub async fn an_allocated_offer_keeps_the_binding(store: impl LeaseStore) {
    store.claim(&bound(1, addr(5), 3600), T0).await.expect("store").expect("granted");
    let ranges = [range(10, 12)];
    let got = store.allocate(pool(&ranges), &offered(1, Ipv4Addr::UNSPECIFIED, 30), T0 + 1).await.expect("store");
    let got = got.expect("room");
    assert_eq!(got.state, LeaseState::Offered { until: T0 + 30 });
    assert_eq!(state_at(&store, addr(5)).await, Some(LeaseState::Bound { expires: T0 + 3600 }));
    assert_eq!(store.lease_by_client(1, &client(1)).await.expect("store").map(|l| l.addr), Some(addr(5)));
}

/// Another client cannot release or decline a lease, and an address without a lease cannot be
/// released or declined: `None`, and nothing changes.
pub async fn update_state_needs_the_holder(store: impl LeaseStore) {
    let binding = bound(1, addr(5), 3600);
    store.claim(&binding, T0).await.expect("store").expect("granted");
    let offer = offered(1, addr(7), 30);
    store.claim(&offer, T0).await.expect("store").expect("granted");
    for state in [LeaseState::Released, LeaseState::Declined { until: T0 + 600 }, LeaseState::Expired] {
        for at in [addr(5), addr(7)] {
            assert_eq!(store.update_state(at, &client(2), state).await.expect("store"), None, "{at} {state:?}");
        }
        assert_eq!(store.update_state(addr(6), &client(1), state).await.expect("store"), None, "no lease");
    }
    assert_eq!(store.lease_by_addr(addr(5)).await.expect("store"), Some(binding));
    assert_eq!(store.lease_by_addr(addr(7)).await.expect("store"), Some(offer));
    assert_eq!(store.lease_by_addr(addr(6)).await.expect("store"), None, "no record made");
    assert_eq!(store.lease_by_client(1, &client(2)).await.expect("store"), None);
    assert_eq!(store.list(None).await.expect("store").len(), 2);
}

/// The client may release its offer (a client that chose another server): the address is free.
pub async fn an_offer_can_be_released(store: impl LeaseStore) {
    store.claim(&offered(1, addr(5), 30), T0).await.expect("store").expect("granted");
    let released = store.update_state(addr(5), &client(1), LeaseState::Released).await.expect("store");
    assert_eq!(released, Some(lease(1, addr(5), LeaseState::Released)));
    assert_eq!(state_at(&store, addr(5)).await, Some(LeaseState::Released));
    assert!(store.claim(&bound(2, addr(5), 3600), T0 + 1).await.expect("store").is_some());
}

/// Releasing an offer made while the client is bound elsewhere leaves the binding the client's
/// lease in the subnet.
pub async fn releasing_an_offer_elsewhere_keeps_the_binding(store: impl LeaseStore) {
    store.claim(&bound(1, addr(5), 3600), T0).await.expect("store").expect("granted");
    store.claim(&offered(1, addr(9), 40), T0 + 10).await.expect("store").expect("granted");
    let released = store.update_state(addr(9), &client(1), LeaseState::Released).await.expect("store");
    assert_eq!(released.map(|l| l.state), Some(LeaseState::Released));
    assert_eq!(store.lease_by_client(1, &client(1)).await.expect("store"), Some(bound(1, addr(5), 3600)));
}

/// A lease the client no longer holds (reclaimed, released, declined) cannot be released or
/// declined again: a client cannot end its own probation, nor decline an address it gave up.
pub async fn update_state_needs_a_held_lease(store: impl LeaseStore) {
    let probation = LeaseState::Declined { until: T0 + 600 };
    // Reclaimed.
    store.claim(&bound(1, addr(5), 100), T0).await.expect("store").expect("granted");
    assert_eq!(store.reclaim_expired(T0 + 100, 100).await.expect("store").len(), 1);
    for state in [LeaseState::Released, probation] {
        assert_eq!(store.update_state(addr(5), &client(1), state).await.expect("store"), None, "{state:?}");
    }
    assert_eq!(state_at(&store, addr(5)).await, Some(LeaseState::Expired));
    // Released.
    store.claim(&bound(2, addr(6), 3600), T0).await.expect("store").expect("granted");
    store.update_state(addr(6), &client(2), LeaseState::Released).await.expect("store").expect("held");
    for state in [LeaseState::Released, probation] {
        assert_eq!(store.update_state(addr(6), &client(2), state).await.expect("store"), None, "{state:?}");
    }
    assert_eq!(state_at(&store, addr(6)).await, Some(LeaseState::Released));
    // Declined: the probation stands.
    store.claim(&bound(3, addr(7), 3600), T0).await.expect("store").expect("granted");
    store.update_state(addr(7), &client(3), probation).await.expect("store").expect("held");
    for state in [LeaseState::Released, LeaseState::Declined { until: T0 + 1 }] {
        assert_eq!(store.update_state(addr(7), &client(3), state).await.expect("store"), None, "{state:?}");
    }
    assert_eq!(state_at(&store, addr(7)).await, Some(probation));
    assert_eq!(store.claim(&offered(4, addr(7), 30), T0 + 10).await.expect("store"), None);
}

/// Reclamation takes what is due at its current deadline only: a renewed binding is not
/// reclaimed at its old deadline, a released lease is not reclaimed at all.
pub async fn reclaim_skips_renewed_and_released_leases(store: impl LeaseStore) {
    store.claim(&bound(1, addr(5), 100), T0).await.expect("store").expect("granted");
    store.claim(&bound(1, addr(5), 1000), T0 + 50).await.expect("store").expect("renewed");
    store.claim(&bound(2, addr(6), 100), T0).await.expect("store").expect("granted");
    store.update_state(addr(6), &client(2), LeaseState::Released).await.expect("store").expect("held");
    assert_eq!(store.reclaim_expired(T0 + 100, 100).await.expect("store"), vec![]);
    assert_eq!(state_at(&store, addr(5)).await, Some(LeaseState::Bound { expires: T0 + 1000 }));
    assert_eq!(state_at(&store, addr(6)).await, Some(LeaseState::Released));
    let reclaimed = store.reclaim_expired(T0 + 1000, 100).await.expect("store");
    assert_eq!(reclaimed, vec![bound(1, addr(5), 1000)]);
}

/// Reclaimed bindings and offers stay the client's last lease (affinity); an ended probation
/// leaves no lease for its client.
pub async fn reclaim_keeps_affinity_and_forgets_probations(store: impl LeaseStore) {
    store.claim(&bound(1, addr(5), 100), T0).await.expect("store").expect("granted");
    store.claim(&bound(2, addr(6), 50), T0).await.expect("store").expect("granted");
    store.update_state(addr(6), &client(2), LeaseState::Declined { until: T0 + 60 }).await.expect("store");
    assert_eq!(store.reclaim_expired(T0 + 100, 100).await.expect("store").len(), 2);
    assert_eq!(
        store.lease_by_client(1, &client(1)).await.expect("store"),
        Some(lease(1, addr(5), LeaseState::Expired))
    );
    assert_eq!(store.lease_by_client(1, &client(2)).await.expect("store"), None);
    // The expired address is free for anyone, its client first.
    let again = bound(1, addr(5), 3600);
    assert_eq!(store.claim(&again, T0 + 101).await.expect("store"), Some(again));
    assert!(store.claim(&bound(3, addr(6), 3600), T0 + 101).await.expect("store").is_some());
}

/// An address whose lease is gone (deleted, or its probation over) is free at once, for
/// allocation as for a claim, though no record of it is left.
pub async fn a_deleted_address_is_free_for_anyone(store: impl LeaseStore) {
    let ranges = [range(5, 5)];
    let alloc = |n: u8, at: Timestamp| {
        let store = &store;
        let pool = pool(&ranges);
        async move {
            let got = store.allocate(pool, &bound(n, Ipv4Addr::UNSPECIFIED, 3600), at).await.expect("store");
            got.map(|l| l.addr)
        }
    };
    assert_eq!(alloc(1, T0).await, Some(addr(5)));
    assert_eq!(alloc(2, T0).await, None);
    assert!(store.delete(addr(5)).await.expect("store"));
    assert_eq!(alloc(2, T0 + 1).await, Some(addr(5)), "deleted");
    let probation = LeaseState::Declined { until: T0 + 600 };
    store.update_state(addr(5), &client(2), probation).await.expect("store").expect("held");
    assert_eq!(alloc(3, T0 + 10).await, None, "in probation");
    assert_eq!(store.reclaim_expired(T0 + 600, 100).await.expect("store").len(), 1);
    assert_eq!(alloc(3, T0 + 600).await, Some(addr(5)), "the probation is over");
    assert!(store.delete(addr(5)).await.expect("store"));
    assert!(store.claim(&bound(4, addr(5), 3600), T0 + 601).await.expect("store").is_some());
}

/// A released address claimed by another client is that client's: the releasing client's
/// last lease is gone with it.
pub async fn a_released_address_claimed_by_another_is_theirs(store: impl LeaseStore) {
    store.claim(&bound(1, addr(5), 3600), T0).await.expect("store").expect("granted");
    store.update_state(addr(5), &client(1), LeaseState::Released).await.expect("store").expect("held");
    let taken = bound(2, addr(5), 3600);
    assert_eq!(store.claim(&taken, T0 + 1).await.expect("store"), Some(taken.clone()));
    assert_eq!(store.lease_by_addr(addr(5)).await.expect("store"), Some(taken.clone()));
    assert_eq!(store.lease_by_client(1, &client(2)).await.expect("store"), Some(taken));
    assert_eq!(store.lease_by_client(1, &client(1)).await.expect("store"), None);
    assert_eq!(store.update_state(addr(5), &client(1), LeaseState::Released).await.expect("store"), None);
}

/// After a reload that changes a pool's ranges (so its key), an address freed later is found
/// by the new pool, whatever the old pool's allocation state still says.
pub async fn a_reloaded_pool_reuses_addresses_freed_after_the_reload(store: impl LeaseStore) {
    let old = [range(10, 12)];
    let old_pool = PoolRef { key: 1, subnet: 1, ranges: &old };
    for n in 1..=3 {
        store.allocate(old_pool, &bound(n, Ipv4Addr::UNSPECIFIED, 3600), T0).await.expect("store").expect("room");
    }
    let new = [range(10, 13)];
    let new_pool = PoolRef { key: 2, subnet: 1, ranges: &new };
    let got = store.allocate(new_pool, &bound(4, Ipv4Addr::UNSPECIFIED, 3600), T0 + 1).await.expect("store");
    assert_eq!(got.map(|l| l.addr), Some(addr(13)));
    let freed = store.lease_by_client(1, &client(2)).await.expect("store").expect("bound").addr;
    store.update_state(freed, &client(2), LeaseState::Released).await.expect("store").expect("held");
    let got = store.allocate(new_pool, &bound(5, Ipv4Addr::UNSPECIFIED, 3600), T0 + 2).await.expect("store");
    assert_eq!(got.map(|l| l.addr), Some(freed));
}

/// `allocate_replacing` says which record the allocation overwrote: none for a fresh address,
/// and another client's binding that ran out but was not reclaimed yet, as it was (which
/// reclamation will then never return).
pub async fn allocate_reports_the_record_it_replaced(store: impl LeaseStore) {
    let ranges = [range(5, 5)];
    let alloc = |template: Lease, at: Timestamp| {
        let store = &store;
        let pool = pool(&ranges);
        async move { store.allocate_replacing(pool, &template, at).await.expect("store") }
    };
    let got = alloc(bound(1, Ipv4Addr::UNSPECIFIED, 100), T0).await;
    assert_eq!(got, Some((bound(1, addr(5), 100), None)), "a fresh address replaces nothing");
    assert_eq!(alloc(bound(2, Ipv4Addr::UNSPECIFIED, 3600), T0 + 50).await, None, "still held");
    // Client 1's binding ran out at T0 + 100 and nobody reclaimed it.
    let got = alloc(bound(2, Ipv4Addr::UNSPECIFIED, 3600), T0 + 200).await;
    let taken = lease(2, addr(5), LeaseState::Bound { expires: T0 + 3600 });
    assert_eq!(got, Some((taken.clone(), Some(bound(1, addr(5), 100)))), "client 1's binding, as it was");
    assert_eq!(store.lease_by_addr(addr(5)).await.expect("store"), Some(taken));
    assert_eq!(store.reclaim_expired(T0 + 200, 100).await.expect("store"), vec![], "never reclaimed");
    // A released record is reported too.
    store.update_state(addr(5), &client(2), LeaseState::Released).await.expect("store").expect("held");
    let got = alloc(offered(3, Ipv4Addr::UNSPECIFIED, 230), T0 + 201).await;
    assert_eq!(got, Some((offered(3, addr(5), 230), Some(lease(2, addr(5), LeaseState::Released)))));
}

/// Stores leases for the listing checks, in two subnets (interleaved by address), in every
/// state, across /24 boundaries and up to the top of the address space, written in an order
/// other than their addresses'. Returns what the store lists, in address order.
async fn leases_to_list(store: &impl LeaseStore) -> Vec<Lease> {
    let at = |a: [u8; 4], subnet: u32| (Ipv4Addr::from(a), subnet);
    let places = [
        at([10, 0, 1, 3], 1),
        at([10, 0, 0, 250], 1),
        at([192, 168, 255, 255], 2),
        at([10, 0, 2, 200], 2),
        at([10, 0, 0, 2], 1),
        at([10, 0, 1, 0], 1),
        at([255, 255, 255, 254], 2),
        at([10, 0, 0, 255], 1),
        at([10, 1, 0, 1], 2),
        at([10, 0, 3, 7], 1),
        at([10, 0, 0, 9], 2),
        at([172, 16, 0, 1], 1),
    ];
    for (i, &(at, subnet)) in places.iter().enumerate() {
        let n = i as u8 + 1;
        // Every fifth binding runs out at T0 + 10, for reclamation to make it expired.
        let mut held = bound(n, at, if i % 5 == 4 { 10 } else { 3600 });
        held.subnet = subnet;
        if i % 5 == 1 {
            held.state = LeaseState::Offered { until: T0 + 3600 };
        }
        store.claim(&held, T0).await.expect("store").expect("granted");
        let state = match i % 5 {
            2 => LeaseState::Declined { until: T0 + 3600 },
            3 => LeaseState::Released,
            _ => continue,
        };
        store.update_state(at, &client(n), state).await.expect("store").expect("held");
    }
    assert_eq!(store.reclaim_expired(T0 + 10, 100).await.expect("store").len(), 2);
    let mut all = store.list(None).await.expect("store");
    all.sort_by_key(|l| l.addr);
    assert_eq!(all.len(), places.len());
    all
}

/// A page is the first `limit` leases above `after` (never `after` itself), in address order.
pub async fn list_page_lists_in_address_order_above_after(store: impl LeaseStore) {
    let all = leases_to_list(&store).await;
    let page = |after: Option<Ipv4Addr>, limit: usize| store.list_page(None, after, limit);
    assert_eq!(page(None, 100).await.expect("store"), all);
    assert_eq!(page(None, usize::MAX).await.expect("store"), all);
    assert_eq!(page(None, 3).await.expect("store"), all[..3]);
    assert_eq!(page(None, 0).await.expect("store"), vec![]);
    for (k, lease) in all.iter().enumerate() {
        let got = page(Some(lease.addr), 2).await.expect("store");
        assert_eq!(got, all[(k + 1).min(all.len())..(k + 3).min(all.len())], "after {}", lease.addr);
    }
    // `after` need not be leased.
    let got = page(Some(Ipv4Addr::new(10, 0, 0, 251)), 2).await.expect("store");
    assert_eq!(
        got.iter().map(|l| l.addr).collect::<Vec<_>>(),
        [Ipv4Addr::new(10, 0, 0, 255), Ipv4Addr::new(10, 0, 1, 0)]
    );
    assert_eq!(page(Some(Ipv4Addr::UNSPECIFIED), 100).await.expect("store"), all);
    assert_eq!(page(Some(Ipv4Addr::new(255, 255, 255, 254)), 100).await.expect("store"), vec![]);
    assert_eq!(page(Some(Ipv4Addr::BROADCAST), 100).await.expect("store"), vec![]);
}

/// A page of one subnet holds that subnet's leases only, in address order.
pub async fn list_page_filters_by_subnet(store: impl LeaseStore) {
    let all = leases_to_list(&store).await;
    for subnet in [1, 2] {
        let of_subnet: Vec<Lease> = all.iter().filter(|l| l.subnet == subnet).cloned().collect();
        assert_eq!(store.list_page(Some(subnet), None, 100).await.expect("store"), of_subnet);
        assert_eq!(store.list_page(Some(subnet), None, 2).await.expect("store"), of_subnet[..2]);
        // Above an address of the other subnet.
        let other = all.iter().find(|l| l.subnet != subnet && l.addr > of_subnet[0].addr).expect("interleaved");
        let above: Vec<Lease> = of_subnet.iter().filter(|l| l.addr > other.addr).cloned().collect();
        assert_eq!(store.list_page(Some(subnet), Some(other.addr), 100).await.expect("store"), above);
    }
    assert_eq!(store.list_page(Some(9), None, 100).await.expect("store"), vec![]);
}

/// Walking page after page, each `after` the last address of the page before, until a page
/// comes back short, lists what `list` does, each lease once.
pub async fn walking_every_page_gives_the_list(store: impl LeaseStore) {
    leases_to_list(&store).await;
    for subnet in [None, Some(1), Some(2)] {
        let mut listed = store.list(subnet).await.expect("store");
        listed.sort_by_key(|l| l.addr);
        for limit in 1..=5 {
            let mut walked = Vec::new();
            let mut after = None;
            loop {
                let page = store.list_page(subnet, after, limit).await.expect("store");
                assert!(page.len() <= limit, "{subnet:?} limit {limit}");
                walked.extend(page.iter().cloned());
                match page.last() {
                    Some(last) if page.len() == limit => after = Some(last.addr),
                    _ => break,
                }
            }
            assert_eq!(walked, listed, "{subnet:?} in pages of {limit}");
        }
    }
}

/// A page lists leases in every state, as `list` does.
pub async fn list_page_includes_every_state(store: impl LeaseStore) {
    let all = leases_to_list(&store).await;
    let page = store.list_page(None, None, 100).await.expect("store");
    let mut states: Vec<&str> = page.iter().map(|l| l.state.name()).collect();
    states.sort_unstable();
    states.dedup();
    assert_eq!(states, ["bound", "declined", "expired", "offered", "released"]);
    assert_eq!(page, all);
}

/// One `#[tokio::test]` per check, each on a fresh store from `$factory`.
#[macro_export]
macro_rules! suite {
    ($factory:expr) => {
        $crate::suite!(@tests $factory;
            claim_grants_a_free_address,
            claim_refuses_what_another_client_holds,
            claim_renews_the_holders_own_lease,
            an_offer_never_shortens_a_binding,
            declined_addresses_wait_out_their_probation,
            only_the_holder_releases,
            allocate_fills_the_pool_exactly,
            allocate_reuses_released_addresses,
            reclaim_returns_what_expired,
            reclaim_respects_its_limit,
            delete_and_list,
            a_moved_client_is_found_at_its_new_address,
            both_reads_at_once_answer_as_each_alone,
            long_client_ids_and_no_hostname,
            a_binding_elsewhere_frees_the_old_one,
            an_offer_elsewhere_keeps_the_binding_until_the_move,
            a_new_offer_frees_the_old_offer,
            an_allocation_frees_the_old_binding,
            an_expired_binding_is_left_to_reclamation,
            only_a_binding_is_declined,
            claim_refuses_another_clients_offer,
            an_offer_over_the_clients_expired_binding_is_written,
            allocate_skips_offers_and_probations,
            a_refused_claim_changes_nothing,
            a_binding_frees_the_clients_offer_elsewhere,
            a_second_offer_elsewhere_frees_the_first_and_keeps_the_binding,
            an_allocated_offer_keeps_the_binding,
            update_state_needs_the_holder,
            an_offer_can_be_released,
            releasing_an_offer_elsewhere_keeps_the_binding,
            update_state_needs_a_held_lease,
            reclaim_skips_renewed_and_released_leases,
            reclaim_keeps_affinity_and_forgets_probations,
            a_deleted_address_is_free_for_anyone,
            a_released_address_claimed_by_another_is_theirs,
            a_reloaded_pool_reuses_addresses_freed_after_the_reload,
            allocate_reports_the_record_it_replaced,
            list_page_lists_in_address_order_above_after,
            list_page_filters_by_subnet,
            walking_every_page_gives_the_list,
            list_page_includes_every_state,
        );
    };
    (@tests $factory:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                let store = $factory.await;
                $crate::conformance::$check(store).await;
            }
        )*
    };
}
