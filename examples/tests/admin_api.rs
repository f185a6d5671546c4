//! The management API over real HTTP against the example server on loopback: every endpoint,
//! refusals for a wrong or missing token and for bad input (with nothing changed), and the
//! config's test, reload and rollback.

mod lab;

use dhcp_server::api::model::LeaseFilter;
use dhcp_server::api::{AdminClient, ClientError};
use lab::{Server, TempDir, free_port, server_port};
use serde_json::json;

const TOKEN: &str = "admin-test-token";

struct Setup {
    server: Server,
    api: AdminClient,
    api_port: u16,
    /// The server's files, removed after the server is stopped.
    _dir: TempDir,
}

fn start() -> Setup {
    let dir = TempDir::new("admin-api");
    let api_port = free_port();
    let port = server_port();
    let lines = format!("api-listen = \"127.0.0.1:{api_port}\"\napi-token = \"{TOKEN}\"");
    let server = Server::loopback(&dir, "memory:", port, &lines);
    let api = AdminClient::new(&format!("http://127.0.0.1:{api_port}"), TOKEN);
    Setup { server, api, api_port, _dir: dir }
}

fn field(err: ClientError) -> (u16, Option<String>) {
    match err {
        ClientError::Api { status, field, .. } => (status, field),
        other => panic!("expected an API error, got {other}"),
    }
}

