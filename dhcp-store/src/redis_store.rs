//! The shared key-value store: `redis://HOST[:PORT][/DB][?prefix=P]` (`rediss://` with TLS),
//! for several servers on one Redis, or `redis+sentinel://` for a Redis whose master Sentinel
//! fails over.
//!
//! Every change is one Lua script, which Redis runs without interleaving any other command, so
//! a claim's check and its write are atomic across any number of servers. The connection
//! reconnects by itself with backoff after an outage; while Redis is away, calls fail with
//! `StoreError::Unavailable` and the engine answers nothing it could not store.
//!
//! # Failover: Redis Sentinel
//! `redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/MASTER[?prefix=P&hosts=H&db=N&sentinel-password=S]`
//! names the sentinels (port 26379 when left out) and the name they monitor the master under
//! (`sentinel monitor MASTER ...`). The redis crate has no URL of its own for Sentinel; this is
//! the form other clients use, and `/MASTER/DB` is taken for `db=N` as they take it. The user
//! and password are the master's (and its replicas'); `sentinel-password` is the sentinels' own,
//! when they have one.
//!
//! The store asks the sentinels for the master (the first sentinel that answers; a master
//! they see as down is not taken), checks with `ROLE` that it is one, and keeps one multiplexed
//! connection to it. When a call fails because the connection is lost, refused or timed out,
//! or because the server it reaches has become a replica (`READONLY`), that call fails with
//! `StoreError::Unavailable` (the engine drops the request; the client retransmits) and the
//! next call asks the sentinels again, at most every quarter second, so a promoted replica is
//! found without a restart once Sentinel has promoted it (its `down-after-milliseconds` plus the
//! election). Redis replicates asynchronously: a lease written just before the master died may
//! not have reached the replica that is promoted, and is then lost with it.
//!
//! # Keys (all under the prefix, `dhcp:` by default)
//! - `lease:ADDR` (ADDR as a host-order integer): hash `subnet`, `client` (hex), `hw` (hex),
//!   `state` (0 offered, 1 bound, 2 declined, 3 released, 4 expired), `deadline`, `free_at`,
//!   `host`;
//! - `client:SUBNET:CLIENT`: the address of the client's last lease in the subnet;
//! - `offer:SUBNET:CLIENT`: the address of the client's offer made while it is bound at another
//!   address (the `client:` key stays on the binding), so that its next lease frees the offer;
//! - `deadlines`: sorted set of addresses by deadline, for reclamation;
//! - `free:SUBNET`: sorted set of the subnet's leased addresses by when they are free, for reuse,
//!   and of its addresses whose lease was deleted or whose probation ended (free now, no lease);
//! - `cursor:POOLKEY`: the offset of the pool's next never-used address.
//!
//! No key keeps the addresses in order (`free:SUBNET` is by when an address is free, and holds
//! addresses without a lease), so a page of a listing (`list_page`) is the trait's default: a
//! whole `list` (`SCAN` and a read per lease) cut to the page, and `list_page_native` says so,
//! so callers that walk every page list once instead.
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
//! here, in the schema the small Go servers use (under `?hosts=H`, empty by default), read as
//! they write it (see `redis_hosts`):
//! - `mac:aa:bb:cc:dd:ee:ff`: hash `ip`, `hostname`, `description`, `group`;
//! - `client:01:aa:bb:...` (a client identifier, hex bytes joined by colons), or
//!   `client:NAME` (the host name the client sends, as the Go server keys them): the same
//!   fields, looked up in that order after `mac:`;
//! - `pool`: address → MAC of the client it was given to, `""` while free: the Go server's
//!   dynamic pool, proposed to clients without an entry and taken for one as it is bound (see
//!   `redis_pool`);
//! - `group:NAME`: hash `lease-time` (seconds or a duration: `90m`, `24h`, `1d`), `gateway`,
//!   `dns`, `domain`, `ntp`, `prefix` (a prefix length, giving the subnet mask), `broadcast`;
//!   lists are comma- or space-separated. `group:default` lies under every known host's own
//!   group; `group:pool` serves clients without an entry.
//!
//! Each lookup of a known host sets its `ts` field (the Go server's last-seen) to the Unix time
//! of the request, in the same round trip as the reads of its groups.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dhcp_core::{
    ClientId, HostQuery, HwAddr, Lease, LeaseState, LeaseStore, PoolRef, StoreError, StoreHost, Timestamp,
};
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{AsyncCommands, AsyncConnectionConfig, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult};
use redis::{ConnectionAddr, ConnectionInfo, RedisConnectionInfo, Script, Value};

use crate::codec::{self, hex, percent_decode, unhex};
use crate::redis_error::{failed, is_outage};
use crate::redis_host_cache::HostCache;
use crate::redis_hosts::{GroupHashes, LAST_SEEN, dynamic_host, host_from_hashes};
use crate::redis_pool;

