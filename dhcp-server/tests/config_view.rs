//! `GET /api/v1/config` shows the running config without its secrets: the API token and the
//! store's password are `***` in the view, while the file an API edit writes keeps them.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dhcp_server::Service;
use dhcp_server::api::AdminClient;

const TOKEN: &str = "view-test-token-41";
const REDIS_PASS: &str = "redis-pass-7f3a";
const OLD_PASS: &str = "old-pg-pass-19c";

/// A password-protected Redis on loopback, stopped when dropped (also when the test panics).
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start(port: u16) -> Option<Redis> {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--requirepass", REDIS_PASS])
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            eprintln!("SKIPPED: no redis-server");
            return None;
        };
        let redis = Redis { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(redis)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_config_view_hides_the_token_and_store_password_and_edits_keep_them() {
    let base = (std::process::id() % 5_000) as u16;
    let Some(redis) = Redis::start(30_000 + base) else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let port = 50_000 + base * 2;
    let text = format!(
        r#"# the store used to be postgres://dhcp:{OLD_PASS}@db.example/leases
[server]
listen = ["127.0.0.1"]
server-port = {port}
client-port = {client}
api-listen = "127.0.0.1:0"
api-token = "{TOKEN}"   # rotated monthly
store = "redis://:{REDIS_PASS}@127.0.0.1:{redis}/0"

[[subnets]]
id = 1
subnet = "192.0.2.0/24"
pools = ["192.0.2.10-192.0.2.20"]
"#,
        client = port + 1,
        redis = redis.port,
    );
    let path = dir.path().join("server.toml");
    std::fs::write(&path, &text).expect("write config");

    let running = Service::from_file(&path).expect("valid").start().await.expect("starts on the Redis store");
    let api = format!("http://{}", running.api_addr().expect("API bound"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(running.run(async {
        let _ = stopped.await;
    }));

    let (before, edited, after) = tokio::task::spawn_blocking(move || {
        let client = AdminClient::new(&api, TOKEN);
        let before = client.get("/api/v1/config").expect("config");
        let reservation =
            serde_json::json!({"subnet": 1, "hw-address": "02:00:00:00:00:09", "ip-address": "192.0.2.9"});
        let edited = client.post_json("/api/v1/reservations", &reservation);
        let after = client.get("/api/v1/config").expect("config");
        // A refused store URL is named in the error without its password.
        let bad = format!("[server]\nstore = \"mongodb://dhcp:{OLD_PASS}@db.example/leases\"\n");
        let refused = client.post_text("/api/v1/config/test", &bad).expect_err("no such store");
        let refused = refused.to_string();
        assert!(refused.contains("mongodb://dhcp:***@db.example") && !refused.contains(OLD_PASS), "{refused}");
        (before, edited, after)
    })
    .await
    .expect("client thread");
    edited.expect("the reservation is added");

    for view in [&before, &after] {
        let shown = view["text"].as_str().expect("text");
        for secret in [TOKEN, REDIS_PASS, OLD_PASS] {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
        assert!(shown.contains(r#"api-token = "***"   # rotated monthly"#), "{shown}");
        assert!(shown.contains(&format!(r#"store = "redis://:***@127.0.0.1:{}/0""#, redis.port)), "{shown}");
        assert!(shown.contains("postgres://dhcp:***@db.example/leases"), "{shown}");
    }
    assert!(after["text"].as_str().expect("text").contains("02:00:00:00:00:09"), "the view shows the edit");

    // The edit wrote the file with the real secrets: the server restarts with them.
    let on_disk = std::fs::read_to_string(&path).expect("read");
    for secret in [TOKEN, REDIS_PASS, OLD_PASS] {
        assert!(on_disk.contains(secret), "{secret} lost from the file:\n{on_disk}");
    }
    assert!(on_disk.contains("02:00:00:00:00:09"));
    assert!(dhcp_server::ServerConfig::from_toml_str(&on_disk).is_ok());

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), serving).await.expect("stops").expect("task").expect("served");
}
