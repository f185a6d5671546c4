//! Leases as the servers of a pair send them to each other: JSON records in lease pages (and
//! lease updates an operator posts by hand), and a compact binary form for the lease updates
//! the servers send on the path of every ACK.
//!
//! The binary form (`application/vnd.dhcp-rs.lease-updates.v1`), integers big-endian:
//!
//! ```text
//! "DHU1"  from: u16 length, UTF-8   count: u32   then `count` changes:
//!   1 (put):    address u32, subnet u32, state u8 (1 offered, 2 bound, 3 declined,
//!               4 released, 5 expired), deadline u64 (Unix seconds, 0 without),
//!               hardware address u8 length + bytes, client id u16 length + bytes,
//!               host name u16 length + UTF-8 (0xffff: none)
//!   2 (delete): address u32
//! ```

use std::net::Ipv4Addr;

use dhcp_core::{ClientId, HwAddr, Lease, LeaseState, Timestamp};

use crate::api::model::{LeaseChange, LeaseRecord};

/// The media type of lease updates in the binary form.
pub const LEASE_UPDATES_TYPE: &str = "application/vnd.dhcp-rs.lease-updates.v1";

const MAGIC: &[u8; 4] = b"DHU1";
const PUT: u8 = 1;
const DELETE: u8 = 2;
const NO_HOSTNAME: u16 = u16::MAX;

/// One lease change between the servers of a pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The lease as it is now (granted, renewed, released, declined, expired).
    Put(Lease),
    /// The lease at this address is gone.
    Delete(Ipv4Addr),
}

/// The change a JSON [`LeaseChange`] describes; the error says which field is wrong.
pub fn change_from_model(change: &LeaseChange) -> Result<Change, String> {
    match change {
        LeaseChange::Put { lease } => from_record(lease).map(Change::Put),
        LeaseChange::Delete { address } => Ok(Change::Delete(*address)),
    }
}

/// Lease updates from `from` in the binary form.
pub fn encode_updates(from: &str, changes: &[Change]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + from.len() + changes.len() * 48);
    out.extend_from_slice(MAGIC);
    put_bytes16(&mut out, from.as_bytes());
    out.extend_from_slice(&u32::try_from(changes.len()).unwrap_or(u32::MAX).to_be_bytes());
    for change in changes.iter().take(u32::MAX as usize) {
        match change {
            Change::Delete(addr) => {
                out.push(DELETE);
                out.extend_from_slice(&addr.octets());
            }
            Change::Put(lease) => {
                out.push(PUT);
                out.extend_from_slice(&lease.addr.octets());
                out.extend_from_slice(&lease.subnet.to_be_bytes());
                let (code, deadline) = match lease.state {
                    LeaseState::Offered { until } => (1, until.as_secs()),
                    LeaseState::Bound { expires } => (2, expires.as_secs()),
                    LeaseState::Declined { until } => (3, until.as_secs()),
                    LeaseState::Released => (4, 0),
                    LeaseState::Expired => (5, 0),
                };
                out.push(code);
                out.extend_from_slice(&deadline.to_be_bytes());
                let hw = lease.hwaddr.as_bytes();
                // A hardware address is at most 16 bytes.
                out.push(hw.len() as u8);
                out.extend_from_slice(hw);
                put_bytes16(&mut out, lease.client.as_bytes());
                match &lease.hostname {
                    Some(name) if name.len() < usize::from(NO_HOSTNAME) => put_bytes16(&mut out, name.as_bytes()),
                    _ => out.extend_from_slice(&NO_HOSTNAME.to_be_bytes()),
                }
            }
        }
    }
    out
}

