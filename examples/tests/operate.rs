//! Operating a running server with real clients in network namespaces: a reservation added and
//! deleted with `dhcp-cli` takes effect for dhclient without a restart; a broken config is
//! refused (API and SIGHUP) while clients keep being served, and `config rollback` restores
//! the good one; after a perfdhcp run the `/metrics` counters equal what perfdhcp counted.

mod lab;

use std::collections::HashMap;
use std::process::Output;

use lab::{Lab, SERVER_ADDR, dhclient, mac_of, text, values};

const CONFIG: &str = include_str!("../../dhcp-core/tests/fixtures/captured/lab.toml");
const TOKEN: &str = "operate-test-token";
const API: &str = "api-listen = \"127.0.0.1:8067\"\napi-token = \"operate-test-token\"";

/// dhcp-cli in the server's namespace, where the API listens on loopback.
fn cli(lab: &Lab, args: &[&str]) -> Output {
    cli_with_token(lab, TOKEN, args)
}

/// [`cli`] with another token.
fn cli_with_token(lab: &Lab, token: &str, args: &[&str]) -> Output {
    lab.server
        .command(env!("CARGO_BIN_EXE_dhcp-cli"))
        .args(["--url", "http://127.0.0.1:8067", "--token", token])
        .args(args)
        .output()
        .expect("dhcp-cli")
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "dhcp-cli failed:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A lab whose server runs the lab config with the API; its config file and text.
fn started() -> (Lab, std::path::PathBuf, String) {
    let mut lab = Lab::pair();
    lab.start_server_with(CONFIG, API);
    let file = lab.path("server.toml");
    let good = std::fs::read_to_string(&file).expect("config");
    (lab, file, good)
}

/// The address dhclient was given in the run logged as `name`.
fn leased(lab: &Lab, name: &str) -> String {
    let out = dhclient(lab, 0, name, &["-1"]);
    assert!(out.status.success(), "dhclient {name}:\n{}\n{}", text(&out), lab.server_log());
    values(&lab.hook_log(name), "ip").into_iter().rfind(|v| !v.is_empty()).expect("an address")
}

fn release(lab: &Lab, name: &str) {
    let out = dhclient(lab, 0, name, &["-r"]);
    assert!(out.status.success(), "dhclient -r {name}:\n{}", text(&out));
}

#[test]
fn a_reservation_from_the_cli_takes_effect_and_its_deletion_frees_the_address() {
    if !lab::available() {
        return;
    }
    let mut lab = Lab::pair();
    lab.start_server_with(CONFIG, API);
    let mac = mac_of(&lab, 0);

    let before = leased(&lab, "before");
    assert!(before.starts_with("10.199.1."), "a pool address first: {before}");
    release(&lab, "before");

    ok(cli(
        &lab,
        &[
            "reservation",
            "add",
            "--subnet",
            "1",
            "--mac",
            &mac,
            "--ip",
            "10.199.0.77",
            "--hostname",
            "desk",
            "--description",
            "the desk by the window",
        ],
    ));
    let clients = ok(cli(&lab, &["show", "clients"]));
    assert!(
        clients.contains(&mac) && clients.contains("10.199.0.77") && clients.contains("the desk by the window"),
        "{clients}"
    );
    assert_eq!(leased(&lab, "reserved"), "10.199.0.77", "the reservation is in effect without a restart");
    assert!(values(&lab.hook_log("reserved"), "hostname").contains(&"desk".to_owned()));
    let shown = ok(cli(&lab, &["show", "mac", &mac]));
    assert!(
        shown.contains("10.199.0.77") && shown.contains("LAST-SEEN") && !shown.contains("LAST-SEEN    -"),
        "{shown}"
    );
    release(&lab, "reserved");

    ok(cli(&lab, &["reservation", "del", &mac]));
    let after = leased(&lab, "after");
    assert!(after.starts_with("10.199.1."), "back to the pool once the reservation is gone: {after}");
    let holders: Vec<_> =
        lab.leases().into_iter().filter(|l| l.address == "10.199.0.77" && l.state == "bound").collect();
    assert!(holders.is_empty(), "10.199.0.77 is free: {holders:?}");
}

#[test]
fn a_broken_config_is_refused_while_clients_are_served_and_rollback_restores_it() {
    if !lab::available() {
        return;
    }
    let (lab, file, good) = started();
    // A bad deploy: the routers option no longer parses, and the subnet's routers changed too.
    let broken = good.replace("routers = [\"10.199.0.1\"]", "routers = [\"10.199.0.300\"]");
    assert_ne!(broken, good);
    std::fs::write(&file, &broken).expect("break the config");

    let out = cli(&lab, &["config", "reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("subnets[0].options"), "the error names the field:\n{}", text(&out));
    lab.signal_server("HUP");
    lab.wait_for("the SIGHUP reload to be refused", std::time::Duration::from_secs(5), || {
        lab.server_log().matches("config refused").count() >= 2
    });

    let ip = leased(&lab, "during");
    assert!(ip.starts_with("10.199.1."), "{ip}");
    assert!(values(&lab.hook_log("during"), "routers").contains(&"10.199.0.1".to_owned()), "the old config serves");

    ok(cli(&lab, &["config", "rollback"]));
    assert_eq!(std::fs::read_to_string(&file).expect("config"), good, "the last good config is back on disk");
    let test = ok(cli(&lab, &["config", "test", &lab::path_str(&file)]));
    assert!(test.contains("valid"), "{test}");
}

#[test]
fn a_valid_but_wrong_change_is_undone_from_the_history_and_the_audit_log_says_who_did_what() {
    if !lab::available() {
        return;
    }
    let (lab, file, good) = started();
    let routers = |name: &str| values(&lab.hook_log(name), "routers").into_iter().rfind(|v| !v.is_empty());
    leased(&lab, "first");
    assert_eq!(routers("first").as_deref(), Some("10.199.0.1"));
    release(&lab, "first");

    // A valid change that turns out wrong: another gateway, applied by a reload with a reason.
    let moved = good.replace("routers = [\"10.199.0.1\"]", "routers = [\"10.199.0.2\"]");
    assert_ne!(moved, good);
    std::fs::write(&file, &moved).expect("edit the config");
    let applied = ok(cli(&lab, &["config", "reload", "--message", "new gateway: naïve"]));
    assert!(applied.contains("version 2"), "{applied}");
    leased(&lab, "moved");
    assert_eq!(routers("moved").as_deref(), Some("10.199.0.2"), "the change serves");
    release(&lab, "moved");

    let history = ok(cli(&lab, &["config", "history"]));
    let lines: Vec<&str> = history.lines().collect();
    assert!(lines[1].starts_with("2 ") && lines[1].contains("api-token") && lines[1].contains("reload"), "{history}");
    assert!(lines[1].contains("new gateway: naïve"), "the reason, in UTF-8: {history}");
    assert!(lines[2].starts_with("1 ") && lines[2].contains("system") && lines[2].contains("startup"), "{history}");
    let diff = ok(cli(&lab, &["config", "diff", "1", "2"]));
    assert!(diff.contains("-") && diff.contains("10.199.0.1") && diff.contains("+") && diff.contains("10.199.0.2"));
    assert!(diff.lines().any(|l| l.starts_with("-") && l.contains("10.199.0.1")), "{diff}");
    assert!(diff.lines().any(|l| l.starts_with("+") && l.contains("10.199.0.2")), "{diff}");
    let shown = ok(cli(&lab, &["config", "show", "1"]));
    assert!(shown.contains("10.199.0.1") && !shown.contains(TOKEN), "secrets hidden:\n{shown}");

    // Undone from the history: version 1 again, on disk and for the next client.
    let rolled = ok(cli(&lab, &["config", "rollback", "1", "-m", "printing broke"]));
    assert!(rolled.contains("version 3"), "{rolled}");
    assert_eq!(std::fs::read_to_string(&file).expect("config"), good, "version 1 is the file again");
    leased(&lab, "restored");
    assert_eq!(routers("restored").as_deref(), Some("10.199.0.1"), "the old options serve again");
    let history = ok(cli(&lab, &["config", "history"]));
    assert!(history.lines().nth(1).is_some_and(|l| l.contains("(restores 1) printing broke")), "{history}");
    let missing = cli(&lab, &["config", "rollback", "42"]);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));

    // A wrong token is refused and written down; the changes are there, with their user.
    let stranger = cli_with_token(&lab, "not-the-token", &["config", "history"]);
    assert_eq!(stranger.status.code(), Some(2), "{}", text(&stranger));
    let audit = ok(cli(&lab, &["--json", "audit", "--limit", "20"]));
    let audit: serde_json::Value = serde_json::from_str(&audit).expect("JSON");
    let entries = audit["entries"].as_array().expect("entries");
    let find =
        |action: &str| entries.iter().find(|e| e["action"] == action).unwrap_or_else(|| panic!("{action}: {audit}"));
    assert_eq!(find("config.reload")["user"], "api-token");
    assert_eq!(find("config.reload")["detail"]["message"], "new gateway: naïve");
    assert_eq!(find("config.rollback")["target"], "1");
    assert_eq!(find("config.rollback")["detail"]["version"], 3);
    assert_eq!(find("login.refused")["outcome"], "wrong bearer token");
    let state = lab.path("server-state");
    assert!(state.join("audit.log").exists() && state.join("config-history").is_dir(), "in the state directory");
    assert!(!lab.path("server.toml.last-good").exists(), "nothing beside the config file");
}

/// perfdhcp's sent and received counts per exchange: [DISCOVER-OFFER, REQUEST-ACK].
fn perfdhcp_counts(report: &str) -> [(u64, u64); 2] {
    let number = |line: &str| line.split(':').nth(1).and_then(|n| n.trim().parse::<u64>().ok()).expect("a count");
    let sent: Vec<u64> = report.lines().filter(|l| l.starts_with("sent packets:")).map(number).collect();
    let received: Vec<u64> = report.lines().filter(|l| l.starts_with("received packets:")).map(number).collect();
    assert!(sent.len() >= 2 && received.len() >= 2, "perfdhcp report:\n{report}");
    [(sent[0], received[0]), (sent[1], received[1])]
}

/// `name{labels} value` lines of a Prometheus exposition.
fn samples(exposition: &str) -> HashMap<String, f64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').and_then(|(k, v)| v.parse().ok().map(|v| (k.to_owned(), v))))
        .collect()
}

