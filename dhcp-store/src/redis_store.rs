//! The shared key-value store: `redis://HOST[:PORT][/DB][?prefix=P]` (`rediss://` with TLS),
//! for several servers on one Redis.
//!
//! Every change is one Lua script, which Redis runs without interleaving any other command, so
//! a claim's check and its write are atomic across any number of servers. The connection
//! reconnects by itself with backoff after an outage; while Redis is away, calls fail with
//! `StoreError::Unavailable` and the engine answers nothing it could not store.
//!
//! # Keys (all under the prefix, `dhcp:` by default)
//! - `lease:ADDR` (ADDR as a host-order integer): hash `subnet`, `client` (hex), `hw` (hex),
//!   `state` (0 offered, 1 bound, 2 declined, 3 released, 4 expired), `deadline`, `free_at`,
//!   `host`;
//! - `client:SUBNET:CLIENT`: the address of the client's last lease in the subnet;
//! - `deadlines`: sorted set of addresses by deadline, for reclamation;
//! - `free:SUBNET`: sorted set of the subnet's leased addresses by when they are free, for reuse;
//! - `cursor:POOLKEY`: the offset of the pool's next never-used address.
//!
//! Lease keys expire in Redis as well (`EXPIRE`): a lease and its client index live until the
//! lease's deadline plus a day, so a Redis nobody reclaims from does not keep dead leases; the
//! indexes tolerate keys that expired under them.
//!
//! The scripts build key names from the prefix, which a standalone Redis allows and Redis
//! Cluster does not; this store is for a standalone Redis (with replicas).
//!
//! # Reservations and groups operators keep in Redis
//! With `host-source = "store"` in the config, the engine asks for the client's reservation
//! here, in the schema the small Go servers use (under `?hosts=H`, empty by default):
//! - `mac:aa:bb:cc:dd:ee:ff`: hash `ip`, `hostname`, `description`, `group`;
//! - `client:01:aa:bb:...` (a client identifier, hex bytes joined by colons): the same fields;
//! - `group:NAME`: hash `lease-time`, `gateway`, `dns`, `domain`, `ntp`, `prefix` (a prefix
//!   length, giving the subnet mask), `broadcast`; lists are comma- or space-separated. A host
//!   without a group, or naming one that does not exist, gets `group:default` if there is one.
//!
//! Each lookup sets the host's `last-seen` field to the Unix time of the request.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use dhcp_core::config::Group;
use dhcp_core::options::{OptionSet, OptionValue};
use dhcp_core::{ClientId, HwAddr, Lease, LeaseState, LeaseStore, PoolRef, StoreError, StoreHost, Timestamp};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script, Value};

use crate::codec::{self, hex, unhex};

/// The state codes the scripts compare and write, as Lua string constants (hash fields come
/// back from Redis as strings), taken from the codec so that Lua and Rust cannot disagree.
fn lua_codes() -> String {
    let expired = codec::encode(LeaseState::Expired);
    format!(
        "local OFFERED, BOUND, DECLINED = '{}', '{}', '{}'\nlocal EXPIRED, EXPIRED_FREE_AT = '{}', '{}'\n",
        codec::OFFERED,
        codec::BOUND,
        codec::DECLINED,
        expired.code,
        expired.free_at,
    )
}

/// Shared Lua: the availability rule and the write, used by the claim and allocate scripts.
/// Runs after [`lua_codes`].
const LIB: &str = r#"
local p = ARGV[1]
local now = tonumber(ARGV[2])

-- Leases expire in Redis too: a lease's keys live until the lease is over plus a day (address
-- affinity for returning clients, as Kea's hold-reclaimed-time), so a Redis that no server
-- reclaims from does not keep dead leases forever. Relative to the server's clock, not Redis's.
local retain = 86400
local function keep(key, until_at)
  redis.call('EXPIRE', key, math.max(until_at - now, 0) + retain)
end

-- 1: free for this client, 0: held by another (or declined), 2: an offer meeting the client's
-- own unexpired binding, which must be kept as it is.
local function claimable(addr, client, new_state)
  local cur = redis.call('HMGET', p .. 'lease:' .. addr, 'client', 'state', 'free_at', 'deadline')
  if not cur[1] then return 1 end
  local own = cur[1] == client and (cur[2] == OFFERED or cur[2] == BOUND)
  if tonumber(cur[3]) > now and not own then return 0 end
  if new_state == OFFERED and cur[2] == BOUND and own and tonumber(cur[4]) > now then return 2 end
  return 1
