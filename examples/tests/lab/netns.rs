//! A lab of network namespaces: a server host and client hosts joined by veth pairs (or a
//! bridge), our server running in one, real DHCP clients in the others.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::{Capture, LeaseRow, Place, Proc, Server, TempDir, next_id, path_str, run};

/// The server's address on the lab segment.
pub const SERVER_ADDR: &str = "10.199.0.1";

/// A network namespace, deleted (with every process in it) on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("dt{}-{}-{tag}", std::process::id(), next_id());
        run(["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS ARGS...`; its stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        run(["ip", "-n", &self.name].iter().chain(args))
    }

    /// A command to run inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs a command inside the namespace and returns its output, whatever its status.
    pub fn output(&self, args: &[&str]) -> Output {
        self.command(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// Runs a command inside the namespace, panicking when it fails; its stdout.
    pub fn run(&self, args: &[&str]) -> String {
        run(["ip", "netns", "exec", &self.name].iter().chain(args))
    }

    /// Starts a command inside the namespace in the background, its output in `log`.
    pub fn spawn(&self, args: &[&str], log: &Path) -> Proc {
        Proc::spawn(self.command(args[0]).args(&args[1..]), log)
    }

    /// The IPv4 addresses on `dev`, as `ip -4 -o addr` prints them (`10.199.1.10/16`).
    pub fn addrs(&self, dev: &str) -> Vec<String> {
        self.ip(&["-4", "-o", "addr", "show", "dev", dev])
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

/// A server host and one or more client hosts on one segment, with our server (once started)
/// on `vsrv` in the server host.
pub struct Lab {
    pub server: Netns,
    pub clients: Vec<Netns>,
    /// The bridge's namespace when several clients share the segment.
    pub bridge: Option<Netns>,
    dhcpd: Option<Server>,
    capture: Option<Capture>,
    dir: TempDir,
}

impl Lab {
    /// A server (`vsrv`, 10.199.0.1/16) and one client (`vcli`) joined by a veth pair.
    pub fn pair() -> Lab {
        Lab::with_clients(1)
    }

    /// A server and `n` clients (`vcli` in each) on a bridge in its own namespace; with one
    /// client, a plain veth pair.
    pub fn with_clients(n: usize) -> Lab {
        let dir = TempDir::new("lab");
        let server = Netns::new("srv");
        let clients: Vec<Netns> = (0..n).map(|i| Netns::new(&format!("c{i}"))).collect();
        let mut lab = Lab { dir, server, clients, bridge: None, dhcpd: None, capture: None };
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
        let tmp_a = format!("t{}a{}", std::process::id() % 100_000, next_id());
        let tmp_b = format!("{tmp_a}b");
        run(["ip", "link", "add", &tmp_a, "type", "veth", "peer", "name", &tmp_b]);
        match (port, &self.bridge) {
            (None, _) => {
                run(["ip", "link", "set", &tmp_a, "netns", &self.server.name, "name", "vsrv"]);
                run(["ip", "link", "set", &tmp_b, "netns", &self.clients[0].name, "name", "vcli"]);
                self.clients[0].ip(&["link", "set", "vcli", "up"]);
            }
            (Some(port), Some(bridge)) => {
                let (ns, dev) =
                    if client == usize::MAX { (&self.server, "vsrv") } else { (&self.clients[client], "vcli") };
                run(["ip", "link", "set", &tmp_a, "netns", &ns.name, "name", dev]);
                run(["ip", "link", "set", &tmp_b, "netns", &bridge.name, "name", port]);
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

    /// Starts our server in the server namespace with `config` (the engine part; the
    /// `[server]` table is added: listen on vsrv, debug logs, a lease dump), its files
    /// `server.toml` and `server.log` in the lab's directory, and waits until it serves.
    pub fn start_server(&mut self, config: &str) {
        self.start_server_with(config, "");
    }

    /// [`start_server`](Self::start_server) with more lines for the `[server]` table (a store
    /// URL, say).
    pub fn start_server_with(&mut self, config: &str, server_lines: &str) {
        self.dhcpd = None;
        let server = Server::spawn(Place::Netns(&self.server), &self.dir, "server", config, server_lines);
        self.start_capture();
        self.dhcpd = Some(server.serving());
    }

    /// With `DHCP_CAPTURE_DIR` set, records the first DHCP packets on the server's interface
    /// to `DIR/<test name>.pcap`: how the engine's fixtures and the fuzz corpus were taken.
    fn start_capture(&mut self) {
        let Ok(dir) = std::env::var("DHCP_CAPTURE_DIR") else { return };
        let name = std::thread::current().name().unwrap_or("lab").replace("::", "-");
        let file = Path::new(&dir).join(format!("{name}.pcap"));
        self.capture = None;
        self.capture =
            Some(Capture::start(&self.server, "vsrv", "udp port 67 or udp port 68", Some(40), &file, &self.dir));
    }

    /// Records every packet the server sends (UDP from port 67) on its interface to `file`,
    /// until the capture is [stopped](Capture::stop).
    pub fn capture_replies(&self, file: &Path) -> Capture {
        Capture::start(&self.server, "vsrv", "udp src port 67", None, file, &self.dir)
    }

    /// The running server.
    pub fn dhcpd(&self) -> &Server {
        self.dhcpd.as_ref().expect("server running")
    }

    /// Kills the server with SIGKILL, as a crash would, and waits for it to be gone.
    pub fn crash_server(&mut self) {
        if let Some(server) = self.dhcpd.take() {
            server.crash();
        }
    }

    /// Sends `signal` (such as "HUP") to the running server.
    pub fn signal_server(&self, signal: &str) {
        self.dhcpd().signal(signal);
    }

    pub fn server_log(&self) -> String {
        self.dhcpd.as_ref().map(Server::log_text).unwrap_or_default()
    }

    /// The server's leases, read from a fresh dump (SIGUSR1).
    pub fn leases(&self) -> Vec<LeaseRow> {
        self.dhcpd().leases()
    }

    /// A hook script for a real client that logs its environment to `NAME.log` and applies
    /// the address and router with `ip`, never touching the host's resolv.conf.
    pub fn hook(&self, name: &str, body: &str) -> PathBuf {
        let log = self.path(&format!("{name}.log"));
        let script = format!("#!/bin/sh\nLOG='{}'\n{body}\nexit 0\n", log.display());
        let path = self.write(&format!("{name}.sh"), &script);
        run(["chmod", "+x", &path_str(&path)]);
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
        // The capture first, so that tcpdump finishes its file; then the server. The
        // namespaces, with whatever still runs in them, and the directory go after this.
        self.capture = None;
        self.dhcpd = None;
    }
}

/// Reads `key=value` lines of a hook log into the values of `key`, in order.
pub fn values(log: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    log.lines().filter_map(|l| l.strip_prefix(&prefix)).map(str::to_owned).collect()
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
  echo "ntp=$new_ntp_servers"
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
    "request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, host-name, ntp-servers;\n";

/// Runs dhclient in client `client`'s namespace on vcli, with files named after `name` in the
/// lab's directory (hook log `NAME.log`, leases, pid), up to 60 s.
pub fn dhclient(lab: &Lab, client: usize, name: &str, extra: &[&str]) -> Output {
    dhclient_with(lab, client, name, "", extra)
}

/// [`dhclient`] with `conf` added to its configuration (`send host-name "x";`, say).
pub fn dhclient_with(lab: &Lab, client: usize, name: &str, conf: &str, extra: &[&str]) -> Output {
    let hook = lab.hook(name, DHCLIENT_HOOK);
    let conf = lab.write(&format!("{name}.conf"), &format!("{DHCLIENT_CONF}{conf}"));
    let (lf, pf) = (lab.path(&format!("{name}.leases")), lab.path(&format!("{name}.pid")));
    let (hook, conf, lf, pf) = (path_str(&hook), path_str(&conf), path_str(&lf), path_str(&pf));
    let mut args = vec!["timeout", "60", "dhclient", "-4", "-v", "-sf", &hook, "-cf", &conf, "-lf", &lf, "-pf", &pf];
    args.extend_from_slice(extra);
    args.push("vcli");
    lab.client(client).output(&args)
}

/// The MAC of client `client`'s vcli.
pub fn mac_of(lab: &Lab, client: usize) -> String {
    let line = lab.client(client).ip(&["-o", "link", "show", "vcli"]);
    line.split_whitespace().skip_while(|w| *w != "link/ether").nth(1).expect("vcli has a MAC").to_owned()
}

/// `GET /api/v1/stats` of the server in `lab`, through `dhcp-cli` in the server's namespace,
/// for a management API at `url` with `token`.
pub fn cli_stats(lab: &Lab, url: &str, token: &str) -> serde_json::Value {
    let out = lab
        .server
        .command(env!("CARGO_BIN_EXE_dhcp-cli"))
        .args(["--url", url, "--token", token, "--json", "show", "stats"])
        .output()
        .expect("dhcp-cli");
    assert!(out.status.success(), "dhcp-cli show stats:\n{}", super::text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", super::text(&out)))
}
