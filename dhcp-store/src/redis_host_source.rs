//! Hosts and groups read from a Redis of their own (`host-store` in the server's config):
//! typically the standby's local read-only replica, as the Go Redis DHCP server's standby runs.
//!
//! Reads go to that Redis only, and nothing is written to it: a replica refuses writes. The
//! hosts' last-seen times (`ts`) are gathered and written to the master (`master=URL`) in one
//! pipeline a second, from a task of their own, so no request waits on the master. While the
//! master cannot be reached, known hosts are still answered from the replica; clients without
//! an entry are answered only with `allow-dynamic=yes`, as the Go standby's `--allow-slave`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use std::net::Ipv4Addr;

use dhcp_core::{HostQuery, StoreError, StoreHost};
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

use crate::redis_error::failed;
use crate::redis_hosts::LAST_SEEN;
use crate::redis_pool;
use crate::redis_store::{Found, RedisStore};

/// How often the gathered last-seen times go to the master.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Last-seen times kept for the master at most: past it (the master away for long, many
/// clients), new hosts' times wait for the next flush that succeeds.
const MAX_PENDING: usize = 100_000;

/// How long a connection to the master, or a flush, may take.
const MASTER_TIMEOUT: Duration = Duration::from_secs(1);

/// Where the hosts' last-seen times go, and whether it answered last time.
#[derive(Debug)]
struct Master {
    client: redis::Client,
    pending: Mutex<HashMap<String, u64>>,
    reachable: AtomicBool,
}

/// Hosts and groups from their own Redis (see the module docs).
#[derive(Debug)]
pub struct RedisHostSource {
    reader: RedisStore,
    master: Option<Arc<Master>>,
    allow_dynamic: bool,
}

impl RedisHostSource {
    /// Connects to the Redis `url` names (as [`RedisStore::connect`] takes it, `hosts=` for
    /// where the entries live) with two more parameters: `master=URL`, the Redis that the
    /// hosts' last-seen times are written to (none: they are not written), and
    /// `allow-dynamic=yes|no` (default `no`), whether clients without an entry are served
    /// while the master cannot be reached.
    pub async fn connect(url: &str) -> Result<RedisHostSource, StoreError> {
        let bad = |why: String| StoreError::Backend(format!("host store URL: {why}"));
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let (mut master, mut allow_dynamic, mut rest) = (None, false, Vec::new());
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("master", m)) if !m.is_empty() => master = Some(crate::codec::percent_decode(m)),
                Some(("allow-dynamic", "yes")) => allow_dynamic = true,
                Some(("allow-dynamic", "no")) => allow_dynamic = false,
                Some(("allow-dynamic", other)) => return Err(bad(format!("allow-dynamic={other:?}: yes or no"))),
                _ => rest.push(pair),
            }
        }
        let reader_url = if rest.is_empty() { base.to_owned() } else { format!("{base}?{}", rest.join("&")) };
        let reader = RedisStore::connect(&reader_url).await?;
        let master = match master {
            None => None,
            Some(url) => {
                let client = redis::Client::open(url.as_str()).map_err(|e| bad(format!("master={url:?}: {e}")))?;
                let master =
                    Arc::new(Master { client, pending: Mutex::new(HashMap::new()), reachable: AtomicBool::new(true) });
                tokio::spawn(flush_forever(Arc::downgrade(&master)));
                Some(master)
            }
        };
        Ok(RedisHostSource { reader, master, allow_dynamic })
    }

    /// The Redis the hosts are read from.
    pub fn reader(&self) -> &RedisStore {
        &self.reader
    }

    /// Whether the master answered the last flush (always, without one).
    pub fn master_reachable(&self) -> bool {
        self.master.as_ref().is_none_or(|m| m.reachable.load(Ordering::Relaxed))
    }

    /// The client's entry and groups, as [`dhcp_core::LeaseStore::host`] answers them. Free
    /// addresses of the `pool` hash are proposed only while the master, which takes them,
    /// answers.
    pub async fn host(&self, query: &HostQuery<'_>) -> Result<Option<StoreHost>, StoreError> {
        let propose = self.master.is_some() && self.master_reachable();
        match self.reader.find_host(query, false, propose).await? {
            Found::Known(host, key) => {
                if let Some(master) = &self.master {
                    let mut pending = master.pending.lock().unwrap_or_else(PoisonError::into_inner);
                    if pending.len() < MAX_PENDING || pending.contains_key(&key) {
                        pending.insert(key, query.now.as_secs());
                    }
                }
                Ok(Some(host))
            }
            Found::Dynamic(_) | Found::Nothing if !self.allow_dynamic && !self.master_reachable() => {
                Err(StoreError::Unavailable(
                    "the master Redis is unreachable, and clients without an entry are served only with it \
                     (allow-dynamic=no)"
                        .into(),
                ))
            }
            Found::Dynamic(host) => Ok(Some(host)),
            Found::Nothing => Ok(None),
        }
    }

    /// Takes `addr` of the `pool` hash for the client on the master, as
    /// [`dhcp_core::LeaseStore::take_pool_address`] does; `false` without a master. The
    /// replica learns of it by replication.
    pub async fn take_pool_address(&self, query: &HostQuery<'_>, addr: Ipv4Addr) -> Result<bool, StoreError> {
        let Some(master) = &self.master else { return Ok(false) };
        let config =
            AsyncConnectionConfig::new().set_connection_timeout(MASTER_TIMEOUT).set_response_timeout(MASTER_TIMEOUT);
        // A connection per take: takes are one per new dynamic client, and the flush task
        // keeps its own.
        let mut conn = master.client.get_multiplexed_async_connection_with_config(&config).await.map_err(failed)?;
        let mac = crate::redis_store::colon_hex(query.hw.as_bytes());
        let taken = redis_pool::take(&mut conn, self.reader.hosts_prefix(), &mac, query, addr).await?;
        self.reader.forget_pool_entry(&mac);
        Ok(taken)
    }
}

