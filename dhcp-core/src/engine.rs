//! The DHCPv4 state machine.

use alloc::borrow::Cow;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};
use core::sync::atomic::{AtomicU64, Ordering};

use dhcproto::v4::MessageType;

use crate::config::{Config, Group, LeaseTimes, Pool, Reservation, Subnet};
use crate::lease::{ClientId, HwAddr, Lease, LeaseState};
use crate::offers;
use crate::stats::{Counter, Stats, SubnetStats};
use crate::store::{HostQuery, LeaseStore, StoreError};
use crate::swap::Swap;
use crate::time::Timestamp;
use crate::wire::{self, BROADCAST_FLAG, Packet, ParseError, ReplyHeader, ReplyWriter, code, relay_code};

/// The relay port a reply goes to unless RFC 8357 says otherwise.
pub const SERVER_PORT: u16 = 67;
/// How often the engine wants [`Engine::handle_timeout`] called, in seconds.
pub const RECLAIM_INTERVAL: u64 = 5;
/// Leases reclaimed per store call, so one timer tick never holds the store for long.
const RECLAIM_BATCH: usize = 1024;
/// The client a ping conflict's declined record is kept under: no DHCP client's identifier
/// (option 61 is at least two bytes, and this one starts with a zero type nobody sends).
const PING_CONFLICT_CLIENT: &[u8] = b"\0ping-check";
/// Options a reply carries when configured, after those the client asked for, whether it
/// asked or not.
const ALWAYS_OFFERED: &[u8] =
    &[code::SUBNET_MASK, code::ROUTER, code::DOMAIN_NAME_SERVER, code::DOMAIN_NAME, code::HOST_NAME];

/// Where a datagram came from and how it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecvMeta {
    /// Source address and port.
    pub src: SocketAddrV4,
    /// The local address the datagram was addressed to or arrived on (IP_PKTINFO's
    /// `ipi_spec_dst`): the server identifier and the subnet of directly attached clients.
    pub local_addr: Option<Ipv4Addr>,
    /// The receiving interface's index, 0 when unknown; replies go out the same way.
    pub ifindex: u32,
    /// What the ping check the engine asked for ([`Outcome::PingFirst`]) found, when the
    /// datagram is handed back after it.
    pub ping: Option<PingAnswer>,
}

/// An address the engine wants checked with an ICMP echo before it offers it (`ping-check`).
///
/// The offer is already held in the store for the client; the driver pings `addr`, waits up to
/// `timeout_ms` for an answer without holding up other requests, and hands the same datagram
/// back to [`Engine::handle`] with [`RecvMeta::with_ping_answer`]. A check that is never
/// answered costs nothing: the held offer lapses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingCheck {
    /// The address about to be offered.
    pub addr: Ipv4Addr,
    /// How long to wait for an echo reply, in milliseconds.
    pub timeout_ms: u32,
}

/// What a ping check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingAnswer {
    /// The address that was checked.
    pub addr: Ipv4Addr,
    /// Whether something answered: the address is in use by a host the server does not know
    /// of, and is set aside for the decline probation period.
    pub in_use: bool,
}

impl RecvMeta {
    /// Metadata with only the source known.
    pub fn new(src: SocketAddrV4) -> Self {
        RecvMeta { src, local_addr: None, ifindex: 0, ping: None }
    }

    /// The same datagram again, with what the ping check asked for found.
    pub fn with_ping_answer(mut self, answer: PingAnswer) -> Self {
        self.ping = Some(answer);
        self
    }

    /// With the local address the datagram arrived on.
    pub fn with_local_addr(mut self, addr: Ipv4Addr) -> Self {
        self.local_addr = Some(addr);
        self
    }

    /// With the receiving interface's index.
    pub fn with_ifindex(mut self, ifindex: u32) -> Self {
        self.ifindex = ifindex;
        self
    }
}

/// Where a reply must be sent, as RFC 2131 section 4.1 decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// To the relay agent at `addr`, on `port` (67, or the relay's own port per RFC 8357).
    Relay {
        /// The relay's address (giaddr).
        addr: Ipv4Addr,
        /// The UDP port.
        port: u16,
    },
    /// Unicast to the client's current address (ciaddr), on the client port.
    Unicast(Ipv4Addr),
    /// Broadcast to 255.255.255.255 on the client port, out the receiving interface.
    Broadcast,
    /// Unicast to `addr` at link-layer address `hw` (the client has no address yet); a driver
    /// that cannot address a frame directly falls back to broadcast.
    Hardware {
        /// The address just given (yiaddr).
        addr: Ipv4Addr,
        /// The client's hardware address (chaddr).
        hw: HwAddr,
    },
}

/// A reply written into the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// OFFER, ACK or NAK.
    pub message_type: MessageType,
    /// Where to send it.
    pub destination: Destination,
    /// The address in `yiaddr` (0.0.0.0 for NAK and INFORM replies).
    pub yiaddr: Ipv4Addr,
    /// The interface the request came in on, from [`RecvMeta::ifindex`].
    pub ifindex: u32,
    /// The reply's length in the buffer.
    pub len: usize,
}

/// A request handled as the protocol says, needing no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoReplyReason {
    /// RELEASE handled: the address is free.
    Released,
    /// DECLINE handled: the address is in probation.
    Declined,
    /// A RELEASE or DECLINE for an address the client does not hold here.
    NotHeld,
    /// A REQUEST in SELECTING state chose another server; our offer is withdrawn.
    OtherServerChosen,
    /// A message addressed by server identifier to another server.
    NotForUs,
    /// INIT-REBOOT, RENEWING or REBINDING from a client this (non-authoritative) server knows
    /// nothing of: RFC 2131 says stay silent.
    UnknownClient,
}

/// Why a datagram was dropped. Every drop is counted in `pkt4-receive-drop`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// It did not parse (also counted in `pkt4-parse-failed`).
    Malformed(ParseError),
    /// A message type a server does not take (OFFER, ACK, NAK, ...).
    UnexpectedMessageType(MessageType),
    /// No configured subnet matches the relay, option 118 or the receiving interface.
    NoSubnet(Ipv4Addr),
    /// The server identifier is neither configured nor known from the receiving address.
    NoServerIdentifier,
    /// Every pool of the subnet is in use.
    PoolExhausted,
    /// A DISCOVER from a client with no lease or reservation here, while outstanding offers
    /// held `max-offers` addresses of the subnet or `max-offers-per-relay` through its relay
    /// (also counted in `pkt4-offer-limit-drop`).
    OfferLimit,
    /// A REQUEST or DECLINE without the address it is about.
    MissingAddress,
    /// The lease store failed; nothing was promised to the client.
    Store(StoreError),
}

