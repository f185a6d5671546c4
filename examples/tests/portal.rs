//! The web portal in a real browser (headless Chromium driven by Selenium, `portal/browser.py`),
//! with real clients (ISC dhclient) in network namespaces: an editor adds a reservation and
//! dhclient gets that address; a viewer sees no edit controls and its forged POSTs are refused;
//! a CSV import with a bad row applies nothing until fixed; a config change rolled back from
//! the history page serves the old options again. And every page loads in under 200 ms with
//! 100,000 leases and 10,000 reservations.
//!
//! `PORTAL_SCREENSHOTS=DIR` keeps the screenshots there (the README's come from this run).

mod lab;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use lab::{Lab, Server, TempDir, dhclient, free_port, mac_of, server_port, text, values};

const CONFIG: &str = include_str!("../../dhcp-core/tests/fixtures/captured/lab.toml");
const TOKEN: &str = "portal-test-token";
const API: &str = "http://127.0.0.1:8067";

/// The Python with Debian's Selenium (`python3-selenium`), not a pyenv's.
const PYTHON: &str = "/usr/bin/python3";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/portal/browser.py")
}

/// Fails unless Chromium, its driver and Selenium are here: the test command installs them,
/// and a browser test that skips itself would pass without testing anything.
fn require_browser() {
    for file in ["/usr/bin/chromium", "/usr/bin/chromedriver", PYTHON] {
        assert!(
            Path::new(file).exists(),
            "{file} is missing: apt-get install chromium chromium-driver python3-selenium"
        );
    }
}

/// Where the screenshots go: `PORTAL_SCREENSHOTS`, else the lab's directory.
fn shots(fallback: &Path) -> PathBuf {
    let dir = std::env::var_os("PORTAL_SCREENSHOTS").map_or_else(|| fallback.join("shots"), PathBuf::from);
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir
}

