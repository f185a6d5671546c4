//! The server: sockets feeding one engine, replies routed as RFC 2131 4.1 says, the engine's
//! timers, and the drivers that run it (blocking here, tokio in [`crate::tokio_driver`]).

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use dhcp_core::{
    Destination, DropReason, Engine, LeaseStore, MessageType, NoReplyReason, Outcome, PingAnswer, PingCheck, RecvMeta,
    Reply, Timestamp,
};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tracing::{debug, info, warn};

use crate::ping::Pinger;
use crate::settings::NetSettings;
use crate::socket::{DhcpSocket, Received};
use crate::throttle::Throttle;
use crate::{arp, clock, iface, park};

/// Addresses a ping check may find answering for one DISCOVER before the server gives up on
/// it (the client retransmits, and the addresses found stay set aside).
pub(crate) const MAX_PING_CONFLICTS: usize = 3;
/// How long an address a ping check found free is taken as free without another echo (Kea's
/// ping-check hook has the same idea, `ping-cache-time`, 60 s by default).
pub(crate) const PING_CACHE_TIME: Duration = Duration::from_secs(60);
/// The most addresses remembered as free at once.
const PING_CACHE_ENTRIES: usize = 4096;

/// Room for the largest datagram a client may send (RFC 2131 allows up to the interface MTU).
pub(crate) const RECV_BUFFER: usize = 1500;

/// Could not start serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A socket could not be opened or bound.
    #[error("listen {listen}: {source}")]
    Socket {
        /// The `listen` entry.
        listen: String,
        /// Why.
        source: io::Error,
    },
    /// Waiting on the sockets failed.
    #[error("polling sockets: {0}")]
    Poll(io::Error),
}

/// Told of every datagram the server receives, before the engine handles it, and deciding
/// whether the engine does.
///
/// This is where an operated server keeps what lives beside the engine (when each client was
/// last heard from) and where high availability decides which server of a pair answers a client,
/// without the network layer knowing about either. It runs on the receive path, so it must be
/// cheap and must not block.
pub trait Observer: Send + Sync {
    /// `datagram` arrived with `meta` at `now`. It has not been parsed: it may be malformed.
    #[must_use]
    fn received(&self, datagram: &[u8], meta: &RecvMeta, now: Timestamp) -> Verdict;
}

/// What an [`Observer`] decided about a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The engine handles it.
    Handle,
    /// The engine never sees it, so it neither answers nor changes a lease: another server
    /// answers it (a high-availability partner), or it is dropped (over a rate limit). Whoever
    /// said so counts it.
    Ignore,
}

/// An engine with its sockets: everything a driver needs to serve.
pub struct Server<S> {
    engine: Arc<Engine<S>>,
    sockets: Vec<DhcpSocket>,
    settings: NetSettings,
    /// Interface names by index, for ARP entries from sockets not tied to one interface.
    ifnames: HashMap<u32, String>,
    observer: Option<Arc<dyn Observer>>,
    /// Per-packet warnings, at most one per period each: drops for a store error or an
    /// exhausted pool, and replies that could not be sent.
    drop_warnings: Throttle,
    send_warnings: Throttle,
    /// The ICMP socket for ping checks, opened when the first check is asked for (`None` when
    /// it could not be: checks are then skipped, and said so).
    pinger: OnceLock<Option<Arc<Pinger>>>,
    /// Addresses whose ping check is under way. A client that retransmits its DISCOVER
    /// meanwhile is not sent the offer the check has yet to clear.
    checking: Mutex<HashSet<Ipv4Addr>>,
    /// How many addresses `checking` holds, read without its lock.
    checks_under_way: AtomicUsize,
    /// Addresses recently found free, and when.
    recently_free: Mutex<HashMap<Ipv4Addr, Instant>>,
    ping_warnings: Throttle,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Server<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("engine", &self.engine)
            .field("sockets", &self.sockets)
            .field("settings", &self.settings)
            .field("observer", &self.observer.is_some())
            .finish_non_exhaustive()
    }
}