/// What [`Engine::handle`] did with a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Outcome {
    /// Send the reply in the buffer.
    Reply(Reply),
    /// Handled; nothing to send.
    NoReply(NoReplyReason),
    /// Dropped, and counted.
    Dropped(DropReason),
    /// Check the address with a ping before offering it; nothing is sent yet. Hand the
    /// datagram back with the answer (see [`PingCheck`]).
    PingFirst(PingCheck),
}

/// What one timer run reclaimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[must_use]
pub struct TimerReport {
    /// Bound leases that expired.
    pub expired: usize,
    /// Offers whose hold lapsed with no REQUEST.
    pub offers_lapsed: usize,
    /// Declined addresses whose probation ended.
    pub probations_ended: usize,
}

/// The DHCPv4 server engine over a lease store.
///
/// # Contract
/// - [`handle`](Engine::handle) takes one received datagram, its [`RecvMeta`] and the current
///   time, writes any reply into the caller's buffer and says where to send it.
/// - [`handle_timeout`](Engine::handle_timeout) reclaims expired leases, lapsed offers and
///   ended probations; call it at [`poll_timeout`](Engine::poll_timeout) or later.
/// - Time must not go backwards between calls. The engine reads no clock.
/// - Calls may run concurrently (`&self`); the store serialises claims.
#[derive(Debug)]
pub struct Engine<S> {
    config: Swap<Config>,
    store: S,
    stats: Stats,
    next_timeout: AtomicU64,
}

/// What a request is about, resolved once per packet.
struct Ctx<'a> {
    config: &'a Config,
    pkt: Packet<'a>,
    meta: &'a RecvMeta,
    client: ClientId,
    hw: HwAddr,
    subnet: &'a Subnet,
    reservation: Option<Cow<'a, Reservation>>,
    /// The reserved address this client can have now: `None` when it has none, or when another
    /// client still holds it (the client is then served from the pool until it frees).
    reserved: Option<Ipv4Addr>,
    /// Addresses the store's own pool proposes for this client without a reservation
    /// ([`crate::StoreHost::pool`]), in the selected subnet, best first.
    pooled: Vec<Ipv4Addr>,
    group: Option<Cow<'a, Group>>,
    server_id: Ipv4Addr,
    relay: RelayInfo<'a>,
}

/// What a [`HostQuery`] borrows from the request: the client identifier, the host name and
/// the address the client asks for (option 50, else `ciaddr`).
struct QueryParts<'a> {
    client_id: Option<Cow<'a, [u8]>>,
    host_name: Option<Cow<'a, [u8]>>,
    requested: Option<Ipv4Addr>,
}

impl<'a> QueryParts<'a> {
    fn of(pkt: &Packet<'a>) -> Self {
        let requested =
            pkt.option_addr(code::REQUESTED_IP_ADDRESS).or_else(|| Some(pkt.ciaddr()).filter(|a| !a.is_unspecified()));
        QueryParts { client_id: pkt.option(code::CLIENT_IDENTIFIER), host_name: pkt.option(code::HOST_NAME), requested }
    }

    fn query<'q>(&'q self, hw: &'q HwAddr, now: Timestamp) -> HostQuery<'q> {
        HostQuery::new(hw, self.client_id.as_deref(), now)
            .with_host_name(self.host_name.as_deref())
            .with_requested(self.requested)
    }
}

/// Option 82 as far as the server uses it.
#[derive(Default)]
struct RelayInfo<'a> {
    raw: Option<alloc::borrow::Cow<'a, [u8]>>,
    circuit_id: Option<Vec<u8>>,
    link_selection: Option<Ipv4Addr>,
    wants_source_port: bool,
}

impl<'a> RelayInfo<'a> {
    fn parse(pkt: &Packet<'a>) -> Self {
        let Some(raw) = pkt.option(code::RELAY_AGENT_INFORMATION) else {
            return RelayInfo::default();
        };
        let mut info = RelayInfo::default();
        let mut rest: &[u8] = &raw;
        while let [code, len, tail @ ..] = rest {
            let len = usize::from(*len);
            if tail.len() < len {
                break;
            }
            let data = &tail[..len];
            match *code {
                relay_code::CIRCUIT_ID => info.circuit_id = Some(data.to_vec()),
                relay_code::LINK_SELECTION if len == 4 => {
                    info.link_selection = Some(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
                }
                relay_code::RELAY_SOURCE_PORT => info.wants_source_port = true,
                _ => {}
            }
            rest = &tail[len..];
        }
        info.raw = Some(raw);
        info
    }
}

impl<S: LeaseStore> Engine<S> {
    /// An engine serving `config` from `store`.
    pub fn new(config: Config, store: S) -> Self {
        Self::with_shared_config(Arc::new(config), store)
    }

    /// An engine over a config shared with others (several engines, one config).
    pub fn with_shared_config(config: Arc<Config>, store: S) -> Self {
        let stats = Stats::new(&config);
        Engine { config: Swap::new(config), store, stats, next_timeout: AtomicU64::new(0) }
    }

    /// The running config. A packet is handled under the config that was running when it
    /// arrived, even if [`replace_config`](Engine::replace_config) runs meanwhile.
    pub fn config(&self) -> Arc<Config> {
        self.config.get()
    }

    /// Swaps in a new config for the packets that arrive from now on (a reload), keeping the
    /// leases and the statistics: subnets that stay (by id) keep their counters, new ones start
    /// at zero.
    #[cfg(feature = "std")]
    pub fn replace_config(&self, config: Config) {
        let config = Arc::new(config);
        self.stats.adopt(&config);
        self.config.set(config);
    }

    /// The lease store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The statistics.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// When the engine next wants [`handle_timeout`](Engine::handle_timeout) called.
    #[must_use]
    pub fn poll_timeout(&self) -> Timestamp {
        Timestamp::from_secs(self.next_timeout.load(Ordering::Relaxed))
    }

    /// Reclaims what expired by `now`: bindings, offers and probations, updating statistics.
    pub async fn handle_timeout(&self, now: Timestamp) -> Result<TimerReport, StoreError> {
        let mut report = TimerReport::default();
        loop {
            let batch = match self.store.reclaim_expired(now, RECLAIM_BATCH).await {
                Ok(batch) => batch,
                Err(e) => {
                    self.stats.bump(Counter::StoreErrors);
                    return Err(e);
                }
            };
            for lease in &batch {
                match lease.state {
                    LeaseState::Bound { .. } => {
                        report.expired += 1;
                        self.stats.assigned(lease.subnet, -1);
                        self.stats.reclaimed(lease.subnet);
                    }
                    LeaseState::Offered { .. } => report.offers_lapsed += 1,
                    LeaseState::Declined { .. } => {
                        report.probations_ended += 1;
                        self.stats.declined(lease.subnet, -1);
                    }
                    LeaseState::Released | LeaseState::Expired => {}
                }
            }
            if batch.len() < RECLAIM_BATCH {
                break;
            }
        }
        self.next_timeout.store(now.as_secs() + RECLAIM_INTERVAL, Ordering::Relaxed);
        Ok(report)
    }

