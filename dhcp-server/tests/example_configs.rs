//! Every sample config under `examples/config/` parses and validates, and says what its
//! comments promise.

use std::net::Ipv4Addr;
use std::path::Path;

use dhcp_net::Listen;
use dhcp_server::{LogLevel, ServerConfig};

fn load(name: &str) -> ServerConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/config").join(name);
    ServerConfig::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_sample_config_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/config exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            ServerConfig::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen += 1;
        }
    }
    assert!(seen >= 2, "found {seen} sample configs");
}

#[test]
fn loopback_sample_runs_unprivileged() {
    let config = load("loopback.toml");
    assert_eq!(config.settings.net.listen, vec![Listen::Address(Ipv4Addr::LOCALHOST)]);
    assert!(config.settings.net.server_port > 1024 && config.settings.net.client_port > 1024);
    assert_eq!(config.settings.store, "memory:");
}

#[test]
fn bench_sample_matches_the_benchmark_setup() {
    let config = load("bench.toml");
    assert_eq!(config.settings.net.listen, vec![Listen::Address(Ipv4Addr::LOCALHOST)]);
    assert_eq!(config.settings.net.server_port, 67);
    assert_eq!(config.settings.store, "memory:");
    assert_eq!(config.settings.log_level, LogLevel::Warn);
    let subnet = &config.dhcp.subnets[0];
    assert_eq!(subnet.net.to_string(), "10.10.0.0/16");
    assert_eq!(
        (subnet.pools[0].first, subnet.pools[0].last),
        (Ipv4Addr::new(10, 10, 1, 0), Ipv4Addr::new(10, 10, 255, 254))
    );
    assert_eq!(subnet.relay_addresses, vec![Ipv4Addr::new(127, 0, 0, 2)]);
    assert_eq!(subnet.options.get(3), Some(&[10, 10, 0, 1][..]));
}
