//! Serving on a tokio runtime: one task per socket and one for the engine's timers, all
//! stopped by a shutdown future.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use dhcp_core::{LeaseStore, PingCheck, RecvMeta, Timestamp};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::client_locks::ClientLocks;
use crate::clock;
use crate::server::{RECV_BUFFER, Server};

impl<S: LeaseStore + 'static> Server<S> {
    /// Serves until `shutdown` resolves, then stops every task. Requests still in flight when
    /// it resolves are abandoned (their clients retransmit).
    pub async fn serve(self: Arc<Self>, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let mut tasks = JoinSet::new();
        // Shared by every socket's requests: a client may reach the server through two.
        let locks = Arc::new(ClientLocks::new());
        for (index, socket) in self.sockets().iter().enumerate() {
            // A duplicate of the socket's descriptor shares its readiness; tokio watches it
            // while the server keeps receiving through its own handle (with IP_PKTINFO).
            let watch = UdpSocket::from_std(socket.try_clone_std()?)?;
            tasks.spawn(Arc::clone(&self).receive_loop(index, watch, Arc::clone(&locks)));
        }
        tasks.spawn(Arc::clone(&self).timer_loop());
        shutdown.await;
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        Ok(())
    }

    async fn receive_loop(self: Arc<Self>, index: usize, watch: UdpSocket, locks: Arc<ClientLocks>) {
        let mut buf = vec![0u8; RECV_BUFFER];
        let mut out = Vec::with_capacity(RECV_BUFFER);
        let Some(socket) = self.sockets().get(index) else { return };
        let max = self.settings().max_in_flight;
        let in_flight = (max > 1).then(|| Arc::new(tokio::sync::Semaphore::new(max)));
        let inline_first = self.settings().inline_first;
        loop {
            if let Err(e) = watch.readable().await {
                warn!(error = %e, "socket wait failed; stopping this listener");
                return;
            }
            // Drain what is queued before waiting again: one wakeup, many datagrams. try_io
            // clears tokio's readiness when the receive reports WouldBlock.
            let mut drained = 0usize;
            loop {
                let inline = in_flight.is_none() || (inline_first && drained == 0);
                drained += 1;
                match watch.try_io(Interest::READABLE, || socket.recv(&mut buf)) {
                    Ok(received) if inline => {
                        let datagram = buf.get(..received.len).unwrap_or(&[]);
                        let now = clock::now();
                        if !self.admits(datagram, &received.meta, now) {
                            continue;
                        }
                        let check = self.answer_locked(&locks, index, datagram, received.meta, now, &mut out).await;
                        if let Some(check) = check {
                            // The check waits in a task of its own: the next datagram is read now.
                            tokio::spawn(Arc::clone(&self).ping_then_answer(
                                index,
                                datagram.to_vec(),
                                received.meta,
                                check,
                                Arc::clone(&locks),
                            ));
                        }
                    }
                    Ok(received) => {
                        // What the engine will not see (another server's client) costs no task.
                        let datagram = buf.get(..received.len).unwrap_or(&[]);
                        let now = clock::now();
                        if !self.admits(datagram, &received.meta, now) {
                            continue;
                        }
                        // Wait for a free slot first: when the store is slow, datagrams queue
                        // in the socket (and are dropped there) rather than in memory.
                        let Some(slots) = &in_flight else { continue };
                        let Ok(permit) = Arc::clone(slots).acquire_owned().await else { return };
                        let datagram = datagram.to_vec();
                        let server = Arc::clone(&self);
                        let locks = Arc::clone(&locks);
                        tokio::spawn(async move {
                            let mut out = Vec::with_capacity(RECV_BUFFER);
                            let check =
                                server.answer_locked(&locks, index, &datagram, received.meta, now, &mut out).await;
                            // A ping check waits without a slot: slots bound engine work.
                            drop(permit);
                            if let Some(check) = check {
                                server.ping_then_answer(index, datagram, received.meta, check, locks).await;
                            }
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => debug!(error = %e, "receive failed"),
                }
            }
        }
    }

    /// Makes the ping check the engine asked for, without holding up other requests, and
    /// hands the datagram back with the answer, as often as the engine asks.
    /// The client's lock is held only while the engine answers, not during the echo's wait.
    async fn ping_then_answer(
        self: Arc<Self>,
        index: usize,
        datagram: Vec<u8>,
        mut meta: RecvMeta,
        check: PingCheck,
        locks: Arc<ClientLocks>,
    ) {
        let mut out = Vec::with_capacity(RECV_BUFFER);
        let mut conflicts = 0;
        let mut next = Some(check);
        while let Some(check) = next {
            let timeout = Duration::from_millis(check.timeout_ms.into());
            let found = match self.pinger() {
                _ if self.recently_free(check.addr) => Some(Ok(false)),
                Some(pinger) => {
                    self.set_checking(check.addr, true);
                    let found = pinger.check(check.addr, timeout).await;
                    self.set_checking(check.addr, false);
                    Some(found)
                }
                None => None,
            };
            let answer = self.ping_answer(check, found, &meta, &mut conflicts);
            meta = meta.with_ping_answer(answer);
            next = self.answer_locked(&locks, index, &datagram, meta, clock::now(), &mut out).await;
            if next.is_some() && !self.keep_checking(&meta, conflicts) {
                return;
            }
        }
    }

    /// Answers `datagram` holding its client's lock, so that two requests of one client are
    /// never answered at once (the lock is let go before any ping check waits).
    async fn answer_locked(
        &self,
        locks: &ClientLocks,
        index: usize,
        datagram: &[u8],
        meta: RecvMeta,
        now: Timestamp,
        out: &mut Vec<u8>,
    ) -> Option<PingCheck> {
        let _client = locks.lock(datagram).await;
        self.answer(index, datagram, meta, now, out).await
    }

    async fn timer_loop(self: Arc<Self>) {
        loop {
            let now = clock::now();
            let next = self.run_timers(now).await;
            tokio::time::sleep(until(next, clock::now())).await;
        }
    }
}

/// How long until `deadline`, from `now`, at least 10 ms so a driver never spins.
fn until(deadline: Timestamp, now: Timestamp) -> Duration {
    Duration::from_secs(deadline.as_secs().saturating_sub(now.as_secs())).max(Duration::from_millis(10))
}
