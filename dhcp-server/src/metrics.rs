//! Prometheus metrics, through the `metrics` crates, without a process-global recorder: each
//! server has its own, so several servers embedded in one process do not mix their numbers.
//!
//! The engine's statistics (Kea's names, `-` turned into `_`) are read at scrape time, so the
//! exported values are exactly the engine's; store latency is recorded as it happens by
//! [`MeteredStore`].

use std::future::{Future, poll_fn};
use std::net::Ipv4Addr;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use dhcp_core::{
    ClientId, Counter, HostQuery, Lease, LeaseState, LeaseStore, PoolRef, Stats, StoreError, StoreHost, Timestamp,
};
use metrics::{Histogram, Key, Label, Metadata, Recorder};

use crate::api::model::HaStatus;
use crate::ha::state::HaState;
use crate::limits::{Limit, Limits};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// The store latency histogram's name.
const STORE_LATENCY: &str = "dhcp4_store_latency_seconds";
const STORE_TIMEOUTS: &str = "dhcp4_store_timeouts_total";

/// Buckets from 50 µs (memory) to 2.5 s (a store about to time out).
const LATENCY_BUCKETS: &[f64] =
    &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// The store operations timed, as the `op` label says them.
const OPS: [&str; 12] = [
    "lease_by_client",
    "lease_by_addr",
    "claim",
    "allocate",
    "update_state",
    "reclaim_expired",
    "delete",
    "list",
    "host",
    "list_page",
    "lease_by_addr_and_client",
    "take_pool_address",
];

/// A server's metrics registry.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        let builder = PrometheusBuilder::new();
        // Only fails for an empty bucket list, which this is not.
        let builder = builder
            .set_buckets_for_metric(Matcher::Full(STORE_LATENCY.into()), LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        Metrics { recorder, handle }
    }

    fn metadata() -> Metadata<'static> {
        Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()))
    }

    /// The Prometheus text exposition of `stats` and of everything recorded so far.
    pub fn render(&self, stats: &Stats, ha: Option<&HaStatus>, limits: Option<&Limits>) -> String {
        let meta = Self::metadata();
        for counter in Counter::ALL {
            let name = format!("dhcp4_{}_total", counter.name().replace('-', "_"));
            self.recorder.register_counter(&Key::from_name(name), &meta).absolute(stats.get(*counter));
        }
        for subnet in stats.subnets().iter() {
            let labels = || vec![Label::new("subnet", subnet.id.to_string())];
            let gauge = |name: &'static str, value: f64| {
                self.recorder.register_gauge(&Key::from_parts(name, labels()), &meta).set(value);
            };
            gauge("dhcp4_total_addresses", subnet.total_addresses() as f64);
            gauge("dhcp4_assigned_addresses", subnet.assigned_addresses() as f64);
            gauge("dhcp4_declined_addresses", subnet.declined_addresses() as f64);
            self.recorder
                .register_counter(&Key::from_parts("dhcp4_reclaimed_leases_total", labels()), &meta)
                .absolute(subnet.reclaimed_leases());
        }
        if let Some(ha) = ha {
            // One gauge per state, 1 for the current one: a dashboard plots the state over time.
            for state in HaState::ALL {
                let key = Key::from_parts("dhcp4_ha_state", vec![Label::new("state", state.as_str())]);
                self.recorder.register_gauge(&key, &meta).set(if ha.state == state.as_str() { 1.0 } else { 0.0 });
            }
            if let Some(ms) = ha.partner.as_ref().and_then(|p| p.last_contact_ms) {
                self.recorder
                    .register_gauge(&Key::from_name("dhcp4_ha_partner_last_contact_seconds"), &meta)
                    .set(ms as f64 / 1000.0);
            }
            self.recorder
                .register_gauge(&Key::from_name("dhcp4_ha_unacked_clients"), &meta)
                .set(ha.unacked_clients as f64);
            self.recorder
                .register_counter(&Key::from_name("dhcp4_ha_not_in_scope_total"), &meta)
                .absolute(ha.not_in_scope);
            self.recorder
                .register_counter(&Key::from_name("dhcp4_ha_lease_updates_sent_total"), &meta)
                .absolute(ha.lease_updates_sent);
            self.recorder
                .register_counter(&Key::from_name("dhcp4_ha_lease_update_batches_total"), &meta)
                .absolute(ha.lease_update_batches);
        }
        if let Some(limits) = limits {
            for (limit, dropped) in Limit::ALL.iter().zip(limits.dropped()) {
                let key = Key::from_parts("dhcp4_rate_limited_total", vec![Label::new("limit", limit.as_str())]);
                self.recorder.register_counter(&key, &meta).absolute(dropped);
            }
        }
        self.handle.render()
    }

    fn store_histograms(&self) -> Vec<Histogram> {
        let meta = Self::metadata();
        OPS.iter()
            .map(|op| {
                self.recorder.register_histogram(&Key::from_parts(STORE_LATENCY, vec![Label::new("op", *op)]), &meta)
            })
            .collect()
    }
}

