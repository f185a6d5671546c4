//! The storage contract the engine drives.

use alloc::string::String;
use alloc::vec::Vec;
use core::future::Future;
use core::net::Ipv4Addr;
use core::ops::RangeInclusive;

use crate::config::Group;
use crate::lease::{ClientId, HwAddr, Lease};
use crate::time::Timestamp;

/// A host reservation kept in the store rather than the config (the Redis `mac:` and
/// `client:` hashes operators already keep), with its group resolved; or, for a client the
/// store keeps no entry for, the group the store gives dynamic clients (`reserved` false).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct StoreHost {
    /// The reserved address; ignored when it is not in the subnet the request selects.
    pub ip_address: Option<Ipv4Addr>,
    /// The host name to give the client.
    pub hostname: Option<String>,
    /// Options and lease time for the host.
    pub group: Option<Group>,
    /// Whether the store keeps an entry for this client: a reservation, which the engine treats
    /// as the config's (a known client, answered even when offers are limited). False when
    /// only the store's group for dynamic clients applies.
    pub reserved: bool,
    /// Fields of the entry or its group that could not be read, each as `KEY FIELD: VALUE`:
    /// left out, the rest still applies. The engine counts them (`host-fields-unreadable`).
    pub unreadable: Vec<String>,
    /// For a client without an entry (`reserved` false): free addresses of the store's own
    /// pool (the Go Redis DHCP server's `pool` hash), best first. The engine offers one of
    /// them as a dynamic address, held to the offer limits, and binds it only once
    /// [`LeaseStore::take_pool_address`] has made it the client's in the store.
    pub pool: Vec<Ipv4Addr>,
}

impl StoreHost {
    /// A reservation with these parts.
    pub fn new(ip_address: Option<Ipv4Addr>, hostname: Option<String>, group: Option<Group>) -> Self {
        StoreHost { ip_address, hostname, group, reserved: true, unreadable: Vec::new(), pool: Vec::new() }
    }

    /// A client the store keeps no entry for, given the store's group for dynamic clients.
    pub fn dynamic(group: Group) -> Self {
        StoreHost { group: Some(group), ..StoreHost::default() }
    }

    /// A client the store keeps no entry for, proposed `pool`'s addresses (best first) and
    /// given `group`, the store's group for dynamic clients, if it keeps one.
    pub fn pooled(group: Option<Group>, pool: Vec<Ipv4Addr>) -> Self {
        StoreHost { group, pool, ..StoreHost::default() }
    }
}

/// The client a store is asked about in [`LeaseStore::host`], as its request names it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct HostQuery<'a> {
    /// The client's hardware address (`chaddr`).
    pub hw: &'a HwAddr,
    /// The client identifier (option 61), if sent.
    pub client_id: Option<&'a [u8]>,
    /// The host name the client sent (option 12), if any: the Go Redis DHCP server keys its
    /// `client:` entries by it.
    pub host_name: Option<&'a [u8]>,
    /// The address the client asks for (option 50, else `ciaddr`), if any.
    pub requested: Option<Ipv4Addr>,
    /// When the request arrived.
    pub now: Timestamp,
}

impl<'a> HostQuery<'a> {
    /// A query for the client with hardware address `hw` and identifier `client_id`, at `now`.
    pub fn new(hw: &'a HwAddr, client_id: Option<&'a [u8]>, now: Timestamp) -> Self {
        HostQuery { hw, client_id, host_name: None, requested: None, now }
    }

    /// The query with the host name the client sent.
    pub fn with_host_name(mut self, host_name: Option<&'a [u8]>) -> Self {
        self.host_name = host_name;
        self
    }

    /// The query with the address the client asks for.
    pub fn with_requested(mut self, requested: Option<Ipv4Addr>) -> Self {
        self.requested = requested;
        self
    }
}

/// Why a store could not answer. The engine drops the packet and counts it; it never ACKs a
/// lease the store did not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be reached (connection refused, timed out, lost).
    #[error("lease store unavailable: {0}")]
    Unavailable(String),
    /// The store answered with something the implementation did not expect.
    #[error("lease store failed: {0}")]
    Backend(String),
    /// Stored data could not be decoded into a lease.
    #[error("lease store holds corrupt data: {0}")]
    Corrupt(String),
}