/// One step of `browser.py` run with `cmd` (in a namespace or not); fails the test with its
/// reason when the portal is wrong.
fn browser_step(mut cmd: std::process::Command, home: &Path, shots: &Path, base: &str, step: &[&str]) -> String {
    // A fresh browser profile each step: no cookie of an earlier login carries over.
    let profile = home.join(format!("chrome-{}", step[0]));
    let _ = std::fs::remove_dir_all(&profile);
    let out: Output = cmd
        .arg(script())
        .arg(base)
        .args(step)
        .env("PORTAL_TOKEN", TOKEN)
        .env("PORTAL_SHOTS", shots)
        .env("PORTAL_PROFILE", &profile)
        .env("HOME", home)
        .output()
        .expect("python3");
    assert!(out.status.success(), "browser step {step:?} failed:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// dhcp-cli in the server's namespace.
fn cli(lab: &Lab, args: &[&str]) -> String {
    let out = lab
        .server
        .command(env!("CARGO_BIN_EXE_dhcp-cli"))
        .args(["--url", API, "--token", TOKEN])
        .args(args)
        .output()
        .expect("dhcp-cli");
    assert!(out.status.success(), "dhcp-cli {args:?}:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// dhclient's address and routers in a run named `name`, released after.
fn lease(lab: &Lab, name: &str) -> (String, String) {
    let out = dhclient(lab, 0, name, &["-1"]);
    assert!(out.status.success(), "dhclient {name}:\n{}\n{}", text(&out), lab.server_log());
    let log = lab.hook_log(name);
    let last = |key: &str| values(&log, key).into_iter().rfind(|v| !v.is_empty()).unwrap_or_default();
    let got = (last("ip"), last("routers"));
    let released = dhclient(lab, 0, name, &["-r"]);
    assert!(released.status.success(), "dhclient -r {name}:\n{}", text(&released));
    got
}

#[test]
fn editors_viewers_imports_and_rollbacks_in_a_real_browser_with_dhclient() {
    if !lab::available() {
        return;
    }
    require_browser();
    let mut lab = Lab::pair();
    lab.start_server_with(CONFIG, &format!("api-listen = \"127.0.0.1:8067\"\napi-token = \"{TOKEN}\""));
    let shots = shots(&lab.path(""));
    let home = lab.path("");
    let step = |args: &[&str]| browser_step(lab.server.command(PYTHON), &home, &shots, API, args);
    step(&["setup"]);

    // An editor adds a reservation in the browser; dhclient with that MAC gets the address.
    let mac = mac_of(&lab, 0);
    step(&["add-reservation", &mac, "10.199.0.88"]);
    assert_eq!(lease(&lab, "reserved").0, "10.199.0.88", "the portal's reservation serves");

    // A viewer sees no edit controls, and its forged POSTs change nothing.
    step(&["viewer"]);

    // A CSV import with one bad row applies nothing; fixed, it applies.
    let bad = "subnet,mac,ip,hostname\n1,02:00:00:00:01:01,10.199.0.101,one\n1,02:00:00:00:01:02,10.42.0.1,two\n";
    let (bad_path, good_path) = (lab.path("bad.csv"), lab.path("good.csv"));
    std::fs::write(&bad_path, bad).expect("bad.csv");
    std::fs::write(&good_path, bad.replace("10.42.0.1", "10.199.0.102")).expect("good.csv");
    step(&["import", &lab::path_str(&bad_path), &lab::path_str(&good_path)]);
    let clients = cli(&lab, &["show", "clients"]);
    assert!(clients.contains("10.199.0.101") && clients.contains("10.199.0.102"), "{clients}");

    // A config change (another router) that turns out wrong, rolled back in the browser.
    let history: serde_json::Value = serde_json::from_str(&cli(&lab, &["--json", "config", "history"])).expect("JSON");
    let good_version = history["versions"][0]["version"].as_u64().expect("a version");
    let file = lab.path("server.toml");
    let text_now = std::fs::read_to_string(&file).expect("config");
    std::fs::write(&file, text_now.replace("routers = [\"10.199.0.1\"]", "routers = [\"10.199.0.2\"]")).expect("edit");
    cli(&lab, &["config", "reload", "-m", "new router"]);
    assert_eq!(lease(&lab, "moved").1, "10.199.0.2", "the change serves");
    step(&["rollback", &good_version.to_string()]);
    assert_eq!(lease(&lab, "restored").1, "10.199.0.1", "the old options serve again");

    for name in ["dashboard", "reservations", "leases", "import-refused", "history", "history-diff"] {
        let png = shots.join(format!("{name}.png"));
        let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
        assert!(size > 1000, "screenshot {} missing or empty", png.display());
    }
    // The lab's namespaces go with `lab`; the browser ran to its end in each step.
    drop(lab);
}

/// A config with 10,000 reservations in one subnet, and a journal of 100,000 bound leases.
fn big_state(dir: &Path) -> (String, PathBuf) {
    let mut config = String::from(
        "[groups.lab]\nlease-time = 600\n\n[[subnets]]\nid = 1\nsubnet = \"10.0.0.0/12\"\n\
         pools = [\"10.8.0.1-10.15.255.254\"]\noptions = { routers = [\"10.0.0.1\"] }\n",
    );
    for n in 0..10_000u32 {
        let (hi, lo) = (n >> 8, n & 0xff);
        config.push_str(&format!(
            "\n[[subnets.reservations]]\nhw-address = \"02:00:00:10:{hi:02x}:{lo:02x}\"\nip-address = \"10.1.{hi}.{lo}\"\n\
             hostname = \"host-{n}\"\n"
        ));
    }
    let deadline =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) + 86_400;
    let mut journal = String::with_capacity(100_000 * 64);
    for n in 0..100_000u32 {
        let addr = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 8, 0, 1)) + n);
        let hw = format!("0200{:08x}", n);
        let host: String = format!("host-{n}").bytes().map(|b| format!("{b:02x}")).collect();
        journal.push_str(&format!("L {addr} 1 bound {deadline} 01{hw} {hw} {host} .\n"));
    }
    let path = dir.join("leases.journal");
    std::fs::write(&path, journal).expect("journal");
    (config, path)
}