/// The state codes the scripts compare and write, as Lua string constants (hash fields come
/// back from Redis as strings), taken from the codec so that Lua and Rust cannot disagree.
fn lua_codes() -> String {
    let expired = codec::encode(LeaseState::Expired);
    let released = codec::encode(LeaseState::Released);
    format!(
        "local OFFERED, BOUND, DECLINED = '{}', '{}', '{}'\nlocal EXPIRED, EXPIRED_FREE_AT = '{}', '{}'\n\
         local RELEASED, RELEASED_FREE_AT = '{}', '{}'\n",
        codec::OFFERED,
        codec::BOUND,
        codec::DECLINED,
        expired.code,
        expired.free_at,
        released.code,
        released.free_at,
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
local function ttl(until_at)
  return math.max(until_at - now, 0) + retain
end
local function keep(key, until_at)
  redis.call('EXPIRE', key, ttl(until_at))
end

-- The fields of the lease at `addr` that a claim judges and its write needs: client, state,
-- free_at, deadline, subnet, host (all nil when there is no lease). Read once per claim.
local function current(addr)
  return redis.call('HMGET', p .. 'lease:' .. addr, 'client', 'state', 'free_at', 'deadline', 'subnet', 'host')
end

-- Given the address's `current` fields, 1: free for this client, 0: held by another (or
-- declined), 2: an offer meeting the client's own unexpired binding, which must be kept as it is.
local function claimable(cur, client, new_state)
  if not cur[1] then return 1 end
  local own = cur[1] == client and (cur[2] == OFFERED or cur[2] == BOUND)
  if tonumber(cur[3]) > now and not own then return 0 end
  if new_state == OFFERED and cur[2] == BOUND and own and tonumber(cur[4]) > now then return 2 end
  return 1
end

-- Removes the lease at `addr` and its index entries. With `still_free`, the address stays in
-- its subnet's free set, free now: allocation's cursor may have passed it, and a deleted lease
-- or an ended probation must not take the address out of the pool.
local function unlink(addr, still_free)
  local key = p .. 'lease:' .. addr
  local old = redis.call('HMGET', key, 'subnet', 'client')
  if old[1] then
    local ck = p .. 'client:' .. old[1] .. ':' .. old[2]
    if redis.call('GET', ck) == tostring(addr) then redis.call('DEL', ck) end
    local ok = p .. 'offer:' .. old[1] .. ':' .. old[2]
    if redis.call('GET', ok) == tostring(addr) then redis.call('DEL', ok) end
    if still_free then
      redis.call('ZADD', p .. 'free:' .. old[1], 0, addr)
    else
      redis.call('ZREM', p .. 'free:' .. old[1], addr)
    end
  end
  redis.call('ZREM', p .. 'deadlines', addr)
  redis.call('DEL', key)
end

-- The state of the lease at `addr` if it is client f[2]'s in subnet f[1], offered or bound,
-- and unexpired at `now`; nil otherwise.
local function held_by(addr, f)
  local cur = redis.call('HMGET', p .. 'lease:' .. addr, 'client', 'state', 'deadline', 'subnet')
  if cur[1] ~= f[2] or cur[4] ~= f[1] or not cur[3] or tonumber(cur[3]) <= now then return nil end
  if cur[2] ~= OFFERED and cur[2] ~= BOUND then return nil end
  return cur[2]
end

local function release(addr, subnet)
  local key = p .. 'lease:' .. addr
  redis.call('HSET', key, 'state', RELEASED, 'free_at', RELEASED_FREE_AT)
  redis.call('HDEL', key, 'deadline')
  redis.call('ZREM', p .. 'deadlines', addr)
  redis.call('ZADD', p .. 'free:' .. subnet, RELEASED_FREE_AT, addr)
  keep(key, now)
end

-- One lease per client and subnet: before `addr` is written for client f[2], the client's
-- other held lease (the one its index names) is released, except that an offer leaves the
-- client's binding alone and the index on it (offering never shortens a lease); the offer is
-- then noted aside (`offer:`), and the client's next lease elsewhere releases it. Returns
-- whether the index must stay where it is, and the address the `offer:` key held (nil if none).
local function move_client(addr, f)
  local keep_index = false
  local old = redis.call('GET', p .. 'client:' .. f[1] .. ':' .. f[2])
  if old and old ~= tostring(addr) then
    local state = held_by(old, f)
    if state == BOUND and f[4] == OFFERED then
      keep_index = true
    elseif state then
      release(old, f[1])
    end
  end
  local aside = redis.call('GET', p .. 'offer:' .. f[1] .. ':' .. f[2])
  if aside and aside ~= tostring(addr) and held_by(aside, f) == OFFERED then release(aside, f[1]) end
  return keep_index, aside
end

-- f: subnet, client, hw, state, deadline ('' for none), free_at, host ('-' for none); cur: the
-- address's `current` fields. Every Redis call counts (each costs redis-server about a
-- microsecond beyond its work): one HSET for all fields, SET with its expiry, and nothing
-- removed that is not there.
local function put(addr, f, cur)
  local keep_index, aside = move_client(addr, f)
  local key = p .. 'lease:' .. addr
  if cur[5] == f[1] and cur[1] == f[2] then
    -- The same client's lease in the same subnet (an offer taken, a renewal): its index entries
    -- and free-set member are its own, and the writes below overwrite them; only the fields the
    -- new lease lacks go.
    if f[5] == '' and cur[4] then
      redis.call('HDEL', key, 'deadline')
      redis.call('ZREM', p .. 'deadlines', addr)
    end
    if f[7] == '-' and cur[6] then redis.call('HDEL', key, 'host') end
  elseif cur[1] then
    unlink(addr, false)
  elseif f[5] == '' then
    -- No lease, but the deadline set may still name the address (its key expired in Redis):
    -- reclamation must not take that entry for this lease's.
    redis.call('ZREM', p .. 'deadlines', addr)
  end
  local fields = {'subnet', f[1], 'client', f[2], 'hw', f[3], 'state', f[4], 'free_at', f[6]}
  if f[5] ~= '' then
    fields[#fields + 1] = 'deadline'
    fields[#fields + 1] = f[5]
  end
  if f[7] ~= '-' then
    fields[#fields + 1] = 'host'
    fields[#fields + 1] = f[7]
  end
  redis.call('HSET', key, unpack(fields))
  if f[5] ~= '' then redis.call('ZADD', p .. 'deadlines', f[5], addr) end
  local hold = ttl(tonumber(f[6]))
  local ok = p .. 'offer:' .. f[1] .. ':' .. f[2]
  if keep_index then
    redis.call('SET', ok, addr, 'EX', hold)
  else
    if aside then redis.call('DEL', ok) end
    redis.call('SET', p .. 'client:' .. f[1] .. ':' .. f[2], addr, 'EX', hold)
  end
  redis.call('ZADD', p .. 'free:' .. f[1], f[6], addr)
  redis.call('EXPIRE', key, hold)
end
"#;

/// ARGV: prefix, now, addr, then the seven lease fields. Returns 1 written, 0 refused, 2 kept.
const CLAIM: &str = r#"
local addr = ARGV[3]
local f = {ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]}
local cur = current(addr)
local verdict = claimable(cur, f[2], f[4])
if verdict == 1 then put(addr, f, cur) end
return verdict
"#;

/// ARGV: prefix, now, pool key, pool size, the seven lease fields, then range bounds as pairs.
/// Returns `{addr, HGETALL of the record it replaced}` (empty when there was none), `{0}` when
/// the pool is full, or `{-1}` when it looked at its limit of candidates without finding one
/// (the caller calls again, so Redis is never held for long).
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
local function grant(addr, cur)
  local before = {}
  if cur[1] then before = redis.call('HGETALL', p .. 'lease:' .. addr) end
  put(addr, f, cur)
  return {addr, before}
end
local cursor = p .. 'cursor:' .. ARGV[3]
for _ = 1, 256 do
  -- Past the pool's size the cursor only counts on: every test below is `>= size`.
  local offset = redis.call('INCR', cursor) - 1
  if offset >= size then break end
  local addr = nth(offset)
  local cur = current(addr)
  if claimable(cur, f[2], f[4]) == 1 then return grant(addr, cur) end
end
if tonumber(redis.call('GET', cursor) or '0') < size then return {-1} end
local free = redis.call('ZRANGEBYSCORE', p .. 'free:' .. f[1], '-inf', now, 'LIMIT', 0, 256)
for _, a in ipairs(free) do
  local addr = tonumber(a)
  if inside(addr) then
    local cur = current(addr)
    if claimable(cur, f[2], f[4]) == 1 then return grant(addr, cur) end
  end
end
return {0}
"#;

/// ARGV: prefix, now, addr, client, state, deadline, free_at. Returns 1 when updated.
const UPDATE_STATE: &str = r#"
local key = p .. 'lease:' .. ARGV[3]
local cur = redis.call('HMGET', key, 'client', 'state')
if cur[1] ~= ARGV[4] then return 0 end
-- Only the client's offer or binding: a released, expired or declined lease is no longer the
-- client's to change.
if cur[2] ~= OFFERED and cur[2] ~= BOUND then return 0 end
-- Only a binding can be declined: an offer the client never took is not its to decline.
if ARGV[5] == DECLINED and cur[2] ~= BOUND then return 0 end
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
      unlink(addr, true)
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
unlink(ARGV[3], true)
return 1
"#;

/// The reads the engine makes, each in one round trip where plain commands take two or three:
/// ARGV: prefix, an address (empty: none), then `1`, a subnet and a client id's hex to find the
/// client's lease too (`0` otherwise). Returns the lease hash at the address (empty when none),
/// the address the client index points to (empty when none), and the lease hash there.
const LOOKUP: &str = r#"
local p = ARGV[1]
local at = {}
if ARGV[2] ~= '' then at = redis.call('HGETALL', p .. 'lease:' .. ARGV[2]) end
local of_addr, of = '', {}
if ARGV[3] == '1' then
  local a = redis.call('GET', p .. 'client:' .. ARGV[4] .. ':' .. ARGV[5])
  if a then
    of_addr = a
    of = redis.call('HGETALL', p .. 'lease:' .. a)
  end
end
return {at, of_addr, of}
"#;

#[derive(Clone)]
struct Scripts {
    lookup: Script,
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
            lookup: Script::new(LOOKUP),
            claim: with_lib(CLAIM),
            allocate: with_lib(ALLOCATE),
            update_state: with_lib(UPDATE_STATE),
            reclaim: with_lib(RECLAIM),
            delete: with_lib(DELETE),
        }
    }
}

/// How long one connection attempt, and one answer, may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long asking the sentinels for the master (and checking it) may take in all.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// After the sentinels named no reachable master, calls fail at once for this long before they
/// are asked again, so that a burst of requests during a failover does not become a burst of
/// lookups.
const LOOKUP_PAUSE: Duration = Duration::from_millis(250);

/// The connection the store's calls go through: to one address, reconnected in place by the
/// redis crate's connection manager, or to whichever server the sentinels name as the master.
#[derive(Clone)]
enum Conn {
    Direct(ConnectionManager),
    Sentinel(Arc<SentinelMaster>),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Direct(conn) => conn.req_packed_command(cmd),
            Conn::Sentinel(master) => Box::pin(async move {
                let (generation, mut conn) = master.connection().await?;
                let result = conn.req_packed_command(cmd).await;
                if let Err(e) = &result {
                    master.failed(generation, e);
                }
                result
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Direct(conn) => conn.req_packed_commands(cmd, offset, count),
            Conn::Sentinel(master) => Box::pin(async move {
                let (generation, mut conn) = master.connection().await?;
                let result = conn.req_packed_commands(cmd, offset, count).await;
                if let Err(e) = &result {
                    master.failed(generation, e);
                }
                result
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Direct(conn) => conn.get_db(),
            Conn::Sentinel(master) => master.db,
        }
    }
}

/// The master of a Sentinel-monitored Redis, found again whenever the connection to it fails.
struct SentinelMaster {
    /// The name the sentinels monitor it under.
    name: String,
    /// The sentinels; one lookup at a time.
    sentinels: tokio::sync::Mutex<Sentinel>,
    /// How to log in to the master.
    node: SentinelNodeConnectionInfo,
    db: i64,
    config: AsyncConnectionConfig,
    current: Mutex<Current>,
}

/// The connection to the master as last found, numbered so that a failure seen on an old
/// connection does not throw away a newer one.
#[derive(Default)]
struct Current {
    conn: Option<(u64, MultiplexedConnection)>,
    generation: u64,
    /// When the last lookup failed, and why.
    failed: Option<(Instant, String)>,
}

impl SentinelMaster {
    fn current(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection to the master, asking the sentinels for it first when there is none.
    async fn connection(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(conn) = self.current().conn.clone() {
            return Ok(conn);
        }
        let mut sentinels = self.sentinels.lock().await;
        // Another call may have found the master while this one waited for the sentinels.
        {
            let current = self.current();
            if let Some(conn) = current.conn.clone() {
                return Ok(conn);
            }
            if let Some((at, why)) = &current.failed
                && at.elapsed() < LOOKUP_PAUSE
            {
                return Err(no_master(&self.name, why));
            }
        }
        let found = tokio::time::timeout(LOOKUP_TIMEOUT, async {
            let client = sentinels.async_master_for(&self.name, Some(&self.node)).await?;
            client.get_multiplexed_async_connection_with_config(&self.config).await
        })
        .await
        .unwrap_or_else(|_| Err(RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))));
        let mut current = self.current();
        match found {
            Ok(conn) => {
                current.generation += 1;
                current.conn = Some((current.generation, conn.clone()));
                current.failed = None;
                Ok((current.generation, conn))
            }
            Err(e) => {
                let why = e.to_string();
                current.failed = Some((Instant::now(), why.clone()));
                Err(no_master(&self.name, &why))
            }
        }
    }

    /// Forgets the connection `generation` when `e` says it is lost or no longer to a master.
    fn failed(&self, generation: u64, e: &RedisError) {
        if !(is_outage(e) || e.is_unrecoverable_error()) {
            return;
        }
        let mut current = self.current();
        if current.conn.as_ref().is_some_and(|(g, _)| *g == generation) {
            current.conn = None;
        }
    }
}

/// The error of a lookup that found no master: an outage, as a refused connection is.
fn no_master(name: &str, why: &str) -> RedisError {
    RedisError::from((
        ErrorKind::MasterNameNotFoundBySentinel,
        "the sentinels named no reachable master",
        format!("master {name:?}: {why}"),
    ))
}

/// A `redis+sentinel://` URL taken apart.
#[derive(Debug, PartialEq, Eq)]
struct SentinelUrl {
    sentinels: Vec<(String, u16)>,
    master: String,
    db: i64,
    username: Option<String>,
    password: Option<String>,
    sentinel_password: Option<String>,
}

impl SentinelUrl {
    /// Parses `redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,...]/MASTER[/DB]` with the
    /// query already taken off; `db` is the `db=` parameter's value, if there was one.
    fn parse(url: &str, db: Option<i64>, sentinel_password: Option<String>) -> Result<SentinelUrl, String> {
        let rest = url.strip_prefix("redis+sentinel://").ok_or("expected redis+sentinel://")?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (user, password) = info.split_once(':').unwrap_or((info, ""));
                let some = |text: &str| (!text.is_empty()).then(|| percent_decode(text));
                (some(user), some(password))
            }
        };
        let mut sentinels = Vec::new();
        for host in hosts.split(',') {
            let (name, port) = match host.rsplit_once(':') {
                // An IPv6 address without a port: [::1].
                Some((name, port)) if !port.ends_with(']') => {
                    (name, port.parse::<u16>().map_err(|_| format!("bad port in sentinel {host:?}"))?)
                }
                _ => (host, 26379),
            };
            let name = name.trim_start_matches('[').trim_end_matches(']');
            if name.is_empty() {
                return Err(format!("empty sentinel host in {hosts:?}"));
            }
            sentinels.push((name.to_owned(), port));
        }
        let mut parts = path.split('/').filter(|p| !p.is_empty());
        let master = percent_decode(parts.next().ok_or("no master name: redis+sentinel://HOST:PORT/MASTER")?);
        let path_db = parts.next().map(|d| d.parse::<i64>().map_err(|_| format!("bad database number {d:?}")));
        if let Some(extra) = parts.next() {
            return Err(format!("unexpected {extra:?} after /MASTER/DB"));
        }
        let db = match (path_db.transpose()?, db) {
            (Some(a), Some(b)) if a != b => return Err(format!("database {a} in the path but db={b}")),
            (a, b) => a.or(b).unwrap_or(0),
        };
        Ok(SentinelUrl { sentinels, master, db, username, password, sentinel_password })
    }

    /// The sentinels, to be asked.
    fn sentinel_infos(&self) -> Vec<ConnectionInfo> {
        self.sentinels
            .iter()
            .map(|(host, port)| ConnectionInfo {
                addr: ConnectionAddr::Tcp(host.clone(), *port),
                redis: RedisConnectionInfo { password: self.sentinel_password.clone(), ..Default::default() },
            })
            .collect()
    }

    /// How the master is logged in to.
    fn node(&self) -> SentinelNodeConnectionInfo {
        SentinelNodeConnectionInfo {
            tls_mode: None,
            redis_connection_info: Some(RedisConnectionInfo {
                db: self.db,
                username: self.username.clone(),
                password: self.password.clone(),
                ..Default::default()
            }),
        }
    }
}