impl<S: LeaseStore> Server<S> {
    /// Opens one socket per `settings.listen` entry on `settings.server_port`.
    pub fn bind(engine: Arc<Engine<S>>, settings: NetSettings) -> Result<Server<S>, ServeError> {
        let sockets = settings
            .listen
            .iter()
            .map(|listen| {
                DhcpSocket::open(listen, settings.server_port)
                    .map_err(|source| ServeError::Socket { listen: format!("{listen:?}"), source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ifnames = iface::interfaces().unwrap_or_default().into_iter().map(|i| (i.index, i.name)).collect();
        for socket in &sockets {
            // A smaller buffer than asked for is no reason not to serve: said, and carried on.
            let buffer = if settings.receive_buffer > 0 {
                match socket.set_receive_buffer(settings.receive_buffer) {
                    Ok(granted) => Some(granted),
                    Err(e) => {
                        warn!(error = %e, asked = settings.receive_buffer, "cannot size the receive buffer");
                        None
                    }
                }
            } else {
                None
            };
            info!(
                local = ?socket.local_addr().ok(),
                device = socket.device().unwrap_or("*"),
                receive_buffer = ?buffer,
                "listening"
            );
        }
        Ok(Server {
            engine,
            sockets,
            settings,
            ifnames,
            observer: None,
            drop_warnings: Throttle::default(),
            send_warnings: Throttle::default(),
            pinger: OnceLock::new(),
            checking: Mutex::default(),
            checks_under_way: AtomicUsize::new(0),
            recently_free: Mutex::default(),
            ping_warnings: Throttle::default(),
        })
    }

    /// Tells `observer` of every datagram received from now on.
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The engine being served.
    pub fn engine(&self) -> &Arc<Engine<S>> {
        &self.engine
    }

    /// The bound sockets, one per `listen` entry.
    pub fn sockets(&self) -> &[DhcpSocket] {
        &self.sockets
    }

    /// The settings the server was bound with.
    pub fn settings(&self) -> &NetSettings {
        &self.settings
    }

    /// Hands one datagram to the engine and sends the reply, if any, for the blocking driver:
    /// a ping check the engine asks for is started and left in `checks`, which the driver's
    /// loop finishes as echo replies come or time runs out.
    fn process_blocking(
        &self,
        socket: usize,
        datagram: &[u8],
        received: Received,
        out: &mut Vec<u8>,
        checks: &mut Vec<PendingCheck>,
    ) {
        let now = clock::now();
        if !self.admits(datagram, &received.meta, now) {
            return;
        }
        if let Some(check) = park::park_on(self.answer(socket, datagram, received.meta, now, out)) {
            let pending = PendingCheck {
                socket,
                datagram: datagram.to_vec(),
                meta: received.meta,
                check,
                seq: 0,
                deadline: Instant::now(),
                conflicts: 0,
            };
            self.start_check(pending, checks);
        }
    }

    /// Sends the echo request of `pending`'s check and leaves it in `checks`; without an ICMP
    /// socket, or when the request cannot be sent, the datagram is answered at once.
    fn start_check(&self, mut pending: PendingCheck, checks: &mut Vec<PendingCheck>) {
        if self.recently_free(pending.check.addr) {
            return self.finish_check(pending, Some(Ok(false)), checks);
        }
        match self.pinger().map(|p| p.send_echo(pending.check.addr)) {
            Some(Ok(seq)) => {
                pending.seq = seq;
                pending.deadline = Instant::now() + Duration::from_millis(pending.check.timeout_ms.into());
                self.set_checking(pending.check.addr, true);
                checks.push(pending);
            }
            found => {
                let found = found.map(|sent| sent.map(|_| false));
                self.finish_check(pending, found, checks);
            }
        }
    }

    /// Hands `pending`'s datagram back to the engine with what its check `found`, and starts
    /// the next check if the engine asks for one.
    fn finish_check(&self, mut pending: PendingCheck, found: Option<io::Result<bool>>, checks: &mut Vec<PendingCheck>) {
        let answer = self.ping_answer(pending.check, found, &pending.meta, &mut pending.conflicts);
        pending.meta = pending.meta.with_ping_answer(answer);
        let mut out = Vec::with_capacity(RECV_BUFFER);
        let next = park::park_on(self.answer(pending.socket, &pending.datagram, pending.meta, clock::now(), &mut out));
        if let Some(check) = next
            && self.keep_checking(&pending.meta, pending.conflicts)
        {
            pending.check = check;
            self.start_check(pending, checks);
        }
    }

    /// Finishes the checks whose echo reply came (read from the ICMP socket) or whose time
    /// ran out.
    fn run_checks(&self, checks: &mut Vec<PendingCheck>) {
        let Some(pinger) = self.pinger() else { return };
        let mut answered = Vec::new();
        let mut buf = [0u8; 1500];
        loop {
            match pinger.receive(&mut buf) {
                Ok(Some(reply)) => answered.push(reply),
                Ok(None) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // An ICMP error for an earlier echo and the like: the rest may still be read.
                Err(_) => {}
            }
            if answered.len() > 4096 {
                break;
            }
        }
        let now = Instant::now();
        let mut ready = Vec::new();
        checks.retain(|c| {
            let in_use = answered.contains(&(c.check.addr, c.seq));
            if in_use || c.deadline <= now {
                self.set_checking(c.check.addr, false);
                ready.push((c.clone(), in_use));
                false
            } else {
                true
            }
        });
        for (pending, in_use) in ready {
            self.finish_check(pending, Some(Ok(in_use)), checks);
        }
    }

    /// Whether a ping check of `addr` is under way.
    fn is_checking(&self, addr: Ipv4Addr) -> bool {
        // Every OFFER asks: without checks under way (no `ping-check`), no lock is taken.
        self.checks_under_way.load(Ordering::Relaxed) > 0
            && self.checking.lock().unwrap_or_else(PoisonError::into_inner).contains(&addr)
    }

    /// Notes that a ping check of `addr` is under way (`true`) or over.
    pub(crate) fn set_checking(&self, addr: Ipv4Addr, under_way: bool) {
        let mut checking = self.checking.lock().unwrap_or_else(PoisonError::into_inner);
        if under_way {
            checking.insert(addr);
        } else {
            checking.remove(&addr);
        }
        self.checks_under_way.store(checking.len(), Ordering::Relaxed);
    }

    /// The ICMP socket for ping checks, opened on first use.
    pub(crate) fn pinger(&self) -> Option<&Arc<Pinger>> {
        self.pinger
            .get_or_init(|| match Pinger::open() {
                Ok(pinger) => Some(Arc::new(pinger)),
                Err(e) => {
                    warn!(error = %e, "cannot open an ICMP socket: addresses are offered without a ping check");
                    None
                }
            })
            .as_ref()
    }

    /// What to tell the engine after a ping check of `check.addr` found `found` (`None`: no
    /// ICMP socket). Counts the addresses that answered in `conflicts`, and remembers a free
    /// address for a while so a retransmitted DISCOVER need not wait for another echo.
    pub(crate) fn ping_answer(
        &self,
        check: PingCheck,
        found: Option<io::Result<bool>>,
        meta: &RecvMeta,
        conflicts: &mut usize,
    ) -> PingAnswer {
        let in_use = match found {
            Some(Ok(in_use)) => in_use,
            Some(Err(e)) => {
                if let Some(held_back) = self.ping_warnings.allow(Instant::now()) {
                    warn!(addr = %check.addr, error = %e, held_back, "ping check failed; offering the address unchecked");
                }
                false
            }
            None => false,
        };
        let mut recent = self.recently_free.lock().unwrap_or_else(PoisonError::into_inner);
        if in_use {
            *conflicts += 1;
            recent.remove(&check.addr);
            if let Some(held_back) = self.ping_warnings.allow(Instant::now()) {
                warn!(addr = %check.addr, src = %meta.src, held_back, "address answered a ping before its offer: set aside");
            }
        } else {
            let now = Instant::now();
            if recent.len() >= PING_CACHE_ENTRIES {
                recent.retain(|_, at| now.duration_since(*at) < PING_CACHE_TIME);
            }
            if recent.len() < PING_CACHE_ENTRIES {
                recent.insert(check.addr, now);
            }
        }
        PingAnswer { addr: check.addr, in_use }
    }

    /// Whether `addr` was found free by a ping check within [`PING_CACHE_TIME`]: the check the
    /// engine asks for again (a retransmitted DISCOVER) is answered from memory.
    pub(crate) fn recently_free(&self, addr: Ipv4Addr) -> bool {
        let recent = self.recently_free.lock().unwrap_or_else(PoisonError::into_inner);
        recent.get(&addr).is_some_and(|at| at.elapsed() < PING_CACHE_TIME)
    }

    /// Whether to make the check the engine asks for after `conflicts` answering addresses:
    /// past [`MAX_PING_CONFLICTS`] the datagram is given up (its offer stays held, unsent, and
    /// is checked again when the client retransmits).
    pub(crate) fn keep_checking(&self, meta: &RecvMeta, conflicts: usize) -> bool {
        let keep = conflicts < MAX_PING_CONFLICTS;
        if !keep {
            debug!(src = %meta.src, conflicts, "every address checked answered; the DISCOVER is dropped");
        }
        keep
    }

    /// Whether the engine is to see `datagram`: the observer, when there is one, is told of it
    /// and may leave it to another server. Cheap and synchronous, so that a driver asks before
    /// it spends a task on the datagram.
    pub(crate) fn admits(&self, datagram: &[u8], meta: &RecvMeta, now: Timestamp) -> bool {
        let Some(observer) = &self.observer else { return true };
        let admitted = observer.received(datagram, meta, now) == Verdict::Handle;
        if !admitted {
            debug!(src = %meta.src, "left to another server");
        }
        admitted
    }

    /// Hands one admitted datagram to the engine and sends the reply, if any. Returns the ping
    /// check the engine wants made first, if it does: the caller checks and calls again with
    /// the answer in `meta`.
    #[must_use]
    pub(crate) async fn answer(
        &self,
        socket: usize,
        datagram: &[u8],
        meta: RecvMeta,
        now: Timestamp,
        out: &mut Vec<u8>,
    ) -> Option<PingCheck> {
        match self.engine.handle(datagram, &meta, now, out).await {
            Outcome::PingFirst(check) => return Some(check),
            Outcome::Reply(reply) if reply.message_type == MessageType::Offer && self.is_checking(reply.yiaddr) => {
                debug!(addr = %reply.yiaddr, "offer held back: its ping check is under way");
            }
            Outcome::Reply(reply) => {
                log_reply(&reply, datagram);
                if let Some(socket) = self.sockets.get(socket) {
                    let bytes = out.get(..reply.len).unwrap_or(out);
                    if let Err(e) = self.deliver(socket, bytes, &reply) {
                        if let Some(held_back) = self.send_warnings.allow(Instant::now()) {
                            warn!(destination = ?reply.destination, error = %e, held_back, "reply not sent");
                        }
                    }
                }
            }
            Outcome::NoReply(NoReplyReason::Released) => info!(src = %meta.src, "lease released"),
            Outcome::NoReply(NoReplyReason::Declined) => info!(src = %meta.src, "address declined, in probation"),
            Outcome::NoReply(reason) => debug!(src = %meta.src, ?reason, "handled, no reply"),
            Outcome::Dropped(reason @ (DropReason::Store(_) | DropReason::PoolExhausted)) => {
                if let Some(held_back) = self.drop_warnings.allow(Instant::now()) {
                    warn!(src = %meta.src, ?reason, held_back, "dropped");
                }
            }
            Outcome::Dropped(reason) => debug!(src = %meta.src, ?reason, "dropped"),
        }
        None
    }

    /// Sends a reply where RFC 2131 4.1 says.
    fn deliver(&self, socket: &DhcpSocket, bytes: &[u8], reply: &Reply) -> io::Result<usize> {
        let client_port = self.settings.client_port;
        let broadcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, client_port);
        match reply.destination {
            Destination::Relay { addr, port } => {
                // Relays listen on the server port; a relay that asked for another port
                // (RFC 8357) gets that one.
                let port = if port == 67 { self.settings.server_port } else { port };
                socket.send(bytes, SocketAddrV4::new(addr, port), 0)
            }
            Destination::Unicast(ciaddr) => socket.send(bytes, SocketAddrV4::new(ciaddr, client_port), 0),
            Destination::Broadcast => socket.send(bytes, broadcast, reply.ifindex),
            Destination::Hardware { addr, hw } => {
                let device = socket.device().or_else(|| self.ifnames.get(&reply.ifindex).map(String::as_str));
                let arp_set = device.is_some_and(|device| arp::set_entry(socket, device, addr, hw.as_bytes()).is_ok());
                if arp_set {
                    socket.send(bytes, SocketAddrV4::new(addr, client_port), reply.ifindex)
                } else {
                    socket.send(bytes, broadcast, reply.ifindex)
                }
            }
        }
    }

    /// Runs the engine's timers if they are due; returns when they are next due.
    pub(crate) async fn run_timers(&self, now: Timestamp) -> Timestamp {
        clock::check_wall_clock();
        if now >= self.engine.poll_timeout() {
            match self.engine.handle_timeout(now).await {
                Ok(report) if report != Default::default() => debug!(?report, "reclaimed"),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "lease reclamation failed"),
            }
        }
        self.engine.poll_timeout()
    }

    /// Serves on the calling thread until `stop` is set (checked at least every 200 ms).
    pub fn run_blocking(&self, stop: &AtomicBool) -> Result<(), ServeError> {
        let mut buf = vec![0u8; RECV_BUFFER];
        let mut out = Vec::with_capacity(RECV_BUFFER);
        let mut next_timer = self.engine.poll_timeout();
        // Ping checks under way: they wait here, beside the sockets, not in line.
        let mut checks: Vec<PendingCheck> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let now = clock::now();
            if now >= next_timer {
                next_timer = park::park_on(self.run_timers(now));
            }
            let mut wait_ms = (next_timer.as_secs().saturating_sub(now.as_secs()) * 1000).clamp(10, 200);
            if let Some(first) = checks.iter().map(|c| c.deadline).min() {
                let left = first.saturating_duration_since(Instant::now()).as_millis();
                wait_ms = wait_ms.min(u64::try_from(left).unwrap_or(u64::MAX).max(1));
            }
            let pinger = self.pinger.get().and_then(Option::as_ref).filter(|_| !checks.is_empty());
            let mut fds: Vec<PollFd<'_>> = self
                .sockets
                .iter()
                .map(|s| s.as_fd())
                .chain(pinger.map(|p| p.as_fd()))
                .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
                .collect();
            let timeout = PollTimeout::from(u16::try_from(wait_ms).unwrap_or(200));
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(ServeError::Poll(e.into())),
            }
            let ready: Vec<usize> = fds
                .iter()
                .enumerate()
                .filter(|(i, fd)| {
                    *i < self.sockets.len() && fd.revents().is_some_and(|r| r.contains(PollFlags::POLLIN))
                })
                .map(|(i, _)| i)
                .collect();
            drop(fds);
            for index in ready {
                self.drain_blocking(index, &mut buf, &mut out, &mut checks);
            }
            if !checks.is_empty() {
                self.run_checks(&mut checks);
            }
        }
        Ok(())
    }

