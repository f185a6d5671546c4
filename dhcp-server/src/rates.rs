//! Packet rates for the portal's dashboard: the engine's counters sampled every few seconds,
//! and the rate over the last minute.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use dhcp_core::{Counter, Stats};

/// How often the counters are sampled.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// How far back the rate looks.
const WINDOW: Duration = Duration::from_secs(60);

/// One sample: when, packets received, ACKs sent, packets dropped.
type Sample = (Instant, [u64; 3]);

/// The samples of the last minute.
#[derive(Debug, Default)]
pub(crate) struct PacketRates {
    samples: Mutex<VecDeque<Sample>>,
}

/// Packets a second over the last minute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rates {
    pub(crate) received: f64,
    pub(crate) acks: f64,
    pub(crate) dropped: f64,
    /// The seconds the rates are over.
    pub(crate) over: f64,
}

impl PacketRates {
    /// Takes a sample of `stats` at `now`, forgetting those older than the window.
    pub(crate) fn sample(&self, stats: &Stats, now: Instant) {
        let counts = [stats.get(Counter::Received), stats.get(Counter::AckSent), stats.get(Counter::ReceiveDrop)];
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        samples.push_back((now, counts));
        while samples.len() > 2 && samples.front().is_some_and(|(t, _)| now.duration_since(*t) > WINDOW) {
            samples.pop_front();
        }
    }

    /// The rates between the oldest and the newest sample; none before two samples.
    pub(crate) fn rates(&self) -> Option<Rates> {
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        let ((t0, first), (t1, last)) = (samples.front()?, samples.back()?);
        let over = t1.duration_since(*t0).as_secs_f64();
        if over <= 0.0 {
            return None;
        }
        let rate = |i: usize| last[i].saturating_sub(first[i]) as f64 / over;
        Some(Rates { received: rate(0), acks: rate(1), dropped: rate(2), over })
    }
}