/// Leases in Redis, shared by any number of servers.
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    prefix: String,
    hosts: String,
    scripts: Scripts,
    /// The host and group cache (`host-cache=yes`), if on.
    cache: Option<Arc<HostCache>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("prefix", &self.prefix).finish_non_exhaustive()
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
    ///
    /// `redis+sentinel://SENTINEL[:PORT][,SENTINEL[:PORT]...]/MASTER` finds the master through
    /// Sentinel and follows its failovers (see the module docs), with `prefix=` and `hosts=` as
    /// above, `db=N` (or `/MASTER/N`) and `sentinel-password=`.
    pub async fn connect(url: &str) -> Result<RedisStore, StoreError> {
        let bad = |why: &str| StoreError::Backend(format!("redis URL {url:?}: {why}"));
        let (url_part, fragment) = match url.split_once('#') {
            Some((u, f)) => (u, format!("#{f}")),
            None => (url, String::new()),
        };
        let (base, query) = url_part.split_once('?').unwrap_or((url_part, ""));
        let sentinel = base.starts_with("redis+sentinel://");
        let (mut prefix, mut hosts, mut tls_ca) = ("dhcp:".to_owned(), String::new(), None);
        let (mut db, mut sentinel_password, mut host_cache) = (None, None, false);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("prefix", p)) if !p.is_empty() => prefix = p.to_owned(),
                Some(("hosts", h)) => hosts = h.to_owned(),
                Some(("host-cache", "yes")) => host_cache = true,
                Some(("host-cache", "no")) => host_cache = false,
                Some(("tls-ca", path)) if !path.is_empty() && !sentinel => tls_ca = Some(path.to_owned()),
                Some(("db", n)) if sentinel => db = Some(n.parse::<i64>().map_err(|_| bad(&format!("db={n:?}")))?),
                Some(("sentinel-password", p)) if sentinel => sentinel_password = Some(percent_decode(p)),
                _ if sentinel => {
                    return Err(bad(&format!("unknown parameter {pair:?} (prefix=, hosts=, db=, sentinel-password=)")));
                }
                _ => return Err(bad(&format!("unknown parameter {pair:?} (prefix=, hosts=, tls-ca=, host-cache=)"))),
            }
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(CONNECTION_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT);
        if sentinel {
            if !fragment.is_empty() {
                return Err(bad("redis+sentinel:// takes no #fragment"));
            }
            let parsed = SentinelUrl::parse(base, db, sentinel_password).map_err(|why| bad(&why))?;
            let sentinels = Sentinel::build(parsed.sentinel_infos()).map_err(failed)?;
            let master = Arc::new(SentinelMaster {
                name: parsed.master.clone(),
                sentinels: tokio::sync::Mutex::new(sentinels),
                node: parsed.node(),
                db: parsed.db,
                config,
                current: Mutex::new(Current::default()),
            });
            // Find the master now: a URL that leads nowhere is refused at start.
            master.connection().await.map_err(failed)?;
            if host_cache {
                return Err(bad("host-cache=yes takes a redis:// or redis+unix:// URL, not Sentinel's"));
            }
            return Ok(RedisStore {
                conn: Conn::Sentinel(master),
                prefix,
                hosts,
                scripts: Scripts::new(),
                cache: None,
            });
        }
        let base = format!("{base}{fragment}");
        if host_cache && tls_ca.is_some() {
            return Err(bad("host-cache=yes does not take tls-ca= yet"));
        }
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
            .set_connection_timeout(CONNECTION_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT)
            .set_number_of_retries(3)
            .set_max_delay(1000);
        let conn = client.get_connection_manager_with_config(config).await.map_err(failed)?;
        let cache = match host_cache {
            true => Some(HostCache::connect(client.get_connection_info().clone()).await?),
            false => None,
        };
        Ok(RedisStore { conn: Conn::Direct(conn), prefix, hosts, scripts: Scripts::new(), cache })
    }

    /// The lease at `addr` and the lease `of` (a subnet and a client) holds there, as
    /// [`LOOKUP`] reads them in one round trip. The client index may lag a concurrent change of
    /// hands: only a lease of that client in that subnet is answered.
    async fn lookup(
        &self,
        addr: Option<u32>,
        of: Option<(u32, &ClientId)>,
    ) -> Result<(Option<Lease>, Option<Lease>), StoreError> {
        let mut conn = self.conn.clone();
        let mut call = self.scripts.lookup.prepare_invoke();
        call.arg(&self.prefix).arg(addr.map(|a| a.to_string()).unwrap_or_default());
        match of {
            Some((subnet, client)) => call.arg("1").arg(subnet).arg(hex(client.as_bytes())),
            None => call.arg("0").arg(0).arg(""),
        };
        type Hash = HashMap<String, String>;
        let (at_hash, of_addr, of_hash): (Hash, String, Hash) = call.invoke_async(&mut conn).await.map_err(failed)?;
        let at = match addr {
            Some(addr) if !at_hash.is_empty() => Some(lease_from_hash(addr, &at_hash)?),
            _ => None,
        };
        let of = match (of, of_addr.parse::<u32>()) {
            (Some((subnet, client)), Ok(found)) if !of_hash.is_empty() => {
                Some(lease_from_hash(found, &of_hash)?).filter(|l| l.client == *client && l.subnet == subnet)
            }
            _ => None,
        };
        Ok((at, of))
    }

    async fn hash(&self, addr: u32) -> Result<Option<Lease>, StoreError> {
        let mut conn = self.conn.clone();
        let hash: HashMap<String, String> =
            conn.hgetall(format!("{}lease:{addr}", self.prefix)).await.map_err(failed)?;
        if hash.is_empty() { Ok(None) } else { lease_from_hash(addr, &hash).map(Some) }
    }
}

