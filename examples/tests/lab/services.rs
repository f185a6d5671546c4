//! Store servers of a test's own: a private PostgreSQL cluster and a private Redis, each in a
//! temporary directory, optionally taking only TLS with a certificate authority the test
//! makes; and replicated ones for failover: a PostgreSQL primary with a streaming standby
//! ([`PostgresPair`]), a Redis master with a replica watched by three sentinels
//! ([`RedisSentinels`]). Each is stopped and its directory removed on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Proc, TempDir, path_str, run};

/// A certificate authority and a server certificate it signed for `localhost` and 127.0.0.1,
/// made with openssl in `dir`.
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certs {
    pub fn make(dir: &Path, name: &str) -> Certs {
        let at = |file: &str| path_str(&dir.join(format!("{name}-{file}")));
        let (ca_key, ca, key, csr, cert, ext) =
            (at("ca.key"), at("ca.pem"), at("server.key"), at("server.csr"), at("server.pem"), at("ext.cnf"));
        fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\n").expect("ext file");
        let subject = format!("/CN={name} test CA");
        let new_ca = ["-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", &subject];
        run(["openssl", "req"].iter().chain(&new_ca).chain(&["-keyout", &ca_key, "-out", &ca]));
        let new_key = ["-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", &key, "-out", &csr];
        run(["openssl", "req"].iter().chain(&new_key));
        let sign = ["-req", "-days", "2", "-CAcreateserial", "-in", &csr, "-CA", &ca, "-CAkey", &ca_key];
        run(["openssl", "x509"].iter().chain(&sign).chain(&["-out", &cert, "-extfile", &ext]));
        Certs { ca: ca.into(), cert: cert.into(), key: key.into() }
    }
}

/// A PostgreSQL cluster of the test's own, in a temporary directory, run as `postgres`.
pub struct PrivatePostgres {
    pub dir: TempDir,
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
        fs::copy(&certs.key, &key).expect("copy key");
        fs::copy(&certs.cert, pg.dir.join("server.pem")).expect("copy cert");
        run(["chown", "-R", "postgres:postgres", &path_str(&pg.dir)]);
        run(["chmod", "600", &path_str(&key)]);
        let extra = format!(
            "listen_addresses = '127.0.0.1'\nssl = on\nssl_cert_file = '{}/server.pem'\nssl_key_file = '{}'\n",
            pg.dir.display(),
            key.display()
        );
        let conf = pg.data().join("postgresql.conf");
        let mut text = fs::read_to_string(&conf).expect("postgresql.conf");
        text.push_str(&extra);
        fs::write(&conf, text).expect("postgresql.conf");
        fs::write(pg.data().join("pg_hba.conf"), "local all all trust\nhostssl all all 127.0.0.1/32 trust\n")
            .expect("pg_hba.conf");
        pg.up_with("");
        pg
    }

    fn init(port: u16, tag: &str) -> PrivatePostgres {
        let pg = PrivatePostgres::empty(port, tag);
        pg.as_postgres(&format!("{} -D {} -U postgres --auth=trust -E UTF8", pg.tool("initdb"), pg.data().display()));
        pg
    }

    /// A directory for a cluster, owned by `postgres`, with nothing in `data` yet.
    fn empty(port: u16, tag: &str) -> PrivatePostgres {
        let bin = fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries under /usr/lib/postgresql")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .max()
            .expect("a PostgreSQL version");
        let dir = TempDir::new(tag);
        fs::create_dir_all(dir.join("data")).expect("pg dir");
        run(["chown", "-R", "postgres:postgres", &path_str(&dir)]);
        PrivatePostgres { dir, bin, port }
    }

    /// A streaming standby of `primary` (`pg_basebackup -R` through the primary's socket),
    /// started on its own Unix socket directory and `port`.
    pub fn standby_of(primary: &PrivatePostgres, port: u16) -> PrivatePostgres {
        let standby = PrivatePostgres::empty(port, "pg-standby");
        standby.as_postgres(&format!(
            "{} -D {} -h {} -p {} -U postgres -R -X stream -c fast",
            standby.tool("pg_basebackup"),
            standby.data().display(),
            primary.dir.display(),
            primary.port
        ));
        run(["chmod", "700", &path_str(&standby.data())]);
        standby.up();
        standby
    }

    /// Promotes a standby (`pg_ctl promote`), waiting until it takes writes.
    pub fn promote(&self) {
        self.as_postgres(&format!("{} -D {} -w promote", self.tool("pg_ctl"), self.data().display()));
    }

    fn tool(&self, name: &str) -> String {
        self.bin.join(name).display().to_string()
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn as_postgres(&self, script: &str) -> String {
        run(["su", "postgres", "-s", "/bin/sh", "-c", script])
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
        let (dir, port) = (path_str(&self.dir), self.port.to_string());
        run(["psql", "-X", "-A", "-t", "-U", "postgres", "-d", "postgres", "-h", &dir, "-p", &port, "-c", sql])
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = std::process::Command::new("su")
            .args(["postgres", "-s", "/bin/sh", "-c"])
            .arg(format!("{} -D {} -m immediate stop", self.tool("pg_ctl"), self.data().display()))
            .output();
    }
}