end

local function unlink(addr)
  local key = p .. 'lease:' .. addr
  local old = redis.call('HMGET', key, 'subnet', 'client')
  if old[1] then
    local ck = p .. 'client:' .. old[1] .. ':' .. old[2]
    if redis.call('GET', ck) == tostring(addr) then redis.call('DEL', ck) end
    redis.call('ZREM', p .. 'free:' .. old[1], addr)
  end
  redis.call('ZREM', p .. 'deadlines', addr)
  redis.call('DEL', key)
end

-- f: subnet, client, hw, state, deadline ('' for none), free_at, host ('-' for none)
local function put(addr, f)
  unlink(addr)
  local key = p .. 'lease:' .. addr
  redis.call('HSET', key, 'subnet', f[1], 'client', f[2], 'hw', f[3], 'state', f[4], 'free_at', f[6])
  if f[5] ~= '' then
    redis.call('HSET', key, 'deadline', f[5])
    redis.call('ZADD', p .. 'deadlines', f[5], addr)
  end
  if f[7] ~= '-' then redis.call('HSET', key, 'host', f[7]) end
  redis.call('SET', p .. 'client:' .. f[1] .. ':' .. f[2], addr)
  redis.call('ZADD', p .. 'free:' .. f[1], f[6], addr)
  keep(key, tonumber(f[6]))
  keep(p .. 'client:' .. f[1] .. ':' .. f[2], tonumber(f[6]))
end
"#;

/// ARGV: prefix, now, addr, then the seven lease fields. Returns 1 written, 0 refused, 2 kept.
const CLAIM: &str = r#"
local addr = ARGV[3]
local f = {ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]}
local verdict = claimable(addr, f[2], f[4])
if verdict == 1 then put(addr, f) end
return verdict
"#;

/// ARGV: prefix, now, pool key, pool size, the seven lease fields, then range bounds as pairs.
/// Returns the address granted, 0 when the pool is full, or -1 when it looked at its limit of
/// candidates without finding one (the caller calls again, so Redis is never held for long).
const ALLOCATE: &str = r#"
local f = {ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]}
local size = tonumber(ARGV[4])
local ranges = {}
for i = 12, #ARGV, 2 do table.insert(ranges, {tonumber(ARGV[i]), tonumber(ARGV[i + 1])}) end
local function nth(offset)
  for _, r in ipairs(ranges) do
    local n = r[2] - r[1] + 1
    if offset < n then return r[1] + offset end
    offset = offset - n
  end
  return nil
end
local function inside(addr)
  for _, r in ipairs(ranges) do if addr >= r[1] and addr <= r[2] then return true end end
  return false
end
local cursor = p .. 'cursor:' .. ARGV[3]
for _ = 1, 256 do
  local offset = tonumber(redis.call('GET', cursor) or '0')
  if offset >= size then break end
  redis.call('SET', cursor, offset + 1)
  local addr = nth(offset)
  if claimable(addr, f[2], f[4]) == 1 then put(addr, f); return addr end
end
if tonumber(redis.call('GET', cursor) or '0') < size then return -1 end
local free = redis.call('ZRANGEBYSCORE', p .. 'free:' .. f[1], '-inf', now, 'LIMIT', 0, 256)
for _, a in ipairs(free) do
  local addr = tonumber(a)
  if inside(addr) and claimable(addr, f[2], f[4]) == 1 then put(addr, f); return addr end
end
return 0
"#;

/// ARGV: prefix, now, addr, client, state, deadline, free_at. Returns 1 when updated.
const UPDATE_STATE: &str = r#"
local key = p .. 'lease:' .. ARGV[3]
if redis.call('HGET', key, 'client') ~= ARGV[4] then return 0 end
local subnet = redis.call('HGET', key, 'subnet')
redis.call('HSET', key, 'state', ARGV[5], 'free_at', ARGV[7])
if ARGV[6] ~= '' then
  redis.call('HSET', key, 'deadline', ARGV[6])
  redis.call('ZADD', p .. 'deadlines', ARGV[6], ARGV[3])