/// Bytes as lower-case hex pairs joined by colons, as the Go server writes MACs in its keys.
pub(crate) fn colon_hex(bytes: &[u8]) -> String {
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
    /// The hashes at `keys` (empty for a key that does not exist), in one round trip or from
    /// the host cache; with `seen`, also notes that host's last-seen time: in the same pipeline,
    /// or, with the cache, in its next batch.
    async fn host_hashes(
        &self,
        keys: &[String],
        seen: Option<(&str, Timestamp)>,
    ) -> Result<Vec<HashMap<String, String>>, StoreError> {
        if let Some(cache) = &self.cache {
            if let Some((key, now)) = seen {
                cache.note_seen(key, now.as_secs());
            }
            return cache.hashes(keys).await;
        }
        let mut pipe = redis::pipe();
        if let Some((key, now)) = seen {
            pipe.hset(key, LAST_SEEN, now.as_secs()).ignore();
        }
        for key in keys {
            pipe.hgetall(key);
        }
        let mut conn = self.conn.clone();
        pipe.query_async(&mut conn).await.map_err(failed)
    }

    /// Every key matching the glob `pattern`, found with `SCAN` (never `KEYS`, which stalls
    /// Redis); a key may come more than once.
    async fn scan(&self, pattern: &str) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(failed)?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }
}