/// Writes the gathered last-seen times to the master every [`FLUSH_EVERY`], until the source
/// is dropped. A flush that fails keeps the times for the next one and marks the master
/// unreachable; one that succeeds marks it reachable.
async fn flush_forever(master: Weak<Master>) {
    let mut conn: Option<MultiplexedConnection> = None;
    loop {
        tokio::time::sleep(FLUSH_EVERY).await;
        let Some(master) = master.upgrade() else { return };
        let batch: Vec<(String, u64)> = {
            let pending = master.pending.lock().unwrap_or_else(PoisonError::into_inner);
            pending.iter().map(|(k, v)| (k.clone(), *v)).collect()
        };
        let result = flush(&master.client, &mut conn, &batch).await;
        match result {
            Ok(()) => {
                let mut pending = master.pending.lock().unwrap_or_else(PoisonError::into_inner);
                // Times noted again since the batch was taken stay for the next flush.
                for (key, at) in &batch {
                    if pending.get(key) == Some(at) {
                        pending.remove(key);
                    }
                }
                if !master.reachable.swap(true, Ordering::Relaxed) {
                    tracing::info!("the master Redis answers again: last-seen times are written to it");
                }
            }
            Err(e) => {
                conn = None;
                if master.reachable.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "the master Redis is unreachable: last-seen times wait for it");
                }
            }
        }
    }
}

/// One flush: a ping when there is nothing to write (so that reachability stays known), else
/// every time in one pipeline.
async fn flush(
    client: &redis::Client,
    conn: &mut Option<MultiplexedConnection>,
    batch: &[(String, u64)],
) -> Result<(), StoreError> {
    if conn.is_none() {
        let config =
            AsyncConnectionConfig::new().set_connection_timeout(MASTER_TIMEOUT).set_response_timeout(MASTER_TIMEOUT);
        *conn = Some(client.get_multiplexed_async_connection_with_config(&config).await.map_err(failed)?);
    }
    let Some(conn) = conn.as_mut() else { return Ok(()) };
    let mut pipe = redis::pipe();
    if batch.is_empty() {
        pipe.cmd("PING").ignore();
    }
    for (key, at) in batch {
        pipe.hset(key, LAST_SEEN, *at).ignore();
    }
    pipe.query_async::<()>(conn).await.map_err(failed)
}