    /// Deletes the lease at `addr` (an operator's request), keeping the gauges right. Returns
    /// the lease as it was, or `None` when there was none.
    pub async fn delete_lease(&self, addr: Ipv4Addr) -> Result<Option<Lease>, StoreError> {
        let Some(lease) = self.store.lease_by_addr(addr).await? else { return Ok(None) };
        if !self.store.delete(addr).await? {
            return Ok(None);
        }
        let (assigned, declined) = gauge_counts(&lease);
        self.stats.assigned(lease.subnet, -assigned);
        self.stats.declined(lease.subnet, -declined);
        Ok(Some(lease))
    }

    /// Sets the per-subnet `assigned-addresses` and `declined-addresses` gauges from what the
    /// store holds: call it once at start, when a durable or shared store may already hold
    /// leases (bindings that ran out while the server was down count until reclamation takes
    /// them). Reads every lease, so it costs time in proportion to the store.
    pub async fn count_leases(&self) -> Result<(), StoreError> {
        let mut counts: BTreeMap<u32, (i64, i64)> = BTreeMap::new();
        for lease in self.store.list(None).await? {
            let (assigned, declined) = gauge_counts(&lease);
            let entry = counts.entry(lease.subnet).or_default();
            *entry = (entry.0 + assigned, entry.1 + declined);
        }
        for subnet in self.stats.subnets().iter() {
            let (assigned, declined) = counts.get(&subnet.id).copied().unwrap_or_default();
            self.stats.set_counts(subnet.id, assigned, declined);
        }
        Ok(())
    }

    /// Keeps the per-subnet `assigned-addresses` and `declined-addresses` gauges true when a
    /// lease changes in the store without this engine (a high-availability partner's lease
    /// update): the lease at one address was `before` and is now `after` (none: no lease).
    pub fn lease_changed(&self, before: Option<&Lease>, after: Option<&Lease>) {
        for (lease, sign) in [(before, -1), (after, 1)] {
            if let Some(lease) = lease {
                let (assigned, declined) = gauge_counts(lease);
                self.stats.assigned(lease.subnet, sign * assigned);
                self.stats.declined(lease.subnet, sign * declined);
            }
        }
    }

    /// Handles one received datagram. A reply, if any, is written into `out` (cleared first).
    pub async fn handle(&self, datagram: &[u8], meta: &RecvMeta, now: Timestamp, out: &mut Vec<u8>) -> Outcome {
        // A datagram handed back after a ping check was counted when it first came in.
        let again = meta.ping.is_some();
        if !again {
            self.stats.bump(Counter::Received);
        }
        let outcome = match Packet::parse(datagram) {
            Err(e) => {
                self.stats.bump(Counter::ParseFailed);
                Outcome::Dropped(DropReason::Malformed(e))
            }
            Ok(pkt) => {
                let config = self.config.get();
                self.dispatch(&config, pkt, meta, now, out).await
            }
        };
        match &outcome {
            Outcome::Reply(reply) => {
                self.stats.bump(Counter::Sent);
                self.stats.bump(match reply.message_type {
                    MessageType::Offer => Counter::OfferSent,
                    MessageType::Nak => Counter::NakSent,
                    _ => Counter::AckSent,
                });
            }
            Outcome::Dropped(reason) => {
                self.stats.bump(Counter::ReceiveDrop);
                match reason {
                    DropReason::Store(_) => self.stats.bump(Counter::StoreErrors),
                    DropReason::PoolExhausted => self.stats.bump(Counter::AllocationFail),
                    DropReason::OfferLimit => self.stats.bump(Counter::OfferLimitDrop),
                    _ => {}
                }
            }
            Outcome::NoReply(_) | Outcome::PingFirst(_) => {}
        }
        outcome
    }

    async fn dispatch(
        &self,
        config: &Config,
        pkt: Packet<'_>,
        meta: &RecvMeta,
        now: Timestamp,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let kind = pkt.message_type();
        if meta.ping.is_none() {
            self.count_received(kind);
        }
        if !matches!(
            kind,
            MessageType::Discover
                | MessageType::Request
                | MessageType::Release
                | MessageType::Decline
                | MessageType::Inform
        ) {
            return Outcome::Dropped(DropReason::UnexpectedMessageType(kind));
        }
        let mut ctx = match self.context(config, pkt, meta) {
            Ok(ctx) => ctx,
            Err(reason) => return Outcome::Dropped(reason),
        };
        if config.hosts_from_store
            && ctx.reservation.is_none()
            && let Err(e) = self.store_host(&mut ctx, now).await
        {
            return Outcome::Dropped(DropReason::Store(e));
        }
        if matches!(kind, MessageType::Discover | MessageType::Request) {
            match self.usable_reservation(&ctx, now).await {
                Ok(reserved) => ctx.reserved = reserved,
                Err(e) => return Outcome::Dropped(DropReason::Store(e)),
            }
        }
        let result = match kind {
            MessageType::Discover => self.discover(&ctx, now, out).await,
            MessageType::Request => self.request(&ctx, now, out).await,
            MessageType::Release => self.release(&ctx).await,
            MessageType::Decline => self.decline(&ctx, now).await,
            _ => Ok(self.inform(&ctx, out)),
        };
        result.unwrap_or_else(|e| Outcome::Dropped(DropReason::Store(e)))
    }

    fn count_received(&self, kind: MessageType) {
        self.stats.bump(match kind {
            MessageType::Discover => Counter::DiscoverReceived,
            MessageType::Request => Counter::RequestReceived,
            MessageType::Release => Counter::ReleaseReceived,
            MessageType::Decline => Counter::DeclineReceived,
            MessageType::Inform => Counter::InformReceived,
            _ => Counter::UnknownReceived,
        });
    }

