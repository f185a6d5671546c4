//! Rate limits on client packets, checked before the engine sees them: token buckets per
//! client (option 61, else chaddr), per relay (giaddr), per relay circuit (option 82's
//! circuit-id, relayed packets only) and for the whole server, as Kea's limits hook and dora's
//! per-MAC limits do. A packet over any limit is dropped and counted under its limit.
//!
//! ```toml
//! [limits]
//! per-client = { rate = 10, burst = 20 }      # packets per second, and how many at once
//! per-relay = { rate = 5000, burst = 10000 }
//! per-circuit-id = { rate = 20 }              # burst defaults to the rate (at least 1)
//! server = { rate = 50000 }
//! tracked = 100000                            # keys followed per kind (a flood of new MACs
//!                                             # past it is left to the server-wide limit)
//! ```

use std::collections::HashMap;
use std::hash::Hash;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use dhcp_core::wire::{Packet, code};
use dhcp_net::Throttle;
use serde::Deserialize;
use tracing::warn;

use crate::stripes::{Striped, per_stripe};

use dhcp_core::ConfigError;

/// Option 82's circuit-id sub-option.
const CIRCUIT_ID: u8 = 1;

/// One token bucket's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens (packets) added per second.
    pub per_second: f64,
    /// The most tokens a bucket holds: how many packets may come at once.
    pub burst: f64,
}

// Rates are checked finite when read, so equality is total.
impl Eq for Rate {}

/// The `[limits]` table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LimitsConfig {
    /// Per client: option 61 when sent, else the hardware address.
    pub per_client: Option<Rate>,
    /// Per relay agent (giaddr).
    pub per_relay: Option<Rate>,
    /// Per relay circuit (option 82 circuit-id, relayed packets only).
    pub per_circuit_id: Option<Rate>,
    /// All client packets together.
    pub server: Option<Rate>,
    /// How many keys of each kind are followed at most.
    pub tracked: usize,
}

impl LimitsConfig {
    /// Whether any limit is set.
    pub fn is_empty(&self) -> bool {
        self.per_client.is_none() && self.per_relay.is_none() && self.per_circuit_id.is_none() && self.server.is_none()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawLimits {
    per_client: Option<RawRate>,
    per_relay: Option<RawRate>,
    per_circuit_id: Option<RawRate>,
    server: Option<RawRate>,
    tracked: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    rate: f64,
    burst: Option<f64>,
}

/// The `[limits]` table, checked; errors name the field.
pub(crate) fn from_raw(raw: RawLimits) -> Result<LimitsConfig, ConfigError> {
    let rate = |name: &str, raw: Option<RawRate>| -> Result<Option<Rate>, ConfigError> {
        let Some(raw) = raw else { return Ok(None) };
        let bad = |field: &str, reason: String| ConfigError { path: format!("limits.{name}.{field}"), reason };
        if !(raw.rate.is_finite() && raw.rate > 0.0) {
            return Err(bad("rate", format!("{}: packets per second, above 0", raw.rate)));
        }
        let burst = raw.burst.unwrap_or(raw.rate.max(1.0));
        if !(burst.is_finite() && burst >= 1.0) {
            return Err(bad("burst", format!("{burst}: at least 1 packet")));
        }
        Ok(Some(Rate { per_second: raw.rate, burst }))
    };
    let tracked = raw.tracked.unwrap_or(100_000);
    if tracked == 0 {
        return Err(ConfigError { path: "limits.tracked".into(), reason: "must be at least 1".into() });
    }
    Ok(LimitsConfig {
        per_client: rate("per-client", raw.per_client)?,
        per_relay: rate("per-relay", raw.per_relay)?,
        per_circuit_id: rate("per-circuit-id", raw.per_circuit_id)?,
        server: rate("server", raw.server)?,
        tracked,
    })
}

/// Which limit dropped a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `per-client`.
    Client,
    /// `per-relay`.
    Relay,
    /// `per-circuit-id`.
    CircuitId,
    /// `server`.
    Server,
}

impl Limit {
    /// Every limit, in the order of [`Limits::dropped`].
    pub const ALL: [Limit; 4] = [Limit::Client, Limit::Relay, Limit::CircuitId, Limit::Server];

