//! Store outages: the server's PostgreSQL (a private instance the test starts) and then its
//! Redis (likewise) are stopped in the middle of a run and started again. While the store is
//! down no client gets a lease, since nothing could be stored; once it is back the server
//! recovers by itself, without a restart, and the test reports how long that took.
//!
//! The server listens on loopback on unprivileged ports; `dhcp_net::probe` plays a relay.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use dhcp_net::{ProbeError, ProbeMode, ProbeOptions, probe};

/// Runs a command, panicking with its output when it fails.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false)
}

/// A PostgreSQL cluster of the test's own, in a temporary directory, run as `postgres`.
struct PrivatePostgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    fn start(port: u16) -> PrivatePostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries under /usr/lib/postgresql")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .max()
            .expect("a PostgreSQL version");
        let dir = std::env::temp_dir().join(format!("dhcp-outage-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).expect("pg dir");
        run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir));
        let pg = PrivatePostgres { dir, bin, port };
        pg.as_postgres(&format!("{} -D {} -U postgres --auth=trust -E UTF8", pg.tool("initdb"), pg.data().display()));
        pg.up();
        pg
    }

    fn tool(&self, name: &str) -> String {
        self.bin.join(name).display().to_string()
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn as_postgres(&self, script: &str) -> String {
        run(Command::new("su").args(["postgres", "-s", "/bin/sh", "-c", script]))
    }

    fn up(&self) {
        self.as_postgres(&format!(
            "{} -D {} -w -l {}/log -o \"-p {} -k {} -c listen_addresses=''\" start",
            self.tool("pg_ctl"),
            self.data().display(),
            self.dir.display(),
            self.port,
            self.dir.display()
        ));
    }

    fn down(&self) {
        self.as_postgres(&format!("{} -D {} -m immediate -w stop", self.tool("pg_ctl"), self.data().display()));
    }

    fn url(&self) -> String {
        let socket_dir = self.dir.display().to_string().replace('/', "%2F");
        format!("postgresql://postgres@{socket_dir}:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new("su")
            .args(["postgres", "-s", "/bin/sh", "-c"])
            .arg(format!("{} -D {} -m immediate stop", self.tool("pg_ctl"), self.data().display()))
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis of the test's own on a Unix socket, killed on drop.
struct PrivateRedis {
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> PrivateRedis {
        let dir = std::env::temp_dir().join(format!("dhcp-outage-redis-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut redis = PrivateRedis { dir, child: None };
        redis.up();
        redis
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    fn up(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no", "--unixsocket"])
            .arg(self.socket())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        self.child = Some(child);
        let start = Instant::now();
        while !self.socket().exists() {
            assert!(start.elapsed() < Duration::from_secs(5), "redis did not start");
            sleep(Duration::from_millis(20));
        }
    }

    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The example server on loopback with `store`, killed on drop.
struct ServerProc {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl ServerProc {
    fn start(dir: &Path, store: &str, port: u16) -> ServerProc {
        let config = format!(
            "lease-time = 600\n[server]\nlisten = [\"127.0.0.1\"]\nserver-port = {port}\nclient-port = {}\n\
             store = \"{store}\"\nlog-level = \"info\"\n\n[[subnets]]\nid = 1\nsubnet = \"192.0.2.0/24\"\n\
             pools = [\"192.0.2.10-192.0.2.250\"]\nrelay-addresses = [\"127.0.0.2\"]\n",
            port + 1
        );
        let file = dir.join(format!("server-{port}.toml"));
        std::fs::write(&file, config).expect("config");
        let log = dir.join(format!("server-{port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_dhcp-server"))
            .arg("--config")
            .arg(&file)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("dhcp-server");
        let server = ServerProc { child, log, port };
        let start = Instant::now();
        while !server.log_text().contains("serving") {
            assert!(start.elapsed() < Duration::from_secs(10), "server did not start:\n{}", server.log_text());
            sleep(Duration::from_millis(20));
        }
        server
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn probe(&self, mac: u8) -> Result<Ipv4Addr, ProbeError> {
        let mut options = ProbeOptions::new(ProbeMode::Relay {
            local: Ipv4Addr::new(127, 0, 0, 2),
            server: SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port),
        });
        options.mac = [2, 0, 0x0e, 0, 0, mac];
        options.timeout = Duration::from_millis(600);
        options.release = false;
        probe(&options).map(|l| l.addr)
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Takes leases, stops the store, checks that none is granted, starts it, and returns how long
/// the server took to grant a lease again.
fn outage(server: &ServerProc, stop: impl FnOnce(), start: impl FnOnce()) -> Duration {
    for mac in 1..=3 {
        server.probe(mac).unwrap_or_else(|e| panic!("lease before the outage: {e}\n{}", server.log_text()));
    }
    stop();
    for mac in 10..=12 {
        match server.probe(mac) {
            Err(ProbeError::Timeout(_)) => {}
            other => panic!("a lease was granted while the store was down: {other:?}"),
        }
    }
    assert!(server.log_text().contains("dropped"), "the outage is logged:\n{}", server.log_text());
    start();
    let back = Instant::now();
    let mut mac = 20;
    loop {
        match server.probe(mac) {
            Ok(_) => return back.elapsed(),
            Err(e) => {
                assert!(back.elapsed() < Duration::from_secs(60), "no recovery after 60 s: {e}\n{}", server.log_text());
                mac = mac.wrapping_add(1);
            }
        }
    }
}

#[test]
fn postgres_outage_and_recovery() {
    if !is_root() {
        assert_eq!(std::env::var("DHCP_SKIP_NETNS").as_deref(), Ok("1"), "the outage test needs root (su postgres)");
        return;
    }
    let pg = PrivatePostgres::start(55_400 + (std::process::id() % 500) as u16);
    let server = ServerProc::start(&pg.dir, &pg.url(), 41_000 + (std::process::id() % 1000) as u16 * 2);
    let took = outage(&server, || pg.down(), || pg.up());
    eprintln!("PostgreSQL outage: leases again {:.2} s after the database came back", took.as_secs_f64());
}

#[test]
fn redis_outage_and_recovery() {
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    let server = ServerProc::start(&redis.dir.clone(), &url, 45_000 + (std::process::id() % 1000) as u16 * 2);
    let redis_cell = std::cell::RefCell::new(&mut redis);
    let took = outage(&server, || redis_cell.borrow_mut().down(), || redis_cell.borrow_mut().up());
    eprintln!("Redis outage: leases again {:.2} s after the server came back", took.as_secs_f64());
}