/// A PostgreSQL primary and a streaming standby of it, each on its own Unix socket directory,
/// replicating synchronously: the primary has `synchronous_standby_names = '*'` with the default
/// `synchronous_commit = on`, so a commit returns only once the standby has flushed it, and a
/// promoted standby holds every commit the primary acknowledged.
pub struct PostgresPair {
    pub primary: PrivatePostgres,
    pub standby: PrivatePostgres,
}

impl PostgresPair {
    pub fn start(primary_port: u16, standby_port: u16) -> PostgresPair {
        let primary = PrivatePostgres::start(primary_port);
        let standby = PrivatePostgres::standby_of(&primary, standby_port);
        // Synchronous only now that the standby streams: before, every commit would wait for it.
        primary.psql("ALTER SYSTEM SET synchronous_standby_names = '*'");
        primary.psql("SELECT pg_reload_conf()");
        let start = std::time::Instant::now();
        while primary.psql("SELECT sync_state FROM pg_stat_replication").trim() != "sync" {
            assert!(start.elapsed() < Duration::from_secs(15), "the standby never became synchronous");
            std::thread::sleep(Duration::from_millis(100));
        }
        PostgresPair { primary, standby }
    }

    /// The libpq multi-host URL of the pair (the socket directories percent-encoded), which
    /// takes only a server that accepts writes: the primary, or the standby once promoted.
    pub fn url(&self) -> String {
        let host = |pg: &PrivatePostgres| format!("{}:{}", pg.dir.display().to_string().replace('/', "%2F"), pg.port);
        format!(
            "postgresql://postgres@{},{}/postgres?target_session_attrs=read-write",
            host(&self.primary),
            host(&self.standby)
        )
    }
}

/// A Redis of the test's own, killed on drop: on a Unix socket, or TLS-only on a TCP port.
pub struct PrivateRedis {
    proc: Option<Proc>,
    tls: Option<(u16, PathBuf, PathBuf)>,
    pub dir: TempDir,
}

impl PrivateRedis {
    /// A Redis on a Unix socket in [`dir`](Self::dir), no TCP port.
    pub fn start() -> PrivateRedis {
        let mut redis = PrivateRedis { dir: TempDir::new("redis"), proc: None, tls: None };
        redis.up();
        redis
    }

    /// A Redis that takes only TLS connections, on 127.0.0.1:`port`, with `certs`.
    pub fn start_tls(port: u16, certs: &Certs) -> PrivateRedis {
        let tls = Some((port, certs.cert.clone(), certs.key.clone()));
        let mut redis = PrivateRedis { dir: TempDir::new("redis-tls"), proc: None, tls };
        redis.up();
        redis
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    pub fn up(&mut self) {
        let mut args: Vec<String> =
            ["redis-server", "--save", "", "--appendonly", "no", "--port", "0"].map(String::from).into();
        match &self.tls {
            None => args.extend(["--unixsocket".into(), path_str(&self.socket())]),
            Some((port, cert, key)) => args.extend([
                "--bind".into(),
                "127.0.0.1".into(),
                "--tls-auth-clients".into(),
                "no".into(),
                "--tls-port".into(),
                port.to_string(),
                "--tls-cert-file".into(),
                path_str(cert),
                "--tls-key-file".into(),
                path_str(key),
            ]),
        }
        let proc = Proc::spawn(std::process::Command::new(&args[0]).args(&args[1..]), &self.dir.join("redis.log"));
        proc.wait_for_log("ready to accept connections", Duration::from_secs(5));
        self.proc = Some(proc);
    }

    pub fn down(&mut self) {
        self.proc = None;
        let _ = fs::remove_file(self.socket());
    }

    /// Freezes the server (SIGSTOP) or thaws it (SIGCONT): a store that hangs without closing
    /// its connections, as one behind a stalled disk or a cut link does.
    pub fn pause(&self, paused: bool) {
        if let Some(proc) = &self.proc {
            run(["kill", if paused { "-STOP" } else { "-CONT" }, &proc.pid().to_string()]);
        }
    }

    /// The store URL of this Redis: `redis+unix://` for the socket one, `rediss://` (to be
    /// checked against the test's CA) for the TLS one.
    pub fn url(&self) -> String {
        match &self.tls {
            None => format!("redis+unix://{}", self.socket().display()),
            Some((port, _, _)) => format!("rediss://localhost:{port}/"),
        }
    }

    /// `redis-cli` on the Unix socket; its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let socket = path_str(&self.socket());
        run(["redis-cli", "-s", &socket].iter().chain(args))
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.down();
    }
}