    /// Its name in statistics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Client => "client",
            Limit::Relay => "relay",
            Limit::CircuitId => "circuit-id",
            Limit::Server => "server",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket { tokens: rate.burst, at: now }
    }

    /// Refills for the time passed and takes one token when there is one.
    fn take(&mut self, rate: Rate, now: Instant) -> bool {
        let passed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + passed * rate.per_second).min(rate.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether it would be full by `now`: forgetting it changes nothing.
    fn idle(&self, rate: Rate, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * rate.per_second >= rate.burst
    }
}

/// Buckets by key, at most `tracked` of them.
#[derive(Debug)]
struct Buckets<K> {
    rate: Rate,
    map: HashMap<K, Bucket>,
    tracked: usize,
    /// When full buckets were last swept out (at most once a second).
    swept: Option<Instant>,
}

impl<K: Hash + Eq> Buckets<K> {
    fn new(rate: Rate, tracked: usize) -> Self {
        Buckets { rate, map: HashMap::new(), tracked, swept: None }
    }

    fn take(&mut self, key: K, now: Instant) -> bool {
        let rate = self.rate;
        if let Some(bucket) = self.map.get_mut(&key) {
            return bucket.take(rate, now);
        }
        if self.map.len() >= self.tracked {
            if self.swept.is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1)) {
                self.swept = Some(now);
                self.map.retain(|_, b| !b.idle(rate, now));
            }
            if self.map.len() >= self.tracked {
                // A flood of new keys: past what is followed they share the server-wide limit.
                return true;
            }
        }
        let mut bucket = Bucket::full(rate, now);
        let allowed = bucket.take(rate, now);
        self.map.insert(key, bucket);
        allowed
    }
}

/// A relay circuit: the relay's address and option 82's circuit-id.
type Circuit = (Ipv4Addr, Vec<u8>);

/// The rate limits of a running server, and what they dropped.
///
/// The buckets by key are kept in stripes (each with its share of `tracked`), so that
/// datagrams of different clients, relays or circuits seldom take the same lock; the
/// server-wide bucket is one, as the limit is.
#[derive(Debug)]
pub struct Limits {
    client: Option<Striped<Buckets<Vec<u8>>>>,
    relay: Option<Striped<Buckets<Ipv4Addr>>>,
    circuit: Option<Striped<Buckets<Circuit>>>,
    server: Option<(Rate, Mutex<Bucket>)>,
    dropped: [AtomicU64; 4],
    /// The drops' warning, at most one a period (with how many came since).
    log: Throttle,
}

impl Limits {
    /// Limits as `config` sets them.
    pub fn new(config: &LimitsConfig) -> Limits {
        let now = Instant::now();
        let tracked = per_stripe(config.tracked);
        Limits {
            client: config.per_client.map(|r| Striped::new(|| Buckets::new(r, tracked))),
            relay: config.per_relay.map(|r| Striped::new(|| Buckets::new(r, tracked))),
            circuit: config.per_circuit_id.map(|r| Striped::new(|| Buckets::new(r, tracked))),
            server: config.server.map(|r| (r, Mutex::new(Bucket::full(r, now)))),
            dropped: Default::default(),
            log: Throttle::default(),
        }
    }

