//! The DHC load-balancing hash of RFC 3074 ("DHC Load Balancing Algorithm"), and the way Kea's
//! High Availability hook uses it to split clients between the two servers of a
//! load-balancing pair.
//!
//! RFC 3074 has every cooperating server hash the same client key to a value in `0..=255` and
//! serve the client only if that value falls in its share. The hash is Pearson's 8-bit hash
//! (CACM 33(6), 1990): a 256-entry permutation of `0..=255` (RFC 3074 section 6) is applied once
//! per key byte. With the same table, key and rule, any two implementations, including Kea
//! and this crate, agree on which server answers which client. That is what lets a mixed
//! Kea/Rust pair split the load without double offers.
//!
//! Sources: RFC 3074 section 6 (table and reference C function `loadB_p_hash`); ISC Kea
//! `src/hooks/dhcp/high_availability/query_filter.cc` (`loadb_mx_tbl`, `loadBalanceHash`,
//! `loadBalance`); ISC dhcpd `server/failover.c` (`loadb_p_hash`, the same table taken
//! from draft-ietf-dhc-loadb-01). The Kea and ISC dhcpd tables were checked to be identical.

/// The RFC 3074 section 6 "mixing table": 256 distinct values in pseudo-random order, so a
/// permutation of `0..=255`. Kea calls it `loadb_mx_tbl`. The values are data fixed by the RFC:
/// a single wrong entry would change which server owns which client, so do not reformat them
/// by hand (the tests check that the table is a permutation, and also check hash vectors
/// computed by an independent C transcription of Kea's function).
#[rustfmt::skip] // keep the 16-per-row layout, one row per high nibble of the index
const MIX_TABLE: [u8; 256] = [
    251, 175, 119, 215,  81,  14,  79, 191, 103,  49, 181, 143, 186, 157,   0, 232,  // 0x00
     31,  32,  55,  60, 152,  58,  17, 237, 174,  70, 160, 144, 220,  90,  57, 223,  // 0x10
     59,   3,  18, 140, 111, 166, 203, 196, 134, 243, 124,  95, 222, 179, 197,  65,  // 0x20
    180,  48,  36,  15, 107,  46, 233, 130, 165,  30, 123, 161, 209,  23,  97,  16,  // 0x30
     40,  91, 219,  61, 100,  10, 210, 109, 250, 127,  22, 138,  29, 108, 244,  67,  // 0x40
    207,   9, 178, 204,  74,  98, 126, 249, 167, 116,  34,  77, 193, 200, 121,   5,  // 0x50
     20, 113,  71,  35, 128,  13, 182,  94,  25, 226, 227, 199,  75,  27,  41, 245,  // 0x60
    230, 224,  43, 225, 177,  26, 155, 150, 212, 142, 218, 115, 241,  73,  88, 105,  // 0x70
     39, 114,  62, 255, 192, 201, 145, 214, 168, 158, 221, 148, 154, 122,  12,  84,  // 0x80
     82, 163,  44, 139, 228, 236, 205, 242, 217,  11, 187, 146, 159,  64,  86, 239,  // 0x90
    195,  42, 106, 198, 118, 112, 184, 172,  87,   2, 173, 117, 176, 229, 247, 253,  // 0xA0
    137, 185,  99, 164, 102, 147,  45,  66, 231,  52, 141, 211, 194, 206, 246, 238,  // 0xB0
     56, 110,  78, 248,  63, 240, 189,  93,  92,  51,  53, 183,  19, 171,  72,  50,  // 0xC0
     33, 104, 101,  69,   8, 252,  83, 120,  76, 135,  85,  54, 202, 125, 188, 213,  // 0xD0
     96, 235, 136, 208, 162, 129, 190, 132, 156,  38,  47,   1,   7, 254,  24,   4,  // 0xE0
    216, 131,  89,  21,  28, 133,  37, 153, 149,  80, 170,  68,   6, 169, 234, 151,  // 0xF0
];