/// A store that records how long each of its operations takes into a [`Metrics`] registry
/// (`dhcp4_store_latency_seconds{op="claim"}` and so on) and, given a deadline, gives up on a
/// client's request's store call past it.
#[derive(Debug)]
pub struct MeteredStore<S> {
    inner: S,
    latency: Arc<[Histogram]>,
    deadline: Option<Duration>,
    timeouts: metrics::Counter,
}

impl<S> MeteredStore<S> {
    /// Wraps `inner`, recording into `metrics`, with no deadline.
    pub fn new(inner: S, metrics: &Metrics) -> Self {
        let timeouts = metrics.recorder.register_counter(&Key::from_name(STORE_TIMEOUTS), &Metrics::metadata());
        MeteredStore { inner, latency: metrics.store_histograms().into(), deadline: None, timeouts }
    }

    /// Gives up on a call a client's request makes (every operation but `list`, `list_page` and
    /// `reclaim_expired`, which serve the API and the timers and may rightly take long) once it
    /// has taken `deadline`: the call fails as the store being unavailable, the request is
    /// dropped and counted, and `dhcp4_store_timeouts_total` counts it. The client retries; an
    /// answer after its own timeout would only be stale.
    #[must_use]
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    async fn timed<T>(&self, op: usize, call: impl Future<Output = T>) -> T {
        let start = Instant::now();
        let result = call.await;
        self.record(op, start);
        result
    }

    fn record(&self, op: usize, start: Instant) {
        if let Some(h) = self.latency.get(op) {
            h.record(start.elapsed().as_secs_f64());
        }
    }

    /// [`timed`](Self::timed), within the deadline. The call is polled once before the
    /// deadline's timer is made: a store that answers at once (the memory store, whose futures
    /// are ready when made) then costs no timer and no move of its future into one.
    async fn timed_deadline<T>(
        &self,
        op: usize,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let start = Instant::now();
        let mut call = pin!(call);
        if let Poll::Ready(result) = poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await {
            self.record(op, start);
            return result;
        }
        let Some(deadline) = self.deadline else {
            let result = call.await;
            self.record(op, start);
            return result;
        };
        match tokio::time::timeout(deadline.saturating_sub(start.elapsed()), call).await {
            Ok(result) => {
                self.record(op, start);
                result
            }
            Err(_) => {
                self.timeouts.increment(1);
                Err(StoreError::Unavailable(format!(
                    "{} got no answer within the store deadline of {} ms",
                    OPS.get(op).copied().unwrap_or("call"),
                    deadline.as_millis()
                )))
            }
        }
    }
}

impl<S: LeaseStore> LeaseStore for MeteredStore<S> {
    async fn lease_by_client(&self, subnet: u32, client: &ClientId) -> Result<Option<Lease>, StoreError> {
        self.timed_deadline(0, self.inner.lease_by_client(subnet, client)).await
    }

    async fn lease_by_addr(&self, addr: Ipv4Addr) -> Result<Option<Lease>, StoreError> {
        self.timed_deadline(1, self.inner.lease_by_addr(addr)).await
    }

    async fn lease_by_addr_and_client(
        &self,
        addr: Ipv4Addr,
        subnet: u32,
        client: &ClientId,
    ) -> Result<(Option<Lease>, Option<Lease>), StoreError> {
        self.timed_deadline(10, self.inner.lease_by_addr_and_client(addr, subnet, client)).await
    }

    async fn claim(&self, lease: &Lease, now: Timestamp) -> Result<Option<Lease>, StoreError> {
        self.timed_deadline(2, self.inner.claim(lease, now)).await
    }

    async fn allocate(&self, pool: PoolRef<'_>, lease: &Lease, now: Timestamp) -> Result<Option<Lease>, StoreError> {
        self.timed_deadline(3, self.inner.allocate(pool, lease, now)).await
    }

    async fn allocate_replacing(
        &self,
        pool: PoolRef<'_>,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Option<(Lease, Option<Lease>)>, StoreError> {
        self.timed_deadline(3, self.inner.allocate_replacing(pool, lease, now)).await
    }

    async fn update_state(
        &self,
        addr: Ipv4Addr,
        client: &ClientId,
        state: LeaseState,
    ) -> Result<Option<Lease>, StoreError> {
        self.timed_deadline(4, self.inner.update_state(addr, client, state)).await
    }

    async fn reclaim_expired(&self, now: Timestamp, limit: usize) -> Result<Vec<Lease>, StoreError> {
        self.timed(5, self.inner.reclaim_expired(now, limit)).await
    }

    async fn delete(&self, addr: Ipv4Addr) -> Result<bool, StoreError> {
        self.timed_deadline(6, self.inner.delete(addr)).await
    }