/// The name the sentinels of [`RedisSentinels`] monitor the master under.
pub const SENTINEL_MASTER: &str = "dhcp";

/// A Redis master and one replica on loopback TCP ports (Sentinel names masters by address and
/// port, not by socket), watched by three sentinels with a quorum of two that call the master
/// down after one second. Redis replicates asynchronously. All killed on drop.
pub struct RedisSentinels {
    pub dir: TempDir,
    pub master_port: u16,
    pub replica_port: u16,
    pub sentinel_ports: Vec<u16>,
    master: Option<Proc>,
    replica: Option<Proc>,
    sentinels: Vec<Proc>,
}

impl RedisSentinels {
    pub fn start() -> RedisSentinels {
        let dir = TempDir::new("redis-sentinel");
        let ports: Vec<u16> = std::iter::repeat_with(super::free_port).take(5).collect();
        let mut set = RedisSentinels {
            dir,
            master_port: ports[0],
            replica_port: ports[1],
            sentinel_ports: ports[2..].to_vec(),
            master: None,
            replica: None,
            sentinels: Vec::new(),
        };
        set.master = Some(set.redis(set.master_port, None));
        set.replica = Some(set.redis(set.replica_port, Some(set.master_port)));
        set.wait_for(Duration::from_secs(10), "the replica's link to the master", |s| {
            s.cli(s.replica_port, &["INFO", "replication"]).contains("master_link_status:up")
        });
        for (i, port) in set.sentinel_ports.clone().into_iter().enumerate() {
            let conf = set.dir.join(format!("sentinel-{i}.conf"));
            let text = format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master} 2\n\
                 sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
                 sentinel failover-timeout {SENTINEL_MASTER} 10000\n\
                 sentinel parallel-syncs {SENTINEL_MASTER} 1\n",
                dir = set.dir.display(),
                master = set.master_port,
            );
            fs::write(&conf, text).expect("sentinel config");
            let log = set.dir.join(format!("sentinel-{i}.log"));
            let proc = Proc::spawn(std::process::Command::new("redis-server").arg(&conf).arg("--sentinel"), &log);
            proc.wait_for_log("+monitor master", Duration::from_secs(5));
            set.sentinels.push(proc);
        }
        // Each sentinel must know the replica and the other two before a failover can be voted.
        set.wait_for(Duration::from_secs(20), "sentinels that know each other and the replica", |s| {
            s.sentinel_ports.iter().all(|&port| {
                let info = s.cli(port, &["SENTINEL", "MASTER", SENTINEL_MASTER]);
                let field = |name: &str| {
                    let mut lines = info.lines();
                    lines.by_ref().find(|l| l.trim() == name);
                    lines.next().map(str::trim).unwrap_or_default().to_owned()
                };
                field("num-slaves") == "1" && field("num-other-sentinels") == "2"
            })
        });
        set
    }

    fn redis(&self, port: u16, master: Option<u16>) -> Proc {
        let mut cmd = std::process::Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"]);
        cmd.arg("--dir").arg(&*self.dir).arg("--dbfilename").arg(format!("dump-{port}.rdb"));
        if let Some(master) = master {
            cmd.args(["--replicaof", "127.0.0.1", &master.to_string()]);
        }
        let proc = Proc::spawn(&mut cmd, &self.dir.join(format!("redis-{port}.log")));
        proc.wait_for_log("ready to accept connections", Duration::from_secs(5));
        proc
    }

    fn wait_for(&self, timeout: Duration, what: &str, done: impl Fn(&RedisSentinels) -> bool) {
        let start = std::time::Instant::now();
        while !done(self) {
            assert!(start.elapsed() < timeout, "no {what} within {timeout:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The store URL: all three sentinels and the master's name.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinel_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!("redis+sentinel://{}/{SENTINEL_MASTER}", hosts.join(","))
    }

    /// `redis-cli` against 127.0.0.1:`port`; its stdout (empty when nothing answers).
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let out = std::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The master's replication offset and the replica's, as each reports it.
    pub fn offsets(&self) -> (u64, u64) {
        let field = |port: u16, name: &str| {
            let info = self.cli(port, &["INFO", "replication"]);
            info.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or_default()
        };
        (field(self.master_port, "master_repl_offset:"), field(self.replica_port, "slave_repl_offset:"))
    }

    /// Kills the master with SIGKILL, as a crash would.
    pub fn kill_master(&mut self) {
        if let Some(master) = self.master.take() {
            master.crash();
        }
    }

    /// The master's port as the sentinels name it now.
    pub fn current_master_port(&self) -> Option<u16> {
        let answer = self.cli(self.sentinel_ports[0], &["SENTINEL", "get-master-addr-by-name", SENTINEL_MASTER]);
        answer.lines().nth(1).and_then(|p| p.trim().parse().ok())
    }
}