else
  redis.call('HDEL', key, 'deadline')
  redis.call('ZREM', p .. 'deadlines', ARGV[3])
end
redis.call('ZADD', p .. 'free:' .. subnet, ARGV[7], ARGV[3])
keep(key, tonumber(ARGV[7]))
keep(p .. 'client:' .. subnet .. ':' .. ARGV[4], tonumber(ARGV[7]))
return 1
"#;

/// ARGV: prefix, now, limit. Returns the reclaimed leases as they were: address then HGETALL.
const RECLAIM: &str = r#"
local due = redis.call('ZRANGEBYSCORE', p .. 'deadlines', '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, addr in ipairs(due) do
  local key = p .. 'lease:' .. addr
  local fields = redis.call('HGETALL', key)
  if #fields == 0 then
    redis.call('ZREM', p .. 'deadlines', addr)
  else
    table.insert(out, addr)
    table.insert(out, fields)
    if redis.call('HGET', key, 'state') == DECLINED then
      unlink(addr)
    else
      redis.call('HSET', key, 'state', EXPIRED, 'free_at', EXPIRED_FREE_AT)
      redis.call('HDEL', key, 'deadline')
      redis.call('ZREM', p .. 'deadlines', addr)
      local subnet = redis.call('HGET', key, 'subnet')
      redis.call('ZADD', p .. 'free:' .. subnet, EXPIRED_FREE_AT, addr)
      keep(key, now)
      keep(p .. 'client:' .. subnet .. ':' .. redis.call('HGET', key, 'client'), now)
    end
  end
end
return out
"#;

/// ARGV: prefix, now, addr. Returns 1 when there was a lease.
const DELETE: &str = r#"
if redis.call('EXISTS', p .. 'lease:' .. ARGV[3]) == 0 then return 0 end
unlink(ARGV[3])
return 1
"#;

#[derive(Clone)]
struct Scripts {
    claim: Script,
    allocate: Script,
    update_state: Script,
    reclaim: Script,
    delete: Script,
}

impl Scripts {
    fn new() -> Scripts {
        let codes = lua_codes();
        let with_lib = |body: &str| Script::new(&format!("{codes}{LIB}\n{body}"));
        Scripts {
            claim: with_lib(CLAIM),
            allocate: with_lib(ALLOCATE),
            update_state: with_lib(UPDATE_STATE),
            reclaim: with_lib(RECLAIM),
            delete: with_lib(DELETE),
        }
    }
}

/// Leases in Redis, shared by any number of servers.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    hosts: String,
    scripts: Scripts,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

fn failed(e: redis::RedisError) -> StoreError {
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() {
        StoreError::Unavailable(format!("redis: {e}"))
    } else {
        StoreError::Backend(format!("redis: {e}"))
    }
}

/// The seven lease fields the scripts take, in order.
fn fields(lease: &Lease) -> [String; 7] {
    let stored = codec::encode(lease.state);
    [
        lease.subnet.to_string(),
        hex(lease.client.as_bytes()),
        hex(lease.hwaddr.as_bytes()),
        stored.code.to_string(),
        stored.deadline.map(|d| d.to_string()).unwrap_or_default(),
        stored.free_at.to_string(),
        lease.hostname.as_deref().map_or_else(|| "-".to_owned(), hex_host),
    ]
}

/// Host names are stored hex-encoded so that `-` (none) can never be a real name.
fn hex_host(host: &str) -> String {
    hex(host.as_bytes())
}

fn lease_from_hash(addr: u32, hash: &HashMap<String, String>) -> Result<Lease, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("redis lease {}: {what}", Ipv4Addr::from(addr)));
    let get = |k: &str| hash.get(k).ok_or_else(|| corrupt(k));
    let num = |k: &str| get(k)?.parse::<u64>().map_err(|_| corrupt(k));
    let deadline = hash.get("deadline").map(|d| d.parse::<u64>()).transpose().map_err(|_| corrupt("deadline"))?;
    let code = u8::try_from(num("state")?).map_err(|_| corrupt("state"))?;
    let state = codec::decode(code, deadline).ok_or_else(|| corrupt("state"))?;
    let hostname = match hash.get("host") {
        None => None,
        Some(h) => Some(String::from_utf8(unhex(h).ok_or_else(|| corrupt("host"))?).map_err(|_| corrupt("host"))?),
    };
    Ok(Lease {
        addr: Ipv4Addr::from(addr),
        client: ClientId::from_bytes(&unhex(get("client")?).ok_or_else(|| corrupt("client"))?),
        hwaddr: HwAddr::new(&unhex(get("hw")?).ok_or_else(|| corrupt("hw"))?).ok_or_else(|| corrupt("hw"))?,
        subnet: u32::try_from(num("subnet")?).map_err(|_| corrupt("subnet"))?,
        state,
        hostname,
    })
}

