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
        for (code, _) in &raw {
            // Concatenation (RFC 3396) of a present option is never empty-handed.
            assert!(packet.option(*code).is_some());
        }
    }
});
