//! When each client was last heard from, by hardware address: what `dhcp-cli show mac` prints
//! as "last seen", as the Go server's CLI does.

use std::collections::HashMap;

use dhcp_core::{HwAddr, Timestamp};

use crate::stripes::{Striped, per_stripe};

/// At most this many clients are remembered; past it, new clients are not noted until a
/// restart (a flood of made-up MACs cannot grow the map without bound).
const MAX_CLIENTS: usize = 1 << 20;

/// Last-seen times by hardware address, in stripes: every datagram notes its client, so one
/// map behind one lock would be a lock every request on every thread takes.
#[derive(Debug)]
pub struct LastSeen {
    times: Striped<HashMap<HwAddr, u64>>,
}

impl Default for LastSeen {
    fn default() -> Self {
        LastSeen { times: Striped::new(HashMap::new) }
    }
}

impl LastSeen {
    /// Notes that a datagram from the client whose `chaddr` is in `datagram` arrived at `now`.
    /// Reads only the fixed header (hlen at byte 2, chaddr at 28); anything shorter is ignored.
    pub fn note(&self, datagram: &[u8], now: Timestamp) {
        let Some(&hlen) = datagram.get(2) else { return };
        let Some(chaddr) = datagram.get(28..28 + usize::from(hlen).min(16)) else { return };
        if datagram.len() < 240 {
            return;
        }
        let Some(hw) = HwAddr::new(chaddr) else { return };
        let mut times = self.times.lock(&hw);
        if times.len() < per_stripe(MAX_CLIENTS) || times.contains_key(&hw) {
            times.insert(hw, now.as_secs());
        }
    }

    /// When `hw` was last heard from, in Unix seconds.
    pub fn get(&self, hw: &HwAddr) -> Option<u64> {
        self.times.lock(hw).get(hw).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_the_chaddr_of_whole_headers_only() {
        let seen = LastSeen::default();
        let mut datagram = vec![0u8; 240];
        datagram[2] = 6;
        datagram[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 7]);
        seen.note(&datagram, Timestamp::from_secs(100));
        seen.note(&datagram[..200], Timestamp::from_secs(200));
        let hw = HwAddr::new(&[2, 0, 0, 0, 0, 7]).expect("mac");
        assert_eq!(seen.get(&hw), Some(100));
    }
}
