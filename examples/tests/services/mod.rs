//! Store servers of a test's own: a private PostgreSQL cluster and a private Redis, each in a
//! temporary directory, optionally with TLS and a certificate authority the test makes, and
//! the example server on loopback in front of them. Everything is stopped and removed on drop.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use dhcp_net::{ProbeError, ProbeMode, ProbeOptions, probe};

/// Runs a command, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false)
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A port for the example server on loopback: free now for TCP, and the port after it (where
/// the server answers relays) free for UDP.
pub fn server_port() -> u16 {
    loop {
        let port = free_port();
        if port < 65_000 && std::net::UdpSocket::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// A directory of the test's own, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("dhcp-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certificate authority and a server certificate it signed for `localhost` and 127.0.0.1,
/// made with openssl in `dir`.
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certs {
    pub fn make(dir: &Path, name: &str) -> Certs {
        let at = |file: &str| dir.join(format!("{name}-{file}"));
        let (ca_key, ca, key, csr, cert, ext) =
            (at("ca.key"), at("ca.pem"), at("server.key"), at("server.csr"), at("server.pem"), at("ext.cnf"));
        std::fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\n").expect("ext file");
        let mut cmd = Command::new("openssl");
        cmd.args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj"])
            .arg(format!("/CN={name} test CA"))
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca);
        run(&mut cmd);
        let mut cmd = Command::new("openssl");
        cmd.args(["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&csr);
        run(&mut cmd);
        let mut cmd = Command::new("openssl");
        cmd.args(["x509", "-req", "-days", "2", "-CAcreateserial", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&ca)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-out")
            .arg(&cert)
            .arg("-extfile")
            .arg(&ext);
        run(&mut cmd);
        Certs { ca, cert, key }
    }
}

/// A PostgreSQL cluster of the test's own, in a temporary directory, run as `postgres`.
pub struct PrivatePostgres {
    pub dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
}

impl PrivatePostgres {
    /// A cluster reachable only over its Unix socket in [`dir`](Self::dir).
    pub fn start(port: u16) -> PrivatePostgres {
        let pg = PrivatePostgres::init(port, "pg");
        pg.up();
        pg
    }

    /// A cluster on 127.0.0.1:`port` that takes TCP connections only over TLS (`hostssl`, no
    /// `host` line), with `certs`' server certificate.
    pub fn start_tls(port: u16, certs: &Certs) -> PrivatePostgres {
        let pg = PrivatePostgres::init(port, "pg-tls");
        let key = pg.dir.join("server.key");
        std::fs::copy(&certs.key, &key).expect("copy key");
        std::fs::copy(&certs.cert, pg.dir.join("server.pem")).expect("copy cert");
        run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&pg.dir));
        run(Command::new("chmod").arg("600").arg(&key));
        let extra = format!(
            "listen_addresses = '127.0.0.1'\nssl = on\nssl_cert_file = '{}/server.pem'\nssl_key_file = '{}'\n",
            pg.dir.display(),
            key.display()
        );
        let conf = pg.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("postgresql.conf");
        text.push_str(&extra);
        std::fs::write(&conf, text).expect("postgresql.conf");
        std::fs::write(pg.data().join("pg_hba.conf"), "local all all trust\nhostssl all all 127.0.0.1/32 trust\n")
            .expect("pg_hba.conf");
        pg.up_with("");
        pg
    }

    fn init(port: u16, tag: &str) -> PrivatePostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries under /usr/lib/postgresql")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .max()
            .expect("a PostgreSQL version");
        let dir = std::env::temp_dir().join(format!("dhcp-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).expect("pg dir");
        run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir));
        let pg = PrivatePostgres { dir, bin, port };
        pg.as_postgres(&format!("{} -D {} -U postgres --auth=trust -E UTF8", pg.tool("initdb"), pg.data().display()));
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

    /// Starts the cluster (again) on its Unix socket only.
    pub fn up(&self) {
        self.up_with("-c listen_addresses=''");
    }

    fn up_with(&self, options: &str) {
        self.as_postgres(&format!(
            "{} -D {} -w -l {}/log -o \"-p {} -k {} {options}\" start",
            self.tool("pg_ctl"),
            self.data().display(),
            self.dir.display(),
            self.port,
            self.dir.display()
        ));
    }

    pub fn down(&self) {
        self.as_postgres(&format!("{} -D {} -m immediate -w stop", self.tool("pg_ctl"), self.data().display()));
    }

    /// The URL of the cluster's `postgres` database through its Unix socket.
    pub fn url(&self) -> String {
        let socket_dir = self.dir.display().to_string().replace('/', "%2F");
        format!("postgresql://postgres@{socket_dir}:{}/postgres", self.port)
    }

    /// Runs SQL through the Unix socket and returns psql's unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        run(Command::new("psql")
            .args(["-X", "-A", "-t", "-U", "postgres", "-d", "postgres", "-h"])
            .arg(&self.dir)
            .args(["-p", &self.port.to_string(), "-c", sql]))
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

/// A Redis of the test's own, killed on drop: on a Unix socket, or TLS-only on a TCP port.
pub struct PrivateRedis {
    pub dir: PathBuf,
    child: Option<Child>,
    tls: Option<(u16, PathBuf, PathBuf)>,
}

impl PrivateRedis {
    /// A Redis on a Unix socket in [`dir`](Self::dir), no TCP port.
    pub fn start() -> PrivateRedis {
        let dir = std::env::temp_dir().join(format!("dhcp-redis-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut redis = PrivateRedis { dir, child: None, tls: None };
        redis.up();
        redis
    }

    /// A Redis that takes only TLS connections, on 127.0.0.1:`port`, with `certs`.
    pub fn start_tls(port: u16, certs: &Certs) -> PrivateRedis {
        let dir = std::env::temp_dir().join(format!("dhcp-redis-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut redis = PrivateRedis { dir, child: None, tls: Some((port, certs.cert.clone(), certs.key.clone())) };
        redis.up();
        redis
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    pub fn up(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--save", "", "--appendonly", "no", "--port", "0"]);
        match &self.tls {
            None => {
                cmd.arg("--unixsocket").arg(self.socket());
            }
            Some((port, cert, key)) => {
                cmd.args(["--bind", "127.0.0.1", "--tls-auth-clients", "no", "--tls-port", &port.to_string()])
                    .arg("--tls-cert-file")
                    .arg(cert)
                    .arg("--tls-key-file")
                    .arg(key);
            }
        }
        let log = self.dir.join("redis.log");
        let child = cmd
            .stdout(std::fs::File::create(&log).expect("redis log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        self.child = Some(child);
        let start = Instant::now();
        let ready =
            || std::fs::read_to_string(&log).unwrap_or_default().to_lowercase().contains("ready to accept connections");
        while !ready() {
            assert!(start.elapsed() < Duration::from_secs(5), "redis did not start");
            sleep(Duration::from_millis(20));
        }
    }

    pub fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// The store URL of this Redis: `redis+unix://` for the socket one, `rediss://` checked
    /// against `ca` for the TLS one.
    pub fn url(&self) -> String {
        match &self.tls {
            None => format!("redis+unix://{}", self.socket().display()),
            Some((port, _, _)) => format!("rediss://localhost:{port}/"),
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The example server on loopback with `store`, killed on drop.
pub struct ServerProc {
    child: Child,
    log: PathBuf,
    pub port: u16,
}

impl ServerProc {
    /// Starts the server on 127.0.0.1:`port` (replies to relays at `port + 1`) with one subnet,
    /// 192.0.2.0/24, served to the relay 127.0.0.2; waits until it serves.
    pub fn start(dir: &Path, store: &str, port: u16) -> ServerProc {
        ServerProc::start_with(dir, store, port, "")
    }

    /// [`start`](Self::start) with more lines for the `[server]` table.
    pub fn start_with(dir: &Path, store: &str, port: u16, server_lines: &str) -> ServerProc {
        let mut server = ServerProc::spawn_with(dir, store, port, server_lines);
        let start = Instant::now();
        while !server.log_text().contains("serving") {
            assert!(server.running(), "server exited:\n{}", server.log_text());
            assert!(start.elapsed() < Duration::from_secs(10), "server did not start:\n{}", server.log_text());
            sleep(Duration::from_millis(20));
        }
        server
    }

    /// Starts the server and does not wait: for a start that is meant to fail.
    pub fn spawn(dir: &Path, store: &str, port: u16) -> ServerProc {
        ServerProc::spawn_with(dir, store, port, "")
    }

    /// [`spawn`](Self::spawn) with more lines for the `[server]` table.
    pub fn spawn_with(dir: &Path, store: &str, port: u16, server_lines: &str) -> ServerProc {
        let config = format!(
            "lease-time = 600\n[server]\nlisten = [\"127.0.0.1\"]\nserver-port = {port}\nclient-port = {}\n\
             store = \"{store}\"\nlog-level = \"info\"\n{server_lines}\n\n[[subnets]]\nid = 1\nsubnet = \"192.0.2.0/24\"\n\
             pools = [\"192.0.2.10-192.0.2.250\"]\nrelay-addresses = [\"127.0.0.2\"]\n",
            port + 1
        );
        let file = ServerProc::config_path(dir, port);
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
        ServerProc { child, log, port }
    }

    /// Where the config of the server on `port` is written.
    pub fn config_path(dir: &Path, port: u16) -> PathBuf {
        dir.join(format!("server-{port}.toml"))
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the server to exit; whether it did.
    pub fn exited_within(&mut self, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if !self.running() {
                return true;
            }
            sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A DORA through the relay address 127.0.0.2 for the client with MAC 02:00:0e:00:00:`mac`.
    pub fn probe(&self, mac: u8) -> Result<Ipv4Addr, ProbeError> {
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