/// The kinds of entry the Go server's schema keeps beside the leases, by key prefix.
pub const HOST_ENTRY_KINDS: [&str; 3] = ["mac:", "client:", "group:"];

/// A host or group entry as stored: its key (without the `hosts` prefix) and its fields.
pub type HostEntry = (String, BTreeMap<String, String>);

/// `text` with Redis glob characters escaped, so that it matches only itself.
fn glob_literal(text: &str) -> String {
    text.chars().fold(String::new(), |mut out, c| {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
        out
    })
}

/// Refuses a key outside the host and group entries: the API and the CLI edit only those.
fn host_entry_key(key: &str) -> Result<(), StoreError> {
    let kind = HOST_ENTRY_KINDS.iter().find(|k| key.starts_with(**k) && key.len() > k.len());
    kind.map(|_| ()).ok_or_else(|| {
        StoreError::Backend(format!("{key:?} is not a host or group key (mac:..., client:... or group:...)"))
    })
}

impl RedisStore {
    /// Every entry of `kind` (one of [`HOST_ENTRY_KINDS`]) under the `hosts` prefix, by key:
    /// what the Go server's `dhcp-cli show groups | clients | mac` list. Keys are found with
    /// `SCAN` (never `KEYS`, which stalls Redis) and read in one pipeline per thousand.
    pub async fn host_entries(&self, kind: &str) -> Result<Vec<HostEntry>, StoreError> {
        if !HOST_ENTRY_KINDS.contains(&kind) {
            return Err(StoreError::Backend(format!("no entries of kind {kind:?}")));
        }
        let mut keys = self.scan(&format!("{}{kind}*", glob_literal(&self.hosts))).await?;
        let mut conn = self.conn.clone();
        keys.sort_unstable();
        keys.dedup();
        let mut entries = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(1000) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.hgetall(key);
            }
            let hashes: Vec<BTreeMap<String, String>> = pipe.query_async(&mut conn).await.map_err(failed)?;
            for (key, fields) in chunk.iter().zip(hashes) {
                let key = key.strip_prefix(self.hosts.as_str()).unwrap_or(key).to_owned();
                // A key that went between the scan and the read is not listed.
                if !fields.is_empty() {
                    entries.push((key, fields));
                }
            }
        }
        Ok(entries)
    }

    /// Writes the entry `key` (`mac:...`, `client:...` or `group:...`, under the `hosts`
    /// prefix) with exactly `fields`, replacing what it held, atomically (`MULTI`).
    pub async fn put_host_entry(&self, key: &str, fields: &BTreeMap<String, String>) -> Result<(), StoreError> {
        host_entry_key(key)?;
        if fields.is_empty() {
            return Err(StoreError::Backend(format!("{key}: an entry needs at least one field")));
        }
        let full = format!("{}{key}", self.hosts);
        let mut pipe = redis::pipe();
        pipe.atomic().del(&full).ignore();
        pipe.hset_multiple(&full, &fields.iter().collect::<Vec<_>>()).ignore();
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(failed)
    }

    /// Deletes the entry `key`; whether there was one.
    pub async fn delete_host_entry(&self, key: &str) -> Result<bool, StoreError> {
        host_entry_key(key)?;
        let mut conn = self.conn.clone();
        let gone: i64 = conn.del(format!("{}{key}", self.hosts)).await.map_err(failed)?;
        Ok(gone > 0)
    }
}

