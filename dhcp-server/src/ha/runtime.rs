//! The high-availability side of one running server: its state machine, heartbeats to the
//! partner, lease updates out, the partner's leases in.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dhcp_core::{Lease, LeaseState, LeaseStore, PoolRef, StoreError};
use dhcp_net::Server;
use tokio::sync::{mpsc, oneshot};

use dhcp_core::MessageType;
use dhcp_core::wire::{Packet, code};
use dhcp_net::Verdict;
use tracing::{info, warn};

use super::config::{self, HaConfig};
use super::peer::PeerClient;
use super::replica::ReplicaStore;
use super::state::{HaState, Machine, Seen, Share};
use super::wire::Change;
use super::{hash, wire};
use crate::api::model::{HaPartnerStatus, HaStatus, Heartbeat, LeasePage, UpdatesApplied};

/// A lease change waiting to be sent, and who waits for the partner's acknowledgement.
type Pending = (Change, Option<oneshot::Sender<Result<(), String>>>);

/// How often the partner's silence is checked against `max-response-delay`.
const WATCHDOG_PERIOD: Duration = Duration::from_millis(50);

/// At most this many changes go in one request to the partner.
const MAX_BATCH: usize = 1000;

/// Under load (the last request carried more than one change), how long the next batch waits
/// for more changes before it goes: each request costs both servers far more than a change in
/// it, and a client waits this much longer for its ACK at most. Without load a change goes at
/// once.
const BATCH_WINDOW: Duration = Duration::from_millis(1);

/// The high-availability side of one server: its state machine and its partner.
#[derive(Debug)]
pub struct Ha {
    config: HaConfig,
    /// How peers' `https://` certificates are checked.
    tls: Arc<rustls::ClientConfig>,
    machine: Mutex<Machine>,
    /// When this server started.
    epoch: Instant,
    /// The pools the engine allocated from, by key, to tell which half an address is in.
    pools: Mutex<HashMap<u64, Vec<RangeInclusive<u32>>>>,
    /// Lease changes for the partner, sent by [`run_updates`](Self::run_updates).
    updates: mpsc::UnboundedSender<Pending>,
    updates_rx: Mutex<Option<mpsc::UnboundedReceiver<Pending>>>,
    /// The partner came back after an interruption: fetch its leases (both sides granted some).
    resync: AtomicBool,
    /// The partner's last heartbeat had other subnets or pools than ours.
    pools_differ: AtomicBool,
    /// Lease changes sent to the partner, and in how many requests.
    updates_sent: AtomicU64,
    update_batches: AtomicU64,
}

impl Ha {
    /// A server starting now, in `waiting`; the error says why the `tls-ca` file cannot be used.
    pub fn new(config: HaConfig) -> Result<Ha, String> {
        let epoch = Instant::now();
        let (updates, rx) = mpsc::unbounded_channel();
        let tls = crate::tls::peer_client_config(config.tls_ca.as_deref())?;
        Ok(Ha {
            tls,
            machine: Mutex::new(Machine::new(&config, epoch)),
            config,
            epoch,
            pools: Mutex::new(HashMap::new()),
            updates,
            updates_rx: Mutex::new(Some(rx)),
            resync: AtomicBool::new(false),
            pools_differ: AtomicBool::new(false),
            updates_sent: AtomicU64::new(0),
            update_batches: AtomicU64::new(0),
        })
    }

    /// A client of `peer`'s API, giving up on a call after `timeout`.
    fn client(&self, peer: &config::Peer, token: &str, timeout: Duration) -> Result<PeerClient, String> {
        PeerClient::new(&peer.url, token, &self.tls, timeout)
    }

    /// Which free addresses this server may give new clients now.
    pub fn share(&self) -> Share {
        self.machine().share(Instant::now())
    }

    /// Remembers a pool the engine allocates from, to place addresses in halves.
    pub(crate) fn note_pool(&self, pool: PoolRef<'_>) {
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        if !pools.contains_key(&pool.key) && pools.len() < 4096 {
            pools.insert(pool.key, pool.ranges.to_vec());
        }
    }

    /// Remembers every pool of `config` (at start; pools of a reloaded config are noted when
    /// the engine first allocates from them).
    pub(crate) fn note_pools(&self, config: &dhcp_core::Config) {
        for subnet in &config.subnets {
            for pool in &subnet.pools {
                self.note_pool(PoolRef { key: pool.key, subnet: subnet.id, ranges: &pool.ranges });
            }
        }
    }