    /// Handles every datagram queued on socket `index`.
    fn drain_blocking(&self, index: usize, buf: &mut [u8], out: &mut Vec<u8>, checks: &mut Vec<PendingCheck>) {
        let Some(socket) = self.sockets.get(index) else { return };
        loop {
            match socket.recv(buf) {
                Ok(received) => {
                    let datagram = buf.get(..received.len).unwrap_or(&[]);
                    self.process_blocking(index, datagram, received, out, checks);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    debug!(error = %e, "receive failed");
                    return;
                }
            }
        }
    }
}

/// A ping check the blocking driver waits for beside its sockets.
#[derive(Clone)]
struct PendingCheck {
    socket: usize,
    datagram: Vec<u8>,
    meta: RecvMeta,
    check: PingCheck,
    seq: u16,
    deadline: Instant,
    conflicts: usize,
}

/// One info line per lease event, one debug line per other reply.
fn log_reply(reply: &Reply, request: &[u8]) {
    let chaddr =
        dhcp_core::wire::Packet::parse(request).map(|p| dhcp_core::HwAddr::new(p.chaddr()).unwrap_or_default());
    let chaddr = chaddr.unwrap_or_default();
    debug!(kind = ?reply.message_type, addr = %reply.yiaddr, hw = %chaddr, destination = ?reply.destination, "reply");
    match reply.message_type {
        MessageType::Ack if !reply.yiaddr.is_unspecified() => {
            info!(addr = %reply.yiaddr, hw = %chaddr, "lease granted")
        }
        MessageType::Nak => info!(hw = %chaddr, "request refused (NAK)"),
        _ => {}
    }
}
