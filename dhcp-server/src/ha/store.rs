//! The lease store of a server in a pair on local stores: every lease change goes to the partner
//! (before the client is answered, by default), changes from the partner are stored as they
//! come, and new addresses come from this server's half of the pool whenever both servers might
//! be handing addresses out at once.

use std::net::Ipv4Addr;
use std::sync::Arc;

use dhcp_core::{ClientId, HostQuery, Lease, LeaseState, LeaseStore, PoolRef, StoreError, StoreHost, Timestamp};
use tracing::warn;

use super::replica::{LeaseChanged, ReplicaStore};
use super::runtime::Ha;
use super::state::{Share, half};
use super::wire::{Change, record};
use crate::api::model::{LeasePage, UpdatesApplied};

/// A store that keeps a partner's store in step.
#[derive(Debug)]
pub struct HaStore<S> {
    inner: S,
    ha: Option<Arc<Ha>>,
    /// Where hosts are read from instead of `inner` (`host-store`), if anywhere.
    hosts: Option<crate::host_store::HostStore>,
}

impl<S> HaStore<S> {
    /// `inner`, kept in step with the partner when `ha` sends lease updates; without `ha`, a
    /// plain pass-through.
    pub fn new(inner: S, ha: Option<Arc<Ha>>) -> Self {
        HaStore { inner, ha, hosts: None }
    }

    /// Reads hosts from `hosts` rather than from the lease store.
    pub fn with_hosts(mut self, hosts: crate::host_store::HostStore) -> Self {
        self.hosts = Some(hosts);
        self
    }

    /// The store underneath.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn replicating(&self) -> Option<&Ha> {
        self.ha.as_deref().filter(|ha| ha.config().send_lease_updates)
    }
}

impl<S: LeaseStore> ReplicaStore for HaStore<S> {
    async fn apply_changes(
        &self,
        changes: &[Change],
        now: Timestamp,
        changed: &LeaseChanged<'_>,
    ) -> Result<UpdatesApplied, StoreError> {
        let mut answer = UpdatesApplied::default();
        for change in changes {
            let stored = match change {
                Change::Delete(address) => {
                    let before = self.inner.lease_by_addr(*address).await?;
                    if self.inner.delete(*address).await? {
                        changed(before.as_ref(), None);
                    }
                    true
                }
                Change::Put(lease) => self.put(lease, now, changed).await?,
            };
            if stored {
                answer.applied += 1;
            } else {
                answer.conflicts += 1;
            }
        }
        Ok(answer)
    }

    /// One [`LeaseStore::list_page`] of `limit` and one lease more, which only says whether
    /// `next` is given: a store that reads pages natively reads about the page, not the store.
    async fn lease_page(&self, after: Option<Ipv4Addr>, limit: usize) -> Result<LeasePage, StoreError> {
        let mut leases = self.inner.list_page(None, after, limit.saturating_add(1)).await?;
        let more = leases.len() > limit;
        leases.truncate(limit);
        let next = if more { leases.last().map(|l| l.addr) } else { None };
        Ok(LeasePage { leases: leases.iter().map(record).collect(), next })
    }
}

