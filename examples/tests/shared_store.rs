//! Several server processes on one shared store: two example servers, each on its own network
//! segment with its own perfdhcp, share one PostgreSQL (then one Redis) and allocate at once
//! from a pool of 100 addresses that 300 clients want. Whatever the interleaving, no address is
//! ACKed to two clients, the pool fills exactly, the clients left over get no offer, and
//! neither server falls over.

mod lab;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use dhcp_core::wire::Packet;
use dhcp_core::{HwAddr, MessageType};
use lab::{Lab, Proc, SERVER_ADDR};

const POOL_SIZE: usize = 100;
const CLIENTS_PER_SERVER: usize = 150;

const CONFIG: &str = r#"
lease-time = 3600
[[subnets]]
id = 1
subnet = "10.199.0.0/16"
pools = ["10.199.1.10-10.199.1.109"]
"#;

#[test]
fn two_servers_on_one_postgres_never_give_an_address_twice() {
    if !lab::available() {
        return;
    }
    // The servers run in network namespaces with a loopback of their own: they reach the
    // host's PostgreSQL through its Unix socket directory.
    let schema = format!("dhcp_shared_{}", std::process::id());
    let psql = |sql: &str| lab::run(["psql", "-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-c", sql]);
    psql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"));
    share(&format!("postgresql://postgres@%2Fvar%2Frun%2Fpostgresql/test?options=-c%20search_path%3D{schema}"));
    psql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE;"));
}

#[test]
fn two_servers_on_one_redis_never_give_an_address_twice() {
    if !lab::available() {
        return;
    }
    // A Redis of the test's own on a Unix socket, which the namespaces share.
    let redis = lab::PrivateRedis::start();
    share(&format!("{}?prefix=shared:", redis.url()));
}

fn perfdhcp(lab: &Lab, mac_base: &str) -> Proc {
    let (clients, exchanges) = (CLIENTS_PER_SERVER.to_string(), (CLIENTS_PER_SERVER * 20).to_string());
    let base = format!("mac={mac_base}");
    // perfdhcp goes through its clients in turn: 20 exchanges each, so every one of them asks
    // again and again.
    let args = ["perfdhcp", "-4", "-g", "single", "-l", "10.199.0.2", "-R", &clients, "-n", &exchanges, "-r", "400"];
    lab.client(0).spawn(&[&args[..], &["-b", &base, SERVER_ADDR]].concat(), &lab.path("perfdhcp.log"))
}

/// One shared-store run at a time: two servers, two perfdhcp and the store each, on two cores,
/// are load enough; two such runs at once starve exchanges until the pool cannot fill.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn share(store: &str) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let store_line = format!("store = \"{store}\"\nmax-in-flight = 16");
    let mut labs = [Lab::pair(), Lab::pair()];
    let mut captures = Vec::new();
    for lab in &mut labs {
        lab.start_server_with(CONFIG, &store_line);
        lab.client(0).ip(&["addr", "add", "10.199.0.2/16", "dev", "vcli"]);
        let pcap = lab.path("replies.pcap");
        captures.push((lab.capture_replies(&pcap), pcap));
    }
    let runs = [perfdhcp(&labs[0], "02:aa:00:00:00:00"), perfdhcp(&labs[1], "02:bb:00:00:00:00")];
    for run in runs {
        let status =
            run.wait(Duration::from_secs(120)).unwrap_or_else(|| panic!("perfdhcp ran on:\n{}", run.log_text()));
        // perfdhcp exits with 3 when packets went unanswered, as they must here.
        assert!(matches!(status.code(), Some(0 | 3)), "perfdhcp failed ({status}):\n{}", run.log_text());
    }

    // What both servers sent, as captured on their wires.
    let mut offered: HashSet<String> = HashSet::new();
    let mut acked: HashMap<String, HashSet<String>> = HashMap::new();
    for (capture, pcap) in captures {
        capture.stop();
        for payload in lab::udp_payloads(&pcap) {
            let Ok(reply) = Packet::parse_reply(&payload) else { continue };
            let mac = HwAddr::new(reply.chaddr()).unwrap_or_default().to_string();
            match reply.message_type() {
                MessageType::Offer => {
                    offered.insert(mac);
                }
                MessageType::Ack => {
                    acked.entry(reply.yiaddr().to_string()).or_default().insert(mac);
                }
                _ => {}
            }
        }
    }
    let twice: Vec<_> = acked.iter().filter(|(_, macs)| macs.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "{} addresses ACKed to two clients, such as {:?}",
        twice.len(),
        &twice[..twice.len().min(3)]
    );
    assert_eq!(acked.len(), POOL_SIZE, "every address of the pool went to someone");
    let winners: HashSet<String> = acked.values().flatten().cloned().collect();
    assert_eq!(winners.len(), POOL_SIZE, "one address per client");
    let losers: Vec<_> = offered.difference(&winners).collect();
    assert!(losers.is_empty(), "clients offered an address they never got: {losers:?}");
    for base in ["02:aa", "02:bb"] {
        assert!(winners.iter().any(|m| m.starts_with(base)), "the server for {base}:* clients allocated too");
    }

    // The shared store holds exactly those leases, whichever server is asked.
    for lab in &labs {
        let bound: HashMap<String, String> =
            lab.leases().into_iter().filter(|l| l.state == "bound").map(|l| (l.address, l.hwaddr)).collect();
        assert_eq!(bound.len(), POOL_SIZE, "the pool is full, and no fuller");
        for (addr, macs) in &acked {
            let stored = bound.get(addr).map(String::as_str).unwrap_or("nobody");
            assert!(macs.contains(stored), "{addr} is stored for {stored} but was ACKed to {macs:?}");
        }
        assert!(!lab.server_log().contains("panicked"), "a server panicked:\n{}", lab.server_log());
    }
    eprintln!(
        "{store}: {} clients asked two servers for {POOL_SIZE} addresses; {} got one each, none twice",
        2 * CLIENTS_PER_SERVER,
        winners.len()
    );
}