/// Logs what a host's entry or group held that could not be read (the engine counts it).
fn report_unreadable(host: &StoreHost) {
    for what in &host.unreadable {
        tracing::warn!(field = %what, "a Redis host or group field could not be read and was left out");
    }
}

/// What a host lookup found: a known host (with its entry's key, under the `hosts` prefix), a
/// client without an entry given `group:pool` and the `pool` hash's proposals, or nothing.
pub(crate) enum Found {
    Known(StoreHost, String),
    Dynamic(StoreHost),
    Nothing,
}

/// A client without an entry, from `hashes`: `group:pool` (its options, as the Go server gives
/// its dynamic clients, when the operator keeps one) and, when read, the `pool` hash (free
/// addresses proposed to the client).
fn dynamic_client(mac: &str, query: &HostQuery<'_>, hashes: Vec<HashMap<String, String>>) -> Found {
    let mut hashes = hashes.into_iter();
    let group = hashes.next().unwrap_or_default();
    let addresses = hashes.next().map(|pool| redis_pool::proposals(&pool, mac, query.requested)).unwrap_or_default();
    if group.is_empty() && addresses.is_empty() {
        return Found::Nothing;
    }
    let host = dynamic_host(&group, addresses);
    report_unreadable(&host);
    Found::Dynamic(host)
}