/// A pool as the allocator sees it: a stable key and the address ranges it may hand out.
///
/// Reserved addresses are already cut out of `ranges`, so a store never needs to know about
/// reservations. `key` changes whenever the ranges change (a config reload), which lets a store
/// keep per-pool allocation state keyed by it.
#[derive(Debug, Clone, Copy)]
pub struct PoolRef<'a> {
    /// Identifies the pool's ranges; equal keys mean equal ranges.
    pub key: u64,
    /// The configured id of the subnet the pool belongs to.
    pub subnet: u32,
    /// Address ranges, as inclusive ranges of host-order `u32`, sorted and disjoint.
    pub ranges: &'a [RangeInclusive<u32>],
}

impl PoolRef<'_> {
    /// Whether `addr` lies in one of the pool's ranges.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        let a = u32::from(addr);
        self.ranges.iter().any(|r| r.contains(&a))
    }

    /// How many addresses the pool holds.
    pub fn size(&self) -> u64 {
        self.ranges.iter().map(|r| u64::from(r.end() - r.start()) + 1).sum()
    }
}

/// Of `leases` (in any order), the first `limit` in address order above `after`: what
/// [`LeaseStore::list_page`] answers from a whole listing.
fn first_page(mut leases: Vec<Lease>, after: Option<Ipv4Addr>, limit: usize) -> Vec<Lease> {
    leases.retain(|l| after.is_none_or(|a| l.addr > a));
    if leases.len() > limit {
        // The lowest `limit` without sorting the rest.
        leases.select_nth_unstable_by_key(limit, |l| l.addr);
        leases.truncate(limit);
    }
    leases.sort_unstable_by_key(|l| l.addr);
    leases
}

/// Where leases live. One implementation per backend, in `dhcp-store`.
///
/// The methods return futures so that network stores can wait on I/O without blocking an
/// async runtime; a store that answers at once (the in-memory store) returns ready futures, and
/// [`crate::block_on`] drives the engine over it with no runtime at all.
///
/// # Atomicity
/// [`claim`](LeaseStore::claim) and [`allocate`](LeaseStore::allocate) are the only ways an
/// address is granted, and each is atomic: the store writes the lease only if the address is
/// available to the client by [`Lease::available_to`] at `now`, judged against what is stored
/// at the moment of the write. Two servers sharing one store can therefore never hold one
/// address for two clients. When a method returns `Ok`, the write is durable to the store's
/// promise (committed, for a durable store).
pub trait LeaseStore: Send + Sync {
    /// The lease `client` holds, or last held, in `subnet` (any state), for address affinity.
    fn lease_by_client(
        &self,
        subnet: u32,
        client: &ClientId,
    ) -> impl Future<Output = Result<Option<Lease>, StoreError>> + Send;

    /// The lease recorded for `addr`, in any state.
    fn lease_by_addr(&self, addr: Ipv4Addr) -> impl Future<Output = Result<Option<Lease>, StoreError>> + Send;

    /// [`lease_by_addr`](Self::lease_by_addr) and [`lease_by_client`](Self::lease_by_client)
    /// together, as the engine asks both before it binds an address: a store that can answers
    /// them in one round trip (PostgreSQL, in one statement). The default asks one, then the
    /// other.
    fn lease_by_addr_and_client(
        &self,
        addr: Ipv4Addr,
        subnet: u32,
        client: &ClientId,
    ) -> impl Future<Output = Result<(Option<Lease>, Option<Lease>), StoreError>> + Send {
        let at = self.lease_by_addr(addr);
        let of = self.lease_by_client(subnet, client);
        async move { Ok((at.await?, of.await?)) }
    }

