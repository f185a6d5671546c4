//! Counters, named as ISC Kea names them so dashboards built for Kea carry over.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::config::Config;
use crate::offers::OfferCount;
use crate::swap::Swap;
use crate::time::Timestamp;

macro_rules! counters {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// A global counter.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum Counter {
            $(#[doc = $doc] $variant,)*
        }

        impl Counter {
            /// Every counter, in export order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];

            /// The counter's Kea-compatible name.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Counter::$variant => $name,)*
                }
            }
        }
    };
}

counters! {
    Received => "pkt4-received", "Datagrams received.";
    DiscoverReceived => "pkt4-discover-received", "DISCOVERs received.";
    RequestReceived => "pkt4-request-received", "REQUESTs received.";
    ReleaseReceived => "pkt4-release-received", "RELEASEs received.";
    DeclineReceived => "pkt4-decline-received", "DECLINEs received.";
    InformReceived => "pkt4-inform-received", "INFORMs received.";
    UnknownReceived => "pkt4-unknown-received", "Messages of a type the server does not take.";
    OfferSent => "pkt4-offer-sent", "OFFERs sent.";
    AckSent => "pkt4-ack-sent", "ACKs sent.";
    NakSent => "pkt4-nak-sent", "NAKs sent.";
    Sent => "pkt4-sent", "Replies sent.";
    ParseFailed => "pkt4-parse-failed", "Datagrams that did not parse.";
    ReceiveDrop => "pkt4-receive-drop", "Datagrams dropped, for any reason.";
    AllocationFail => "v4-allocation-fail", "DISCOVERs and REQUESTs that found no address.";
    StoreErrors => "store-errors", "Store operations that failed.";
    OptionsOmitted => "options-omitted", "Options left out of replies for lack of room.";
    PingConflicts => "v4-ping-check-conflicts", "Addresses a ping check found answering before they were offered, set aside for the decline probation period.";
    HostFieldsUnreadable => "host-fields-unreadable", "Fields of hosts and groups kept in the store (`host-source = \"store\"`) that could not be read and were left out of a reply.";
    StorePoolTakeRefused => "store-pool-take-refused", "REQUESTs NAKed because the store's own pool (the Go Redis server's `pool` hash) had given the offered address to another client meanwhile.";
    OfferLimitDrop => "pkt4-offer-limit-drop", "DISCOVERs from clients with no lease or reservation dropped because outstanding offers held `max-offers` addresses of the subnet (or `max-offers-per-relay` through the relay).";
}

/// Per-subnet gauges and counters.
#[derive(Debug)]
pub struct SubnetStats {
    /// The subnet's configured id.
    pub id: u32,
    total: AtomicU64,
    assigned: AtomicI64,
    declined: AtomicI64,
    reclaimed: AtomicU64,
    pub(crate) offers: OfferCount,
}

impl SubnetStats {
    fn new(id: u32, total: u64) -> Self {
        SubnetStats {
            id,
            total: AtomicU64::new(total),
            assigned: AtomicI64::new(0),
            declined: AtomicI64::new(0),
            reclaimed: AtomicU64::new(0),
            offers: OfferCount::default(),
        }
    }

    /// Dynamic addresses in its pools.
    pub fn total_addresses(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Leases bound and not yet released or expired: counted from the store when the server
    /// starts ([`Stats::set_counts`]), then kept up to date by this server's own grants.
    pub fn assigned_addresses(&self) -> i64 {
        self.assigned.load(Ordering::Relaxed)
    }

    /// Addresses in decline probation.
    pub fn declined_addresses(&self) -> i64 {
        self.declined.load(Ordering::Relaxed)
    }

    /// Addresses outstanding offers may still hold, as the `max-offers` bound counts them: the
    /// offers made in the last two offer-hold times that have not been taken up or withdrawn.
    /// An upper bound on the offers alive.
    pub fn offered_addresses(&self, now: Timestamp, offer_hold_time: u32) -> u64 {
        self.offers.held(crate::offers::window(now, offer_hold_time))
    }

    /// Expired leases reclaimed.
    pub fn reclaimed_leases(&self) -> u64 {
        self.reclaimed.load(Ordering::Relaxed)
    }
}

/// Every statistic the engine keeps. Updated with relaxed atomics: cheap, and exact once the
/// engine is quiet.
#[derive(Debug)]
pub struct Stats {
    counters: Vec<AtomicU64>,
    subnets: Swap<Vec<Arc<SubnetStats>>>,
    /// Offers by relay for `max-offers-per-relay`, in slots by a hash of the relay address
    /// (relays that share a slot share a bound: conservative, and no map to lock).
    relay_offers: Vec<OfferCount>,
}

/// Slots in [`Stats::relay_offers`].
const RELAY_SLOTS: usize = 256;

impl Stats {
    /// Zeroed statistics for the subnets of `config`.
    pub fn new(config: &Config) -> Self {
        Stats {
            counters: Counter::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            relay_offers: (0..RELAY_SLOTS).map(|_| OfferCount::default()).collect(),
            subnets: Swap::new(Arc::new(
                config.subnets.iter().map(|s| Arc::new(SubnetStats::new(s.id, s.total_addresses()))).collect(),
            )),
        }
    }