/// The RFC 3074 hash of `key`: one byte, `0..=255`.
///
/// The RFC's reference function (section 6, `loadB_p_hash`) seeds the hash with the key
/// length and then mixes the key bytes in **last to first** order:
/// `hash = len; for i in (0..len).rev() { hash = TABLE[hash ^ key[i]] }`.
/// Both Kea (`QueryFilter::loadBalanceHash`) and ISC dhcpd (`loadb_p_hash`) walk the key
/// backwards in exactly this way, so it must not be "simplified" to a forward loop: the result
/// would differ and a mixed pair would disagree. The length seed is kept modulo 256, like the C
/// code storing `len` in an `unsigned char` (`static_cast<uint8_t>(key_len)` in Kea). This only
/// matters for keys longer than 255 bytes, which DHCPv4 cannot carry.
///
/// An empty key hashes to 0. Kea never hashes an empty key: it drops the query instead (see
/// [`client_hash`]).
pub(crate) fn rfc3074_hash(key: &[u8]) -> u8 {
    // The RFC's seed is the length kept to 8 bits: its lowest byte.
    let seed = key.len().to_le_bytes()[0];
    key.iter().rev().fold(seed, |hash, &byte| MIX_TABLE[usize::from(hash ^ byte)])
}

/// The load-balancing hash of a DHCPv4 client: [`rfc3074_hash`] over the client identifier
/// when there is a non-empty one, otherwise over the hardware address.
///
/// RFC 3074 hashes the client identifier (option 61) when the client sends one, and otherwise
/// the `chaddr` field's `hlen` bytes. Kea's `QueryFilter::loadBalance(Pkt4)` does the same:
/// it hashes the **whole payload of option 61** (type byte included, e.g. `01` followed by the
/// MAC for a hardware-type identifier) when the option is present and non-empty. Otherwise it
/// hashes the packet's hardware address. The lease-side `loadBalance(Lease4)` uses the lease's
/// client id and then its hardware address in the same way, so a lease lands in the same
/// scope as the queries that made it.
///
/// Pass `client_id` as the option 61 payload (without the code and length bytes), or `None`
/// when the option is absent. An empty `Some` is treated as absent, as in Kea. Pass `chaddr`
/// as the hardware address Kea would see, which is the first `hlen` bytes of the 16-byte
/// `chaddr` field. That covers every ordinary client (`hlen` <= 16). Kea pads `chaddr` with
/// zeros to `hlen` for 17..=20 and fails to parse a packet with a larger `hlen`.
///
/// With no client identifier and an empty hardware address, Kea does not balance the query:
/// `loadBalance` returns -1 and the query is out of scope on both servers, so it is dropped.
/// This function still returns a value (the hash of the empty key, 0), so a caller that
/// wants Kea's behaviour must check for that case itself before calling [`share_of`].
pub(crate) fn client_hash(client_id: Option<&[u8]>, chaddr: &[u8]) -> u8 {
    match client_id {
        Some(id) if !id.is_empty() => rfc3074_hash(id),
        _ => rfc3074_hash(chaddr),
    }
}