    /// Writes `lease` for `lease.addr` if the address is available to `lease.client` at `now`.
    ///
    /// Returns the stored lease, or `None` when someone else holds the address. An offer
    /// (`LeaseState::Offered`) claimed over this client's own unexpired binding leaves the
    /// binding as it is and returns it: offering must never shorten a lease.
    ///
    /// A client holds at most one lease per subnet: in the same atomic operation as the write,
    /// the client's other held (unexpired) lease in `lease.subnet` becomes `Released`, except
    /// that an offer leaves the client's binding alone until the binding of the new address
    /// moves it. A binding already past its expiry is left for
    /// [`reclaim_expired`](Self::reclaim_expired), which counts it. "The client" is the same
    /// [`ClientId`]. [`allocate`](Self::allocate) does the same.
    fn claim(&self, lease: &Lease, now: Timestamp) -> impl Future<Output = Result<Option<Lease>, StoreError>> + Send;

    /// Finds an address in `pool` available at `now` and claims it for `lease` (whose `addr` is
    /// ignored). Returns the stored lease, or `None` when the pool is exhausted. Leases whose
    /// deadline has passed count as free even before [`reclaim_expired`](Self::reclaim_expired)
    /// has run.
    ///
    /// Cost must not grow with the pool's size.
    fn allocate(
        &self,
        pool: PoolRef<'_>,
        lease: &Lease,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<Lease>, StoreError>> + Send;

    /// [`allocate`](Self::allocate), also saying what the write replaced: `Some((stored,
    /// replaced))` where `stored` is what `allocate` returns and `replaced` is the record that
    /// was stored at `stored.addr` before this call and that the write overwrote, as it was (in
    /// any state, of any client). `replaced` is `None` when the address had no record, and when
    /// nothing was overwritten (an offer meeting the client's own unexpired binding, which is
    /// returned as it is).
    ///
    /// A caller that keeps counts per lease state learns here of a record it will never see
    /// again: another client's binding that ran out but was not reclaimed yet, which the
    /// allocation takes over and [`reclaim_expired`](Self::reclaim_expired) will not return.
    ///
    /// The default calls [`allocate`](Self::allocate) and reports `None` for the replaced
    /// record: a store that does not override it says nothing about what it replaced. The
    /// stores of `dhcp-store` override it, and wrappers forward it.
    fn allocate_replacing(
        &self,
        pool: PoolRef<'_>,
        lease: &Lease,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<(Lease, Option<Lease>)>, StoreError>> + Send {
        let allocated = self.allocate(pool, lease, now);
        async move { Ok(allocated.await?.map(|stored| (stored, None))) }
    }

    /// Moves the lease at `addr`, if `client` holds it (an offer or a binding), to `state`
    /// (release or decline). Returns the updated lease, or `None`, changing nothing, when
    /// `client` does not hold `addr`: the address has no lease, or another client's, or one
    /// that is released, expired (reclaimed) or declined. A decline (`LeaseState::Declined`)
    /// applies only to the client's binding, never to an offer. The method takes no `now`: an
    /// offer or binding past its deadline that was not reclaimed yet still counts as held.
    fn update_state(
        &self,
        addr: Ipv4Addr,
        client: &ClientId,
        state: crate::LeaseState,
    ) -> impl Future<Output = Result<Option<Lease>, StoreError>> + Send;

    /// Reclaims up to `limit` leases whose deadline has passed at `now`: expired bindings and
    /// lapsed offers become `Expired` (kept, so the client can get the address back while it is
    /// free), ended probations are deleted (no affinity to an address a client said was in
    /// use). Returns the leases as they were before reclamation, so the caller can count them
    /// per state.
    ///
    /// Cost is proportional to what expired, not to the number of leases.
    fn reclaim_expired(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Lease>, StoreError>> + Send;

    /// Deletes the lease at `addr`, whatever its state. Returns whether there was one.
    fn delete(&self, addr: Ipv4Addr) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Every lease in `subnet` (all subnets when `None`), for operators. Not on the packet path.
    fn list(&self, subnet: Option<u32>) -> impl Future<Output = Result<Vec<Lease>, StoreError>> + Send;

    /// One page of [`list`](Self::list): the first `limit` leases, in ascending address order,
    /// of those in `subnet` (all subnets when `None`) whose address is above `after` (all when
    /// `None`; `after` itself is never included). Leases in every state are listed, as by
    /// `list`. Fewer than `limit` come back only when no more leases follow: a caller walks the
    /// store by passing the last address of each page as the next `after` until a page is short.
    /// Not on the packet path.
    ///
    /// A page is not one instant's snapshot of the store, and a walk over several pages even
    /// less so: the store keeps serving meanwhile. Each lease is whole and each address comes
    /// at most once in a walk, in order; a lease held throughout the walk is listed exactly once,
    /// one deleted or moved meanwhile may be missing or appear at its new address, and one
    /// created above the walk's position appears.
    ///
    /// A store that can read a range of addresses in order overrides this so that a page costs
    /// about its own size, not a pass over the store, and says so with
    /// [`list_page_native`](Self::list_page_native). The default lists the whole subnet with
    /// `list` and keeps the page: correct for any store, but a pass over the subnet per page.
    /// Wrappers forward both methods.
    fn list_page(
        &self,
        subnet: Option<u32>,
        after: Option<Ipv4Addr>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Lease>, StoreError>> + Send {
        let all = self.list(subnet);
        async move { Ok(first_page(all.await?, after, limit)) }
    }

    /// Whether [`list_page`](Self::list_page) reads about one page of the store (`true`), or
    /// the whole subnet for every page, as the default does (`false`, the default). A caller
    /// about to walk every page of a store that answers `false` does better with one call for
    /// everything (`list_page` with a `limit` of `usize::MAX`), which costs one pass instead of
    /// one per page.
    fn list_page_native(&self) -> bool {
        false
    }

    /// The reservation the store keeps for a client, by hardware address, client identifier or
    /// host name, asked when the config sets `host-source = "store"`. A store may note that the
    /// client was seen at `query.now`, and must write nothing else: the answer may only lead to
    /// an offer. Stores without reservations answer `None` (the default).
    fn host(&self, query: &HostQuery<'_>) -> impl Future<Output = Result<Option<StoreHost>, StoreError>> + Send {
        let _ = query;
        core::future::ready(Ok(None))
    }

    /// Makes `addr`, one of the addresses [`host`](Self::host) proposed from the store's own
    /// pool ([`StoreHost::pool`]), the client's in the store, atomically, as the engine binds
    /// it: `false` when it is not free for this client any more (another took it), and the
    /// engine NAKs. Asked only for a client that holds an offer or a binding of `addr`, so an
    /// address is never taken for good by a client that was not offered it. Stores without
    /// a pool of their own answer `false` (the default).
    fn take_pool_address(
        &self,
        query: &HostQuery<'_>,
        addr: Ipv4Addr,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let _ = (query, addr);
        core::future::ready(Ok(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LeaseState;

    fn lease(last: u8) -> Lease {
        Lease {
            addr: Ipv4Addr::new(10, 0, 0, last),
            client: ClientId::from_bytes(&[last]),
            hwaddr: HwAddr::default(),
            subnet: 1,
            state: LeaseState::Released,
            hostname: None,
        }
    }

    #[test]
    fn the_default_page_is_the_lowest_addresses_above_after() {
        let all: Vec<Lease> = [9, 3, 7, 1, 5].into_iter().map(lease).collect();
        let addrs = |page: Vec<Lease>| page.iter().map(|l| l.addr.octets()[3]).collect::<Vec<_>>();
        assert_eq!(addrs(first_page(all.clone(), None, 2)), [1, 3]);
        assert_eq!(addrs(first_page(all.clone(), Some(Ipv4Addr::new(10, 0, 0, 3)), 2)), [5, 7], "after excluded");
        assert_eq!(addrs(first_page(all.clone(), Some(Ipv4Addr::new(10, 0, 0, 4)), 9)), [5, 7, 9]);
        assert_eq!(addrs(first_page(all.clone(), None, usize::MAX)), [1, 3, 5, 7, 9]);
        assert_eq!(addrs(first_page(all.clone(), None, 0)), [] as [u8; 0]);
        assert_eq!(addrs(first_page(all, Some(Ipv4Addr::new(10, 0, 0, 9)), 9)), [] as [u8; 0]);
    }
}