/// Page loads are timed against a release build of the server (`DHCP_SERVER_BIN`), as the test
/// command runs this test after building one; the debug build the other tests use is several
/// times slower and says nothing about what operators get.
#[test]
fn every_page_loads_in_under_200_ms_with_100000_leases_and_10000_reservations() {
    if std::env::var_os("DHCP_SERVER_BIN").is_none() {
        eprintln!(
            "page timings need a release build: DHCP_SERVER_BIN=target/release/dhcp-server (scripts/test.sh sets it)"
        );
        return;
    }
    require_browser();
    let dir = TempDir::new("portal-timings");
    let (config, journal) = big_state(&dir);
    let api_port = free_port();
    let lines = format!(
        "store = \"memory:?journal={}\"\napi-listen = \"127.0.0.1:{api_port}\"\napi-token = \"{TOKEN}\"",
        journal.display()
    );
    let server = Server::spawn(lab::Place::Loopback(server_port()), &dir, "big", &config, &lines);
    let server = server.serving_within(Duration::from_secs(60));
    let base = format!("http://127.0.0.1:{api_port}");
    let shots = shots(&dir);
    let step = |args: &[&str]| browser_step(std::process::Command::new(PYTHON), &dir, &shots, &base, args);
    step(&["setup"]);
    let timings = step(&["timings", "200"]);
    println!("portal page loads (ms, best of 3): {timings}");
    drop(server);
}

/// Portal login through OpenID Connect against a provider the test starts
/// (`portal/oidc_provider.py`: discovery, JWKS, an authorization endpoint that approves at once,
/// a token endpoint checking the secret and PKCE, RS256 ID tokens signed with openssl): the
/// provider's role claim gives the role; a token for another client and a user without a role
/// are refused.
#[test]
fn openid_connect_login_takes_the_providers_role_and_refuses_foreign_or_roleless_tokens() {
    require_browser();
    let dir = TempDir::new("portal-oidc");
    let (idp_port, api_port) = (free_port(), free_port());
    let provider = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/portal/oidc_provider.py");
    let mut cmd = std::process::Command::new(PYTHON);
    cmd.arg(&provider).arg(idp_port.to_string()).arg(&*dir).arg("dhcp-portal").arg("client-secret-42");
    let _idp = lab::Proc::spawn(&mut cmd, &dir.join("idp.log"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !dir.join("ready").exists() {
        assert!(std::time::Instant::now() < deadline, "the provider did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let lines = format!(
        "api-listen = \"127.0.0.1:{api_port}\"\napi-token = \"{TOKEN}\"\n\
         oidc-issuer = \"http://127.0.0.1:{idp_port}\"\noidc-client-id = \"dhcp-portal\"\n\
         oidc-client-secret = \"client-secret-42\"\n\
         oidc-redirect-url = \"http://127.0.0.1:{api_port}/portal/oidc/callback\""
    );
    let server = Server::loopback(&dir, "memory:", server_port(), &lines);
    let base = format!("http://127.0.0.1:{api_port}");
    let shots = shots(&dir);
    let who = |line: &str| std::fs::write(dir.join("WHO"), line).expect("WHO");
    let step = |args: &[&str]| browser_step(std::process::Command::new(PYTHON), &dir, &shots, &base, args);

    who("olga editor");
    step(&["oidc-login", "olga (editor)"]);
    who("ada admin");
    step(&["oidc-login", "ada (admin)"]);
    who("mallory admin someone-else");
    step(&["oidc-login", "refused:not this client"]);
    who("nobody -");
    step(&["oidc-login", "refused:has no viewer, editor or admin role"]);

    let admin = dhcp_server::api::AdminClient::new(&base, TOKEN);
    let audit = admin.audit(100).expect("audit");
    assert!(audit.entries.iter().any(|e| e.action == "login" && e.user == "olga" && e.detail["via"] == "oidc"));
    let refused = audit.entries.iter().filter(|e| e.action == "login.refused" && e.detail["via"] == "oidc").count();
    assert_eq!(refused, 2, "both refusals audited");
    drop(server);
}
