//! Leases as the servers of a pair send them to each other.

use dhcp_core::{ClientId, HwAddr, Lease, LeaseState, Timestamp};

use crate::api::model::LeaseRecord;

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
}