    /// Resolves the client, its subnet, reservation, group and our server identifier.
    fn context<'a>(&'a self, config: &'a Config, pkt: Packet<'a>, meta: &'a RecvMeta) -> Result<Ctx<'a>, DropReason> {
        // Relay information is believed only from a relay we trust (Config::trusts_relay): a
        // directly attached client cannot pick another subnet or claim a circuit's reservation
        // by sending option 82 or 118 itself. An untrusted relay's option 82 is still echoed
        // (RFC 3046), but not used.
        let trusted = config.trusts_relay(pkt.giaddr());
        let relay = match (trusted, pkt.giaddr().is_unspecified()) {
            (true, _) => RelayInfo::parse(&pkt),
            (false, false) => RelayInfo { raw: pkt.option(code::RELAY_AGENT_INFORMATION), ..RelayInfo::default() },
            (false, true) => RelayInfo::default(),
        };
        let selector = relay
            .link_selection
            .or_else(|| pkt.option_addr(code::SUBNET_SELECTION).filter(|_| trusted))
            .or_else(|| Some(pkt.giaddr()).filter(|a| !a.is_unspecified()))
            .or(meta.local_addr)
            .or_else(|| Some(pkt.ciaddr()).filter(|a| !a.is_unspecified()))
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        let subnet = config.subnet_for(selector).ok_or(DropReason::NoSubnet(selector))?;
        let server_id =
            subnet.server_id.or(config.server_id).or(meta.local_addr).ok_or(DropReason::NoServerIdentifier)?;
        // parse() bounds hlen to 16, so this never fails.
        let hw = HwAddr::new(pkt.chaddr()).unwrap_or_default();
        let client_id_opt = pkt.option(code::CLIENT_IDENTIFIER);
        let client = match &client_id_opt {
            Some(id) => ClientId::from_bytes(id),
            None => ClientId::from_hardware(pkt.htype(), &hw),
        };
        let reservation = subnet.reservation_for(client_id_opt.as_deref(), Some(&hw), relay.circuit_id.as_deref());
        let group = reservation
            .and_then(|r| r.group)
            .and_then(|i| config.groups.get(i))
            .or_else(|| matching_group(config, &pkt, &relay))
            .map(Cow::Borrowed);
        let reservation = reservation.map(Cow::Borrowed);
        Ok(Ctx {
            config,
            pkt,
            meta,
            client,
            hw,
            subnet,
            reservation,
            reserved: None,
            pooled: Vec::new(),
            group,
            server_id,
            relay,
        })
    }

    /// Adds the store's reservation for this client, if it keeps one, to `ctx`.
    async fn store_host(&self, ctx: &mut Ctx<'_>, now: Timestamp) -> Result<(), StoreError> {
        let parts = QueryParts::of(&ctx.pkt);
        let Some(host) = self.store.host(&parts.query(&ctx.hw, now)).await? else {
            return Ok(());
        };
        if !host.unreadable.is_empty() {
            self.stats.add(Counter::HostFieldsUnreadable, host.unreadable.len() as u64);
        }
        // A dynamic client gets the store's group, and stays a client without a reservation
        // (held to the offer limits), offered the store's pool addresses first.
        if !host.reserved {
            ctx.pooled = host.pool.into_iter().filter(|a| ctx.subnet.net.contains(a)).collect();
        } else {
            // An address outside the selected subnet cannot be given here; the rest still applies.
            let ip_address = host.ip_address.filter(|a| ctx.subnet.net.contains(a));
            ctx.reservation = Some(Cow::Owned(Reservation {
                hw_address: Some(ctx.hw),
                ip_address,
                hostname: host.hostname,
                ..Reservation::default()
            }));
        }
        if let Some(group) = host.group {
            ctx.group = Some(Cow::Owned(group));
        }
        Ok(())
    }

    fn lease_times(&self, ctx: &Ctx<'_>) -> LeaseTimes {
        match ctx.group.as_deref().and_then(|g| g.lease_time) {
            Some(lease) => LeaseTimes::with_defaults(lease),
            None => ctx.subnet.times,
        }
    }

    fn new_lease(&self, ctx: &Ctx<'_>, addr: Ipv4Addr, state: LeaseState) -> Lease {
        let hostname = ctx.reservation.as_deref().and_then(|r| r.hostname.clone()).or_else(|| {
            let name = ctx.pkt.option(code::HOST_NAME)?;
            core::str::from_utf8(&name).ok().filter(|n| !n.is_empty()).map(String::from)
        });
        Lease { addr, client: ctx.client.clone(), hwaddr: ctx.hw, subnet: ctx.subnet.id, state, hostname }
    }

    /// Whether `addr` may be leased to this client: its reservation, or a dynamic address of
    /// the subnet that no one else has reserved.
    fn may_lease(&self, ctx: &Ctx<'_>, addr: Ipv4Addr) -> bool {
        if let Some(reserved) = ctx.reserved {
            return reserved == addr;
        }
        self.dynamic_pool(ctx.subnet, addr).is_some() || ctx.pooled.contains(&addr)
    }

    /// Whether binding `addr` needs the store's word first: an address of the store's own pool
    /// (not the config's), taken for the client in the store as it is bound.
    fn in_store_pool(&self, ctx: &Ctx<'_>, addr: Ipv4Addr) -> bool {
        ctx.reserved.is_none() && ctx.pooled.contains(&addr) && self.dynamic_pool(ctx.subnet, addr).is_none()
    }

    /// The client's reserved address if it can have it now. While another client still holds
    /// it (a lease from before the reservation), the client is served from the pool, as Kea
    /// does, rather than NAKed in a loop; the holder loses it at its next renewal (the address
    /// is no longer dynamic) or when it moves, and the reserved client then gets it at its own
    /// next renewal (NAKed off the pool address, it comes back through DISCOVER).
    async fn usable_reservation(&self, ctx: &Ctx<'_>, now: Timestamp) -> Result<Option<Ipv4Addr>, StoreError> {
        let Some(addr) = ctx.reservation.as_deref().and_then(|r| r.ip_address) else { return Ok(None) };
        Ok(match self.store.lease_by_addr(addr).await? {
            Some(lease) if !lease.available_to(&ctx.client, now) => None,
            _ => Some(addr),
        })
    }

    /// Window arithmetic for the offer bounds.
    fn offer_window(&self, ctx: &Ctx<'_>, now: Timestamp) -> u64 {
        offers::window(now, ctx.config.offer_hold_time)
    }

