//! Building client packets: for tests, benchmarks, fuzz seeds and documentation examples.

use alloc::vec::Vec;
use core::net::Ipv4Addr;

use dhcproto::v4::MessageType;

use crate::wire::{BROADCAST_FLAG, MAGIC_COOKIE, code, field};

/// A client request under construction. Options are written in the order they are added.
#[derive(Debug, Clone)]
pub struct ClientPacket {
    buf: Vec<u8>,
}

impl ClientPacket {
    /// A request of type `kind` from Ethernet address `mac`.
    pub fn new(kind: MessageType, mac: [u8; 6]) -> Self {
        let mut buf = alloc::vec![0u8; field::OPTIONS];
        buf[field::OP] = 1;
        buf[field::HTYPE] = 1;
        buf[field::HLEN] = 6;
        buf[field::CHADDR.start..field::CHADDR.start + 6].copy_from_slice(&mac);
        buf[field::COOKIE].copy_from_slice(&MAGIC_COOKIE);
        buf.extend_from_slice(&[code::MESSAGE_TYPE, 1, u8::from(kind)]);
        ClientPacket { buf }
    }

    /// Sets the transaction id.
    pub fn xid(mut self, xid: u32) -> Self {
        self.buf[field::XID].copy_from_slice(&xid.to_be_bytes());
        self
    }

    /// Sets ciaddr.
    pub fn ciaddr(mut self, addr: Ipv4Addr) -> Self {
        self.buf[field::CIADDR].copy_from_slice(&addr.octets());
        self
    }

    /// Sets giaddr and one relay hop, as a relay agent would.
    pub fn giaddr(mut self, addr: Ipv4Addr) -> Self {
        self.buf[field::GIADDR].copy_from_slice(&addr.octets());
        self.buf[field::HOPS] = 1;
        self
    }

    /// Sets the broadcast flag.
    pub fn broadcast(mut self) -> Self {
        self.buf[field::FLAGS].copy_from_slice(&BROADCAST_FLAG.to_be_bytes());
        self
    }

    /// Appends option `code` (split into 255-byte instances when longer, as RFC 3396 says).
    pub fn option(mut self, code: u8, data: &[u8]) -> Self {
        if data.is_empty() {
            self.buf.extend_from_slice(&[code, 0]);
        }
        for chunk in data.chunks(255) {
            self.buf.push(code);
            self.buf.push(chunk.len() as u8);
            self.buf.extend_from_slice(chunk);
        }
        self
    }

    /// Appends an address-valued option ([`code::REQUESTED_IP_ADDRESS`], [`code::SERVER_IDENTIFIER`], ...).
    pub fn addr_option(self, code: u8, addr: Ipv4Addr) -> Self {
        self.option(code, &addr.octets())
    }

    /// Finishes with the end option.
    pub fn build(mut self) -> Vec<u8> {
        self.buf.push(code::END);
        self.buf
    }
}

/// The parameter request list the typical packets carry: mask, routers, DNS and domain name.
const TYPICAL_PARAMS: &[u8] = &[code::SUBNET_MASK, code::ROUTER, code::DOMAIN_NAME_SERVER, code::DOMAIN_NAME];

/// A typical DISCOVER: parameter request list for mask, routers, DNS and domain name.
pub fn discover(mac: [u8; 6], xid: u32) -> Vec<u8> {
    ClientPacket::new(MessageType::Discover, mac).xid(xid).option(code::PARAMETER_REQUEST_LIST, TYPICAL_PARAMS).build()
}

/// A typical SELECTING-state REQUEST for `addr` offered by `server`.
pub fn request(mac: [u8; 6], xid: u32, addr: Ipv4Addr, server: Ipv4Addr) -> Vec<u8> {
    ClientPacket::new(MessageType::Request, mac)
        .xid(xid)
        .addr_option(code::REQUESTED_IP_ADDRESS, addr)
        .addr_option(code::SERVER_IDENTIFIER, server)
        .option(code::PARAMETER_REQUEST_LIST, TYPICAL_PARAMS)
        .build()
}
