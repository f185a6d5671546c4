//! A test lab of network namespaces: a server host and client hosts joined by veth pairs (or a
//! bridge), the example server running in one, real DHCP clients in the others.
//!
//! Everything the lab creates is removed when it is dropped, also when a test panics: every
//! process left in its namespaces is killed and the namespaces are deleted.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The server's address on the lab segment.
pub const SERVER_ADDR: &str = "10.199.0.1";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Whether the lab can run here; when it cannot and `DHCP_SKIP_NETNS=1` is set, tests return
/// early (a developer machine without root); otherwise they fail with the reason.
pub fn available() -> bool {
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    if root {
        return true;
    }
    if std::env::var("DHCP_SKIP_NETNS").as_deref() == Ok("1") {
        eprintln!("skipping: network namespace tests need root");
        return false;
    }
    panic!("network namespace tests need root (set DHCP_SKIP_NETNS=1 to skip them)");
}

/// Runs a command, panicking with its output when it fails.
pub fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace, deleted (with every process in it) on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("dt{}-{}-{tag}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        run(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS ARGS...`
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        run(&full)
    }

    /// A command to run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs a command inside the namespace and returns its output, whatever its status.
    pub fn output(&self, args: &[&str]) -> Output {
        self.command(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// Runs a command inside the namespace, panicking when it fails.
    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "{args:?} in {} failed: {}\n{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The IPv4 addresses on `dev`, as `ip -4 -o addr` prints them (`10.199.1.10/16`).
    pub fn addrs(&self, dev: &str) -> Vec<String> {
        let out = self.ip(&["-4", "-o", "addr", "show", "dev", dev]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| line.split_whitespace().skip_while(|w| *w != "inet").nth(1).map(str::to_owned))
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Daemons (dhclient) fork into the background: find every process by namespace.
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// A process started by a test, killed on drop.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: &str) {
        run(&["kill", &format!("-{signal}"), &self.pid().to_string()]);
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit, up to `timeout`; returns whether it exited successfully.
    pub fn wait(&mut self, timeout: Duration) -> Option<bool> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.success());
            }
            sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server host and one or more client hosts on one segment.
pub struct Lab {
    pub dir: PathBuf,
    pub server: Netns,
    pub clients: Vec<Netns>,
    /// The bridge's namespace when several clients share the segment.
    pub bridge: Option<Netns>,
    server_proc: Option<Proc>,
    capture: Option<Proc>,
}

impl Lab {
    /// A server (`vsrv`, 10.199.0.1/16) and one client (`vcli`) joined by a veth pair.
    pub fn pair() -> Lab {
        Lab::with_clients(1)
    }

    /// A server and `n` clients (`vcli` in each) on a bridge in its own namespace; with one
    /// client, a plain veth pair.
    pub fn with_clients(n: usize) -> Lab {
        let dir = std::env::temp_dir().join(format!(
            "dhcp-lab-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).expect("lab dir");
        let server = Netns::new("srv");
        let clients: Vec<Netns> = (0..n).map(|i| Netns::new(&format!("c{i}"))).collect();
        let mut lab = Lab { dir, server, clients, bridge: None, server_proc: None, capture: None };
        if n == 1 {
            lab.link(None, 0);
        } else {
            let bridge = Netns::new("br");
            bridge.ip(&["link", "add", "br0", "type", "bridge"]);
            bridge.ip(&["link", "set", "br0", "up"]);
            lab.bridge = Some(bridge);
            lab.link(Some("srv"), usize::MAX);
            for i in 0..n {
                lab.link(Some(&format!("c{i}")), i);
            }
        }
        lab.server.ip(&["addr", "add", &format!("{SERVER_ADDR}/16"), "dev", "vsrv"]);
        lab.server.ip(&["link", "set", "vsrv", "up"]);
        lab
    }

    /// Joins the server (`client == usize::MAX`) or client `client` to the segment: directly to
    /// the server for a pair, else to the bridge through a port named after `port`.
    fn link(&mut self, port: Option<&str>, client: usize) {
        let tmp_a = format!("t{}a{}", std::process::id() % 100_000, NEXT.fetch_add(1, Ordering::Relaxed));
        let tmp_b = format!("{tmp_a}b");
        run(&["ip", "link", "add", &tmp_a, "type", "veth", "peer", "name", &tmp_b]);
        match (port, &self.bridge) {
            (None, _) => {
                run(&["ip", "link", "set", &tmp_a, "netns", &self.server.name, "name", "vsrv"]);
                run(&["ip", "link", "set", &tmp_b, "netns", &self.clients[0].name, "name", "vcli"]);
                self.clients[0].ip(&["link", "set", "vcli", "up"]);
            }
            (Some(port), Some(bridge)) => {
                let (ns, dev) =
                    if client == usize::MAX { (&self.server, "vsrv") } else { (&self.clients[client], "vcli") };
                run(&["ip", "link", "set", &tmp_a, "netns", &ns.name, "name", dev]);
                run(&["ip", "link", "set", &tmp_b, "netns", &bridge.name, "name", port]);
                bridge.ip(&["link", "set", port, "master", "br0"]);
                bridge.ip(&["link", "set", port, "up"]);
                if client != usize::MAX {
                    ns.ip(&["link", "set", dev, "up"]);
                }
            }
            (Some(_), None) => unreachable!("bridge is made before its ports"),
        }
    }

    pub fn client(&self, i: usize) -> &Netns {
        &self.clients[i]
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `text` to a file in the lab's directory.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, text).expect("write lab file");
        path
    }

    /// Starts the example server in the server namespace with `config` (the engine part; the
    /// `[server]` table is added here: listen on vsrv, debug logs, a lease dump) and waits
    /// until it listens.
    pub fn start_server(&mut self, config: &str) {
        self.start_server_with(config, "");
    }

    /// [`start_server`](Self::start_server) with more lines for the `[server]` table (a store
    /// URL, say).
    pub fn start_server_with(&mut self, config: &str, server_lines: &str) {
        let dump = self.path("leases.csv");
        let text = format!(
            "{config}\n[server]\nlisten = [\"vsrv\"]\nlog-level = \"debug\"\nlease-dump = \"{}\"\n{server_lines}\n",
            dump.display()
        );
        let file = self.write("server.toml", &text);
        let log = self.path("server.log");
        let child = self
            .server
            .command(env!("CARGO_BIN_EXE_dhcp-server"))
            .args(["--config", &file.to_string_lossy()])
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("server log"))
            .spawn()
            .expect("start dhcp-server");
        let mut proc = Proc { child, log };
        self.start_capture();
        let start = Instant::now();
        while !proc.log_text().contains("serving") {
            if let Ok(Some(status)) = proc.child.try_wait() {
                panic!("server exited with {status}:\n{}", proc.log_text());
            }
            assert!(start.elapsed() < Duration::from_secs(10), "server did not start:\n{}", proc.log_text());
            sleep(Duration::from_millis(20));
        }
        self.server_proc = Some(proc);
    }

    /// With `DHCP_CAPTURE_DIR` set, records the first DHCP packets on the server's interface
    /// to `DIR/<test name>.pcap`: how the engine's fixtures and the fuzz corpus were taken.
    fn start_capture(&mut self) {
        let Ok(dir) = std::env::var("DHCP_CAPTURE_DIR") else { return };
        let name = std::thread::current().name().unwrap_or("lab").replace("::", "-");
        let file = Path::new(&dir).join(format!("{name}.pcap"));
        let log = self.path("tcpdump.log");
        let child = self
            .server
            .command("tcpdump")
            .args([
                "-i",
                "vsrv",
                "-U",
                "--immediate-mode",
                "-c",
                "40",
                "-w",
                &file.to_string_lossy(),
                "udp port 67 or udp port 68",
            ])
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("tcpdump log"))
            .spawn()
            .expect("start tcpdump");
        let capture = Proc { child, log };
        let start = Instant::now();
        while !capture.log_text().contains("listening on") && start.elapsed() < Duration::from_secs(5) {
            sleep(Duration::from_millis(20));
        }
        self.capture = Some(capture);
    }

    /// Kills the server with SIGKILL, as a crash would, and waits for it to be gone.
    pub fn crash_server(&mut self) {
        if let Some(mut proc) = self.server_proc.take() {
            proc.signal("KILL");
            assert!(proc.wait(Duration::from_secs(5)).is_some(), "server survived SIGKILL");
        }
    }

    /// Records every packet the server sends (UDP from port 67) on its interface to `file`,
    /// until the returned process is stopped with [`stop_capture`].
    pub fn capture_replies(&self, file: &Path) -> Proc {
        let log = self.path("replies-tcpdump.log");
        let child = self
            .server
            .command("tcpdump")
            .args(["-i", "vsrv", "-U", "--immediate-mode", "-w", &file.to_string_lossy(), "udp src port 67"])
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("tcpdump log"))
            .spawn()
            .expect("start tcpdump");
        let capture = Proc { child, log };
        let start = Instant::now();
        while !capture.log_text().contains("listening on") {
            assert!(start.elapsed() < Duration::from_secs(5), "tcpdump did not start: {}", capture.log_text());
            sleep(Duration::from_millis(20));
        }
        capture
    }

    /// Sends `signal` (such as "HUP") to the running server.
    pub fn signal_server(&self, signal: &str) {
        self.server_proc.as_ref().expect("server running").signal(signal);
    }

    pub fn server_log(&self) -> String {
        self.server_proc.as_ref().map(Proc::log_text).unwrap_or_default()
    }

    /// The server's leases, read from a fresh dump (SIGUSR1).
    pub fn leases(&self) -> Vec<LeaseRow> {
        let proc = self.server_proc.as_ref().expect("server running");
        let dump = self.path("leases.csv");
        let _ = fs::remove_file(&dump);
        proc.signal("USR1");
        let start = Instant::now();
        while !dump.exists() {
            assert!(start.elapsed() < Duration::from_secs(5), "no lease dump:\n{}", proc.log_text());
            sleep(Duration::from_millis(20));
        }
        let text = fs::read_to_string(&dump).expect("read dump");
        text.lines().skip(1).map(LeaseRow::parse).collect()
    }

    /// A hook script for a real client that logs its environment to `NAME.log` and applies
    /// the address and router with `ip`, never touching the host's resolv.conf.
    pub fn hook(&self, name: &str, body: &str) -> PathBuf {
        let log = self.path(&format!("{name}.log"));
        let script = format!("#!/bin/sh\nLOG='{}'\n{body}\nexit 0\n", log.display());
        let path = self.write(&format!("{name}.sh"), &script);
        run(&["chmod", "+x", &path.to_string_lossy()]);
        path
    }

    pub fn hook_log(&self, name: &str) -> String {
        fs::read_to_string(self.path(&format!("{name}.log"))).unwrap_or_default()
    }

    /// Polls `check` until it holds or `timeout` passes.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let start = Instant::now();
        while !check() {
            assert!(start.elapsed() < timeout, "timed out waiting for {what}\nserver log:\n{}", self.server_log());
            sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("lab {} server log:\n{}", self.dir.display(), self.server_log());
        }
        if let Some(capture) = &self.capture {
            // SIGINT lets tcpdump flush the file.
            let _ = Command::new("kill").args(["-INT", &capture.pid().to_string()]).status();
            sleep(Duration::from_millis(300));
        }
        self.capture = None;
        self.server_proc = None;
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Stops a capture started by [`Lab::capture_replies`] so that its file is complete.
pub fn stop_capture(mut capture: Proc) {
    capture.signal("INT");
    let _ = capture.wait(Duration::from_secs(5));
}

/// The UDP payloads of an Ethernet pcap file.
pub fn udp_payloads(file: &Path) -> Vec<Vec<u8>> {
    let bytes = fs::read(file).expect("read capture");
    let le32 = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let len = le32(at + 8) as usize;
        let Some(frame) = bytes.get(at + 16..at + 16 + len) else { break };
        at += 16 + len;
        if frame.len() < 42 || frame[12..14] != [8, 0] || frame[23] != 17 {
            continue;
        }
        let udp = &frame[14 + usize::from(frame[14] & 0x0f) * 4..];
        let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
        if let Some(payload) = udp.get(8..udp_len) {
            out.push(payload.to_vec());
        }
    }
    out
}