/// A field of at most 65,534 bytes with its length (longer ones are cut there: no name,
/// client id or host name comes near it).
fn put_bytes16(out: &mut Vec<u8>, bytes: &[u8]) {
    let bytes = &bytes[..bytes.len().min(usize::from(NO_HOSTNAME) - 1)];
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The sender and the changes of lease updates in the binary form; the error says where the
/// body is wrong.
pub fn decode_updates(body: &[u8]) -> Result<(String, Vec<Change>), String> {
    let mut r = Reader { body, at: 0 };
    if r.take(4)? != MAGIC {
        return Err("not lease updates (no DHU1 at the start)".into());
    }
    let from = r.take16()?;
    let from = std::str::from_utf8(from).map_err(|_| "the sender's name is not UTF-8".to_owned())?.to_owned();
    let count = r.u32()? as usize;
    // Each change takes at least 5 bytes: a count beyond what the body holds is a lie.
    let mut changes = Vec::with_capacity(count.min(body.len() / 5));
    for i in 0..count {
        let change = match r.u8()? {
            DELETE => Change::Delete(Ipv4Addr::from(r.u32()?)),
            PUT => Change::Put(r.lease().map_err(|e| format!("change {i}: {e}"))?),
            other => return Err(format!("change {i}: unknown kind {other}")),
        };
        changes.push(change);
    }
    if r.at != body.len() {
        return Err(format!("{} bytes after the last change", body.len() - r.at));
    }
    Ok((from, changes))
}

/// Reads the binary form front to back; every read checks the length left.
struct Reader<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let bytes = self
            .body
            .get(self.at..self.at.saturating_add(n))
            .ok_or_else(|| format!("cut short at byte {}", self.at))?;
        self.at += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.array().map(u32::from_be_bytes)
    }

    fn take16(&mut self) -> Result<&'a [u8], String> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    fn lease(&mut self) -> Result<Lease, String> {
        let addr = Ipv4Addr::from(self.u32()?);
        let subnet = self.u32()?;
        let code = self.u8()?;
        let at = Timestamp::from_secs(u64::from_be_bytes(self.array()?));
        let state = match code {
            1 => LeaseState::Offered { until: at },
            2 => LeaseState::Bound { expires: at },
            3 => LeaseState::Declined { until: at },
            4 => LeaseState::Released,
            5 => LeaseState::Expired,
            other => return Err(format!("unknown state {other}")),
        };
        let hw_len = self.u8()?;
        let hwaddr = HwAddr::new(self.take(usize::from(hw_len))?)
            .ok_or_else(|| format!("hardware address of {hw_len} bytes"))?;
        let client = self.take16()?;
        if client.is_empty() {
            return Err("empty client id".into());
        }
        let client = ClientId::from_bytes(client);
        let hostname = match self.u16()? {
            NO_HOSTNAME => None,
            len => {
                let name = self.take(usize::from(len))?;
                Some(std::str::from_utf8(name).map_err(|_| "host name is not UTF-8".to_owned())?.to_owned())
            }
        };
        Ok(Lease { addr, client, hwaddr, subnet, state, hostname })
    }
}

/// A lease as the pair sends it.
pub fn record(lease: &Lease) -> LeaseRecord {
    LeaseRecord {
        address: lease.addr,
        subnet: lease.subnet,
        hw_address: lease.hwaddr.to_string(),
        client_id: hex(lease.client.as_bytes()),
        state: lease.state.name().to_owned(),
        deadline: lease.state.deadline().map(|t| t.as_secs()),
        hostname: lease.hostname.clone(),
    }
}

