//! `POST /api/v1/ha/lease-updates` end to end on loopback: a standby whose partner is not
//! there takes a peer's changes in both forms (the binary form the peers send, JSON by hand),
//! keeps its gauges true, and refuses what is not a peer's or not lease updates, naming the
//! field.

use std::net::Ipv4Addr;

use dhcp_core::{ClientId, HwAddr, Lease, LeaseState, LeaseStore, Timestamp};
use dhcp_server::ha::{Change, LEASE_UPDATES_TYPE, encode_updates};
use dhcp_server::{ServerConfig, Service};

const TOKEN: &str = "lease-updates-token";

fn config(port: u16) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1"]
server-port = {port}
client-port = {}
api-listen = "127.0.0.1:0"
api-token = "{TOKEN}"

[[subnets]]
id = 1
subnet = "192.0.2.0/24"
pools = ["192.0.2.10-192.0.2.20"]

[ha]
this-server = "b"
mode = "hot-standby"
[[ha.peers]]
name = "a"
url = "http://127.0.0.1:9"
role = "primary"
[[ha.peers]]
name = "b"
url = "http://127.0.0.1:9"
role = "standby"
"#,
        port + 1
    )
}

fn bound(last: u8, expires: u64) -> Lease {
    Lease {
        addr: Ipv4Addr::new(192, 0, 2, last),
        client: ClientId::from_bytes(&[1, 2, 0, 0, 0, 0, last]),
        hwaddr: HwAddr::mac([2, 0, 0, 0, 0, last]),
        subnet: 1,
        state: LeaseState::Bound { expires: Timestamp::from_secs(expires) },
        hostname: None,
    }
}

/// `POST` to the API off the runtime (ureq blocks); the status and the answer's text.
async fn post(url: String, content_type: &'static str, body: Vec<u8>, token: Option<&'static str>) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
        let mut request = agent.post(&url).header("Content-Type", content_type);
        if let Some(token) = token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let mut response = request.send(&body[..]).expect("the API answers");
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap_or_default())
    })
    .await
    .expect("the call ran")
}

#[tokio::test(flavor = "current_thread")]
async fn a_standby_takes_a_peers_lease_updates_and_refuses_anyone_elses() {
    let port = 30_000 + (std::process::id() % 5_000) as u16 * 2;
    let config = ServerConfig::from_toml_str(&config(port)).expect("valid");
    let running = Service::from_config(config).start().await.expect("starts");
    let engine = std::sync::Arc::clone(running.engine());
    let url = format!("http://{}/api/v1/ha/lease-updates", running.api_addr().expect("API bound"));
    tokio::spawn(running.run(std::future::pending()));
    let assigned = || engine.stats().subnet(1).map(|s| s.assigned_addresses());
    let later = dhcp_net::now().as_secs() + 3600;

    // JSON, as an operator would post it.
    let json = format!(
        r#"{{"from": "a", "changes": [{{"op": "put", "lease": {{"address": "192.0.2.11", "subnet": 1,
        "hw-address": "02:00:00:00:00:0b", "client-id": "01020000000000b", "state": "bound",
        "deadline": {later}, "hostname": null}}}}]}}"#
    );
    let (status, text) = post(url.clone(), "application/json", json.clone().into_bytes(), Some(TOKEN)).await;
    assert_eq!(status, 400, "an odd-length client id: {text}");
    assert!(text.contains("changes[0]") && text.contains("client-id"), "{text}");
    let json = json.replace("01020000000000b", "0102000000000b");
    let (status, text) = post(url.clone(), "application/json", json.into_bytes(), Some(TOKEN)).await;
    assert_eq!((status, text.contains(r#""applied":1"#)), (200, true), "{text}");
    let stored = engine.store().lease_by_addr(Ipv4Addr::new(192, 0, 2, 11)).await.expect("store");
    assert_eq!(stored.map(|l| l.hwaddr), Some(HwAddr::mac([2, 0, 0, 0, 0, 11])));
    assert_eq!(assigned(), Some(1), "the gauge counts a lease that came as an update");

    // The binary form the peers send: a new lease and the first one gone.
    let body = encode_updates("a", &[Change::Put(bound(12, later)), Change::Delete(Ipv4Addr::new(192, 0, 2, 11))]);
    let (status, text) = post(url.clone(), LEASE_UPDATES_TYPE, body, Some(TOKEN)).await;
    assert_eq!((status, text.contains(r#""applied":2"#)), (200, true), "{text}");
    assert!(engine.store().lease_by_addr(Ipv4Addr::new(192, 0, 2, 11)).await.expect("store").is_none());
    assert!(engine.store().lease_by_addr(Ipv4Addr::new(192, 0, 2, 12)).await.expect("store").is_some());
    assert_eq!(assigned(), Some(1), "one added, one deleted");

    // Refused, naming the field: a sender that is no peer (or this server itself), a body
    // that is not lease updates, a call without the token. Nothing is stored.
    for from in ["stranger", "b"] {
        let body = encode_updates(from, &[Change::Put(bound(13, later))]);
        let (status, text) = post(url.clone(), LEASE_UPDATES_TYPE, body, Some(TOKEN)).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains(r#""field":"from""#), "{text}");
    }
    let mut cut = encode_updates("a", &[Change::Put(bound(13, later))]);
    cut.truncate(cut.len() - 3);
    let (status, text) = post(url.clone(), LEASE_UPDATES_TYPE, cut, Some(TOKEN)).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains(r#""field":"body""#) && text.contains("cut short"), "{text}");
    let body = encode_updates("a", &[Change::Put(bound(13, later))]);
    let (status, _) = post(url.clone(), LEASE_UPDATES_TYPE, body, None).await;
    assert_eq!(status, 401);
    assert!(engine.store().lease_by_addr(Ipv4Addr::new(192, 0, 2, 13)).await.expect("store").is_none());
    assert_eq!(assigned(), Some(1));
}
