//! Unicasting a reply to a client that has no address yet (RFC 2131 4.1): the kernel can only
//! send to yiaddr once it knows yiaddr's link-layer address, so the server writes an ARP entry
//! (yiaddr -> chaddr) for the interface first, as ISC dhcpd does on Linux.
//!
//! This is the one place in dhcp-net that calls into the kernel through unsafe code: the
//! SIOCSARP ioctl has no safe wrapper in nix or socket2.

#![allow(unsafe_code)]

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

/// Writes (or replaces) the ARP entry `ip -> mac` on interface `device`, using any AF_INET
/// socket's descriptor. Needs CAP_NET_ADMIN; callers fall back to broadcast on error.
pub fn set_entry(socket: &impl AsRawFd, device: &str, ip: Ipv4Addr, mac: &[u8]) -> io::Result<()> {
    if mac.len() != 6 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "only 6-byte Ethernet addresses"));
    }
    let name = device.as_bytes();
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad interface name"));
    }
    let mut protocol = libc::sockaddr { sa_family: libc::AF_INET as libc::sa_family_t, sa_data: [0; 14] };
    // A sockaddr_in laid over sockaddr: two bytes of port, then the address.
    for (slot, byte) in protocol.sa_data[2..6].iter_mut().zip(ip.octets()) {
        *slot = byte as libc::c_char;
    }
    let mut hardware = libc::sockaddr { sa_family: libc::ARPHRD_ETHER, sa_data: [0; 14] };
    for (slot, byte) in hardware.sa_data.iter_mut().zip(mac) {
        *slot = *byte as libc::c_char;
    }
    let mut dev = [0 as libc::c_char; 16];
    for (slot, byte) in dev.iter_mut().zip(name) {
        *slot = *byte as libc::c_char;
    }
    let request = libc::arpreq {
        arp_pa: protocol,
        arp_ha: hardware,
        arp_flags: libc::ATF_COM,
        arp_netmask: libc::sockaddr { sa_family: 0, sa_data: [0; 14] },
        arp_dev: dev,
    };
    // SAFETY: SIOCSARP reads one `struct arpreq`, which `request` is, fully initialised and
    // alive for the call; the descriptor is open for as long as `socket` is borrowed.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSARP, &request as *const libc::arpreq) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}
