//! Serving on a tokio runtime: one task per socket, one for the engine's timers, one for
//! SIGUSR1 lease dumps, all stopped by a shutdown future.

use std::future::Future;
use std::io;
use std::sync::Arc;

use dhcp_core::LeaseStore;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::clock;
use crate::server::{RECV_BUFFER, Server, until};

/// Resolves when the process receives SIGINT or SIGTERM.
pub async fn shutdown_signal() -> io::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = interrupt.recv() => info!("SIGINT: shutting down"),
        _ = terminate.recv() => info!("SIGTERM: shutting down"),
    }
    Ok(())
}

impl<S: LeaseStore + 'static> Server<S> {
    /// Serves until `shutdown` resolves, then stops every task and, when `lease-dump` is set,
    /// writes the leases one last time.
    pub async fn serve(self: Arc<Self>, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let mut tasks = JoinSet::new();
        for (index, socket) in self.sockets().iter().enumerate() {
            // A duplicate of the socket's descriptor shares its readiness; tokio watches it
            // while the server keeps receiving through its own handle (with IP_PKTINFO).
            let watch = UdpSocket::from_std(socket.try_clone_std()?)?;
            tasks.spawn(Arc::clone(&self).receive_loop(index, watch));
        }
        tasks.spawn(Arc::clone(&self).timer_loop());
        if self.control().is_some() {
            let mut hangup = signal(SignalKind::hangup())?;
            let server = Arc::clone(&self);
            tasks.spawn(async move {
                while hangup.recv().await.is_some() {
                    info!("SIGHUP: reloading the config");
                    if let Some(control) = server.control() {
                        // Errors are logged by the control; the running config stays.
                        let _ = control.reload(server.engine());
                    }
                }
            });
        }
        #[cfg(feature = "admin")]
        if let (Some(addr), Some(token)) = (self.settings().api_listen, self.settings().api_token.clone()) {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            info!(%addr, "management API listening");
            let metrics = self.metrics().cloned().unwrap_or_default();
            tasks.spawn(crate::admin::serve(listener, Arc::clone(&self), metrics, token));
        }
        if self.settings().lease_dump.is_some() {
            let mut user1 = signal(SignalKind::user_defined1())?;
            let server = Arc::clone(&self);
            tasks.spawn(async move {
                while user1.recv().await.is_some() {
                    server.dump_on_request().await;
                }
            });
        }
        shutdown.await;
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        self.dump_on_request().await;
        Ok(())
    }

    async fn dump_on_request(&self) {
        if let Some(path) = &self.settings().lease_dump {
            match self.dump_leases(path).await {
                Ok(count) => info!(path = %path.display(), count, "leases written"),
                Err(e) => warn!(path = %path.display(), error = %e, "cannot write leases"),
            }
        }
    }

    async fn receive_loop(self: Arc<Self>, index: usize, watch: UdpSocket) {
        let mut buf = vec![0u8; RECV_BUFFER];
        let mut out = Vec::with_capacity(RECV_BUFFER);
        let Some(socket) = self.sockets().get(index) else { return };
        let max = self.settings().max_in_flight;
        let in_flight = (max > 1).then(|| Arc::new(tokio::sync::Semaphore::new(max)));
        loop {
            if let Err(e) = watch.readable().await {
                warn!(error = %e, "socket wait failed; stopping this listener");
                return;
            }
            // Drain what is queued before waiting again: one wakeup, many datagrams. try_io
            // clears tokio's readiness when the receive reports WouldBlock.
            loop {
                match watch.try_io(Interest::READABLE, || socket.recv(&mut buf)) {
                    Ok(received) if in_flight.is_none() => {
                        let datagram = buf.get(..received.len).unwrap_or(&[]);
                        self.process(index, datagram, received, &mut out).await;
                    }
                    Ok(received) => {
                        // Wait for a free slot first: when the store is slow, datagrams queue
                        // in the socket (and are dropped there) rather than in memory.
                        let Some(slots) = &in_flight else { continue };
                        let Ok(permit) = Arc::clone(slots).acquire_owned().await else { return };
                        let datagram = buf.get(..received.len).unwrap_or(&[]).to_vec();
                        let server = Arc::clone(&self);
                        tokio::spawn(async move {
                            let mut out = Vec::with_capacity(RECV_BUFFER);
                            server.process(index, &datagram, received, &mut out).await;
                            drop(permit);
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => debug!(error = %e, "receive failed"),
                }
            }
        }
    }

    async fn timer_loop(self: Arc<Self>) {
        loop {
            let now = clock::now();
            let next = self.run_timers(now).await;
            tokio::time::sleep(until(next, clock::now())).await;
        }
    }
}