    /// Follows a new config: subnets that stay (by id) keep their values with the new size,
    /// new ones start at zero, removed ones are dropped.
    #[cfg(feature = "std")]
    pub(crate) fn adopt(&self, config: &Config) {
        let old = self.subnets.get();
        let list = config
            .subnets
            .iter()
            .map(|s| match old.iter().find(|o| o.id == s.id) {
                Some(kept) => {
                    kept.total.store(s.total_addresses(), Ordering::Relaxed);
                    Arc::clone(kept)
                }
                None => Arc::new(SubnetStats::new(s.id, s.total_addresses())),
            })
            .collect();
        self.subnets.set(Arc::new(list));
    }

    /// Sets subnet `id`'s assigned and declined gauges, as counted in the store (at start, when
    /// the store may already hold leases from an earlier run or from other servers).
    pub fn set_counts(&self, id: u32, assigned: i64, declined: i64) {
        if let Some(s) = self.subnet(id) {
            s.assigned.store(assigned, Ordering::Relaxed);
            s.declined.store(declined, Ordering::Relaxed);
        }
    }

    /// Adds one to `counter`.
    pub fn bump(&self, counter: Counter) {
        self.add(counter, 1);
    }

    /// Adds `n` to `counter`.
    pub fn add(&self, counter: Counter, n: u64) {
        self.counters[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// The value of `counter`.
    pub fn get(&self, counter: Counter) -> u64 {
        self.counters[counter as usize].load(Ordering::Relaxed)
    }

    /// The stats of subnet `id`.
    pub fn subnet(&self, id: u32) -> Option<Arc<SubnetStats>> {
        self.subnets.get().iter().find(|s| s.id == id).cloned()
    }

    /// Every subnet's stats, in config order.
    pub fn subnets(&self) -> Arc<Vec<Arc<SubnetStats>>> {
        self.subnets.get()
    }

    pub(crate) fn assigned(&self, subnet: u32, delta: i64) {
        if let Some(s) = self.subnet(subnet) {
            s.assigned.fetch_add(delta, Ordering::Relaxed);
        }
    }

    pub(crate) fn declined(&self, subnet: u32, delta: i64) {
        if let Some(s) = self.subnet(subnet) {
            s.declined.fetch_add(delta, Ordering::Relaxed);
        }
    }

    /// The offer count of relay `giaddr`.
    pub(crate) fn relay_offers(&self, giaddr: core::net::Ipv4Addr) -> &OfferCount {
        let a = u32::from(giaddr);
        let slot = (a ^ (a >> 8) ^ (a >> 16) ^ (a >> 24)) as usize % RELAY_SLOTS;
        &self.relay_offers[slot]
    }

    pub(crate) fn reclaimed(&self, subnet: u32) {
        if let Some(s) = self.subnet(subnet) {
            s.reclaimed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every statistic as `(name, value)`: global counters by their Kea names, then per-subnet
    /// values as `subnet[ID].NAME`, the way Kea's `statistic-get-all` lists them.
    pub fn snapshot(&self) -> Vec<(String, i64)> {
        let mut out: Vec<(String, i64)> =
            Counter::ALL.iter().map(|c| (String::from(c.name()), self.get(*c) as i64)).collect();
        for s in self.subnets().iter() {
            out.push((format!("subnet[{}].total-addresses", s.id), s.total_addresses() as i64));
            out.push((format!("subnet[{}].assigned-addresses", s.id), s.assigned_addresses()));
            out.push((format!("subnet[{}].declined-addresses", s.id), s.declined_addresses()));
            out.push((format!("subnet[{}].reclaimed-leases", s.id), s.reclaimed_leases() as i64));
        }
        out
    }
}