    async fn list(&self, subnet: Option<u32>) -> Result<Vec<Lease>, StoreError> {
        self.timed(7, self.inner.list(subnet)).await
    }

    async fn list_page(
        &self,
        subnet: Option<u32>,
        after: Option<Ipv4Addr>,
        limit: usize,
    ) -> Result<Vec<Lease>, StoreError> {
        self.timed(9, self.inner.list_page(subnet, after, limit)).await
    }

    fn list_page_native(&self) -> bool {
        self.inner.list_page_native()
    }

    async fn host(&self, query: &HostQuery<'_>) -> Result<Option<StoreHost>, StoreError> {
        self.timed_deadline(8, self.inner.host(query)).await
    }

    async fn take_pool_address(&self, query: &HostQuery<'_>, addr: Ipv4Addr) -> Result<bool, StoreError> {
        self.timed_deadline(11, self.inner.take_pool_address(query, addr)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcp_core::HwAddr;

    /// A store whose every call hangs, as a database behind a cut link does.
    struct Hung;

    impl LeaseStore for Hung {
        async fn lease_by_client(&self, _: u32, _: &ClientId) -> Result<Option<Lease>, StoreError> {
            std::future::pending().await
        }
        async fn lease_by_addr(&self, _: Ipv4Addr) -> Result<Option<Lease>, StoreError> {
            std::future::pending().await
        }
        async fn claim(&self, _: &Lease, _: Timestamp) -> Result<Option<Lease>, StoreError> {
            std::future::pending().await
        }
        async fn allocate(&self, _: PoolRef<'_>, _: &Lease, _: Timestamp) -> Result<Option<Lease>, StoreError> {
            std::future::pending().await
        }
        async fn update_state(&self, _: Ipv4Addr, _: &ClientId, _: LeaseState) -> Result<Option<Lease>, StoreError> {
            std::future::pending().await
        }
        async fn reclaim_expired(&self, _: Timestamp, _: usize) -> Result<Vec<Lease>, StoreError> {
            std::future::pending().await
        }
        async fn delete(&self, _: Ipv4Addr) -> Result<bool, StoreError> {
            std::future::pending().await
        }
        async fn list(&self, _: Option<u32>) -> Result<Vec<Lease>, StoreError> {
            Ok(Vec::new())
        }
        async fn host(&self, _: &HostQuery<'_>) -> Result<Option<StoreHost>, StoreError> {
            std::future::pending().await
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_hung_store_call_fails_at_the_deadline_and_is_counted() {
        let metrics = Metrics::new();
        let store = MeteredStore::new(Hung, &metrics).with_deadline(Duration::from_millis(50));
        let started = Instant::now();
        let answer = store.lease_by_addr(Ipv4Addr::new(192, 0, 2, 1)).await;
        assert!(matches!(&answer, Err(StoreError::Unavailable(why)) if why.contains("50 ms")), "{answer:?}");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(50) && waited < Duration::from_secs(1), "{waited:?}");
        assert!(store.delete(Ipv4Addr::new(192, 0, 2, 1)).await.is_err());
        // Listing serves the API and may take long: no deadline on it.
        assert_eq!(store.list(None).await.map(|l| l.len()), Ok(0));
        assert_eq!(store.list_page(None, None, 10).await.map(|l| l.len()), Ok(0));
        let config = dhcp_core::Config::from_toml_str("").expect("an empty config is valid");
        let text = metrics.render(&Stats::new(&config), None, None);
        assert!(text.contains("dhcp4_store_timeouts_total 2"), "{text}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn pages_go_to_the_store_inside_and_are_timed() {
        use dhcp_core::LeaseState;
        let metrics = Metrics::new();
        let store = MeteredStore::new(dhcp_store::MemoryStore::new(), &metrics);
        assert!(store.list_page_native());
        assert!(!MeteredStore::new(Hung, &metrics).list_page_native(), "the default says no");
        for last in [9, 3, 5] {
            let lease = Lease {
                addr: Ipv4Addr::new(10, 0, 0, last),
                client: ClientId::from_bytes(&[last]),
                hwaddr: HwAddr::default(),
                subnet: 1,
                state: LeaseState::Released,
                hostname: None,
            };
            assert!(store.claim(&lease, Timestamp::from_secs(0)).await.is_ok_and(|l| l.is_some()));
        }
        let page = store.list_page(Some(1), Some(Ipv4Addr::new(10, 0, 0, 3)), 1).await;
        assert_eq!(page.map(|p| p.iter().map(|l| l.addr).collect::<Vec<_>>()), Ok(vec![Ipv4Addr::new(10, 0, 0, 5)]));
        let config = dhcp_core::Config::from_toml_str("").expect("an empty config is valid");
        let text = metrics.render(&Stats::new(&config), None, None);
        assert!(text.contains("dhcp4_store_latency_seconds_count{op=\"list_page\"} 1"), "{text}");
    }
}