    /// Whether `packet` may go on to the engine at `now`; the limit that stopped it otherwise
    /// (counted, and logged at most every ten seconds). The finer limits come first, so that a
    /// client over its own limit does not use up the server's.
    pub fn check(&self, packet: &Packet<'_>, now: Instant) -> Result<(), Limit> {
        let relay = packet.giaddr();
        let relayed = !relay.is_unspecified();
        let verdict = (|| {
            if let Some(buckets) = &self.client {
                let id = packet.option(code::CLIENT_IDENTIFIER).filter(|id| !id.is_empty());
                let key = id.map_or_else(|| packet.chaddr().to_vec(), |id| id.into_owned());
                if !buckets.lock(&key).take(key, now) {
                    return Err(Limit::Client);
                }
            }
            if relayed {
                if let Some(buckets) = &self.circuit
                    && let Some(circuit) = circuit_id(packet)
                {
                    let key = (relay, circuit);
                    if !buckets.lock(&key).take(key, now) {
                        return Err(Limit::CircuitId);
                    }
                }
                if let Some(buckets) = &self.relay
                    && !buckets.lock(&relay).take(relay, now)
                {
                    return Err(Limit::Relay);
                }
            }
            if let Some((rate, bucket)) = &self.server
                && !bucket.lock().unwrap_or_else(PoisonError::into_inner).take(*rate, now)
            {
                return Err(Limit::Server);
            }
            Ok(())
        })();
        if let Err(limit) = verdict {
            let index = Limit::ALL.iter().position(|l| *l == limit).unwrap_or(0);
            self.dropped[index].fetch_add(1, Ordering::Relaxed);
            if let Some(held_back) = self.log.allow(now) {
                warn!(limit = limit.as_str(), dropped = held_back + 1, "packets dropped over rate limits");
            }
        }
        verdict
    }

    /// Packets dropped over each limit since start, in the order of [`Limit::ALL`].
    pub fn dropped(&self) -> [u64; 4] {
        std::array::from_fn(|i| self.dropped[i].load(Ordering::Relaxed))
    }

    /// The statistics, by the names `GET /api/v1/stats` shows: `pkt4-rate-limited` and one
    /// per limit.
    pub fn stats(&self) -> Vec<(String, i64)> {
        let dropped = self.dropped();
        let mut out =
            vec![("pkt4-rate-limited".to_owned(), i64::try_from(dropped.iter().sum::<u64>()).unwrap_or(i64::MAX))];
        for (limit, count) in Limit::ALL.iter().zip(dropped) {
            out.push((format!("pkt4-rate-limited-{}", limit.as_str()), i64::try_from(count).unwrap_or(i64::MAX)));
        }
        out
    }
}

