//! One request of a client at a time, when the tokio driver handles several at once.
//!
//! The store makes each call atomic, but the engine reads before it writes: it reads the lease a
//! request finds, then claims, and counts in the gauges what the read said. Two copies of one
//! REQUEST (redundant relays send both) handled at the same moment on two threads would both
//! read the offer and both count the binding. So the driver serialises requests per client,
//! by the hardware address the datagram carries: a stripe of locks, hashed, so unrelated
//! clients rarely wait on each other.

use tokio::sync::{Mutex, MutexGuard};

/// Enough stripes that clients handled at once seldom share one (the in-flight bound is 64
/// by default).
const STRIPES: usize = 1024;

/// Where the hardware address lies in a BOOTP header (RFC 2131 section 2), and its largest size.
const CHADDR: usize = 28;
const CHADDR_LEN: usize = 16;
const HLEN: usize = 2;

pub(crate) struct ClientLocks {
    stripes: Box<[Mutex<()>]>,
}

impl ClientLocks {
    pub(crate) fn new() -> ClientLocks {
        ClientLocks { stripes: (0..STRIPES).map(|_| Mutex::new(())).collect() }
    }

    /// Waits until no other request of the datagram's client is being handled, and holds that
    /// until the guard goes. A datagram too short to name a client shares one stripe: the
    /// engine drops it anyway.
    pub(crate) async fn lock(&self, datagram: &[u8]) -> MutexGuard<'_, ()> {
        let len = datagram.get(HLEN).map_or(0, |&l| usize::from(l).min(CHADDR_LEN));
        let chaddr = datagram.get(CHADDR..CHADDR + len).unwrap_or(&[]);
        // FNV-1a: the stripe only has to spread clients, not resist anyone choosing them (a
        // client that picks its stripe waits only for itself and its neighbours).
        let hash =
            chaddr.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        let stripe = (hash % STRIPES as u64) as usize;
        self.stripes[stripe].lock().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(mac: [u8; 6]) -> Vec<u8> {
        let mut d = vec![0u8; 240];
        d[HLEN] = 6;
        d[CHADDR..CHADDR + 6].copy_from_slice(&mac);
        d
    }

    #[tokio::test(flavor = "current_thread")]
    async fn one_client_waits_for_itself_and_not_for_others() {
        let locks = ClientLocks::new();
        let first = datagram([2, 0, 0, 0, 0, 1]);
        let held = locks.lock(&first).await;
        // The same client (its hardware address, whatever else differs) waits.
        let mut again = first.clone();
        again[240 - 1] = 0xff;
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), locks.lock(&again)).await;
        assert!(waiting.is_err(), "a second request of the client waited");
        // Another client does not, nor does a datagram too short to name one.
        let other = datagram([2, 0, 0, 0, 0, 2]);
        assert!(tokio::time::timeout(std::time::Duration::from_millis(20), locks.lock(&other)).await.is_ok());
        drop(held);
        assert!(tokio::time::timeout(std::time::Duration::from_millis(20), locks.lock(&again)).await.is_ok());
        let _short = locks.lock(&[1, 2]).await;
    }
}