    /// Whether this server may give `addr` to a new client under `share`: it lies in `share` of
    /// its pool, or in no known pool at all (a reservation's address, which only its client
    /// gets, whichever server answers).
    pub(crate) fn address_in_share(&self, addr: Ipv4Addr, share: Share) -> bool {
        let a = u32::from(addr);
        let pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        let mut holding = pools.values().filter(|ranges| ranges.iter().any(|r| r.contains(&a))).peekable();
        if holding.peek().is_none() {
            return true;
        }
        holding.any(|ranges| super::state::half(ranges, share).iter().any(|r| r.contains(&a)))
    }

    /// Sends a stored lease to the partner (offers stay local, as in Kea: only what the client
    /// is told it holds goes across).
    pub(crate) async fn replicate(&self, lease: &Lease) -> Result<(), StoreError> {
        if matches!(lease.state, LeaseState::Offered { .. }) {
            return Ok(());
        }
        self.replicate_change(Change::Put(lease.clone())).await
    }

    /// Sends one change to the partner while it is up; waits for its acknowledgement when
    /// `sync-lease-updates` is set. A partner that is down gets none: it fetches our leases
    /// when it comes back.
    pub(crate) async fn replicate_change(&self, change: Change) -> Result<(), StoreError> {
        let state = self.state();
        if !matches!(
            state,
            HaState::HotStandby
                | HaState::LoadBalancing
                | HaState::PassiveBackup
                | HaState::Terminated
                | HaState::InMaintenance
                | HaState::PartnerInMaintenance
        ) {
            return Ok(());
        }
        if !self.config.sync_lease_updates {
            let _ = self.updates.send((change, None));
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        if self.updates.send((change, Some(tx))).is_err() {
            return Err(StoreError::Unavailable("HA lease updates are not running".into()));
        }
        match tokio::time::timeout(self.config.max_response_delay, rx).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(reason))) => {
                Err(StoreError::Unavailable(format!("HA partner refused the lease update: {reason}")))
            }
            _ => Err(StoreError::Unavailable("HA partner did not acknowledge the lease update in time".into())),
        }
    }

    /// The `[ha]` table it runs.
    pub fn config(&self) -> &HaConfig {
        &self.config
    }

    fn machine(&self) -> MutexGuard<'_, Machine> {
        self.machine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state now.
    pub fn state(&self) -> HaState {
        self.machine().state()
    }

    /// Whether this server answers the client that sent `packet`.
    pub fn decide(&self, packet: &Packet<'_>) -> Verdict {
        let client_id = packet.option(code::CLIENT_IDENTIFIER);
        let key = client_id.as_deref().filter(|id| !id.is_empty()).unwrap_or(packet.chaddr());
        // Kea splits these message types by the hash and leaves any other to the primary.
        let split = matches!(
            packet.message_type(),
            MessageType::Discover
                | MessageType::Request
                | MessageType::Decline
                | MessageType::Release
                | MessageType::Inform
        );
        let hash = if split { hash::client_hash(client_id.as_deref(), packet.chaddr()) } else { 0 };
        let seen = Seen { hash, secs: packet.secs(), client: key };
        let (answer, changed) = self.machine().client_packet(seen, Instant::now());
        if let Some(state) = changed {
            warn!(state = state.as_str(), "HA: partner's clients go unanswered; taking them over");
        }
        if answer { Verdict::Handle } else { Verdict::Ignore }
    }

    /// What this server tells its partner: name, state, clock, how many leases it counts and
    /// a fingerprint of its subnets and pools ([`pools_fingerprint`]).
    pub fn heartbeat(&self, lease_count: u64, pools: u64) -> Heartbeat {
        Heartbeat {
            name: self.config.this_server.clone(),
            state: self.state().as_str().to_owned(),
            clock: unix_now(),
            lease_count,
            pools,
        }
    }

    /// The partner spoke (its heartbeat, or its answer to ours); `pools` is this server's own
    /// fingerprint, to notice a pair whose pools differ.
    pub fn heard(&self, from: &Heartbeat, pools: u64) {
        let differ = from.pools != 0 && from.pools != pools;
        if self.pools_differ.swap(differ, Ordering::Relaxed) != differ && differ {
            warn!(
                partner = from.name,
                "HA: the partner's subnets and pools differ from this server's; the pair will not split them alike"
            );
        }
        let Some(state) = HaState::from_name(&from.state) else {
            warn!(state = from.state, "HA: the partner sent a state this server does not know");
            return;
        };
        let skew = Duration::from_secs(from.clock.abs_diff(unix_now()));
        let mut machine = self.machine();
        let was = machine.state();
        let changed = machine.heard_from_partner(Instant::now(), state, skew);
        drop(machine);
        if self.config.send_lease_updates
            && matches!(was, HaState::CommunicationsInterrupted | HaState::PartnerDown)
            && !matches!(state, HaState::Waiting | HaState::Syncing)
            && changed.is_some()
        {
            // Both may have granted leases while apart: take the partner's. A partner that
            // restarted (waiting, syncing) granted none and fetches ours instead.
            self.resync.store(true, Ordering::Relaxed);
        }
        if let Some(next) = changed {
            if next == HaState::Terminated {
                warn!(skew_secs = skew.as_secs(), "HA: clocks differ by more than a minute; no failover until fixed");
            } else {
                info!(state = next.as_str(), partner = from.state, "HA: partner answers");
            }
        }
    }

    /// An operator's `ha maintenance start` (`on`) or `stop`: this server stops answering while
    /// its partner answers everyone, and takes its part back after.
    pub fn maintenance(&self, on: bool) -> Option<HaState> {
        let changed = self.machine().maintenance(on, Instant::now());
        if let Some(next) = changed {
            warn!(state = next.as_str(), "HA: maintenance by operator");
        }
        changed
    }

    /// An operator's `ha sync`: fetch the partner's leases now (at the next heartbeat).
    pub fn request_sync(&self) {
        self.resync.store(true, Ordering::Relaxed);
    }

    /// Time passed; returns the new state when it changed (and logs it).
    pub fn tick(&self) -> Option<HaState> {
        let changed = self.machine().tick(Instant::now());
        if let Some(next) = changed {
            warn!(state = next.as_str(), "HA: partner silent for max-response-delay");
        }
        changed
    }

    /// An operator's `ha partner-down`: take the partner's clients over now. `None` when this
    /// server may not (a backup, passive-backup mode) or already does.
    pub fn partner_down(&self) -> Option<HaState> {
        let changed = self.machine().partner_down(Instant::now());
        if let Some(next) = changed {
            warn!(state = next.as_str(), "HA: partner-down by operator");
        }
        changed
    }

    /// The state for the API, `dhcp-cli show ha` and the metrics.
    pub fn status(&self) -> HaStatus {
        let now = Instant::now();
        let machine = self.machine();
        HaStatus {
            this_server: self.config.this_server.clone(),
            mode: self.config.mode.as_str().to_owned(),
            role: self.config.role().as_str().to_owned(),
            state: machine.state().as_str().to_owned(),
            partner: self.config.partner().map(|p| HaPartnerStatus {
                name: p.name.clone(),
                url: p.url.clone(),
                role: p.role.as_str().to_owned(),
                state: machine.partner_state().map(|s| s.as_str().to_owned()),
                last_contact_ms: machine.since_contact(now).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            }),
            unacked_clients: machine.unacked_clients(),
            not_in_scope: machine.not_in_scope(),
            lease_updates_sent: self.updates_sent.load(Ordering::Relaxed),
            lease_update_batches: self.update_batches.load(Ordering::Relaxed),
            pools_differ: self.pools_differ.load(Ordering::Relaxed),
            uptime_ms: u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Asks the partner how it is, every `heartbeat-delay`, until dropped, and fetches its
    /// leases when this server syncs. Without a partner (a primary with backups only) there is
    /// nothing to ask.
    pub async fn run_heartbeats<S>(self: Arc<Self>, token: String, server: Arc<Server<S>>)
    where
        S: LeaseStore + ReplicaStore + 'static,
    {
        let Some(partner) = self.config.partner().cloned() else { return };
        let timeout = self.config.heartbeat_delay.max(Duration::from_millis(200));
        let mut client = match self.client(&partner, &token, timeout) {
            Ok(client) => client,
            Err(reason) => {
                warn!(partner = partner.name, %reason, "HA: cannot call the partner; no heartbeats");
                return;
            }
        };
        let mut interval = tokio::time::interval(self.config.heartbeat_delay);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_reachable = true;
        loop {
            interval.tick().await;
            let pools = pools_fingerprint(&server.engine().config());
            let body = self.heartbeat(assigned_leases(server.engine()), pools);
            match client.post_json::<_, Heartbeat>("/api/v1/ha/heartbeat", &body).await {
                Ok(reply) => {
                    if !was_reachable {
                        info!(partner = partner.name, "HA: partner reachable again");
                    }
                    was_reachable = true;
                    self.heard(&reply, pools);
                }
                Err(reason) => {
                    if was_reachable {
                        warn!(partner = partner.name, %reason, "HA: heartbeat not answered");
                    }
                    was_reachable = false;
                }
            }
            self.tick();
            let resync = self.resync.swap(false, Ordering::Relaxed);
            if self.state() == HaState::Syncing || resync {
                match self.fetch_partner_leases(&mut client, server.engine()).await {
                    Ok(count) => {
                        info!(count, "HA: the partner's leases are stored here");
                        if self.machine().synced(Instant::now()).is_some() {
                            info!(state = self.state().as_str(), "HA: synced; serving");
                        }
                    }
                    Err(reason) => {
                        warn!(%reason, "HA: cannot fetch the partner's leases; will try again");
                        self.resync.store(resync, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// Checks every 50 ms whether the partner has been silent for `max-response-delay`, until
    /// dropped: the takeover comes at that deadline, not at the next heartbeat after it.
    pub async fn run_watchdog(self: Arc<Self>) {
        loop {
            tokio::time::sleep(WATCHDOG_PERIOD).await;
            self.tick();
        }
    }

    /// Fetches every lease of the partner, page by page, into `store`; returns how many.
    async fn fetch_partner_leases<S: LeaseStore + ReplicaStore>(
        &self,
        client: &mut PeerClient,
        engine: &dhcp_core::Engine<S>,
    ) -> Result<usize, String> {
        let mut after: Option<Ipv4Addr> = None;
        let mut count = 0;
        loop {
            let mut path = format!("/api/v1/ha/leases?limit={}", self.config.sync_page_size);
            if let Some(a) = after {
                path.push_str(&format!("&after={a}"));
            }
            let page: LeasePage = client.get_json(&path).await?;
            count += page.leases.len();
            let changes = page
                .leases
                .iter()
                .map(|record| wire::from_record(record).map(Change::Put))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("a lease from the partner: {e}"))?;
            let now = dhcp_net::now();
            let changed = |before: Option<&Lease>, after: Option<&Lease>| engine.lease_changed(before, after);
            engine.store().apply_changes(&changes, now, &changed).await.map_err(|e| e.to_string())?;
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(count),
            }
        }
    }

    /// Sends queued lease changes to the partner (and backups) in batches until dropped: the
    /// changes that pile up while one batch is on its way go together in the next. Whoever
    /// waits for the partner's acknowledgement is answered before the backups are sent theirs.
    pub async fn run_updates(self: Arc<Self>, token: String) {
        let Some(mut rx) = self.updates_rx.lock().unwrap_or_else(PoisonError::into_inner).take() else { return };
        let me = self.config.this_server.clone();
        let partner = self.config.partner().map(|p| p.name.clone());
        // The partner first: its answer is what clients wait for.
        let mut targets: Vec<&config::Peer> = self.config.peers.iter().filter(|p| p.name != me).collect();
        targets.sort_by_key(|p| Some(&p.name) != partner.as_ref());
        let mut clients = Vec::new();
        for target in targets {
            match self.client(target, &token, self.config.max_response_delay) {
                Ok(client) => clients.push((target.name.clone(), client)),
                Err(reason) => warn!(peer = target.name, %reason, "HA: cannot call this peer; no lease updates to it"),
            }
        }
        let mut busy = false;
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            take_queued(&mut rx, &mut batch);
            if busy {
                let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
                while batch.len() < MAX_BATCH {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(next)) => {
                            batch.push(next);
                            take_queued(&mut rx, &mut batch);
                        }
                        _ => break,
                    }
                }
            }
            busy = batch.len() > 1;
            let (changes, waiters): (Vec<Change>, Vec<_>) = batch.into_iter().unzip();
            self.updates_sent.fetch_add(changes.len() as u64, Ordering::Relaxed);
            self.update_batches.fetch_add(1, Ordering::Relaxed);
            let body = bytes::Bytes::from(wire::encode_updates(&me, &changes));
            let mut waiters = Some(waiters);
            for (name, client) in &mut clients {
                let sent = client
                    .post::<UpdatesApplied>("/api/v1/ha/lease-updates", wire::LEASE_UPDATES_TYPE, body.clone())
                    .await;
                let to_partner = Some(&*name) == partner.as_ref();
                match &sent {
                    Ok(applied) if applied.conflicts > 0 => {
                        warn!(
                            peer = name,
                            conflicts = applied.conflicts,
                            "HA: the peer kept its own leases for some addresses"
                        );
                    }
                    Ok(_) => {}
                    Err(reason) if !to_partner => warn!(peer = name, %reason, "HA: lease updates to a backup failed"),
                    Err(_) => {}
                }
                if to_partner {
                    let outcome = sent.map(|_| ());
                    for waiter in waiters.take().into_iter().flatten().flatten() {
                        let _ = waiter.send(outcome.clone());
                    }
                }
            }
            // Without a partner (a primary with backups only) nobody waits on an answer.
            for waiter in waiters.into_iter().flatten().flatten() {
                let _ = waiter.send(Ok(()));
            }
        }
    }
}

/// Moves what is queued now onto `batch`, up to [`MAX_BATCH`].
fn take_queued(rx: &mut mpsc::UnboundedReceiver<Pending>, batch: &mut Vec<Pending>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Leases the engine counts as assigned, over all subnets: what a heartbeat reports.
pub(crate) fn assigned_leases<S: LeaseStore>(engine: &dhcp_core::Engine<S>) -> u64 {
    engine.stats().subnets().iter().map(|s| u64::try_from(s.assigned_addresses()).unwrap_or(0)).sum()
}

/// A fingerprint of the subnets and pools of `config` (ids, prefixes, pool ranges): equal on
/// both servers of a pair whose configs agree where it matters for splitting clients and
/// addresses. Never 0 (0 means "not sent").
pub fn pools_fingerprint(config: &dhcp_core::Config) -> u64 {
    // FNV-1a: stable across processes and builds, unlike the standard library's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash = (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    for subnet in &config.subnets {
        feed(&subnet.id.to_be_bytes());
        feed(&u32::from(subnet.net.network()).to_be_bytes());
        feed(&[subnet.net.prefix_len()]);
        for pool in &subnet.pools {
            feed(&u32::from(pool.first).to_be_bytes());
            feed(&u32::from(pool.last).to_be_bytes());
        }
    }
    hash.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pool: &str) -> dhcp_core::Config {
        let text = format!("[[subnets]]\nid = 1\nsubnet = \"10.0.0.0/24\"\npools = [\"{pool}\"]\n");
        dhcp_core::Config::from_toml_str(&text).expect("valid")
    }

    #[test]
    fn addresses_are_placed_in_halves_of_their_pools() {
        let raw: super::config::RawHa = toml::from_str(
            "this-server = \"a\"\nmode = \"hot-standby\"\n\
             [[peers]]\nname = \"a\"\nurl = \"http://10.0.0.1:8067\"\nrole = \"primary\"\n\
             [[peers]]\nname = \"b\"\nurl = \"http://10.0.0.2:8067\"\nrole = \"standby\"\n",
        )
        .expect("a table");
        let ha = Ha::new(super::config::from_raw(raw, false).expect("valid")).expect("no TLS files");
        ha.note_pools(&config("10.0.0.10-10.0.0.19"));
        let at = |last: u8| Ipv4Addr::new(10, 0, 0, last);
        assert!(ha.address_in_share(at(10), Share::Lower) && ha.address_in_share(at(14), Share::Lower));
        assert!(!ha.address_in_share(at(15), Share::Lower) && ha.address_in_share(at(15), Share::Upper));
        assert!(!ha.address_in_share(at(10), Share::Upper));
        assert!(ha.address_in_share(at(200), Share::Lower), "outside every pool: a reservation's");
    }

    #[test]
    fn pools_fingerprint_tells_configs_apart() {
        let a = pools_fingerprint(&config("10.0.0.10-10.0.0.20"));
        assert_eq!(a, pools_fingerprint(&config("10.0.0.10-10.0.0.20")), "stable");
        assert_ne!(a, pools_fingerprint(&config("10.0.0.10-10.0.0.21")));
        assert_ne!(a, 0, "0 means not sent");
    }
}
