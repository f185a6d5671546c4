//! Whatever arrives, the engine answers with a well-formed reply, stays silent, or drops and
//! counts the packet; it never panics.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::OnceLock;

use dhcp_core::wire::Packet;
use dhcp_core::{Config, Engine, Outcome, RecvMeta, Timestamp, block_on};
use dhcp_store::MemoryStore;
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
server-id = "192.0.2.1"
lease-time = 600
[[subnets]]
id = 1
subnet = "192.0.2.0/24"
pools = ["192.0.2.100-192.0.2.120"]
options = { routers = ["192.0.2.1"], domain-name = "fuzz.test", option-224 = "HEX" }
[[subnets.reservations]]
hw-address = "02:00:00:00:00:01"
ip-address = "192.0.2.10"
[[subnets]]
id = 2
subnet = "198.51.100.0/24"
pools = ["198.51.100.10-198.51.100.20"]
"#;

fn engine() -> &'static Engine<MemoryStore> {
    static ENGINE: OnceLock<Engine<MemoryStore>> = OnceLock::new();
    ENGINE.get_or_init(|| {
        // A long option, so that overload and RFC 3396 splitting are exercised.
        let hex: String = (0..400).map(|i| format!("{:02x}", i % 256)).collect();
        let config = Config::from_toml_str(&CONFIG.replace("HEX", &hex)).expect("fuzz config is valid");
        Engine::new(config, MemoryStore::new())
    })
}

fuzz_target!(|data: &[u8]| {
    // The first byte steps the clock, so leases expire and are reclaimed along the way.
    let Some((&step, datagram)) = data.split_first() else { return };
    static CLOCK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1_700_000_000);
    let now = Timestamp::from_secs(CLOCK.fetch_add(u64::from(step), std::sync::atomic::Ordering::Relaxed));
    let engine = engine();
    let meta = RecvMeta::new(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68)).with_local_addr(Ipv4Addr::new(192, 0, 2, 1));
    let mut out = Vec::new();
    let outcome = block_on(engine.handle(datagram, &meta, now, &mut out)).expect("memory store is ready");
    if let Outcome::Reply(reply) = outcome {
        assert_eq!(reply.len, out.len());
        assert!(out.len() <= 1472);
        Packet::parse_reply(&out).expect("every reply parses");
    }
    let _ = block_on(engine.handle_timeout(now));
});
