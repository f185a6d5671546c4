//! ICMP echo for the ping check before an offer (`ping-check`, as dhcpd and Kea's ping-check
//! hook do it): is some host already using the address we are about to offer?
//!
//! One ICMP socket serves every check. Linux's unprivileged ping socket (`SOCK_DGRAM`) is used
//! when `net.ipv4.ping_group_range` allows it, a raw socket otherwise (root or `CAP_NET_RAW`).
//! Checks are told apart by sequence number and the address that answered: under the tokio
//! driver one reader task hands each echo reply to the check waiting for it, so any number of
//! checks wait together without holding up other requests.

#[cfg(feature = "tokio")]
use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
#[cfg(feature = "tokio")]
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU16, Ordering};
#[cfg(feature = "tokio")]
use std::sync::{Arc, Mutex};
#[cfg(feature = "tokio")]
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, recvfrom, sendto, socket,
};

const ECHO_REQUEST: u8 = 8;
const ECHO_REPLY: u8 = 0;
/// What each echo request carries after its header, so a capture shows who sent it.
const PAYLOAD: &[u8] = b"dhcp-rs ping-check";

/// Where a check waits for its reply: keyed by the checked address and the sequence number.
#[cfg(feature = "tokio")]
type Waiters = Mutex<HashMap<(Ipv4Addr, u16), tokio::sync::oneshot::Sender<()>>>;

/// The shared ICMP socket and the checks waiting on it.
#[derive(Debug)]
pub(crate) struct Pinger {
    fd: OwnedFd,
    /// A raw socket sees the IP header and every ICMP message of the host; a ping socket only
    /// the ICMP messages for its own identifier, which the kernel sets.
    raw: bool,
    ident: u16,
    seq: AtomicU16,
    #[cfg(feature = "tokio")]
    waiters: Arc<Waiters>,
    #[cfg(feature = "tokio")]
    reader: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Pinger {
    /// Opens the ICMP socket: a ping socket if the system allows one, else a raw socket.
    pub(crate) fn open() -> io::Result<Pinger> {
        let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
        let (fd, raw) = match socket(AddressFamily::Inet, SockType::Datagram, flags, SockProtocol::Icmp) {
            Ok(fd) => (fd, false),
            Err(_) => (socket(AddressFamily::Inet, SockType::Raw, flags, SockProtocol::Icmp)?, true),
        };
        Ok(Pinger {
            fd,
            raw,
            ident: (std::process::id() & 0xffff) as u16,
            seq: AtomicU16::new(0),
            #[cfg(feature = "tokio")]
            waiters: Arc::default(),
            #[cfg(feature = "tokio")]
            reader: Mutex::new(None),
        })
    }

    /// Sends one echo request to `addr`; returns its sequence number.
    pub(crate) fn send_echo(&self, addr: Ipv4Addr) -> io::Result<u16> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let packet = echo_request(self.ident, seq);
        sendto(self.fd.as_raw_fd(), &packet, &SockaddrIn::from(SocketAddrV4::new(addr, 0)), MsgFlags::empty())?;
        Ok(seq)
    }

    /// Reads one queued ICMP message: the echo reply's source and sequence number, if it is an
    /// echo reply meant for us. `Err(WouldBlock)` when nothing is queued.
    pub(crate) fn receive(&self, buf: &mut [u8]) -> io::Result<Option<(Ipv4Addr, u16)>> {
        let (len, from) = recvfrom::<SockaddrIn>(self.fd.as_raw_fd(), buf)?;
        let Some(from) = from else { return Ok(None) };
        Ok(parse_echo_reply(buf.get(..len).unwrap_or_default(), self.raw, self.ident).map(|seq| (from.ip(), seq)))
    }
}

impl AsFd for Pinger {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(feature = "tokio")]
impl Pinger {
    /// Checks `addr` without blocking the runtime: whether it answered within `timeout`.
    pub(crate) async fn check(self: &Arc<Self>, addr: Ipv4Addr, timeout: Duration) -> io::Result<bool> {
        self.start_reader()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Registered before the request goes, so a quick reply finds its waiter; the sequence
        // number is known only once sent, so the key is claimed under the lock that the reader
        // also takes.
        let key = {
            let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
            let seq = self.send_echo(addr)?;
            waiters.insert((addr, seq), tx);
            (addr, seq)
        };
        let answered = tokio::time::timeout(timeout, rx).await.is_ok_and(|r| r.is_ok());
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner).remove(&key);
        Ok(answered)
    }

    /// Starts the task that reads echo replies, once.
    fn start_reader(self: &Arc<Self>) -> io::Result<()> {
        let mut reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        if reader.as_ref().is_some_and(|task| !task.is_finished()) {
            return Ok(());
        }
        // A duplicate descriptor of the ICMP socket, which tokio watches as it does any
        // datagram socket (the calls it makes, recvfrom, are the same).
        let socket = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(self.fd.try_clone()?))?;
        // The task holds what it needs, not the pinger, so that dropping the pinger (with the
        // server) ends it.
        let (waiters, raw, ident) = (Arc::clone(&self.waiters), self.raw, self.ident);
        *reader = Some(tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let (len, from) = match socket.recv_from(&mut buf).await {
                    Ok((len, std::net::SocketAddr::V4(from))) => (len, from),
                    Ok(_) => continue,
                    // The socket is gone: the next check starts another reader.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EBADF | libc::ENOTSOCK)) => return,
                    // An ICMP error for an earlier echo (host unreachable) and the like.
                    Err(_) => continue,
                };
                let Some(seq) = parse_echo_reply(buf.get(..len).unwrap_or_default(), raw, ident) else { continue };
                let waiter = waiters.lock().unwrap_or_else(PoisonError::into_inner).remove(&(*from.ip(), seq));
                if let Some(waiter) = waiter {
                    let _ = waiter.send(());
                }
            }
        }));
        Ok(())
    }
}

