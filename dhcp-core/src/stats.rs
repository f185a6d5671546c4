//! Counters, named as ISC Kea names them so dashboards built for Kea carry over.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::config::Config;

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
}

/// Per-subnet gauges and counters.
#[derive(Debug)]
pub struct SubnetStats {
    /// The subnet's configured id.
    pub id: u32,
    /// Dynamic addresses in its pools.
    pub total_addresses: u64,
    assigned: AtomicI64,
    declined: AtomicI64,
    reclaimed: AtomicU64,
}

impl SubnetStats {
    /// Leases bound through this server and not yet released or expired.
    pub fn assigned_addresses(&self) -> i64 {
        self.assigned.load(Ordering::Relaxed)
    }

    /// Addresses in decline probation.
    pub fn declined_addresses(&self) -> i64 {
        self.declined.load(Ordering::Relaxed)
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
    subnets: Vec<SubnetStats>,
}

impl Stats {
    /// Zeroed statistics for the subnets of `config`.
    pub fn new(config: &Config) -> Self {
        Stats {
            counters: Counter::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            subnets: config
                .subnets
                .iter()
                .map(|s| SubnetStats {
                    id: s.id,
                    total_addresses: s.total_addresses(),
                    assigned: AtomicI64::new(0),
                    declined: AtomicI64::new(0),
                    reclaimed: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    /// Adds one to `counter`.
    pub fn bump(&self, counter: Counter) {
        self.counters[counter as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The value of `counter`.
    pub fn get(&self, counter: Counter) -> u64 {
        self.counters[counter as usize].load(Ordering::Relaxed)
    }

    /// The stats of subnet `id`.
    pub fn subnet(&self, id: u32) -> Option<&SubnetStats> {
        self.subnets.iter().find(|s| s.id == id)
    }

    /// Every subnet's stats.
    pub fn subnets(&self) -> &[SubnetStats] {
        &self.subnets
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
        for s in &self.subnets {
            out.push((format!("subnet[{}].total-addresses", s.id), s.total_addresses as i64));
            out.push((format!("subnet[{}].assigned-addresses", s.id), s.assigned_addresses()));
            out.push((format!("subnet[{}].declined-addresses", s.id), s.declined_addresses()));
            out.push((format!("subnet[{}].reclaimed-leases", s.id), s.reclaimed_leases() as i64));
        }
        out
    }
}
