//! A cache of the host and group hashes (`mac:`, `client:`, `group:`) kept coherent by Redis
//! itself: client-side caching (`CLIENT TRACKING`, RESP3). Redis remembers which keys this
//! connection read and pushes an invalidation when any client changes one, so a known host
//! costs no round trip on a renewal and an edit (by our API, the CLI or `redis-cli`) takes
//! effect on the next packet.
//!
//! Reads go over the tracking connection itself, so an invalidation of a key arrives after the
//! reply that read it; a reply is cached only if no invalidation (of any key) and no reconnect
//! came between its request and its insertion, which the cache's generation tells. A lost
//! connection empties the cache and stops caching until tracking is turned on again on the new
//! connection. The hosts' last-seen times are written over the same connection, batched once a
//! second (`NOLOOP`: no message for our own writes). A write ends Redis's tracking of that key,
//! so the entries written leave the cache and are read again when next needed: an active known
//! host costs one read a second at most, not one per packet.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use dhcp_core::StoreError;
use redis::aio::ConnectionManager;
use redis::{ConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value};

use crate::redis_hosts::LAST_SEEN;

/// Hashes kept at most; past it the cache starts over (a flood of unknown MACs cannot grow it
/// without bound: a miss caches the empty hash of an unknown key too).
const MAX_ENTRIES: usize = 100_000;

/// How often the gathered last-seen times are written.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct State {
    hashes: HashMap<String, HashMap<String, String>>,
    /// Bumped by every invalidation and reconnect: a read that saw another value is not cached.
    generation: u64,
    /// Whether tracking is on for the current connection.
    tracking: bool,
}

/// The cache, its connection and its counters.
pub(crate) struct HostCache {
    conn: ConnectionManager,
    state: Arc<Mutex<State>>,
    seen: Mutex<HashMap<String, u64>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for HostCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostCache").field("hits", &self.hits).field("misses", &self.misses).finish_non_exhaustive()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Applies a push from Redis to the cache: an invalidation drops its keys (all of them for a
/// flush), a lost connection drops everything and stops caching.
fn on_push(state: &Mutex<State>, push: &PushInfo) {
    let mut state = lock(state);
    match push.kind {
        PushKind::Invalidate => {
            state.generation += 1;
            match push.data.first() {
                Some(Value::Array(keys)) => {
                    for key in keys {
                        if let Ok(key) = redis::from_redis_value::<String>(key) {
                            state.hashes.remove(&key);
                        }
                    }
                }
                // A flush of the database (nil): every key.
                _ => state.hashes.clear(),
            }
        }
        PushKind::Disconnection => {
            state.generation += 1;
            state.tracking = false;
            state.hashes.clear();
        }
        _ => {}
    }
}

impl HostCache {
    /// A cache over its own RESP3 connection to the Redis `info` names, with tracking on.
    pub(crate) async fn connect(mut info: ConnectionInfo) -> Result<Arc<HostCache>, StoreError> {
        info.redis.protocol = ProtocolVersion::RESP3;
        let failed = |e: redis::RedisError| StoreError::Backend(format!("redis host cache: {e}"));
        let client = redis::Client::open(info).map_err(failed)?;
        let state = Arc::new(Mutex::new(State::default()));
        let pushed = Arc::clone(&state);
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(1))
            .set_response_timeout(Duration::from_secs(2))
            .set_number_of_retries(3)
            .set_max_delay(1000)
            .set_push_sender(move |push: PushInfo| {
                on_push(&pushed, &push);
                Ok::<(), redis::aio::SendError>(())
            });
        let conn = client.get_connection_manager_with_config(config).await.map_err(failed)?;
        let cache = Arc::new(HostCache {
            conn,
            state,
            seen: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        });
        cache.track().await.map_err(failed)?;
        tokio::spawn(flush_forever(Arc::downgrade(&cache)));
        Ok(cache)
    }

    /// Turns tracking on for the current connection (again, after a reconnect).
    async fn track(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("CLIENT").arg("TRACKING").arg("ON").arg("NOLOOP").query_async::<()>(&mut conn).await?;
        let mut state = lock(&self.state);
        state.generation += 1;
        state.tracking = true;
        Ok(())
    }