impl RedisStore {
    /// Connects to the Redis a `redis://` (or, with TLS, `rediss://`) URL names. Parameters:
    /// `prefix=P` (default `dhcp:`) puts every lease key under P, so several deployments or
    /// tests can share one Redis; `hosts=H` (default empty) is where the operator's `mac:`,
    /// `client:` and `group:` hashes live; `tls-ca=PATH` checks a `rediss://` server against
    /// that CA certificate (PEM) instead of the system's roots. A `#insecure` fragment turns
    /// certificate checks off, as in the redis crate.
    pub async fn connect(url: &str) -> Result<RedisStore, StoreError> {
        let bad = |why: &str| StoreError::Backend(format!("redis URL {url:?}: {why}"));
        let (url_part, fragment) = match url.split_once('#') {
            Some((u, f)) => (u, format!("#{f}")),
            None => (url, String::new()),
        };
        let (base, query) = url_part.split_once('?').unwrap_or((url_part, ""));
        let (mut prefix, mut hosts, mut tls_ca) = ("dhcp:".to_owned(), String::new(), None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("prefix", p)) if !p.is_empty() => prefix = p.to_owned(),
                Some(("hosts", h)) => hosts = h.to_owned(),
                Some(("tls-ca", path)) if !path.is_empty() => tls_ca = Some(path.to_owned()),
                _ => return Err(bad(&format!("unknown parameter {pair:?} (prefix=, hosts=, tls-ca=)"))),
            }
        }
        let base = format!("{base}{fragment}");
        let client = match tls_ca {
            None => redis::Client::open(base.as_str()).map_err(failed)?,
            Some(path) => {
                if !base.starts_with("rediss://") {
                    return Err(bad("tls-ca= needs a rediss:// URL"));
                }
                let pem = std::fs::read(&path).map_err(|e| bad(&format!("tls-ca {path:?}: {e}")))?;
                let certs = redis::TlsCertificates { client_tls: None, root_cert: Some(pem) };
                redis::Client::build_with_tls(base.as_str(), certs).map_err(failed)?
            }
        };
        // Bounded waits: while Redis is away, a request fails within a few seconds (and the
        // engine answers nothing) instead of waiting for it; reconnection retries in the
        // background with a capped backoff.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(std::time::Duration::from_secs(1))
            .set_response_timeout(std::time::Duration::from_secs(2))
            .set_number_of_retries(3)
            .set_max_delay(1000);
        let conn = client.get_connection_manager_with_config(config).await.map_err(failed)?;
        Ok(RedisStore { conn, prefix, hosts, scripts: Scripts::new() })
    }

    async fn hash(&self, addr: u32) -> Result<Option<Lease>, StoreError> {
        let mut conn = self.conn.clone();
        let hash: HashMap<String, String> =
            conn.hgetall(format!("{}lease:{addr}", self.prefix)).await.map_err(failed)?;
        if hash.is_empty() { Ok(None) } else { lease_from_hash(addr, &hash).map(Some) }
    }
}

/// Splits a list field: commas or spaces.
fn items(text: &str) -> Vec<OptionValue> {
    text.split([',', ' ']).filter(|t| !t.is_empty()).map(|t| OptionValue::Text(t.to_owned())).collect()
}

