//! The Go Redis DHCP server's dynamic pool: the `pool` hash, address → MAC of the client it
//! was given to, `""` while free. The Go server gives a client without an entry the first free
//! address it finds, for good: it writes the MAC into `pool` and a `mac:` entry with `ip`,
//! `description` (`dynamic:` and the client's host name), `dynamic` (`1`) and `ts`, and the
//! client is a known host from then on.
//!
//! Here a lookup only proposes free addresses and writes nothing, so that a flood of
//! DISCOVERs from made-up MACs takes no address for good: the engine offers one (held to its
//! offer limits like any dynamic offer) and takes it in the hash, with the Go server's
//! entry, by [`TAKE`] only when it binds it for the client it offered it to.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use dhcp_core::{HostQuery, StoreError};
use redis::Script;
use redis::aio::ConnectionLike;

use crate::redis_error::failed;

/// The pool hash's key, under the `hosts` prefix.
pub(crate) const POOL_KEY: &str = "pool";

/// How many free addresses one client is proposed: a few, so that two clients whose MACs pick
/// the same place, or an address another server has just offered, still leave it one.
const PROPOSED: usize = 4;

/// Takes an address of the pool for a client, atomically: only when the pool holds it free or
/// already for this MAC, and the client's `mac:` entry gives no other address. KEYS: the pool,
/// the client's `mac:` entry. ARGV: the address, the MAC (lower-case colon hex), the
/// description, the Unix time. Returns 1 when taken, 0 when not.
const TAKE: &str = r#"
local holder = redis.call('HGET', KEYS[1], ARGV[1])
if not holder then return 0 end
if not holder:match('^%s*$') and string.lower(holder) ~= ARGV[2] then return 0 end
local ip = redis.call('HGET', KEYS[2], 'ip')
if ip and ip ~= '' and ip ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], 'ip', ARGV[1], 'description', ARGV[3], 'dynamic', '1', 'ts', ARGV[4])
return 1
"#;

/// The addresses of `pool` (the hash's fields and values) proposed to the client with MAC
/// `mac` (lower-case colon hex), best first: one the pool already gives it (its `mac:` entry
/// deleted since), the address it asks for when free, then free addresses from a place its MAC
/// chooses. The same MAC is proposed the same addresses while the pool stays as it is, so its
/// retransmissions and two servers sharing the hash agree; different MACs spread over the pool.
/// Fields that are not IPv4 addresses are not the pool's and are passed over.
pub(crate) fn proposals(pool: &HashMap<String, String>, mac: &str, requested: Option<Ipv4Addr>) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut free = Vec::new();
    for (field, holder) in pool {
        let Ok(addr) = field.trim().parse::<Ipv4Addr>() else { continue };
        let holder = holder.trim();
        if holder.is_empty() {
            free.push(addr);
        } else if holder.eq_ignore_ascii_case(mac) && out.is_empty() {
            out.push(addr);
        }
    }
    if let Some(asked) = requested.filter(|a| free.contains(a) && !out.contains(a)) {
        out.push(asked);
    }
    if free.is_empty() {
        return out;
    }
    free.sort_unstable();
    let start = (fnv1a(mac.as_bytes()) % free.len() as u64) as usize;
    let around = free[start..].iter().chain(&free[..start]);
    let picks: Vec<Ipv4Addr> = around.filter(|a| !out.contains(a)).take(PROPOSED).copied().collect();
    out.extend(picks);
    out
}

/// FNV-1a: a hash that stays the same across processes and versions (the standard library's
/// does not promise to), so that servers sharing the pool pick alike.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The description the Go server writes on the `mac:` entry of a client its pool served.
fn description(query: &HostQuery<'_>) -> String {
    let name = query.host_name.map(String::from_utf8_lossy).unwrap_or_default();
    format!("dynamic:{name}")
}

/// Takes `addr` of the pool under `hosts` for the client `query` names, with `mac` its key's
/// colon hex, over `conn`: whether it is the client's now.
pub(crate) async fn take<C: ConnectionLike + Send>(
    conn: &mut C,
    hosts: &str,
    mac: &str,
    query: &HostQuery<'_>,
    addr: Ipv4Addr,
) -> Result<bool, StoreError> {
    let taken: i64 = Script::new(TAKE)
        .key(format!("{hosts}{POOL_KEY}"))
        .key(format!("{hosts}mac:{mac}"))
        .arg(addr.to_string())
        .arg(mac)
        .arg(description(query))
        .arg(query.now.as_secs())
        .invoke_async(conn)
        .await
        .map_err(failed)?;
    Ok(taken == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(entries: &[(&str, &str)]) -> HashMap<String, String> {
        entries.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn addr(text: &str) -> Ipv4Addr {
        text.parse().unwrap_or(Ipv4Addr::UNSPECIFIED)
    }

    #[test]
    fn only_free_addresses_are_proposed_and_the_same_for_the_same_mac() {
        let pool = pool(&[
            ("10.0.0.1", ""),
            ("10.0.0.2", "02:00:00:00:00:09"),
            ("10.0.0.3", " "),
            ("10.0.0.4", ""),
            ("not-an-address", ""),
        ]);
        let first = proposals(&pool, "02:00:00:00:00:01", None);
        assert_eq!(first.len(), 3, "{first:?}");
        assert!(!first.contains(&addr("10.0.0.2")), "held by another MAC: {first:?}");
        assert_eq!(first, proposals(&pool, "02:00:00:00:00:01", None), "deterministic");
        let starts: std::collections::HashSet<Ipv4Addr> =
            (0..32).map(|i| proposals(&pool, &format!("02:00:00:00:01:{i:02x}"), None)[0]).collect();
        assert_eq!(starts.len(), 3, "MACs spread over every free address: {starts:?}");
    }

    #[test]
    fn the_clients_own_address_comes_first_then_the_one_it_asks_for() {
        let pool = pool(&[("10.0.0.1", ""), ("10.0.0.2", "02:00:00:00:00:01"), ("10.0.0.3", ""), ("10.0.0.4", "")]);
        let got = proposals(&pool, "02:00:00:00:00:01", Some(addr("10.0.0.3")));
        assert_eq!(got[..2], [addr("10.0.0.2"), addr("10.0.0.3")]);
        let upper = super::tests::pool(&[("10.0.0.7", "02:00:00:00:00:0A"), ("10.0.0.8", "")]);
        assert_eq!(proposals(&upper, "02:00:00:00:00:0a", None)[0], addr("10.0.0.7"), "a MAC matches in any case");
        let asked_taken = proposals(&pool, "02:00:00:00:00:05", Some(addr("10.0.0.2")));
        assert!(!asked_taken.contains(&addr("10.0.0.2")), "an address held by another is not proposed");
    }

    #[test]
    fn a_full_pool_proposes_nothing_and_at_most_a_few_are_proposed() {
        let full = pool(&[("10.0.0.1", "02:00:00:00:00:07")]);
        assert!(proposals(&full, "02:00:00:00:00:01", Some(addr("10.0.0.1"))).is_empty());
        let big: HashMap<String, String> = (1..=200).map(|i| (format!("10.0.1.{i}"), String::new())).collect();
        assert_eq!(proposals(&big, "02:00:00:00:00:01", None).len(), PROPOSED);
    }
}