#[cfg(feature = "tokio")]
impl Drop for Pinger {
    fn drop(&mut self) {
        if let Some(task) = self.reader.get_mut().unwrap_or_else(PoisonError::into_inner).take() {
            task.abort();
        }
    }
}

/// An ICMP echo request with its checksum.
fn echo_request(ident: u16, seq: u16) -> Vec<u8> {
    let mut packet = Vec::with_capacity(8 + PAYLOAD.len());
    packet.extend_from_slice(&[ECHO_REQUEST, 0, 0, 0]);
    packet.extend_from_slice(&ident.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(PAYLOAD);
    let sum = checksum(&packet);
    packet[2..4].copy_from_slice(&sum.to_be_bytes());
    packet
}

/// The Internet checksum (RFC 1071).
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The sequence number of an echo reply to us (its source is the datagram's). From a raw
/// socket the message starts with the IP header and must carry our identifier; from a ping
/// socket it is the ICMP message alone, the kernel having matched the identifier.
fn parse_echo_reply(message: &[u8], raw: bool, ident: u16) -> Option<u16> {
    let icmp = match raw {
        true => message.get(usize::from(message.first()? & 0x0f) * 4..)?,
        false => message,
    };
    let [kind, _code, _, _, id_hi, id_lo, seq_hi, seq_lo, ..] = *icmp else { return None };
    if kind != ECHO_REPLY || (raw && u16::from_be_bytes([id_hi, id_lo]) != ident) {
        return None;
    }
    Some(u16::from_be_bytes([seq_hi, seq_lo]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_checksums_to_zero() {
        let packet = echo_request(0x1234, 7);
        assert_eq!(checksum(&packet), 0, "a correct checksum sums the message to zero");
        assert_eq!(&packet[4..8], &[0x12, 0x34, 0, 7]);
    }

    #[test]
    fn replies_are_told_apart() {
        let mut reply = echo_request(0x1234, 9);
        reply[0] = ECHO_REPLY;
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 5, 10, 0, 0, 1];
        ip.extend_from_slice(&reply);
        assert_eq!(parse_echo_reply(&ip, true, 0x1234), Some(9));
        assert_eq!(parse_echo_reply(&ip, true, 0x4321), None, "another process's ping");
        assert_eq!(parse_echo_reply(&reply, false, 0), Some(9), "a ping socket's identifier is the kernel's");
        let request = echo_request(0x1234, 9);
        assert_eq!(parse_echo_reply(&request, false, 0), None, "a request is no reply");
        for len in 0..ip.len() {
            let _ = parse_echo_reply(&ip[..len], true, 0x1234);
        }
    }

    /// Loopback answers pings; needs a ping or raw socket (root), and skips without one.
    #[cfg(feature = "tokio")]
    #[test]
    fn loopback_answers_both_drivers() {
        let Ok(pinger) = Pinger::open() else { return };
        let pinger = Arc::new(pinger);
        // As the blocking driver does it: send, then read what comes.
        let seq = pinger.send_echo(Ipv4Addr::LOCALHOST).expect("echo sent");
        let mut buf = [0u8; 1500];
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let mut got = None;
        while got.is_none() && std::time::Instant::now() < deadline {
            match pinger.receive(&mut buf) {
                Ok(Some(reply)) if reply == (Ipv4Addr::LOCALHOST, seq) => got = Some(reply),
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        assert_eq!(got, Some((Ipv4Addr::LOCALHOST, seq)), "loopback answered");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let answered = runtime.block_on(async {
            let checks = (0..5).map(|_| pinger.check(Ipv4Addr::LOCALHOST, Duration::from_secs(2)));
            let mut all = Vec::new();
            for check in checks {
                all.push(check.await.ok());
            }
            all
        });
        assert_eq!(answered, vec![Some(true); 5]);
        assert!(pinger.waiters.lock().unwrap_or_else(PoisonError::into_inner).is_empty(), "no waiter left behind");
    }
}
