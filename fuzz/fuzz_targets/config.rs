//! Config text never panics the parsers, parses the same way twice, and what validates keeps
//! the promises the engine relies on. Both parsers run: `dhcp_core::Config` (the engine's
//! tables) and `dhcp_server::ServerConfig` (the whole file, with `[server]`, `[ha]` and
//! `[limits]`); on a file without those tables they must agree.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};

use dhcp_core::{Config, Engine, Outcome, RecvMeta, Timestamp, block_on, testing};
use dhcp_server::ServerConfig;
use dhcp_store::MemoryStore;
use libfuzzer_sys::fuzz_target;

/// The promises of a validated config.
fn check(config: &Config) {
    for pair in config.subnets.windows(2) {
        // Sorted by network and never overlapping: `subnet_for` bisects on this.
        assert!(pair[0].net.network() < pair[1].net.network(), "subnets sorted");
        assert!(!pair[0].net.contains(&pair[1].net.network()), "subnets overlap");
    }
    for (i, s) in config.subnets.iter().enumerate() {
        assert!(config.subnets[..i].iter().all(|o| o.id != s.id), "subnet ids unique");
        assert_eq!(config.subnet_for(s.net.network()).map(|f| f.id), Some(s.id));
        assert_eq!(config.subnet_by_id(s.id).map(|f| f.net), Some(s.net));
        for pool in &s.pools {
            assert!(s.net.contains(&pool.first) && s.net.contains(&pool.last), "pool inside its subnet");
            let dynamic = pool.as_ref(s.id);
            for range in &pool.ranges {
                assert!(range.start() <= range.end());
                assert!(s.net.contains(&Ipv4Addr::from(*range.start())));
                assert!(s.net.contains(&Ipv4Addr::from(*range.end())));
            }
            // Reserved addresses are cut out of the dynamic ranges.
            for r in &s.reservations {
                if let Some(addr) = r.ip_address {
                    assert!(!dynamic.contains(addr), "{addr} is reserved and dynamic");
                }
            }
        }
        for r in &s.reservations {
            if let Some(addr) = r.ip_address {
                assert!(s.net.contains(&addr), "reservation inside its subnet");
                assert!(s.reservation_of_addr(addr).is_some());
            }
            assert!(r.hw_address.is_some() || r.client_id.is_some() || r.circuit_id.is_some());
            if let Some(group) = r.group {
                assert!(group < config.groups.len(), "reservation's group exists");
            }
        }
    }
}

/// A config that validates serves: a DISCOVER asking for every option, on each of the first
/// subnets, gets an offer, a drop or silence, never a panic or a reply that does not parse.
fn serve(config: Config) {
    let locals: Vec<Ipv4Addr> = config.subnets.iter().take(4).map(|s| s.net.network()).collect();
    let engine = Engine::new(config, MemoryStore::new());
    let every_option: Vec<u8> = (1..=254).collect();
    let discover = testing::ClientPacket::new(dhcp_core::MessageType::Discover, [2, 0, 0, 0, 0, 1])
        .option(dhcp_core::wire::code::PARAMETER_REQUEST_LIST, &every_option)
        .build();
    for local in locals {
        let meta = RecvMeta::new(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68)).with_local_addr(local);
        let mut out = Vec::new();
        let outcome = block_on(engine.handle(&discover, &meta, Timestamp::from_secs(1_000), &mut out))
            .expect("the memory store answers at once");
        if let Outcome::Reply(reply) = outcome {
            assert_eq!(reply.len, out.len());
            dhcp_core::wire::Packet::parse_reply(&out).expect("every reply parses");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };

    let core = Config::from_toml_str(text);
    match (&core, &Config::from_toml_str(text)) {
        (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("dhcp_core::Config parsed the same text two ways"),
    }
    let server = ServerConfig::from_toml_str(text);
    match (&server, &ServerConfig::from_toml_str(text)) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.settings, b.settings);
            assert_eq!(format!("{:?}", a.dhcp), format!("{:?}", b.dhcp));
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("dhcp_server::ServerConfig parsed the same text two ways"),
    }

    // Without the server's own tables, the whole-file parser validates the engine's part
    // exactly as dhcp_core does.
    let own_tables = text
        .parse::<toml::Table>()
        .map(|t| ["server", "ha", "limits"].iter().any(|k| t.contains_key(*k)))
        .unwrap_or(true);
    if !own_tables {
        match (&core, &server) {
            (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{:?}", b.dhcp)),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("dhcp_core says {:?}, dhcp_server says {:?}", a.as_ref().err(), b.as_ref().err()),
        }
    }

    if let Ok(config) = core {
        check(&config);
        serve(config);
    }
    if let Ok(server) = server {
        check(&server.dhcp);
    }
});