    /// Counts a new client's offer against the subnet's and the relay's bounds before the store
    /// is asked, or `None` when outstanding offers already hold a bound. Checked and counted in
    /// one step: requests answered at the same moment cannot together pass a bound.
    fn offer_slot<'a>(
        &'a self,
        ctx: &Ctx<'_>,
        subnet: Option<&'a SubnetStats>,
        now: Timestamp,
    ) -> Option<offers::OfferSlot<'a>> {
        let epoch = self.offer_window(ctx, now);
        let giaddr = ctx.pkt.giaddr();
        let relay = (!giaddr.is_unspecified())
            .then(|| (self.stats.relay_offers(giaddr), ctx.config.max_offers_per_relay.map(u64::from)));
        offers::OfferSlot::take(epoch, [subnet.map(|s| (&s.offers, Some(ctx.subnet.max_offers))), relay])
    }

    /// Counts a new offer against the subnet's and the relay's bounds.
    fn offer_made(&self, ctx: &Ctx<'_>, now: Timestamp) {
        let epoch = self.offer_window(ctx, now);
        if let Some(stats) = self.stats.subnet(ctx.subnet.id) {
            stats.offers.add(epoch);
        }
        let giaddr = ctx.pkt.giaddr();
        if !giaddr.is_unspecified() {
            self.stats.relay_offers(giaddr).add(epoch);
        }
    }

    /// Takes back `offer` (the client's, held until `until`) when it ends before its hold
    /// does: bound, withdrawn or replaced.
    fn offer_ended(&self, ctx: &Ctx<'_>, offer: &Lease, now: Timestamp) {
        let LeaseState::Offered { until } = offer.state else { return };
        if until <= now || offer.client != ctx.client {
            return;
        }
        let (epoch, made) = (self.offer_window(ctx, now), offers::made_in(until, ctx.config.offer_hold_time));
        if let Some(stats) = self.stats.subnet(offer.subnet) {
            stats.offers.remove(epoch, made);
        }
        let giaddr = ctx.pkt.giaddr();
        if !giaddr.is_unspecified() {
            self.stats.relay_offers(giaddr).remove(epoch, made);
        }
    }

    /// The pool that may hand out `addr` dynamically (reserved addresses excluded).
    fn dynamic_pool<'s>(&self, subnet: &'s Subnet, addr: Ipv4Addr) -> Option<&'s Pool> {
        subnet.pools.iter().find(|p| p.as_ref(subnet.id).contains(addr))
    }

    async fn discover(&self, ctx: &Ctx<'_>, now: Timestamp, out: &mut Vec<u8>) -> Result<Outcome, StoreError> {
        let hold = LeaseState::Offered { until: now + u64::from(ctx.config.offer_hold_time) };
        if let Some(PingAnswer { addr, in_use: true }) = ctx.meta.ping {
            self.set_aside(ctx, addr, now).await?;
        }
        let previous = self.store.lease_by_client(ctx.subnet.id, &ctx.client).await?;
        // A flood of new clients cannot hold more of the pool than `max-offers`; clients this
        // server knows (a lease, current or past, or a reservation) are always answered. A new
        // client's offer is counted now, before the store is asked, and given back if none is
        // made (the slot's drop).
        let subnet_stats = self.stats.subnet(ctx.subnet.id);
        let mut slot = None;
        if previous.is_none() && ctx.reservation.is_none() {
            match self.offer_slot(ctx, subnet_stats.as_deref(), now) {
                Some(taken) => slot = Some(taken),
                None => return Ok(Outcome::Dropped(DropReason::OfferLimit)),
            }
        }
        let mut offered = None;
        if let Some(addr) = ctx.reserved {
            offered = self.claim_over(ctx, self.new_lease(ctx, addr, hold), previous.as_ref(), now).await?;
        } else {
            let mut candidates = previous
                .as_ref()
                .filter(|l| !matches!(l.state, LeaseState::Declined { .. }))
                .map(|l| l.addr)
                .into_iter()
                .chain(ctx.pkt.option_addr(code::REQUESTED_IP_ADDRESS));
            while offered.is_none() {
                let Some(addr) = candidates.next() else { break };
                if self.may_lease(ctx, addr) {
                    offered = self.claim_over(ctx, self.new_lease(ctx, addr, hold), previous.as_ref(), now).await?;
                }
            }
        }
        // The store's own pool, before the config's.
        for &addr in &ctx.pooled {
            if offered.is_some() {
                break;
            }
            offered = self.claim_over(ctx, self.new_lease(ctx, addr, hold), previous.as_ref(), now).await?;
        }
        if offered.is_none() {
            let template = self.new_lease(ctx, Ipv4Addr::UNSPECIFIED, hold);
            for pool in &ctx.subnet.pools {
                let allocated = self.store.allocate_replacing(pool.as_ref(ctx.subnet.id), &template, now).await?;
                if let Some((lease, replaced)) = allocated {
                    self.replaced(ctx, replaced.as_ref(), &lease);
                    offered = Some(lease);
                    break;
                }
            }
        }
        let Some(lease) = offered else {
            return Ok(Outcome::Dropped(DropReason::PoolExhausted));
        };
        // The client's own binding that ran out (not reclaimed yet) became this offer: it leaves
        // the gauge now (a live binding is never turned into an offer).
        if let Some(p) = &previous
            && p.addr == lease.addr
            && matches!(p.state, LeaseState::Bound { .. })
            && matches!(lease.state, LeaseState::Offered { .. })
        {
            self.stats.assigned(p.subnet, -1);
        }
        if matches!(lease.state, LeaseState::Offered { .. }) {
            match &previous {
                // The same offer again, held a while longer: not a new one.
                Some(p) if p.addr == lease.addr && matches!(p.state, LeaseState::Offered { until } if until > now) => {}
                _ => {
                    match slot.as_mut() {
                        Some(counted) => counted.keep(),
                        None => self.offer_made(ctx, now),
                    }
                    // The store freed the client's earlier offer of another address.
                    if let Some(p) = &previous {
                        self.offer_ended(ctx, p, now);
                    }
                }
            }
        }
        if let Some(check) = self.ping_first(ctx, previous.as_ref(), &lease) {
            return Ok(Outcome::PingFirst(check));
        }
        Ok(self.reply(ctx, MessageType::Offer, lease.addr, Some(self.lease_times(ctx)), out))
    }

    /// Claims `lease` for the client. What the claim overwrites leaves the gauges (see
    /// [`replaced`](Self::replaced)): the client's own record is `previous`, already read;
    /// another address is read first.
    async fn claim_over(
        &self,
        ctx: &Ctx<'_>,
        lease: Lease,
        previous: Option<&Lease>,
        now: Timestamp,
    ) -> Result<Option<Lease>, StoreError> {
        let before = match previous.filter(|p| p.addr == lease.addr) {
            Some(own) => Some(own.clone()),
            None => self.store.lease_by_addr(lease.addr).await?,
        };
        let stored = self.store.claim(&lease, now).await?;
        if let Some(stored) = &stored {
            self.replaced(ctx, before.as_ref(), stored);
        }
        Ok(stored)
    }

    /// Takes out of the gauges what a write of `stored` overwrote, when `old` was still counted
    /// there: another client's binding that ran out and an ended probation are counted until
    /// reclamation, which will not see them now. (The client's own binding is the caller's to
    /// count: it may be kept, renewed or turned into an offer.)
    fn replaced(&self, ctx: &Ctx<'_>, old: Option<&Lease>, stored: &Lease) {
        let Some(old) = old.filter(|o| o.addr == stored.addr && *o != stored) else { return };
        match old.state {
            LeaseState::Bound { .. } if old.client != ctx.client => self.stats.assigned(old.subnet, -1),
            LeaseState::Declined { .. } => self.stats.declined(old.subnet, -1),
            _ => {}
        }
    }

    /// The ping check to make before `lease` (just held as an offer) goes out, if any. The
    /// address the client last had (bound, released or run out) is not checked: the client
    /// itself may answer for it (a reboot that kept it); nor is a reserved address, the
    /// client's by the operator's word. An address the client only held as an offer is checked
    /// again: the engine keeps no record that its check ended (the driver may have given up,
    /// or restarted), and a driver remembers recent answers if it wants to save the echo. An
    /// address checked for this very datagram is not checked again.
    fn ping_first(&self, ctx: &Ctx<'_>, previous: Option<&Lease>, lease: &Lease) -> Option<PingCheck> {
        let timeout_ms = ctx.subnet.ping_check?;
        let new_to_client =
            previous.is_none_or(|p| p.addr != lease.addr || matches!(p.state, LeaseState::Offered { .. }));
        let checked = ctx.meta.ping.is_some_and(|p| p.addr == lease.addr);
        let fresh_offer = matches!(lease.state, LeaseState::Offered { .. });
        (fresh_offer && new_to_client && !checked && ctx.reserved.is_none())
            .then_some(PingCheck { addr: lease.addr, timeout_ms })
    }

    /// A ping check found `addr`, held as an offer for this client, answering: some host uses
    /// it unknown to us. It is set aside like a declined address, so no client is offered it
    /// until the probation ends, and the client gets another.
    async fn set_aside(&self, ctx: &Ctx<'_>, addr: Ipv4Addr, now: Timestamp) -> Result<(), StoreError> {
        let Some(offer) = self.store.lease_by_addr(addr).await? else { return Ok(()) };
        if offer.client != ctx.client || !matches!(offer.state, LeaseState::Offered { until } if until > now) {
            // Bound or offered to someone else meanwhile: not ours to set aside.
            return Ok(());
        }
        // Let go of the offer first, then record the address as declined by no client of ours:
        // a declined record of this client would, by the one-lease-per-client rule, free the
        // binding it may hold elsewhere. Someone taking the address in between wins.
        if self.store.update_state(addr, &ctx.client, LeaseState::Released).await?.is_none() {
            return Ok(());
        }
        let until = now + u64::from(ctx.config.decline_probation_period);
        let declined = Lease {
            addr,
            client: ClientId::from_bytes(PING_CONFLICT_CLIENT),
            hwaddr: HwAddr::default(),
            subnet: offer.subnet,
            state: LeaseState::Declined { until },
            hostname: None,
        };
        self.offer_ended(ctx, &offer, now);
        if self.store.claim(&declined, now).await?.is_some() {
            self.stats.bump(Counter::PingConflicts);
            self.stats.declined(offer.subnet, 1);
        }
        Ok(())
    }

    async fn request(&self, ctx: &Ctx<'_>, now: Timestamp, out: &mut Vec<u8>) -> Result<Outcome, StoreError> {
        let pkt = &ctx.pkt;
        let requested = pkt.option_addr(code::REQUESTED_IP_ADDRESS);
        let ciaddr = Some(pkt.ciaddr()).filter(|a| !a.is_unspecified());
        if let Some(chosen) = pkt.option_addr(code::SERVER_IDENTIFIER) {
            // SELECTING: the client answers an offer.
            if chosen != ctx.server_id {
                if let Some(lease) = self.store.lease_by_client(ctx.subnet.id, &ctx.client).await?
                    && matches!(lease.state, LeaseState::Offered { .. })
                    && self.store.update_state(lease.addr, &ctx.client, LeaseState::Released).await?.is_some()
                {
                    self.offer_ended(ctx, &lease, now);
                }
                return Ok(Outcome::NoReply(NoReplyReason::OtherServerChosen));
            }
            let Some(addr) = requested.or(ciaddr) else {
                return Ok(Outcome::Dropped(DropReason::MissingAddress));
            };
            return self.bind(ctx, addr, now, out).await;
        }
        let (addr, init_reboot) = match (requested, ciaddr) {
            (Some(addr), None) => (addr, true),
            (_, Some(addr)) => (addr, false),
            (None, None) => return Ok(Outcome::Dropped(DropReason::MissingAddress)),
        };
        // INIT-REBOOT, RENEWING, REBINDING: the client believes it holds `addr`.
        if !ctx.subnet.net.contains(&addr) {
            return Ok(self.nak(ctx, out));
        }
        if let Some(reserved) = ctx.reserved
            && reserved != addr
        {
            return Ok(self.nak(ctx, out));
        }
        let known = if init_reboot {
            self.store.lease_by_client(ctx.subnet.id, &ctx.client).await?
        } else {
            match self.store.lease_by_addr(addr).await? {
                Some(lease) if lease.client == ctx.client => Some(lease),
                // Someone else holds the address this client is renewing: its belief is wrong.
                Some(lease) if lease.is_held(now) => return Ok(self.nak(ctx, out)),
                _ => None,
            }
        };
        match known {
            Some(lease) if lease.addr == addr && !matches!(lease.state, LeaseState::Declined { .. }) => {
                // What the store holds at `addr` is this lease: no need to ask again.
                self.bind_over(ctx, addr, Some(lease), now, out).await
            }
            // We know this client holds another address: its belief is wrong.
            Some(lease) if lease.is_held(now) && lease.addr != addr => Ok(self.nak(ctx, out)),
            _ if ctx.config.authoritative => self.bind(ctx, addr, now, out).await,
            _ => Ok(Outcome::NoReply(NoReplyReason::UnknownClient)),
        }
    }

    /// Binds `addr` to the client and ACKs, or NAKs when it may not have it.
    async fn bind(
        &self,
        ctx: &Ctx<'_>,
        addr: Ipv4Addr,
        now: Timestamp,
        out: &mut Vec<u8>,
    ) -> Result<Outcome, StoreError> {
        if !self.may_lease(ctx, addr) {
            return Ok(self.nak(ctx, out));
        }
        // Both reads at once: a store that can answers them in one round trip.
        let (before, client_lease) = self.store.lease_by_addr_and_client(addr, ctx.subnet.id, &ctx.client).await?;
        self.bind_read(ctx, addr, before, Some(client_lease), now, out).await
    }

    /// [`bind`](Self::bind) when the caller already read `before`, the lease stored at `addr`.
    async fn bind_over(
        &self,
        ctx: &Ctx<'_>,
        addr: Ipv4Addr,
        before: Option<Lease>,
        now: Timestamp,
        out: &mut Vec<u8>,
    ) -> Result<Outcome, StoreError> {
        self.bind_read(ctx, addr, before, None, now, out).await
    }

    /// [`bind_over`](Self::bind_over), given the client's lease in the subnet too when the
    /// caller read it (`client_lease`: `None` when not read).
    async fn bind_read(
        &self,
        ctx: &Ctx<'_>,
        addr: Ipv4Addr,
        before: Option<Lease>,
        client_lease: Option<Option<Lease>>,
        now: Timestamp,
        out: &mut Vec<u8>,
    ) -> Result<Outcome, StoreError> {
        if !self.may_lease(ctx, addr) {
            return Ok(self.nak(ctx, out));
        }
        let times = self.lease_times(ctx);
        let state = LeaseState::Bound { expires: now + u64::from(times.lease) };
        let renewal = before.as_ref().is_some_and(|l| l.is_bound_to(&ctx.client, now));
        if self.in_store_pool(ctx, addr) {
            // The store's pool keeps an address for its client for good: only a client this
            // server offered it to (or that holds it) may take it, so that requests for
            // addresses never offered cannot drain the pool.
            let offered = before.as_ref().is_some_and(|l| {
                l.client == ctx.client && matches!(l.state, LeaseState::Offered { until } if until > now)
            });
            if !(offered || renewal) {
                return Ok(self.nak(ctx, out));
            }
            let parts = QueryParts::of(&ctx.pkt);
            if !self.store.take_pool_address(&parts.query(&ctx.hw, now), addr).await? {
                self.stats.bump(Counter::StorePoolTakeRefused);
                return Ok(self.nak(ctx, out));
            }
        }
        // The client's lease elsewhere in the subnet, which the claim frees (one lease per
        // client): read first, for the gauges. A renewal has none worth the read.
        let previous = match (renewal, client_lease) {
            (true, _) => None,
            (false, Some(read)) => read.filter(|l| l.addr != addr),
            (false, None) => self.store.lease_by_client(ctx.subnet.id, &ctx.client).await?.filter(|l| l.addr != addr),
        };
        // The gauge counts a binding until it is reclaimed: one that ran out but is still in
        // the store is counted already.
        let counted =
            before.as_ref().is_some_and(|l| l.client == ctx.client && matches!(l.state, LeaseState::Bound { .. }));
        match self.store.claim(&self.new_lease(ctx, addr, state), now).await? {
            Some(stored) => {
                if !counted {
                    self.stats.assigned(ctx.subnet.id, 1);
                }
                // Another client's binding that ran out, or an ended probation, not reclaimed
                // yet, is gone now: it leaves the gauge here rather than at a reclamation that
                // will not see it.
                self.replaced(ctx, before.as_ref(), &stored);
                if let Some(old) = &previous {
                    if old.is_bound_to(&ctx.client, now) {
                        self.stats.assigned(old.subnet, -1);
                    }
                    self.offer_ended(ctx, old, now);
                }
                if let Some(offer) = &before {
                    self.offer_ended(ctx, offer, now);
                }
                Ok(self.reply(ctx, MessageType::Ack, addr, Some(times), out))
            }
            None => Ok(self.nak(ctx, out)),
        }
    }

    async fn release(&self, ctx: &Ctx<'_>) -> Result<Outcome, StoreError> {
        if ctx.pkt.option_addr(code::SERVER_IDENTIFIER).is_some_and(|id| id != ctx.server_id) {
            return Ok(Outcome::NoReply(NoReplyReason::NotForUs));
        }
        let addr = ctx.pkt.ciaddr();
        let before = self.store.lease_by_addr(addr).await?;
        match self.store.update_state(addr, &ctx.client, LeaseState::Released).await? {
            Some(_) => {
                // Counted until reclaimed, run out or not (see `gauge_counts`), in the lease's
                // own subnet: a RELEASE arrives by whatever path, not by the subnet it selects.
                if let Some(old) = before
                    && old.client == ctx.client
                    && matches!(old.state, LeaseState::Bound { .. })
                {
                    self.stats.assigned(old.subnet, -1);
                }
                Ok(Outcome::NoReply(NoReplyReason::Released))
            }
            None => Ok(Outcome::NoReply(NoReplyReason::NotHeld)),
        }
    }

    async fn decline(&self, ctx: &Ctx<'_>, now: Timestamp) -> Result<Outcome, StoreError> {
        if ctx.pkt.option_addr(code::SERVER_IDENTIFIER).is_some_and(|id| id != ctx.server_id) {
            return Ok(Outcome::NoReply(NoReplyReason::NotForUs));
        }
        let Some(addr) = ctx.pkt.option_addr(code::REQUESTED_IP_ADDRESS) else {
            return Ok(Outcome::Dropped(DropReason::MissingAddress));
        };
        // Only the client's own binding can be declined: not an address merely offered to it
        // (a client that sends DECLINE for an offer would take addresses out of the pool for
        // the probation period at no cost), not another client's.
        let before = self.store.lease_by_addr(addr).await?;
        if !before.is_some_and(|l| l.is_bound_to(&ctx.client, now)) {
            return Ok(Outcome::NoReply(NoReplyReason::NotHeld));
        }
        let until = now + u64::from(ctx.config.decline_probation_period);
        match self.store.update_state(addr, &ctx.client, LeaseState::Declined { until }).await? {
            Some(lease) => {
                self.stats.assigned(lease.subnet, -1);
                self.stats.declined(lease.subnet, 1);
                Ok(Outcome::NoReply(NoReplyReason::Declined))
            }
            None => Ok(Outcome::NoReply(NoReplyReason::NotHeld)),
        }
    }

    fn inform(&self, ctx: &Ctx<'_>, out: &mut Vec<u8>) -> Outcome {
        self.reply(ctx, MessageType::Ack, Ipv4Addr::UNSPECIFIED, None, out)
    }

    fn nak(&self, ctx: &Ctx<'_>, out: &mut Vec<u8>) -> Outcome {
        self.reply(ctx, MessageType::Nak, Ipv4Addr::UNSPECIFIED, None, out)
    }

    /// The most specific configured value of option `code`: reservation, group, pool, subnet.
    fn option_value<'c>(&self, ctx: &'c Ctx<'_>, pool: Option<&'c Pool>, code: u8) -> Option<&'c [u8]> {
        if code == code::HOST_NAME
            && let Some(name) = ctx.reservation.as_deref().and_then(|r| r.hostname.as_deref())
        {
            return Some(name.as_bytes());
        }
        ctx.reservation
            .as_deref()
            .and_then(|r| r.options.get(code))
            .or_else(|| ctx.group.as_deref().and_then(|g| g.options.get(code)))
            .or_else(|| pool.and_then(|p| p.options.get(code)))
            .or_else(|| ctx.subnet.options.get(code))
    }

    /// Assembles and encodes a reply, and decides where it goes.
    fn reply(
        &self,
        ctx: &Ctx<'_>,
        kind: MessageType,
        yiaddr: Ipv4Addr,
        times: Option<LeaseTimes>,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let pkt = &ctx.pkt;
        let type_byte = [u8::from(kind)];
        let server_id = ctx.server_id.octets();
        let [lease, renew, rebind] =
            times.map_or([[0; 4]; 3], |t| [t.lease.to_be_bytes(), t.renew.to_be_bytes(), t.rebind.to_be_bytes()]);
        let params = pkt.option(code::PARAMETER_REQUEST_LIST);
        let client_id = pkt.option(code::CLIENT_IDENTIFIER);
        let pool = ctx.subnet.pool_of(yiaddr);

        let mut w = ReplyWriter::new();
        w.push(code::MESSAGE_TYPE, &type_byte);
        w.push(code::SERVER_IDENTIFIER, &server_id);
        if kind != MessageType::Nak {
            if times.is_some() {
                w.push(code::LEASE_TIME, &lease);
                w.push(code::RENEWAL_TIME, &renew);
                w.push(code::REBINDING_TIME, &rebind);
            }
            // What the client asked for, in its order; then what every client needs.
            for &code in params.as_deref().unwrap_or_default().iter().chain(ALWAYS_OFFERED) {
                if w.contains(code) {
                    continue;
                }
                if let Some(value) = self.option_value(ctx, pool, code) {
                    w.push(code, value);
                }
            }
        }
        if let Some(id) = client_id.as_deref() {
            // RFC 6842: echo the client identifier.
            w.push(code::CLIENT_IDENTIFIER, id);
        }
        if let Some(raw) = ctx.relay.raw.as_deref() {
            // RFC 3046: echo relay agent information, last.
            w.push(code::RELAY_AGENT_INFORMATION, raw);
        }

        let destination = self.route(ctx, kind, yiaddr);
        let giaddr = pkt.giaddr();
        let mut flags = pkt.flags();
        if kind == MessageType::Nak && !giaddr.is_unspecified() {
            flags |= BROADCAST_FLAG;
        }
        let acked_ciaddr = if kind == MessageType::Ack { pkt.ciaddr() } else { Ipv4Addr::UNSPECIFIED };
        let header = ReplyHeader {
            htype: pkt.htype(),
            hlen: pkt.chaddr().len() as u8,
            xid: pkt.xid(),
            flags,
            ciaddr: acked_ciaddr,
            yiaddr,
            siaddr: if kind == MessageType::Nak {
                Ipv4Addr::UNSPECIFIED
            } else {
                ctx.subnet.next_server.unwrap_or(Ipv4Addr::UNSPECIFIED)
            },
            giaddr,
            chaddr: pkt.chaddr_field(),
            sname: ctx.subnet.server_hostname.as_deref().map(str::as_bytes),
            file: ctx.subnet.boot_file_name.as_deref().map(str::as_bytes),
        };
        let report = w.finish(&header, max_message_size(pkt), out);
        for _ in 0..report.omitted {
            self.stats.bump(Counter::OptionsOmitted);
        }
        Outcome::Reply(Reply { message_type: kind, destination, yiaddr, ifindex: ctx.meta.ifindex, len: out.len() })
    }

    /// RFC 2131 section 4.1: where a reply goes.
    fn route(&self, ctx: &Ctx<'_>, kind: MessageType, yiaddr: Ipv4Addr) -> Destination {
        let pkt = &ctx.pkt;
        let giaddr = pkt.giaddr();
        if !giaddr.is_unspecified() {
            let port = if ctx.relay.wants_source_port { ctx.meta.src.port() } else { SERVER_PORT };
            return Destination::Relay { addr: giaddr, port };
        }
        if kind == MessageType::Nak {
            return Destination::Broadcast;
        }
        let ciaddr = pkt.ciaddr();
        if !ciaddr.is_unspecified() {
            return Destination::Unicast(ciaddr);
        }
        if pkt.broadcast() || yiaddr.is_unspecified() || ctx.hw.as_bytes().is_empty() {
            return Destination::Broadcast;
        }
        Destination::Hardware { addr: yiaddr, hw: ctx.hw }
    }
}