/// Whether an entry's `dynamic` field says the Go server's pool made it (`1`, or `true`).
fn made_by_pool(entry: &HashMap<String, String>) -> bool {
    entry.get("dynamic").is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true"))
}

impl RedisStore {
    /// Looks the client up as [`LeaseStore::host`] does: its `mac:` entry, else the `client:`
    /// entry of its client identifier (colon hex), else the `client:` entry of its host name
    /// (as the Go server keys them). With `note_seen`, the known host's `ts` is written in the
    /// same round trip as its groups are read (with the host cache, in its next batch); without
    /// it (a read-only replica), nothing is written and the caller gets the key to note
    /// elsewhere. With `propose`, a client without an entry is proposed free addresses of the
    /// `pool` hash. A known host by MAC costs two round trips, as does any other client: the
    /// `client:` entries are read with what a client without an entry needs.
    pub(crate) async fn find_host(
        &self,
        query: &HostQuery<'_>,
        note_seen: bool,
        propose: bool,
    ) -> Result<Found, StoreError> {
        let mac = colon_hex(query.hw.as_bytes());
        let mac_key = format!("{}mac:{mac}", self.hosts);
        let by_mac = self.host_hashes(std::slice::from_ref(&mac_key), None).await?.pop();
        let found = match by_mac.filter(|h| !h.is_empty()) {
            Some(hash) => Some((mac_key, hash)),
            None => {
                let mut keys: Vec<String> =
                    query.client_id.map(|id| format!("{}client:{}", self.hosts, colon_hex(id))).into_iter().collect();
                let name = query.host_name.and_then(|n| std::str::from_utf8(n).ok()).map(str::trim);
                keys.extend(name.filter(|n| !n.is_empty()).map(|n| format!("{}client:{n}", self.hosts)));
                let entries = keys.len();
                keys.push(format!("{}group:pool", self.hosts));
                if propose {
                    keys.push(format!("{}{}", self.hosts, redis_pool::POOL_KEY));
                }
                let mut hashes = self.host_hashes(&keys, None).await?;
                let dynamic = hashes.split_off(entries.min(hashes.len()));
                let found = keys.into_iter().zip(hashes).find(|(_, hash)| !hash.is_empty());
                if found.is_none() {
                    return Ok(dynamic_client(&mac, query, dynamic));
                }
                found
            }
        };
        let Some((key, hash)) = found else { return Ok(Found::Nothing) };
        // The groups the entry draws on: `default`, and the one it names unless that is
        // `default` itself; one that does not exist leaves `default` alone. An entry the Go
        // server's pool made, naming none, draws on `pool` instead, as the client did before.
        let named = hash.get("group").map(|g| g.trim()).filter(|g| !g.is_empty() && *g != "default");
        let pooled = named.is_none() && made_by_pool(&hash);
        let mut group_keys = vec![format!("{}group:default", self.hosts)];
        group_keys.extend(named.or(pooled.then_some("pool")).map(|name| format!("{}group:{name}", self.hosts)));
        let seen = note_seen.then_some((key.as_str(), query.now));
        let mut hashes = self.host_hashes(&group_keys, seen).await?.into_iter();
        let mut default = hashes.next().unwrap_or_default();
        // The second hash read is the named group's, or `pool`'s for an entry the pool made.
        let second = hashes.next().filter(|h| !h.is_empty());
        let named = match (named, second) {
            (Some(name), Some(hash)) => Some((name.to_owned(), hash)),
            (None, Some(pool)) if pooled => {
                default = pool;
                None
            }
            _ => None,
        };
        let host = host_from_hashes(&key, &hash, &GroupHashes { default, named });
        report_unreadable(&host);
        Ok(Found::Known(host, key))
    }

    /// Takes `addr` of the `pool` hash for the client (see [`LeaseStore::take_pool_address`])
    /// over this store's connection.
    pub(crate) async fn take_pool_address_here(
        &self,
        query: &HostQuery<'_>,
        addr: Ipv4Addr,
    ) -> Result<bool, StoreError> {
        let mac = colon_hex(query.hw.as_bytes());
        let mut conn = self.conn.clone();
        let taken = redis_pool::take(&mut conn, &self.hosts, &mac, query, addr).await?;
        self.forget_pool_entry(&mac);
        Ok(taken)
    }

    /// Drops the `pool` hash and the client's `mac:` entry from the host cache, if on, after
    /// a write to them: the next lookup reads them again rather than wait for the invalidation.
    pub(crate) fn forget_pool_entry(&self, mac: &str) {
        if let Some(cache) = &self.cache {
            cache.forget(&[format!("{}{}", self.hosts, redis_pool::POOL_KEY), format!("{}mac:{mac}", self.hosts)]);
        }
    }

    /// The `hosts` prefix the entries live under.
    pub(crate) fn hosts_prefix(&self) -> &str {
        &self.hosts
    }
}

impl RedisStore {
    /// The host cache's lookups answered from memory and those that went to Redis, when the
    /// cache is on (`host-cache=yes`).
    pub fn host_cache_counts(&self) -> Option<(u64, u64)> {
        self.cache.as_ref().map(|c| c.counts())
    }
}

impl LeaseStore for RedisStore {
    async fn host(&self, query: &HostQuery<'_>) -> Result<Option<StoreHost>, StoreError> {
        Ok(match self.find_host(query, true, true).await? {
            Found::Known(host, _) | Found::Dynamic(host) => Some(host),
            Found::Nothing => None,
        })
    }

