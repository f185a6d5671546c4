//! A DHCP server socket: UDP on the server port, with the interface and local address of each
//! datagram (IP_PKTINFO), broadcast allowed, optionally tied to one interface.

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use dhcp_core::RecvMeta;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, getsockopt, recvmsg, sendmsg, setsockopt, sockopt,
};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::settings::Listen;

/// A socket the server receives requests on and sends replies from.
#[derive(Debug)]
pub struct DhcpSocket {
    socket: UdpSocket,
    /// The interface the socket is tied to, if any.
    device: Option<String>,
}

/// A received datagram's length and metadata.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// Bytes written into the buffer.
    pub len: usize,
    /// Source, local address and interface, for the engine.
    pub meta: RecvMeta,
}

impl DhcpSocket {
    /// Opens a non-blocking socket for one `listen` entry on `port`.
    ///
    /// SO_REUSEADDR lets a restarted server bind at once and several per-interface sockets
    /// share the port; SO_BROADCAST lets replies go to 255.255.255.255.
    pub fn open(listen: &Listen, port: u16) -> io::Result<DhcpSocket> {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_address(true)?;
        socket.set_broadcast(true)?;
        let (bind_addr, device) = match listen {
            Listen::All => (Ipv4Addr::UNSPECIFIED, None),
            Listen::Address(addr) => (*addr, None),
            Listen::Interface(name) => {
                socket
                    .bind_device(Some(name.as_bytes()))
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot bind to interface {name}: {e}")))?;
                (Ipv4Addr::UNSPECIFIED, Some(name.clone()))
            }
        };
        socket.set_nonblocking(true)?;
        socket
            .bind(&SockAddr::from(SocketAddrV4::new(bind_addr, port)))
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {bind_addr}:{port}: {e}")))?;
        let socket = UdpSocket::from(socket);
        setsockopt(&socket, sockopt::Ipv4PacketInfo, &true)?;
        Ok(DhcpSocket { socket, device })
    }

    /// Asks for `bytes` of receive buffer: SO_RCVBUFFORCE first (allowed with CAP_NET_ADMIN,
    /// past `net.core.rmem_max`), else SO_RCVBUF (capped there by the kernel). Returns what
    /// the kernel granted (it counts its own overhead: about twice what was asked).
    pub fn set_receive_buffer(&self, bytes: usize) -> io::Result<usize> {
        if setsockopt(&self.socket, sockopt::RcvBufForce, &bytes).is_err() {
            setsockopt(&self.socket, sockopt::RcvBuf, &bytes)?;
        }
        Ok(getsockopt(&self.socket, sockopt::RcvBuf)?)
    }

    /// A second handle to the same socket (a duplicated descriptor), for a runtime to watch
    /// its readiness.
    pub fn try_clone_std(&self) -> io::Result<UdpSocket> {
        self.socket.try_clone()
    }

    /// The interface the socket is tied to, if any.
    pub fn device(&self) -> Option<&str> {
        self.device.as_deref()
    }

    /// The address and port the socket is bound to.
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.socket.local_addr()
    }

    /// Receives one datagram without blocking (`WouldBlock` when none is queued).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        let mut cmsg = nix::cmsg_space!(libc::in_pktinfo);
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<SockaddrIn>(self.socket.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())?;
        let src = msg.address.map_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), SocketAddrV4::from);
        let mut meta = RecvMeta::new(src);
        if let Ok(cmsgs) = msg.cmsgs() {
            for cmsg in cmsgs {
                if let ControlMessageOwned::Ipv4PacketInfo(info) = cmsg {
                    meta = meta
                        .with_ifindex(u32::try_from(info.ipi_ifindex).unwrap_or(0))
                        .with_local_addr(Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr)));
                }
            }
        }
        if msg.flags.contains(MsgFlags::MSG_TRUNC) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "datagram larger than the receive buffer"));
        }
        Ok(Received { len: msg.bytes, meta })
    }

    /// Sends `data` to `to`, out of interface `ifindex` when it is known (non-zero).
    ///
    /// Naming the interface matters for broadcasts from a socket that is not tied to one: the
    /// kernel would otherwise pick the interface of the default route.
    pub fn send(&self, data: &[u8], to: SocketAddrV4, ifindex: u32) -> io::Result<usize> {
        let addr = SockaddrIn::from(to);
        let iov = [IoSlice::new(data)];
        if ifindex == 0 || self.device.is_some() {
            return Ok(sendmsg(self.socket.as_raw_fd(), &iov, &[], MsgFlags::empty(), Some(&addr))?);
        }
        let info = libc::in_pktinfo {
            ipi_ifindex: i32::try_from(ifindex).unwrap_or(0),
            ipi_spec_dst: libc::in_addr { s_addr: 0 },
            ipi_addr: libc::in_addr { s_addr: 0 },
        };
        let cmsg = [ControlMessage::Ipv4PacketInfo(&info)];
        Ok(sendmsg(self.socket.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), Some(&addr))?)
    }
}

impl AsFd for DhcpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl AsRawFd for DhcpSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_round_trip_reports_local_address() {
        let server = DhcpSocket::open(&Listen::Address(Ipv4Addr::LOCALHOST), 0).expect("bind");
        let port = server.local_addr().expect("bound").port();
        let client = UdpSocket::bind("127.0.0.1:0").expect("client bind");
        client.send_to(b"hello", ("127.0.0.1", port)).expect("send");
        let mut buf = [0u8; 64];
        let got = loop {
            match server.recv(&mut buf) {
                Ok(got) => break got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("recv: {e}"),
            }
        };
        assert_eq!(&buf[..got.len], b"hello");
        assert_eq!(got.meta.local_addr, Some(Ipv4Addr::LOCALHOST));
        assert_ne!(got.meta.ifindex, 0, "IP_PKTINFO names the loopback interface");
        let client_addr = match client.local_addr().expect("client addr") {
            std::net::SocketAddr::V4(a) => a,
            other => panic!("not v4: {other}"),
        };
        assert_eq!(got.meta.src, client_addr);
        server.send(b"back", client_addr, got.meta.ifindex).expect("reply");
        let mut back = [0u8; 8];
        let n = client.recv(&mut back).expect("client recv");
        assert_eq!(&back[..n], b"back");
    }
}