#[test]
fn metrics_equal_what_perfdhcp_counted() {
    if !lab::available() {
        return;
    }
    let mut lab = Lab::pair();
    lab.start_server_with(CONFIG, API);
    lab.client(0).ip(&["addr", "add", "10.199.0.2/16", "dev", "vcli"]);
    let out = lab.client(0).output(&[
        "timeout",
        "60",
        "perfdhcp",
        "-4",
        "-g",
        "single",
        "-l",
        "10.199.0.2",
        "-R",
        "300",
        "-n",
        "1500",
        "-r",
        "300",
        "-W",
        "2000000",
        "-b",
        "mac=02:cc:00:00:00:00",
        SERVER_ADDR,
    ]);
    let report = text(&out);
    let [(discovers, offers), (requests, acks)] = perfdhcp_counts(&report);
    assert!(acks > 1000, "perfdhcp ran: {report}");

    let metrics = samples(&ok(cli(&lab, &["show", "metrics"])));
    let value = |name: &str| metrics.get(name).copied().unwrap_or_else(|| panic!("no {name} in {metrics:?}")) as u64;
    assert_eq!(value("dhcp4_pkt4_discover_received_total"), discovers, "DISCOVERs perfdhcp sent");
    assert_eq!(value("dhcp4_pkt4_offer_sent_total"), offers, "OFFERs perfdhcp received");
    assert_eq!(value("dhcp4_pkt4_request_received_total"), requests, "REQUESTs perfdhcp sent");
    assert_eq!(value("dhcp4_pkt4_ack_sent_total"), acks, "ACKs perfdhcp received");
    assert_eq!(value("dhcp4_pkt4_received_total"), discovers + requests);

    let bound = lab.leases().into_iter().filter(|l| l.subnet == "1" && l.state == "bound").count() as u64;
    assert_eq!(value("dhcp4_assigned_addresses{subnet=\"1\"}"), bound, "assigned-addresses equals the stored leases");
    assert_eq!(bound, 300, "each of perfdhcp's 300 clients holds one lease");
}