/// A `group:` hash as the engine's group: its options and lease time.
fn group_from_hash(name: &str, hash: &HashMap<String, String>) -> Result<Group, StoreError> {
    let bad = |field: &str, why: String| StoreError::Corrupt(format!("redis group:{name} {field}: {why}"));
    let mut table = std::collections::BTreeMap::new();
    for (field, option) in [("gateway", "routers"), ("dns", "domain-name-servers"), ("ntp", "ntp-servers")] {
        if let Some(v) = hash.get(field).filter(|v| !v.trim().is_empty()) {
            table.insert(option.to_owned(), OptionValue::List(items(v)));
        }
    }
    if let Some(domain) = hash.get("domain").filter(|v| !v.is_empty()) {
        table.insert("domain-name".to_owned(), OptionValue::Text(domain.clone()));
    }
    if let Some(broadcast) = hash.get("broadcast").filter(|v| !v.is_empty()) {
        table.insert("broadcast-address".to_owned(), OptionValue::Text(broadcast.clone()));
    }
    if let Some(prefix) = hash.get("prefix").filter(|v| !v.is_empty()) {
        let len: u32 = prefix.trim_start_matches('/').parse().map_err(|_| bad("prefix", prefix.clone()))?;
        let mask = u32::MAX.checked_shl(32 - len.min(32)).unwrap_or(0);
        if len > 32 {
            return Err(bad("prefix", prefix.clone()));
        }
        table.insert("subnet-mask".to_owned(), OptionValue::Text(Ipv4Addr::from(mask).to_string()));
    }
    let options = OptionSet::from_config(&table).map_err(|(option, why)| bad(&option, why))?;
    let lease_time = match hash.get("lease-time").filter(|v| !v.is_empty()) {
        None => None,
        Some(t) => Some(t.parse::<u32>().ok().filter(|t| *t > 0).ok_or_else(|| bad("lease-time", t.clone()))?),
    };
    Ok(Group { name: name.to_owned(), options, lease_time, matcher: None })
}

fn colon_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn hash_from_values(values: &[Value]) -> HashMap<String, String> {
    values
        .chunks(2)
        .filter_map(|kv| match kv {
            [k, v] => Some((redis::from_redis_value(k).ok()?, redis::from_redis_value(v).ok()?)),
            _ => None,
        })
        .collect()
}

impl RedisStore {
    async fn host_hash(&self, key: &str) -> Result<HashMap<String, String>, StoreError> {
        let mut conn = self.conn.clone();
        conn.hgetall(key).await.map_err(failed)
    }

    async fn group(&self, name: &str) -> Result<Option<Group>, StoreError> {
        let hash = self.host_hash(&format!("{}group:{name}", self.hosts)).await?;
        if hash.is_empty() { Ok(None) } else { group_from_hash(name, &hash).map(Some) }
    }
}

impl LeaseStore for RedisStore {
    async fn host(
        &self,
        hw: &HwAddr,
        client_id: Option<&[u8]>,
        now: Timestamp,
    ) -> Result<Option<StoreHost>, StoreError> {
        let mut key = format!("{}mac:{}", self.hosts, colon_hex(hw.as_bytes()));
        let mut hash = self.host_hash(&key).await?;
        if hash.is_empty()
            && let Some(id) = client_id
        {
            key = format!("{}client:{}", self.hosts, colon_hex(id));
            hash = self.host_hash(&key).await?;
        }
        if hash.is_empty() {
            return Ok(None);
        }
        let mut conn = self.conn.clone();
        let _: () = conn.hset(&key, "last-seen", now.as_secs()).await.map_err(failed)?;
        let ip_address = match hash.get("ip").filter(|ip| !ip.is_empty()) {
            None => None,
            Some(ip) => Some(ip.parse().map_err(|_| StoreError::Corrupt(format!("redis {key} ip: {ip:?}")))?),
        };
        let named = hash.get("group").filter(|g| !g.is_empty());
        let group = match named {
            Some(name) => match self.group(name).await? {
                Some(group) => Some(group),
                None => self.group("default").await?,
            },
            None => self.group("default").await?,
        };
        let hostname = hash.get("hostname").filter(|h| !h.is_empty()).cloned();
        Ok(Some(StoreHost::new(ip_address, hostname, group)))
    }

    async fn lease_by_client(&self, subnet: u32, client: &ClientId) -> Result<Option<Lease>, StoreError> {
        let mut conn = self.conn.clone();
        let key = format!("{}client:{subnet}:{}", self.prefix, hex(client.as_bytes()));
        let addr: Option<u32> = conn.get(key).await.map_err(failed)?;
        let Some(addr) = addr else { return Ok(None) };
        // The index may lag a concurrent change of hands; trust only a matching lease.
        Ok(self.hash(addr).await?.filter(|l| l.client == *client && l.subnet == subnet))
    }