/// Which active server's share a client with load-balancing hash `hash` belongs to, out of
/// `servers` active servers: `hash % servers`. Index 0 is the primary's share and index 1 the
/// secondary's.
///
/// This is Kea's rule, not RFC 3074's bitmap. RFC 3074 gives each server a 256-bit Hash Bucket
/// Assignment (HBA) and lets a server answer when the bit for the hash value is set. Kea
/// configures no HBA. Its `QueryFilter::loadBalance` returns
/// `lb_hash % active_servers_`, an index into the filter's peer list. The constructor builds
/// that list with the **primary first**, then the secondary (or standby), then any backups, and
/// counts only primary and secondary as active. In load-balancing mode that gives
/// `active_servers_ == 2`, so an **even hash is the primary's scope** (`HA_<primary-name>`) and
/// an **odd hash is the secondary's**. A server answers when it serves that scope (normally
/// its own; in partner-down both). In hot-standby mode Kea skips the hash entirely and
/// everything is in the primary's scope. To agree with a Kea partner, call this with
/// `servers == 2` and map 0/1 to the peers in primary, secondary order, whichever one this
/// server is.
///
/// Kea applies the split only to the message types it balances (DHCPDISCOVER, DHCPREQUEST,
/// DHCPDECLINE, DHCPRELEASE, DHCPINFORM). Every other type is put in the primary's
/// scope, and that decision belongs to the caller.
///
/// `servers == 0` has no share to give. Kea returns -1 there, which means "not in scope". This
/// function returns 0 (the primary's index) so that it stays total, and callers should not
/// pass 0.
pub(crate) fn share_of(hash: u8, servers: u8) -> u8 {
    hash.checked_rem(servers).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A MAC address `02:00:` followed by `n` big-endian: 2^32 distinct, locally administered.
    fn counting_mac(count: u32) -> [u8; 6] {
        let mut mac = [0x02, 0x00, 0, 0, 0, 0];
        mac[2..].copy_from_slice(&count.to_be_bytes());
        mac
    }

    /// How many of `hashes` fall in each of the two shares of a load-balancing pair.
    fn split(hashes: impl Iterator<Item = u8>) -> [u32; 2] {
        let mut counts = [0u32; 2];
        for hash in hashes {
            counts[usize::from(share_of(hash, 2))] += 1;
        }
        counts
    }

    fn assert_even_split(counts: [u32; 2]) {
        let total = counts[0] + counts[1];
        for (server, &count) in counts.iter().enumerate() {
            let percent = f64::from(count) * 100.0 / f64::from(total);
            assert!((45.0..=55.0).contains(&percent), "server {server} got {count} of {total} ({percent:.2}%)");
        }
    }

    #[test]
    fn table_is_a_permutation_of_all_bytes() {
        let mut seen = [0u8; 256];
        for &value in &MIX_TABLE {
            seen[usize::from(value)] += 1;
        }
        for (value, &times) in seen.iter().enumerate() {
            assert_eq!(times, 1, "value {value} appears {times} times in the mixing table");
        }
    }

    #[test]
    fn table_matches_rfc_landmarks() {
        // First and last entries, and a few from the middle, as printed in RFC 3074 section 6
        // and in Kea's loadb_mx_tbl.
        assert_eq!(&MIX_TABLE[..4], &[251, 175, 119, 215]);
        assert_eq!(MIX_TABLE[14], 0);
        assert_eq!(MIX_TABLE[128], 39);
        assert_eq!(&MIX_TABLE[250..], &[170, 68, 6, 169, 234, 151]);
    }

    #[test]
    fn short_keys_follow_the_reference_function() {
        // Worked by hand from the table: seed = len, then TABLE[hash ^ byte] from the last byte.
        assert_eq!(rfc3074_hash(&[]), 0);
        assert_eq!(rfc3074_hash(&[0x00]), MIX_TABLE[1]); // TABLE[1 ^ 0] = 175
        assert_eq!(rfc3074_hash(&[0x00]), 175);
        assert_eq!(rfc3074_hash(&[0x01]), 251); // TABLE[1 ^ 1] = TABLE[0]
        // Two bytes: the last byte goes in first. TABLE[2 ^ 2] = 251, then TABLE[251 ^ 0] = 68.
        assert_eq!(rfc3074_hash(&[0x00, 0x02]), 68);
        // A forward walk would give TABLE[TABLE[2 ^ 0] ^ 2] = TABLE[117] = 26. Make sure we don't.
        assert_eq!(MIX_TABLE[usize::from(MIX_TABLE[2] ^ 0x02)], 26);
    }

    #[test]
    fn matches_kea_load_balance_hash_vectors() {
        // Expected values come from a C transcription of Kea's QueryFilter::loadBalanceHash
        // (identical to ISC dhcpd's loadb_p_hash) compiled against ISC dhcpd's copy of the table.
        // Kea's own tests only assert a rough 50/50 split with random keys.
        let cases: [(&[u8], u8); 7] = [
            (&[0x11, 0x22, 0x33, 0x44, 0x55, 0x66], 66), // the MAC Kea's query filter tests use
            (&[0x02, 0x00, 0x00, 0x00, 0x00, 0x01], 133),
            (&[0x00, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e], 11),
            (&[0x01, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66], 152), // option 61 payload, htype 1
            (b"client-1", 1),
            (&[0x00, 0x01, 0x00, 0x01, 0x2a, 0x2b, 0x2c, 0x2d, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66], 73),
            (&[0xab; 300], 244), // longer than 255 bytes: the length seed wraps to 300 % 256
        ];
        for (key, expected) in cases {
            assert_eq!(rfc3074_hash(key), expected, "key {key:02x?}");
        }
    }

    #[test]
    fn kea_scopes_for_known_clients() {
        // In a Kea load-balancing pair, 11:22:33:44:55:66 (hash 66, even) is in the primary's
        // scope (HA_server1 in Kea's tests) and 02:00:00:00:00:01 (hash 133, odd) in the
        // secondary's.
        let mac = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66];
        assert_eq!(share_of(client_hash(None, &mac), 2), 0);
        assert_eq!(share_of(client_hash(None, &[0x02, 0, 0, 0, 0, 0x01]), 2), 1);
        // The same MAC behind a client identifier `01:<mac>` hashes to 152 (even), which is the primary's share.
        let client_id = [0x01, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66];
        assert_eq!(share_of(client_hash(Some(&client_id), &mac), 2), 0);
    }

    #[test]
    fn client_hash_prefers_a_non_empty_client_id() {
        let mac = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
        let client_id = b"client-1";
        assert_eq!(client_hash(Some(client_id), &mac), rfc3074_hash(client_id));
        assert_ne!(client_hash(Some(client_id), &mac), rfc3074_hash(&mac));
        assert_eq!(client_hash(None, &mac), rfc3074_hash(&mac));
        assert_eq!(client_hash(Some(&[]), &mac), rfc3074_hash(&mac));
        assert_eq!(client_hash(None, &[]), 0);
    }

    #[test]
    fn share_is_hash_modulo_active_servers() {
        for hash in 0..=u8::MAX {
            assert_eq!(share_of(hash, 2), hash & 1, "hash {hash}");
            assert_eq!(share_of(hash, 1), 0);
            assert_eq!(share_of(hash, 0), 0);
            assert_eq!(share_of(hash, 3), hash % 3);
        }
    }

    #[test]
    fn counting_macs_split_evenly_between_two_servers() {
        assert_even_split(split((0..10_000).map(|n| rfc3074_hash(&counting_mac(n)))));
    }

    #[test]
    fn scattered_macs_and_client_ids_split_evenly() {
        // Counting MACs vary mostly in the byte hashed first. Spread the counter over all four
        // bytes too (multiplying by an odd constant is a bijection on u32).
        let scattered = (0..10_000u32).map(|n| rfc3074_hash(&counting_mac(n.wrapping_mul(0x9E37_79B1))));
        assert_even_split(split(scattered));
        // Client identifiers: `01` (htype Ethernet) followed by a counting MAC, as most clients
        // send them, and text identifiers of varying length.
        let hw_ids = (0..10_000u32).map(|n| {
            let mut id = [0x01; 7];
            id[1..].copy_from_slice(&counting_mac(n));
            rfc3074_hash(&id)
        });
        assert_even_split(split(hw_ids));
        let ids = (0..10_000u32).map(|n| rfc3074_hash(format!("client-{n}").as_bytes()));
        assert_even_split(split(ids));
    }
}
