//! Client identities and leases.

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;
use core::net::Ipv4Addr;

use crate::time::Timestamp;

/// How many identity bytes a [`ClientId`] keeps inline before it moves them to the heap.
///
/// 22 bytes hold the common shapes (type byte plus MAC: 7 bytes; RFC 4361 IAID plus a short
/// DUID) without an allocation, and keep the type 24 bytes wide.
const INLINE_ID: usize = 22;

/// The identity a lease belongs to: the option 61 client identifier when the client sent one,
/// otherwise its hardware type and address (the form option 61 would take: `htype` then `chaddr`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(IdBytes);

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum IdBytes {
    Inline { len: u8, bytes: [u8; INLINE_ID] },
    Heap(Box<[u8]>),
}

impl ClientId {
    /// An identity from raw bytes (an option 61 payload, or `htype` followed by `chaddr`).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        if bytes.len() <= INLINE_ID {
            let mut inline = [0u8; INLINE_ID];
            inline[..bytes.len()].copy_from_slice(bytes);
            // The length fits in a u8: it is at most INLINE_ID.
            ClientId(IdBytes::Inline { len: bytes.len() as u8, bytes: inline })
        } else {
            ClientId(IdBytes::Heap(bytes.into()))
        }
    }

    /// The identity of a client that sent no option 61: its hardware type, then its address.
    pub fn from_hardware(htype: u8, hw: &HwAddr) -> Self {
        let mut buf = [0u8; 17];
        buf[0] = htype;
        buf[1..=hw.as_bytes().len()].copy_from_slice(hw.as_bytes());
        Self::from_bytes(&buf[..=hw.as_bytes().len()])
    }

    /// The identity bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            IdBytes::Inline { len, bytes } => &bytes[..usize::from(*len)],
            IdBytes::Heap(bytes) => bytes,
        }
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientId({self})")
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, self.as_bytes())
    }
}

/// A hardware (link-layer) address of up to 16 bytes, as carried in `chaddr`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct HwAddr {
    len: u8,
    bytes: [u8; 16],
}

impl HwAddr {
    /// An address from its bytes; `None` when longer than 16 bytes.
    pub fn new(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > 16 {
            return None;
        }
        let mut buf = [0u8; 16];
        buf[..bytes.len()].copy_from_slice(bytes);
        Some(HwAddr { len: bytes.len() as u8, bytes: buf })
    }

    /// A 6-byte Ethernet MAC address.
    pub const fn mac(mac: [u8; 6]) -> Self {
        let mut bytes = [0u8; 16];
        let mut i = 0;
        while i < 6 {
            bytes[i] = mac[i];
            i += 1;
        }
        HwAddr { len: 6, bytes }
    }

    /// The address bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Parses `aa:bb:cc:dd:ee:ff` (also with `-` or no separators).
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = parse_hex_bytes(text)?;
        if bytes.is_empty() { None } else { Self::new(&bytes) }
    }
}

impl fmt::Debug for HwAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HwAddr({self})")
    }
}

impl fmt::Display for HwAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, self.as_bytes())
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            f.write_str(":")?;
        }
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// Parses hex bytes written as `01:02:ab`, `01-02-ab` or `0102ab`.
pub(crate) fn parse_hex_bytes(text: &str) -> Option<alloc::vec::Vec<u8>> {
    let text = text.trim();
    let digits: alloc::vec::Vec<u8> = if text.contains([':', '-', ' ']) {
        let mut out = alloc::vec::Vec::new();
        for part in text.split([':', '-', ' ']) {
            if part.is_empty() || part.len() > 2 {
                return None;
            }
            out.push(u8::from_str_radix(part, 16).ok()?);
        }
        return Some(out);
    } else {
        text.bytes().collect()
    };
    if digits.len() % 2 != 0 {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let s = core::str::from_utf8(pair).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

/// Where a lease is in its life, with the deadline that moves it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaseState {
    /// Offered to the client and held for it until `until`, waiting for its REQUEST.
    Offered {
        /// When the hold ends and the address is free for others again.
        until: Timestamp,
    },
    /// Acknowledged: the client may use the address until `expires`.
    Bound {
        /// When the lease expires.
        expires: Timestamp,
    },
    /// The client declined the address (it found it in use); nobody gets it until `until`.
    Declined {
        /// When the probation period ends.
        until: Timestamp,
    },
    /// The client released the address. It is free, and kept so the client can get it back.
    Released,
    /// The lease ran out and was reclaimed. Free, and kept for address affinity.
    Expired,
}

impl LeaseState {
    /// The deadline of a state that has one.
    pub fn deadline(&self) -> Option<Timestamp> {
        match *self {
            LeaseState::Offered { until } | LeaseState::Declined { until } => Some(until),
            LeaseState::Bound { expires } => Some(expires),
            LeaseState::Released | LeaseState::Expired => None,
        }
    }

    /// A short lowercase name: `offered`, `bound`, `declined`, `released`, `expired`.
    pub fn name(&self) -> &'static str {
        match self {
            LeaseState::Offered { .. } => "offered",
            LeaseState::Bound { .. } => "bound",
            LeaseState::Declined { .. } => "declined",
            LeaseState::Released => "released",
            LeaseState::Expired => "expired",
        }
    }
}