    async fn lease_by_addr(&self, addr: Ipv4Addr) -> Result<Option<Lease>, StoreError> {
        self.hash(addr.into()).await
    }

    async fn claim(&self, lease: &Lease, now: Timestamp) -> Result<Option<Lease>, StoreError> {
        let mut conn = self.conn.clone();
        let mut call = self.scripts.claim.prepare_invoke();
        call.arg(&self.prefix).arg(now.as_secs()).arg(u32::from(lease.addr));
        for field in fields(lease) {
            call.arg(field);
        }
        let verdict: i64 = call.invoke_async(&mut conn).await.map_err(failed)?;
        match verdict {
            1 => Ok(Some(lease.clone())),
            2 => self.hash(lease.addr.into()).await,
            _ => Ok(None),
        }
    }

    async fn allocate(&self, pool: PoolRef<'_>, lease: &Lease, now: Timestamp) -> Result<Option<Lease>, StoreError> {
        let mut conn = self.conn.clone();
        loop {
            let mut call = self.scripts.allocate.prepare_invoke();
            call.arg(&self.prefix).arg(now.as_secs()).arg(pool.key.to_string()).arg(pool.size());
            for field in fields(lease) {
                call.arg(field);
            }
            for range in pool.ranges {
                call.arg(*range.start()).arg(*range.end());
            }
            let got: i64 = call.invoke_async(&mut conn).await.map_err(failed)?;
            match got {
                -1 => continue,
                0 => return Ok(None),
                addr => {
                    let addr = u32::try_from(addr).map_err(|_| StoreError::Corrupt(format!("redis address {addr}")))?;
                    return Ok(Some(Lease { addr: Ipv4Addr::from(addr), ..lease.clone() }));
                }
            }
        }
    }

    async fn update_state(
        &self,
        addr: Ipv4Addr,
        client: &ClientId,
        state: LeaseState,
    ) -> Result<Option<Lease>, StoreError> {
        let mut conn = self.conn.clone();
        let probe = Lease { addr, client: client.clone(), hwaddr: HwAddr::default(), subnet: 0, state, hostname: None };
        let f = fields(&probe);
        let mut call = self.scripts.update_state.prepare_invoke();
        call.arg(&self.prefix).arg(0).arg(u32::from(addr)).arg(&f[1]).arg(&f[3]).arg(&f[4]).arg(&f[5]);
        let updated: i64 = call.invoke_async(&mut conn).await.map_err(failed)?;
        if updated == 1 { self.hash(addr.into()).await } else { Ok(None) }
    }

    async fn reclaim_expired(&self, now: Timestamp, limit: usize) -> Result<Vec<Lease>, StoreError> {
        let mut conn = self.conn.clone();
        let mut call = self.scripts.reclaim.prepare_invoke();
        call.arg(&self.prefix).arg(now.as_secs()).arg(limit);
        let out: Vec<Value> = call.invoke_async(&mut conn).await.map_err(failed)?;
        let mut leases = Vec::new();
        for pair in out.chunks(2) {
            let [addr, Value::Array(fields)] = pair else {
                return Err(StoreError::Corrupt("redis reclaim answer".into()));
            };
            let addr: u32 = redis::from_redis_value(addr).map_err(failed)?;
            leases.push(lease_from_hash(addr, &hash_from_values(fields))?);
        }
        Ok(leases)
    }

    async fn delete(&self, addr: Ipv4Addr) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let mut call = self.scripts.delete.prepare_invoke();
        call.arg(&self.prefix).arg(0).arg(u32::from(addr));
        let deleted: i64 = call.invoke_async(&mut conn).await.map_err(failed)?;
        Ok(deleted == 1)
    }

    async fn list(&self, subnet: Option<u32>) -> Result<Vec<Lease>, StoreError> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}lease:*", self.prefix);
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(failed)?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut leases = Vec::new();
        for key in keys {
            let Some(addr) = key.rsplit(':').next().and_then(|a| a.parse::<u32>().ok()) else { continue };
            if let Some(lease) = self.hash(addr).await?
                && subnet.is_none_or(|s| lease.subnet == s)
            {
                leases.push(lease);
            }
        }
        leases.sort_by_key(|l| l.addr);
        Ok(leases)
    }
}