    /// The hashes at `keys` (empty for a key that does not exist): from the cache when it holds
    /// them all, else in one round trip, cached when nothing changed meanwhile.
    pub(crate) async fn hashes(&self, keys: &[String]) -> Result<Vec<HashMap<String, String>>, StoreError> {
        let tracking = {
            let state = lock(&self.state);
            if state.tracking && keys.iter().all(|k| state.hashes.contains_key(k)) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(keys.iter().map(|k| state.hashes.get(k).cloned().unwrap_or_default()).collect());
            }
            state.tracking
        };
        self.misses.fetch_add(1, Ordering::Relaxed);
        if !tracking {
            // A failure here leaves caching off; the read below still answers.
            let _ = self.track().await;
        }
        let before = lock(&self.state).generation;
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.hgetall(key);
        }
        let mut conn = self.conn.clone();
        let hashes: Vec<HashMap<String, String>> =
            pipe.query_async(&mut conn).await.map_err(crate::redis_error::failed)?;
        let mut state = lock(&self.state);
        if state.tracking && state.generation == before {
            if state.hashes.len() + keys.len() > MAX_ENTRIES {
                state.hashes.clear();
            }
            for (key, hash) in keys.iter().zip(&hashes) {
                state.hashes.insert(key.clone(), hash.clone());
            }
        }
        Ok(hashes)
    }

    /// Drops `keys` from the cache after this server wrote them elsewhere: the next lookup reads
    /// them again, and no read that crossed the write is cached.
    pub(crate) fn forget(&self, keys: &[String]) {
        let mut state = lock(&self.state);
        state.generation += 1;
        for key in keys {
            state.hashes.remove(key);
        }
    }

    /// Notes that the host at `key` was seen at `secs`, for the next batch.
    pub(crate) fn note_seen(&self, key: &str, secs: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() < MAX_ENTRIES || seen.contains_key(key) {
            seen.insert(key.to_owned(), secs);
        }
    }

    /// Lookups the cache answered, and those that went to Redis.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }
}

/// Writes the gathered last-seen times every [`FLUSH_EVERY`] over the tracking connection
/// (`NOLOOP`: they invalidate nothing here), until the cache is dropped. Times that fail to
/// go are kept for the next batch.
async fn flush_forever(cache: std::sync::Weak<HostCache>) {
    loop {
        tokio::time::sleep(FLUSH_EVERY).await;
        let Some(cache) = cache.upgrade() else { return };
        let batch: Vec<(String, u64)> = {
            let mut seen = cache.seen.lock().unwrap_or_else(PoisonError::into_inner);
            seen.drain().collect()
        };
        if batch.is_empty() {
            continue;
        }
        let mut pipe = redis::pipe();
        for (key, secs) in &batch {
            pipe.hset(key, LAST_SEEN, *secs).ignore();
        }
        let mut conn = cache.conn.clone();
        let result = pipe.query_async::<()>(&mut conn).await;
        {
            // Redis stops tracking a key for every client when one writes it (NOLOOP only
            // spares the writer the message): the written entries leave the cache, to be read
            // and tracked again, and no read that crossed the write is cached.
            let mut state = lock(&cache.state);
            state.generation += 1;
            for (key, _) in &batch {
                state.hashes.remove(key);
            }
        }
        if let Err(e) = result {
            tracing::warn!(error = %e, "last-seen times could not be written; kept for the next batch");
            let mut seen = cache.seen.lock().unwrap_or_else(PoisonError::into_inner);
            for (key, secs) in batch {
                seen.entry(key).or_insert(secs);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(keys: &[&str]) -> Mutex<State> {
        let hashes = keys.iter().map(|k| ((*k).to_owned(), HashMap::from([("ip".to_owned(), "10.0.0.1".to_owned())])));
        Mutex::new(State { hashes: hashes.collect(), generation: 7, tracking: true })
    }

    fn push(kind: PushKind, data: Vec<Value>) -> PushInfo {
        PushInfo { kind, data }
    }

    #[test]
    fn an_invalidation_drops_its_keys_and_moves_the_generation() {
        let state = cached(&["mac:a", "mac:b", "group:default"]);
        let keys =
            Value::Array(vec![Value::BulkString(b"mac:a".to_vec()), Value::BulkString(b"group:default".to_vec())]);
        on_push(&state, &push(PushKind::Invalidate, vec![keys]));
        let state = lock(&state);
        assert_eq!(state.hashes.keys().collect::<Vec<_>>(), vec!["mac:b"]);
        assert_eq!(state.generation, 8, "a read that crossed it is not cached");
        assert!(state.tracking);
    }

    #[test]
    fn a_flush_empties_the_cache_and_a_lost_connection_stops_caching() {
        let state = cached(&["mac:a", "mac:b"]);
        on_push(&state, &push(PushKind::Invalidate, vec![Value::Nil]));
        assert!(lock(&state).hashes.is_empty(), "FLUSHDB invalidates with nil: everything");
        let state = cached(&["mac:a"]);
        on_push(&state, &push(PushKind::Disconnection, vec![]));
        let state = lock(&state);
        assert!(state.hashes.is_empty() && !state.tracking && state.generation == 8);
    }

    #[test]
    fn other_pushes_change_nothing() {
        let state = cached(&["mac:a"]);
        on_push(&state, &push(PushKind::Message, vec![Value::BulkString(b"mac:a".to_vec())]));
        let state = lock(&state);
        assert_eq!((state.hashes.len(), state.generation, state.tracking), (1, 7, true));
    }
}
