//! Packet decoding never panics, and what parses reads back consistently.
#![no_main]

use dhcp_core::wire::Packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = Packet::parse(data) {
        // Every accessor is infallible after parse; touch them all.
        let _ = (packet.message_type(), packet.xid(), packet.flags(), packet.ciaddr(), packet.giaddr());
        assert!(packet.chaddr().len() <= 16);
        let raw = packet.raw_options();
        // Each code once: `option` scans the whole packet, so asking for every instance of a
        // packet full of one-byte options would cost the square of its length.
        let mut seen = [false; 256];
        for (code, _) in &raw {
            if !std::mem::replace(&mut seen[usize::from(*code)], true) {
                // Concatenation (RFC 3396) of a present option is never empty-handed.
                assert!(packet.option(*code).is_some());
            }
        }
    }
});
