//! Fixtures shared by the benchmarks: configs, client packets and pre-filled stores.
//!
//! The benchmarks themselves are under `benches/`; run them with `cargo bench -p dhcp-benches`.

use std::net::{Ipv4Addr, SocketAddrV4};

use dhcp_core::testing::ClientPacket;
use dhcp_core::{ClientId, Config, HwAddr, Lease, LeaseState, LeaseStore, MessageType, RecvMeta, Timestamp, block_on};
use dhcp_store::MemoryStore;

/// The server's own address in every benchmark config.
pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

/// A fixed starting clock, so runs are comparable.
pub const T0: Timestamp = Timestamp::from_secs(1_700_000_000);

/// A config serving `subnet` from one pool `pool`, with the options a typical LAN sends.
pub fn config(subnet: &str, pool: &str) -> Config {
    let text = format!(
        r#"
server-id = "10.0.0.1"
lease-time = 3600
options = {{ domain-name-servers = ["10.0.0.53", "10.0.0.54"], domain-name = "bench.example" }}

[[subnets]]
id = 1
subnet = "{subnet}"
pools = ["{pool}"]
options = {{ routers = ["10.0.0.1"] }}
"#
    );
    match Config::from_toml_str(&text) {
        Ok(config) => config,
        Err(e) => panic!("benchmark config is invalid: {e}"),
    }
}

/// A /8 served from one pool of sixteen million addresses.
pub fn config_slash8() -> Config {
    config("10.0.0.0/8", "10.0.1.0-10.255.255.254")
}

/// A /24 served from one pool of 200 addresses.
pub fn config_slash24() -> Config {
    config("10.0.0.0/24", "10.0.0.50-10.0.0.249")
}

/// A distinct MAC address for client number `n`.
pub fn mac(n: u32) -> [u8; 6] {
    let b = n.to_be_bytes();
    [0x02, 0x42, b[0], b[1], b[2], b[3]]
}

/// The options a typical client (dhclient) sends, so decode and option assembly do real work.
fn typical(packet: ClientPacket, n: u32) -> ClientPacket {
    let mut client_id = vec![1];
    client_id.extend_from_slice(&mac(n));
    packet
        .option(55, &[1, 28, 2, 3, 15, 6, 119, 12, 44, 47, 26, 121, 42])
        .option(57, &[0x05, 0xdc])
        .option(61, &client_id)
        .option(12, b"bench-host")
}

/// A DISCOVER from client `n`, as dhclient sends it.
pub fn discover(n: u32) -> Vec<u8> {
    typical(ClientPacket::new(MessageType::Discover, mac(n)).xid(n), n).build()
}

/// A SELECTING-state REQUEST from client `n` for `addr`.
pub fn request(n: u32, addr: Ipv4Addr) -> Vec<u8> {
    typical(ClientPacket::new(MessageType::Request, mac(n)).xid(n), n)
        .addr_option(50, addr)
        .addr_option(54, SERVER)
        .build()
}

/// A RENEWING-state REQUEST from client `n`, which holds `addr`.
pub fn renew(n: u32, addr: Ipv4Addr) -> Vec<u8> {
    typical(ClientPacket::new(MessageType::Request, mac(n)).xid(n), n).ciaddr(addr).build()
}

/// How a directly attached client's datagram arrives.
pub fn direct() -> RecvMeta {
    RecvMeta::new(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68)).with_local_addr(SERVER).with_ifindex(2)
}

/// The client identity the engine derives from [`discover`]'s option 61.
pub fn client_id(n: u32) -> ClientId {
    let mut bytes = vec![1];
    bytes.extend_from_slice(&mac(n));
    ClientId::from_bytes(&bytes)
}

/// Fills `store` with `count` bound leases from the config's first pool, for clients
/// `first..first + count`, as the allocator hands them out.
pub fn fill(store: &MemoryStore, config: &Config, first: u32, count: u32) {
    let Some(pool) = config.subnets.first().and_then(|s| s.pools.first()) else {
        panic!("benchmark config has no pool");
    };
    let pool = pool.as_ref(1);
    for n in first..first + count {
        let lease = bound_lease(n, Ipv4Addr::UNSPECIFIED);
        match block_on(store.allocate(pool, &lease, T0)) {
            Some(Ok(Some(_))) => {}
            other => panic!("filling the store failed at client {n}: {other:?}"),
        }
    }
}

/// A bound lease for client `n` at `addr`, expiring an hour after [`T0`].
pub fn bound_lease(n: u32, addr: Ipv4Addr) -> Lease {
    Lease {
        addr,
        client: client_id(n),
        hwaddr: HwAddr::mac(mac(n)),
        subnet: 1,
        state: LeaseState::Bound { expires: T0 + 3600 },
        hostname: None,
    }
}