impl<S: LeaseStore> HaStore<S> {
    /// Stores the partner's view of one lease. The later of two bindings of one client wins;
    /// a lease of another client still held here is a conflict and is not stored.
    async fn put(&self, lease: &Lease, now: Timestamp, changed: &LeaseChanged<'_>) -> Result<bool, StoreError> {
        // An offer is the partner's own business (only what a client is told it holds comes
        // across); a sync's pages carry them too.
        if matches!(lease.state, LeaseState::Offered { .. }) {
            return Ok(true);
        }
        // A client holds one lease per subnet. When it holds another binding here, both
        // servers keep the same one of the two: the later deadline (then the higher address);
        // a claim of the partner's frees ours.
        let held = self
            .inner
            .lease_by_client(lease.subnet, &lease.client)
            .await?
            .filter(|held| held.addr != lease.addr && matches!(held.state, LeaseState::Bound { .. }));
        if let Some(held) = &held {
            let bound = matches!(lease.state, LeaseState::Bound { .. });
            // Ours is the later binding; or the partner's record is of a lease that is gone
            // there, while the client is bound here elsewhere: nothing to store.
            if !bound || (held.state.deadline(), held.addr) > (lease.state.deadline(), lease.addr) {
                return Ok(true);
            }
        }
        let existing = self.inner.lease_by_addr(lease.addr).await?;
        if let Some(ours) = &existing
            && ours.client == lease.client
        {
            let newer = match (ours.state.deadline(), lease.state.deadline()) {
                (Some(ours), Some(theirs)) => theirs >= ours,
                _ => true,
            };
            if !newer {
                return Ok(true);
            }
            if matches!(lease.state, LeaseState::Released | LeaseState::Expired | LeaseState::Declined { .. }) {
                let updated = self.inner.update_state(lease.addr, &lease.client, lease.state).await?;
                if let Some(now_stored) = &updated {
                    changed(existing.as_ref(), Some(now_stored));
                }
                return Ok(updated.is_some());
            }
        }
        // Written as the partner has it: a claim succeeds when the address is free here, expired,
        // or this client's.
        let claimed = self.inner.claim(lease, now).await?;
        match &claimed {
            Some(stored) => {
                changed(existing.as_ref(), Some(stored));
                if let Some(held) = &held {
                    // The claim moved the client: its binding here is free now.
                    changed(Some(held), None);
                }
            }
            None => warn!(addr = %lease.addr, "HA: the partner's lease conflicts with one held here; kept ours"),
        }
        Ok(claimed.is_some())
    }
}

impl<S: LeaseStore> LeaseStore for HaStore<S> {
    async fn lease_by_client(&self, subnet: u32, client: &ClientId) -> Result<Option<Lease>, StoreError> {
        self.inner.lease_by_client(subnet, client).await
    }

    async fn lease_by_addr(&self, addr: Ipv4Addr) -> Result<Option<Lease>, StoreError> {
        self.inner.lease_by_addr(addr).await
    }

    async fn lease_by_addr_and_client(
        &self,
        addr: Ipv4Addr,
        subnet: u32,
        client: &ClientId,
    ) -> Result<(Option<Lease>, Option<Lease>), StoreError> {
        self.inner.lease_by_addr_and_client(addr, subnet, client).await
    }

    async fn claim(&self, lease: &Lease, now: Timestamp) -> Result<Option<Lease>, StoreError> {
        if let Some(ha) = self.replicating() {
            // A free address of the partner's half is not this server's to give while both may
            // be giving addresses out; renewing a client's own lease always is.
            let share = ha.share();
            if share != Share::Whole && !ha.address_in_share(lease.addr, share) {
                let held = self.inner.lease_by_addr(lease.addr).await?;
                let renewal = held.is_some_and(|l| {
                    l.client == lease.client && matches!(l.state, LeaseState::Bound { .. } | LeaseState::Offered { .. })
                });
                if !renewal {
                    return Ok(None);
                }
            }
        }
        let claimed = self.inner.claim(lease, now).await?;
        if let (Some(ha), Some(stored)) = (self.replicating(), &claimed) {
            ha.replicate(stored).await?;
        }
        Ok(claimed)
    }

    async fn allocate(&self, pool: PoolRef<'_>, lease: &Lease, now: Timestamp) -> Result<Option<Lease>, StoreError> {
        Ok(self.allocate_replacing(pool, lease, now).await?.map(|(stored, _)| stored))
    }

    async fn allocate_replacing(
        &self,
        pool: PoolRef<'_>,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Option<(Lease, Option<Lease>)>, StoreError> {
        let share = self.replicating().map_or(Share::Whole, Ha::share);
        if let Some(ha) = self.replicating() {
            ha.note_pool(pool);
        }
        let allocated = if share == Share::Whole {
            self.inner.allocate_replacing(pool, lease, now).await?
        } else {
            let ranges = half(pool.ranges, share);
            // A key of its own: the store's per-pool state is kept apart for each half.
            let key = pool.key ^ if share == Share::Lower { 0x5bd1_e995_0000_0001 } else { 0x5bd1_e995_0000_0002 };
            self.inner.allocate_replacing(PoolRef { key, subnet: pool.subnet, ranges: &ranges }, lease, now).await?
        };
        if let (Some(ha), Some((stored, _))) = (self.replicating(), &allocated) {
            ha.replicate(stored).await?;
        }
        Ok(allocated)
    }