/// The largest DHCP message the client accepts: option 57 less IP and UDP headers, at least the
/// RFC minimum, and at most what fits an Ethernet frame unfragmented.
fn max_message_size(pkt: &Packet<'_>) -> usize {
    const ETHERNET_PAYLOAD: usize = 1500 - 28;
    match pkt.option(code::MAX_MESSAGE_SIZE) {
        Some(v) if v.len() == 2 => usize::from(u16::from_be_bytes([v[0], v[1]]))
            .saturating_sub(28)
            .clamp(wire::DEFAULT_MAX_MESSAGE, ETHERNET_PAYLOAD),
        _ => wire::DEFAULT_MAX_MESSAGE,
    }
}

/// What `lease` adds to its subnet's `assigned-addresses` and `declined-addresses`: a binding
/// and a probation count until reclamation takes them away (as `handle_timeout` does, then),
/// also once their time is up. A gauge that stopped counting an expired binding before its
/// reclamation would count it twice when its client renews it first, and go below zero when a
/// restarted server reclaims bindings that expired while it was down.
fn gauge_counts(lease: &Lease) -> (i64, i64) {
    match lease.state {
        LeaseState::Bound { .. } => (1, 0),
        LeaseState::Declined { .. } => (0, 1),
        _ => (0, 0),
    }
}

/// The first group whose `match` the packet meets.
fn matching_group<'c>(config: &'c Config, pkt: &Packet<'_>, relay: &RelayInfo<'_>) -> Option<&'c Group> {
    config.groups.iter().find(|g| {
        let Some(m) = &g.matcher else { return false };
        let vendor_ok = m
            .vendor_class_prefix
            .as_ref()
            .is_none_or(|prefix| pkt.option(code::VENDOR_CLASS_IDENTIFIER).is_some_and(|v| v.starts_with(prefix)));
        let user_ok = m.user_class.as_ref().is_none_or(|uc| pkt.option(code::USER_CLASS).is_some_and(|v| *v == **uc));
        let circuit_ok = m.circuit_id.as_ref().is_none_or(|c| relay.circuit_id.as_ref() == Some(c));
        vendor_ok && user_ok && circuit_ok
    })
}