/// Option 82's circuit-id, when the packet carries one.
fn circuit_id(packet: &Packet<'_>) -> Option<Vec<u8>> {
    let info = packet.option(code::RELAY_AGENT_INFORMATION)?;
    let mut rest: &[u8] = &info;
    while let [sub, len, tail @ ..] = rest {
        let value = tail.get(..usize::from(*len))?;
        if *sub == CIRCUIT_ID {
            return Some(value.to_vec());
        }
        rest = &tail[usize::from(*len)..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DISCOVER from `mac`, relayed by `giaddr` with `circuit` when given.
    fn discover(mac: u8, giaddr: [u8; 4], circuit: Option<&[u8]>) -> Vec<u8> {
        let mut p = vec![0u8; 240];
        p[0] = 1;
        p[1] = 1;
        p[2] = 6;
        p[24..28].copy_from_slice(&giaddr);
        p[28..34].copy_from_slice(&[2, 0, 0, 0, 0, mac]);
        p[236..240].copy_from_slice(&[99, 130, 83, 99]);
        p.extend_from_slice(&[53, 1, 1]);
        if let Some(circuit) = circuit {
            p.extend_from_slice(&[82, circuit.len() as u8 + 2, 1, circuit.len() as u8]);
            p.extend_from_slice(circuit);
        }
        p.push(255);
        p
    }

    fn config(text: &str) -> Result<LimitsConfig, ConfigError> {
        from_raw(toml::from_str(text).expect("a table"))
    }

    fn check(limits: &Limits, datagram: &[u8], now: Instant) -> Result<(), Limit> {
        limits.check(&Packet::parse(datagram).expect("parses"), now)
    }

    #[test]
    fn a_client_over_its_rate_is_dropped_while_others_pass() {
        let limits = Limits::new(&config("per-client = { rate = 2, burst = 3 }").expect("valid"));
        let t0 = Instant::now();
        let noisy = discover(1, [0; 4], None);
        let passed = (0..10).filter(|_| check(&limits, &noisy, t0).is_ok()).count();
        assert_eq!(passed, 3, "the burst, then nothing");
        assert_eq!(check(&limits, &discover(2, [0; 4], None), t0), Ok(()), "another client passes");
        assert_eq!(check(&limits, &noisy, t0 + Duration::from_millis(500)), Ok(()), "one token after 0.5 s at 2/s");
        assert_eq!(check(&limits, &noisy, t0 + Duration::from_millis(500)), Err(Limit::Client));
        assert_eq!(limits.dropped(), [8, 0, 0, 0]);
        assert!(limits.stats().contains(&("pkt4-rate-limited".to_owned(), 8)));
    }

    #[test]
    fn relays_circuits_and_the_server_have_their_own_buckets() {
        let limits = Limits::new(
            &config("per-relay = { rate = 1, burst = 4 }\nper-circuit-id = { rate = 1, burst = 2 }\nserver = { rate = 1, burst = 6 }")
                .expect("valid"),
        );
        let t0 = Instant::now();
        let relay = [10, 0, 0, 1];
        let port1 = |mac| discover(mac, relay, Some(b"port-1"));
        assert_eq!(check(&limits, &port1(1), t0), Ok(()));
        assert_eq!(check(&limits, &port1(2), t0), Ok(()));
        assert_eq!(check(&limits, &port1(3), t0), Err(Limit::CircuitId), "a circuit's own limit");
        let port2 = |mac| discover(mac, relay, Some(b"port-2"));
        assert_eq!(check(&limits, &port2(4), t0), Ok(()));
        assert_eq!(check(&limits, &port2(5), t0), Ok(()));
        let port3 = discover(6, relay, Some(b"port-3"));
        assert_eq!(check(&limits, &port3, t0), Err(Limit::Relay), "the relay's four are used");
        // Option 82 from a client with no relay is not a circuit: only the server limit applies.
        assert_eq!(check(&limits, &discover(7, [0; 4], Some(b"port-1")), t0), Ok(()));
        assert_eq!(check(&limits, &discover(8, [0; 4], None), t0), Ok(()));
        assert_eq!(check(&limits, &discover(9, [0; 4], None), t0), Err(Limit::Server), "six in all");
        assert_eq!(limits.dropped(), [0, 1, 1, 1]);
    }

    #[test]
    fn a_flood_of_new_clients_past_tracked_falls_to_the_server_limit() {
        let limits = Limits::new(&config("per-client = { rate = 1 }\ntracked = 4").expect("valid"));
        let t0 = Instant::now();
        for mac in 0..50 {
            assert_eq!(check(&limits, &discover(mac, [0; 4], None), t0), Ok(()));
        }
        // A client followed before the table filled is still held to its limit.
        assert_eq!(check(&limits, &discover(0, [0; 4], None), t0), Err(Limit::Client));
        // A second later the idle buckets are swept and new clients are followed again.
        let later = t0 + Duration::from_secs(2);
        assert_eq!(check(&limits, &discover(60, [0; 4], None), later), Ok(()));
        assert_eq!(check(&limits, &discover(60, [0; 4], None), later), Err(Limit::Client));
    }

    #[test]
    fn refuses_rates_that_cannot_work_naming_the_field() {
        for (text, field) in [
            ("per-client = { rate = 0 }", "limits.per-client.rate"),
            ("server = { rate = -1 }", "limits.server.rate"),
            ("per-relay = { rate = 10, burst = 0.5 }", "limits.per-relay.burst"),
            ("tracked = 0", "limits.tracked"),
        ] {
            assert_eq!(config(text).expect_err(text).path, field);
        }
        assert!(config("").expect("empty").is_empty());
    }
}