    async fn take_pool_address(&self, query: &HostQuery<'_>, addr: Ipv4Addr) -> Result<bool, StoreError> {
        self.take_pool_address_here(query, addr).await
    }

    async fn lease_by_client(&self, subnet: u32, client: &ClientId) -> Result<Option<Lease>, StoreError> {
        Ok(self.lookup(None, Some((subnet, client))).await?.1)
    }

    async fn lease_by_addr(&self, addr: Ipv4Addr) -> Result<Option<Lease>, StoreError> {
        self.hash(addr.into()).await
    }

    async fn lease_by_addr_and_client(
        &self,
        addr: Ipv4Addr,
        subnet: u32,
        client: &ClientId,
    ) -> Result<(Option<Lease>, Option<Lease>), StoreError> {
        self.lookup(Some(addr.into()), Some((subnet, client))).await
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
        Ok(self.allocate_replacing(pool, lease, now).await?.map(|(stored, _)| stored))
    }

    async fn allocate_replacing(
        &self,
        pool: PoolRef<'_>,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Option<(Lease, Option<Lease>)>, StoreError> {
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
            let got: Vec<Value> = call.invoke_async(&mut conn).await.map_err(failed)?;
            let corrupt = || StoreError::Corrupt("redis allocate answer".into());
            match got.as_slice() {
                [code] => match redis::from_redis_value::<i64>(code).map_err(|_| corrupt())? {
                    -1 => continue,
                    _ => return Ok(None),
                },
                [addr, Value::Array(before)] => {
                    let addr: i64 = redis::from_redis_value(addr).map_err(|_| corrupt())?;
                    let addr = u32::try_from(addr).map_err(|_| StoreError::Corrupt(format!("redis address {addr}")))?;
                    // The lease is stored by now: a replaced record that does not decode is
                    // not reported rather than failing the allocation.
                    let replaced =
                        if before.is_empty() { None } else { lease_from_hash(addr, &hash_from_values(before)).ok() };
                    return Ok(Some((Lease { addr: Ipv4Addr::from(addr), ..lease.clone() }, replaced)));
                }
                _ => return Err(corrupt()),
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
        let keys = self.scan(&format!("{}lease:*", self.prefix)).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinel(url: &str) -> Result<SentinelUrl, String> {
        SentinelUrl::parse(url, None, None)
    }

    #[test]
    fn sentinel_urls_name_the_sentinels_and_the_master() {
        let parsed = sentinel("redis+sentinel://127.0.0.1:26379,10.0.0.2:26380,sentinel-3/leases").expect("valid");
        assert_eq!(
            parsed.sentinels,
            [("127.0.0.1".into(), 26379), ("10.0.0.2".into(), 26380), ("sentinel-3".into(), 26379)]
        );
        assert_eq!((parsed.master.as_str(), parsed.db, parsed.password.as_deref()), ("leases", 0, None));

        let parsed = sentinel("redis+sentinel://:s%40cret@[::1]:5000,[::2]/mymaster/3").expect("valid");
        assert_eq!(parsed.sentinels, [("::1".into(), 5000), ("::2".into(), 26379)]);
        assert_eq!((parsed.master.as_str(), parsed.db), ("mymaster", 3));
        assert_eq!((parsed.username, parsed.password.as_deref()), (None, Some("s@cret")));

        let parsed = SentinelUrl::parse("redis+sentinel://dhcp:pw@h:1/m", Some(2), Some("sp".into())).expect("valid");
        assert_eq!(
            (parsed.username.as_deref(), parsed.db, parsed.sentinel_password.as_deref()),
            (Some("dhcp"), 2, Some("sp"))
        );
        let node = parsed.node().redis_connection_info.expect("login");
        assert_eq!((node.db, node.password.as_deref()), (2, Some("pw")));
    }

    #[test]
    fn sentinel_urls_without_a_master_or_with_bad_parts_are_refused() {
        assert!(sentinel("redis+sentinel://h:26379").expect_err("no master").contains("master"));
        assert!(sentinel("redis+sentinel://h:26379/").expect_err("no master").contains("master"));
        assert!(sentinel("redis+sentinel://h:port/m").expect_err("bad port").contains("port"));
        assert!(sentinel("redis+sentinel://h,,k/m").expect_err("empty host").contains("empty"));
        assert!(sentinel("redis+sentinel://h/m/x").is_err());
        assert!(SentinelUrl::parse("redis+sentinel://h/m/1", Some(2), None).is_err(), "two databases");
    }

    #[tokio::test]
    async fn sentinel_urls_take_their_own_parameters_only() {
        let err = RedisStore::connect("redis+sentinel://127.0.0.1:1/m?tls-ca=/ca.pem").await.expect_err("no TLS");
        assert!(err.to_string().contains("db=, sentinel-password="), "{err}");
        // No sentinel answers: an outage, not a broken URL.
        match RedisStore::connect("redis+sentinel://127.0.0.1:1/m?prefix=x:&db=1").await {
            Err(StoreError::Unavailable(why)) => assert!(why.contains("master \"m\""), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn failover_errors_are_outages() {
        let read_only = RedisError::from((ErrorKind::ReadOnly, "READONLY"));
        assert!(is_outage(&read_only));
        let in_script = RedisError::from((
            ErrorKind::ResponseError,
            "An error was signalled by the server",
            "Error running script: @user_script:12: -READONLY You can't write against a read only replica.".to_owned(),
        ));
        assert!(is_outage(&in_script));
        assert!(is_outage(&no_master("m", "down")));
        assert!(!is_outage(&RedisError::from((ErrorKind::TypeError, "not a number"))));
    }
}