/// Lower-case hex, two digits a byte (on the path of every lease update: no allocation a byte).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// The lease a record describes; the error says which field is wrong.
pub fn from_record(record: &LeaseRecord) -> Result<Lease, String> {
    let hwaddr = HwAddr::parse(&record.hw_address).ok_or_else(|| format!("hw-address {:?}", record.hw_address))?;
    let hex = record.client_id.as_bytes();
    if hex.is_empty() || hex.len() % 2 != 0 {
        return Err(format!("client-id {:?}", record.client_id));
    }
    let client: Vec<u8> = hex
        .chunks(2)
        .map(|pair| std::str::from_utf8(pair).ok().and_then(|p| u8::from_str_radix(p, 16).ok()))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("client-id {:?}", record.client_id))?;
    let at = record.deadline.map(Timestamp::from_secs);
    let missing = || format!("state {} without a deadline", record.state);
    let state = match record.state.as_str() {
        "offered" => LeaseState::Offered { until: at.ok_or_else(missing)? },
        "bound" => LeaseState::Bound { expires: at.ok_or_else(missing)? },
        "declined" => LeaseState::Declined { until: at.ok_or_else(missing)? },
        "released" => LeaseState::Released,
        "expired" => LeaseState::Expired,
        other => return Err(format!("state {other:?}")),
    };
    Ok(Lease {
        addr: record.address,
        client: ClientId::from_bytes(&client),
        hwaddr,
        subnet: record.subnet,
        state,
        hostname: record.hostname.clone(),
    })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn records_round_trip() {
        let lease = Lease {
            addr: Ipv4Addr::new(10, 0, 0, 9),
            client: ClientId::from_bytes(&[1, 2, 0, 0, 0, 0, 9]),
            hwaddr: HwAddr::mac([2, 0, 0, 0, 0, 9]),
            subnet: 3,
            state: LeaseState::Bound { expires: Timestamp::from_secs(1_800_000_000) },
            hostname: Some("printer".into()),
        };
        assert_eq!(from_record(&record(&lease)), Ok(lease.clone()));
        let released = Lease { state: LeaseState::Released, hostname: None, ..lease };
        assert_eq!(from_record(&record(&released)), Ok(released.clone()));
        let mut bad = record(&released);
        bad.state = "bound".into();
        assert!(from_record(&bad).expect_err("no deadline").contains("deadline"));
        bad.client_id = "0g".into();
        assert!(from_record(&bad).is_err());
    }

    fn lease(last: u8, state: LeaseState, hostname: Option<&str>) -> Lease {
        Lease {
            addr: Ipv4Addr::new(10, 0, 0, last),
            client: ClientId::from_bytes(&[1, 2, 0, 0, 0, 0, last]),
            hwaddr: HwAddr::mac([2, 0, 0, 0, 0, last]),
            subnet: 3,
            state,
            hostname: hostname.map(str::to_owned),
        }
    }

    #[test]
    fn binary_updates_round_trip_every_state() {
        let at = Timestamp::from_secs(1_800_000_000);
        let changes = vec![
            Change::Put(lease(1, LeaseState::Bound { expires: at }, Some("printer"))),
            Change::Put(lease(2, LeaseState::Offered { until: at }, None)),
            Change::Put(lease(3, LeaseState::Declined { until: at }, Some(""))),
            Change::Put(lease(4, LeaseState::Released, None)),
            Change::Put(lease(5, LeaseState::Expired, None)),
            Change::Delete(Ipv4Addr::new(10, 0, 0, 6)),
        ];
        let body = encode_updates("dhcp-a", &changes);
        assert_eq!(decode_updates(&body), Ok(("dhcp-a".to_owned(), changes)));
        assert_eq!(decode_updates(&encode_updates("b", &[])), Ok(("b".to_owned(), vec![])));
    }

    #[test]
    fn broken_binary_updates_are_refused_with_where() {
        let at = Timestamp::from_secs(1_800_000_000);
        let body = encode_updates("a", &[Change::Put(lease(1, LeaseState::Bound { expires: at }, None))]);
        // Every cut of a valid body is refused, never read past its end.
        for len in 0..body.len() {
            assert!(decode_updates(&body[..len]).is_err(), "cut at {len}");
        }
        let mut trailing = body.clone();
        trailing.push(0);
        assert!(decode_updates(&trailing).expect_err("trailing").contains("after the last change"));
        let mut bad_state = body.clone();
        // magic 4, name 2 + 1, count 4, kind 1, address 4, subnet 4: the state byte.
        bad_state[20] = 9;
        assert!(decode_updates(&bad_state).expect_err("state").contains("change 0: unknown state 9"));
        let mut huge_count = encode_updates("a", &[]);
        huge_count[7..11].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_updates(&huge_count).is_err(), "a count the body cannot hold");
        assert!(decode_updates(b"{\"from\":\"a\"}").expect_err("JSON").contains("DHU1"));
    }
}