#[test]
fn every_endpoint_with_token_checks_and_refusals() {
    let s = start();
    let api = &s.api;
    for mac in 1..=3 {
        s.server.probe(mac).unwrap_or_else(|e| panic!("lease {mac}: {e}\n{}", s.server.log_text()));
    }

    // Leases: list, filters, get, delete.
    let leases = api.get("/api/v1/leases").expect("leases");
    assert_eq!(leases["leases"].as_array().map(Vec::len), Some(3), "{leases}");
    let first = leases["leases"][0].clone();
    assert_eq!(first["state"], "bound");
    assert!(first["last-seen"].as_u64().is_some(), "last-seen is noted: {first}");
    let mac = first["hw-address"].as_str().expect("mac").to_owned();
    let addr = first["address"].as_str().expect("address").to_owned();
    let by_mac = api.get(&format!("/api/v1/leases?mac={}", mac.to_uppercase().replace(':', "-"))).expect("by mac");
    assert_eq!(by_mac["leases"].as_array().map(Vec::len), Some(1));
    assert_eq!(api.get("/api/v1/leases?state=offered").expect("offered")["leases"], json!([]));
    assert_eq!(api.get("/api/v1/leases?subnet=1").expect("subnet")["leases"].as_array().map(Vec::len), Some(3));
    assert_eq!(field(api.get("/api/v1/leases?state=happy").expect_err("bad state")), (400, Some("state".into())));
    // Pages by address: `next` until the last page, and together the whole list.
    let all = api.leases(&LeaseFilter::default()).expect("every lease").leases;
    assert!(all.windows(2).all(|w| w[0].address < w[1].address), "address order: {all:?}");
    let first_page = api.leases_page(&LeaseFilter::default(), None, 2).expect("page 1");
    assert_eq!(first_page.next, Some(all[1].address));
    let last_page = api.leases_page(&LeaseFilter::default(), first_page.next, 2).expect("page 2");
    assert_eq!(last_page.next, None);
    assert_eq!([first_page.leases, last_page.leases].concat(), all);
    for (query, name) in [("limit=0", "limit"), ("limit=100000", "limit"), ("after=10.0.0", "after")] {
        let refused = api.get(&format!("/api/v1/leases?{query}")).expect_err(query);
        assert_eq!(field(refused), (400, Some(name.into())), "{query}");
    }
    assert_eq!(api.get(&format!("/api/v1/leases/{addr}")).expect("get")["hw-address"], json!(mac));
    assert_eq!(field(api.get("/api/v1/leases/10.1.2").expect_err("bad address")), (400, Some("address".into())));

    // A wrong or missing token: 401 everywhere, and nothing changes.
    for token in ["", "wrong-token-xyz"] {
        let stranger = AdminClient::new(&format!("http://127.0.0.1:{}", s.api_port), token);
        for result in [
            stranger.get("/api/v1/leases"),
            stranger.get("/api/v1/stats"),
            stranger.get("/api/v1/health"),
            stranger.get("/api/v1/config"),
            stranger.delete(&format!("/api/v1/leases/{addr}")),
            stranger.post_json("/api/v1/reservations", &json!({"subnet": 1, "hw-address": "02:00:00:00:00:99"})),
            stranger.put_json("/api/v1/groups/x", &json!({})),
            stranger.delete("/api/v1/groups/x"),
            stranger.post_text("/api/v1/config/reload", ""),
            stranger.post_text("/api/v1/config/rollback", ""),
            stranger.post_text("/api/v1/config/rollback?version=1", ""),
            stranger.get("/api/v1/config/history"),
            stranger.get("/api/v1/config/history/1"),
            stranger.get("/api/v1/config/diff?from=1&to=1"),
            stranger.get("/api/v1/audit"),
        ] {
            assert!(matches!(result, Err(ClientError::Unauthorized)), "token {token:?}: {result:?}");
        }
    }
    assert!(api.get(&format!("/api/v1/leases/{addr}")).is_ok(), "the lease survived the refused delete");
    assert_eq!(api.get("/api/v1/reservations").expect("list")["reservations"], json!([]), "no reservation added");

    let deleted = api.delete(&format!("/api/v1/leases/{addr}")).expect("delete");
    assert_eq!(deleted["deleted"]["address"], json!(addr));
    assert_eq!(field(api.get(&format!("/api/v1/leases/{addr}")).expect_err("gone")).0, 404);

    // Reservations: malformed and invalid input is refused with the field and changes nothing.
    let config_before = api.get("/api/v1/config").expect("config")["text"].clone();
    assert_eq!(
        field(api.post_text("/api/v1/reservations", "{\"subnet\": 1,").expect_err("malformed")).1,
        Some("body".into())
    );
    let (status, bad) = field(
        api.post_json(
            "/api/v1/reservations",
            &json!({"subnet": 1, "hw-address": "02:00:00:00:00:10", "ip-address": "10.9.9.9"}),
        )
        .expect_err("outside the subnet"),
    );
    assert_eq!(status, 400);
    assert!(bad.as_deref().is_some_and(|f| f.ends_with("ip-address")), "{bad:?}");
    let (_, bad) =
        field(api.post_json("/api/v1/reservations", &json!({"subnet": 1, "mac": "x"})).expect_err("unknown field"));
    assert_eq!(bad.as_deref(), Some("mac"));
    assert_eq!(api.get("/api/v1/config").expect("config")["text"], config_before, "refusals change nothing");

    let body = json!({"subnet": 1, "hw-address": "02:00:0e:00:00:07", "ip-address": "192.0.2.7", "hostname": "printer",
                      "description": "second floor"});
    assert_eq!(api.post_json("/api/v1/reservations", &body).expect("add")["applied"]["reservations"], 1);
    assert_eq!(field(api.post_json("/api/v1/reservations", &body).expect_err("twice")).0, 409);
    assert_eq!(s.server.probe(7).expect("reserved lease"), std::net::Ipv4Addr::new(192, 0, 2, 7), "in effect at once");
    let changed = json!({"hw-address": "02:00:0e:00:00:07", "ip-address": "192.0.2.8", "description": "moved"});
    api.put_json("/api/v1/reservations/02:00:0e:00:00:07", &changed).expect("replace");
    let listed = api.get("/api/v1/reservations").expect("list");
    assert_eq!(listed["reservations"][0]["ip-address"], "192.0.2.8");
    assert_eq!(listed["reservations"][0]["subnet"], 1);
    api.delete("/api/v1/reservations/02:00:0e:00:00:07").expect("delete");
    assert_eq!(field(api.delete("/api/v1/reservations/02:00:0e:00:00:07").expect_err("gone")).0, 404);

    // Groups.
    api.put_json("/api/v1/groups/office", &json!({"lease-time": 300, "options": {"routers": ["192.0.2.1"]}}))
        .expect("set group");
    assert_eq!(api.get("/api/v1/groups").expect("groups")["groups"][0]["lease-time"], 300);
    let (_, bad) = field(api.put_json("/api/v1/groups/office", &json!({"lease-time": 0})).expect_err("zero lease"));
    assert!(bad.as_deref().is_some_and(|f| f.ends_with("lease-time")), "{bad:?}");
    api.delete("/api/v1/groups/office").expect("delete group");
    assert_eq!(api.get("/api/v1/groups").expect("groups")["groups"], json!([]));

    // Statistics and health.
    let stats = api.get("/api/v1/stats").expect("stats");
    assert!(stats["pkt4-ack-sent"].as_i64().is_some_and(|n| n >= 4), "{stats}");
    assert_eq!(stats["subnet[1].total-addresses"], 241);
    let health = api.get("/api/v1/health").expect("health");
    assert_eq!(health["ready"], true, "{health}");

    // Config: test without applying, reload, a broken file refused, rollback.
    let good = std::fs::read_to_string(s.server.config_path()).expect("config file");
    assert_eq!(api.post_text("/api/v1/config/test", &good).expect("test")["valid"], true);
    let broken = good.replace("192.0.2.250", "192.0.3.250");
    let (status, bad) = field(api.post_text("/api/v1/config/test", &broken).expect_err("invalid"));
    assert_eq!((status, bad.as_deref()), (400, Some("subnets[0].pools[0]")));
    assert_eq!(api.post_text("/api/v1/config/reload", "").expect("reload")["applied"]["subnets"], 1);
    std::fs::write(s.server.config_path(), &broken).expect("break the file");
    assert_eq!(field(api.post_text("/api/v1/config/reload", "").expect_err("broken")).0, 400);
    assert!(s.server.probe(20).is_ok(), "still serving on the old config");
    api.post_text("/api/v1/config/rollback", "").expect("rollback");
    let restored = std::fs::read_to_string(s.server.config_path()).expect("config file");
    assert_eq!(restored, good, "the last good config is back in the file");

    // /metrics needs no token.
    let metrics = AdminClient::new(&format!("http://127.0.0.1:{}", s.api_port), "").get("/metrics").expect("metrics");
    let text = metrics.as_str().expect("text");
    assert!(text.contains("dhcp4_pkt4_ack_sent_total"), "{text}");
    assert!(text.contains("dhcp4_store_latency_seconds_bucket{op=\"claim\""), "{text}");

    // Every series the Grafana dashboard queries is exported.
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../grafana/dhcp4-dashboard.json")).expect("the dashboard is JSON");
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for name in
                expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("dhcp4_"))
            {
                queried += 1;
                assert!(
                    text.contains(&format!("\n{name}")),
                    "panel {:?} queries {name}, which /metrics lacks",
                    panel["title"]
                );
            }
        }
    }
    assert!(queried >= 15, "the dashboard queries the server's metrics ({queried} references)");
}