/// One line of the server's lease dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub address: String,
    pub hwaddr: String,
    pub client_id: String,
    pub state: String,
    pub subnet: String,
    pub hostname: String,
}

impl LeaseRow {
    fn parse(line: &str) -> LeaseRow {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 7, "bad dump line {line:?}");
        LeaseRow {
            address: f[0].into(),
            hwaddr: f[1].into(),
            client_id: f[2].into(),
            state: f[3].into(),
            subnet: f[5].into(),
            hostname: f[6].into(),
        }
    }
}

/// Reads `key=value` lines of a hook log into the values of `key`, in order.
pub fn values(log: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    log.lines().filter_map(|l| l.strip_prefix(&prefix)).map(str::to_owned).collect()
}

pub fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// dhclient's hook: log what the server gave, apply the address and default route.
pub const DHCLIENT_HOOK: &str = r#"
{
  echo "reason=$reason"
  echo "ip=$new_ip_address"
  echo "mask=$new_subnet_mask"
  echo "routers=$new_routers"
  echo "dns=$new_domain_name_servers"
  echo "domain=$new_domain_name"
  echo "hostname=$new_host_name"
  echo "lease=$new_dhcp_lease_time"
} >> "$LOG"
case "$reason" in
  BOUND|RENEW|REBIND|REBOOT)
    ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface"
    for r in $new_routers; do ip route replace default via "$r"; break; done
    ;;
  RELEASE|EXPIRE|STOP)
    [ -n "$old_ip_address" ] && ip addr del "$old_ip_address/$old_subnet_mask" dev "$interface"
    ;;