/// One address and who holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The leased address.
    pub addr: Ipv4Addr,
    /// The client it belongs to (or last belonged to).
    pub client: ClientId,
    /// The client's hardware address, for operators and MAC reservations.
    pub hwaddr: HwAddr,
    /// The configured id of the subnet the address belongs to.
    pub subnet: u32,
    /// Where the lease is in its life.
    pub state: LeaseState,
    /// The host name the client sent or its reservation gave, if any.
    pub hostname: Option<String>,
}

impl Lease {
    /// Whether the address is held (offered, bound or in probation) at `now`, by anyone.
    pub fn is_held(&self, now: Timestamp) -> bool {
        self.state.deadline().is_some_and(|deadline| deadline > now)
    }

    /// The single rule every store applies before it grants an address: the address may go to
    /// `client` when nobody holds it at `now`, or when `client` itself holds it (an offer or a
    /// binding, never a declined address still in probation).
    pub fn available_to(&self, client: &ClientId, now: Timestamp) -> bool {
        match self.state {
            LeaseState::Declined { until } => until <= now,
            LeaseState::Offered { until } | LeaseState::Bound { expires: until } => {
                until <= now || self.client == *client
            }
            LeaseState::Released | LeaseState::Expired => true,
        }
    }

    /// Whether this is an unexpired binding of `client`.
    pub fn is_bound_to(&self, client: &ClientId, now: Timestamp) -> bool {
        matches!(self.state, LeaseState::Bound { expires } if expires > now) && self.client == *client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_inline_and_heap_round_trip() {
        let short = ClientId::from_bytes(&[1, 2, 3]);
        assert_eq!(short.as_bytes(), &[1, 2, 3]);
        let long_bytes: alloc::vec::Vec<u8> = (0..40).collect();
        let long = ClientId::from_bytes(&long_bytes);
        assert_eq!(long.as_bytes(), &long_bytes[..]);
        assert_ne!(short, long);
        assert_eq!(core::mem::size_of::<ClientId>(), 24);
    }

    #[test]
    fn hardware_identity_is_htype_then_address() {
        let hw = HwAddr::mac([2, 0, 0, 0, 0, 9]);
        assert_eq!(ClientId::from_hardware(1, &hw).as_bytes(), &[1, 2, 0, 0, 0, 0, 9]);
    }

    #[test]
    fn parses_mac_forms() {
        let want = HwAddr::mac([0xaa, 0xbb, 0xcc, 0, 1, 2]);
        assert_eq!(HwAddr::parse("aa:bb:cc:00:01:02"), Some(want));
        assert_eq!(HwAddr::parse("AA-BB-CC-00-01-02"), Some(want));
        assert_eq!(HwAddr::parse("aabbcc000102"), Some(want));
        assert_eq!(HwAddr::parse("aa:bb:cc:00:01:0g"), None);
        assert_eq!(HwAddr::parse("aabbc"), None);
        assert_eq!(HwAddr::parse(""), None);
    }

    #[test]
    fn availability_rule() {
        let a = ClientId::from_bytes(&[1]);
        let b = ClientId::from_bytes(&[2]);
        let now = Timestamp::from_secs(100);
        let mut lease = Lease {
            addr: Ipv4Addr::new(10, 0, 0, 1),
            client: a.clone(),
            hwaddr: HwAddr::default(),
            subnet: 1,
            state: LeaseState::Bound { expires: Timestamp::from_secs(200) },
            hostname: None,
        };
        assert!(lease.available_to(&a, now));
        assert!(!lease.available_to(&b, now));
        assert!(lease.available_to(&b, Timestamp::from_secs(200)));
        lease.state = LeaseState::Declined { until: Timestamp::from_secs(150) };
        assert!(!lease.available_to(&a, now));
        assert!(lease.available_to(&b, Timestamp::from_secs(150)));
        lease.state = LeaseState::Released;
        assert!(lease.available_to(&b, now));
    }
}