#[test]
fn the_cli_says_when_the_server_is_unreachable_or_the_token_wrong() {
    let s = start();
    let cli = |url: &str, token: &str, args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dhcp-cli"))
            .args(["--url", url, "--token", token])
            .args(args)
            .env_remove("DHCP_API_TOKEN")
            .output()
            .expect("dhcp-cli")
    };
    let url = format!("http://127.0.0.1:{}", s.api_port);
    let out = cli(&url, "wrong-token-xyz", &["show", "leases"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused the token"), "{out:?}");
    let out = cli(&format!("http://127.0.0.1:{}", free_port()), TOKEN, &["show", "stats"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"), "{out:?}");
    let out =
        cli(&url, TOKEN, &["reservation", "add", "--subnet", "1", "--mac", "02:00:00:00:00:01", "--ip", "10.0.0.1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ip-address"), "{out:?}");
    let addr = s.server.probe(9).expect("a lease").to_string();
    let out = cli(&url, TOKEN, &["lease", "del", &addr]);
    assert!(out.status.success(), "{out:?}");
    let out = cli(&url, TOKEN, &["lease", "del", &addr]);
    assert_eq!(out.status.code(), Some(1), "the second delete finds nothing: {out:?}");
    let leased = s.server.probe(10).expect("another lease").to_string();
    let out = cli(&url, TOKEN, &["--json", "show", "leases"]);
    assert!(out.status.success(), "{out:?}");
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the listing as JSON");
    assert_eq!(listed["leases"].as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed["leases"][0]["address"], json!(leased));
    let out = cli(&url, TOKEN, &["show", "stats"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("pkt4-received"), "{out:?}");
}