esac
"#;

const DHCLIENT_CONF: &str =
    "request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, host-name;\n";

/// Runs dhclient in client `client`'s namespace on vcli, with files named after `name` in the
/// lab's directory (hook log `NAME.log`, leases, pid), up to 60 s.
pub fn dhclient(lab: &Lab, client: usize, name: &str, extra: &[&str]) -> std::process::Output {
    let hook = lab.hook(name, DHCLIENT_HOOK);
    let conf = lab.write(&format!("{name}.conf"), DHCLIENT_CONF);
    let (lf, pf) = (lab.path(&format!("{name}.leases")), lab.path(&format!("{name}.pid")));
    let (hook, conf, lf, pf) = (path_str(&hook), path_str(&conf), path_str(&lf), path_str(&pf));
    let mut args = vec!["timeout", "60", "dhclient", "-4", "-v", "-sf", &hook, "-cf", &conf, "-lf", &lf, "-pf", &pf];
    args.extend_from_slice(extra);
    args.push("vcli");
    lab.client(client).output(&args)
}

/// A command's stdout and stderr together.
pub fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The MAC of client `client`'s vcli.
pub fn mac_of(lab: &Lab, client: usize) -> String {
    let out = lab.client(client).ip(&["-o", "link", "show", "vcli"]);
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    line.split_whitespace().skip_while(|w| *w != "link/ether").nth(1).expect("vcli has a MAC").to_owned()
}