    async fn update_state(
        &self,
        addr: Ipv4Addr,
        client: &ClientId,
        state: LeaseState,
    ) -> Result<Option<Lease>, StoreError> {
        let updated = self.inner.update_state(addr, client, state).await?;
        if let (Some(ha), Some(stored)) = (self.replicating(), &updated) {
            ha.replicate(stored).await?;
        }
        Ok(updated)
    }

    async fn reclaim_expired(&self, now: Timestamp, limit: usize) -> Result<Vec<Lease>, StoreError> {
        // Each server reclaims by its own clock; the partner does the same with its copy, so
        // reclamation is not sent.
        self.inner.reclaim_expired(now, limit).await
    }

    async fn delete(&self, addr: Ipv4Addr) -> Result<bool, StoreError> {
        let deleted = self.inner.delete(addr).await?;
        if let Some(ha) = self.replicating()
            && deleted
        {
            ha.replicate_change(Change::Delete(addr)).await?;
        }
        Ok(deleted)
    }

    async fn list(&self, subnet: Option<u32>) -> Result<Vec<Lease>, StoreError> {
        self.inner.list(subnet).await
    }

    async fn list_page(
        &self,
        subnet: Option<u32>,
        after: Option<Ipv4Addr>,
        limit: usize,
    ) -> Result<Vec<Lease>, StoreError> {
        self.inner.list_page(subnet, after, limit).await
    }

    fn list_page_native(&self) -> bool {
        self.inner.list_page_native()
    }

    async fn host(&self, query: &HostQuery<'_>) -> Result<Option<StoreHost>, StoreError> {
        match &self.hosts {
            Some(hosts) => hosts.host(query).await,
            None => self.inner.host(query).await,
        }
    }

    async fn take_pool_address(&self, query: &HostQuery<'_>, addr: Ipv4Addr) -> Result<bool, StoreError> {
        match &self.hosts {
            Some(hosts) => hosts.take_pool_address(query, addr).await,
            None => self.inner.take_pool_address(query, addr).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use dhcp_store::MemoryStore;

    use super::*;
    use dhcp_core::HwAddr;

    #[tokio::test(flavor = "current_thread")]
    async fn a_sync_walks_the_leases_page_by_page_in_address_order() {
        let store = HaStore::new(MemoryStore::new(), None);
        assert!(store.list_page_native());
        // Across /24s, written out of order.
        let addrs: Vec<Ipv4Addr> =
            [0x0a00_0105u32, 0x0a00_00ff, 0x0a00_0100, 0x0a00_0001, 0x0b00_0000].map(Ipv4Addr::from).to_vec();
        for (n, &addr) in addrs.iter().enumerate() {
            let lease = Lease {
                addr,
                client: ClientId::from_bytes(&[n as u8]),
                hwaddr: HwAddr::default(),
                subnet: 1 + n as u32 % 2,
                state: LeaseState::Released,
                hostname: None,
            };
            assert!(store.claim(&lease, Timestamp::from_secs(0)).await.is_ok_and(|l| l.is_some()));
        }
        let mut sorted = addrs.clone();
        sorted.sort_unstable();
        for limit in 1..=6 {
            let mut walked = Vec::new();
            let mut after = None;
            loop {
                let page = store.lease_page(after, limit).await.expect("the store answers");
                assert!(page.leases.len() <= limit);
                walked.extend(page.leases.iter().map(|l| l.address));
                match page.next {
                    Some(next) => {
                        assert_eq!((page.leases.len(), page.leases.last().map(|l| l.address)), (limit, Some(next)));
                        after = Some(next);
                    }
                    None => break,
                }
            }
            assert_eq!(walked, sorted, "pages of {limit}");
        }
        let last = store.lease_page(Some(sorted[3]), 1).await.expect("the store answers");
        assert_eq!((last.leases.len(), last.next), (1, None), "no next when nothing follows");
    }
}
