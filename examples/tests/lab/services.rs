//! Store servers of a test's own: a private PostgreSQL cluster and a private Redis, each in a
//! temporary directory, optionally taking only TLS with a certificate authority the test
//! makes. Each is stopped and its directory removed on drop.

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
        let bin = fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries under /usr/lib/postgresql")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .max()
            .expect("a PostgreSQL version");
        let dir = TempDir::new(tag);
        fs::create_dir_all(dir.join("data")).expect("pg dir");
        run(["chown", "-R", "postgres:postgres", &path_str(&dir)]);
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
