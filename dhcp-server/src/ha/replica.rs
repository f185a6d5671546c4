//! What a server's store does for its partner: store the partner's lease changes, and page
//! through its own leases for a partner that syncs.

use std::net::Ipv4Addr;

use dhcp_core::{Lease, StoreError, Timestamp};

use super::wire::Change;
use crate::api::model::{LeasePage, UpdatesApplied};
use crate::metrics::MeteredStore;

/// Told of a lease stored from the partner: the lease at its address before (none: no lease)
/// and after (none: deleted).
pub type LeaseChanged<'a> = dyn Fn(Option<&Lease>, Option<&Lease>) + Sync + 'a;

/// What the API needs of a store to serve the partner: store its changes, page through leases.
pub trait ReplicaStore: Send + Sync {
    /// Stores lease changes from the partner without sending them back; `changed` is told of
    /// each lease as it was and as it is now (to keep the engine's gauges true).
    fn apply_changes(
        &self,
        changes: &[Change],
        now: Timestamp,
        changed: &LeaseChanged<'_>,
    ) -> impl Future<Output = Result<UpdatesApplied, StoreError>> + Send;

    /// Up to `limit` leases with addresses above `after`, in address order.
    fn lease_page(
        &self,
        after: Option<Ipv4Addr>,
        limit: usize,
    ) -> impl Future<Output = Result<LeasePage, StoreError>> + Send;
}

impl<S: ReplicaStore> ReplicaStore for MeteredStore<S> {
    async fn apply_changes(
        &self,
        changes: &[Change],
        now: Timestamp,
        changed: &LeaseChanged<'_>,
    ) -> Result<UpdatesApplied, StoreError> {
        self.inner().apply_changes(changes, now, changed).await
    }

    async fn lease_page(&self, after: Option<Ipv4Addr>, limit: usize) -> Result<LeasePage, StoreError> {
        self.inner().lease_page(after, limit).await
    }
}
