//! `dhcp-cli`: look at and change a running server through its management API.
//!
//! ```text
//! dhcp-cli show groups | clients | mac MAC | leases [--subnet N] [--state S] [--mac M] | stats | metrics
//! dhcp-cli reservation add --subnet N --mac MAC [--ip A] [--hostname H] [--description D] [--group G]
//! dhcp-cli reservation del MAC
//! dhcp-cli lease del ADDRESS
//! dhcp-cli group set NAME [--lease-time S] [--gateway A] [--dns A,B] [--domain D] [--ntp A]
//! dhcp-cli group del NAME
//! dhcp-cli config test FILE | reload | rollback
//! ```
//!
//! The API is at `--url` (or `DHCP_API_URL`, default `http://127.0.0.1:8067`) with the token
//! `--token` (or `DHCP_API_TOKEN`). Tables for people; `--json` prints the API's answer for
//! scripts. Exit status: 0 done, 1 the server refused (the message says why), 2 the server
//! could not be reached, the token was refused, or the command line is wrong.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dhcp_net::admin::{AdminClient, ClientError};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(version, about = "Manage a running dhcp-server through its API")]
struct Args {
    /// The management API's address.
    #[arg(long, env = "DHCP_API_URL", default_value = "http://127.0.0.1:8067", global = true)]
    url: String,
    /// The API's bearer token.
    #[arg(long, env = "DHCP_API_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show groups, clients (reservations), one MAC, leases or statistics.
    Show {
        #[command(subcommand)]
        what: Show,
    },
    /// Delete a lease (the address is free at once).
    Lease {
        #[command(subcommand)]
        action: LeaseAction,
    },
    /// Add or delete a reservation.
    Reservation {
        #[command(subcommand)]
        action: Reservation,
    },
    /// Set or delete a group of options.
    Group {
        #[command(subcommand)]
        action: Group,
    },
    /// Test a config file, reload the server's, or roll it back to the last good one.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Debug, Subcommand)]
enum Show {
    /// Every group with its options.
    Groups,
    /// Every reserved client, with when it was last seen.
    Clients,
    /// One client by MAC: its address, last-seen time, description and group.
    Mac {
        /// The MAC address.
        mac: String,
    },
    /// Leases, optionally filtered.
    Leases {
        /// Only this subnet id.
        #[arg(long)]
        subnet: Option<u32>,
        /// Only this state: offered, bound, declined, released or expired.
        #[arg(long)]
        state: Option<String>,
        /// Only this MAC.
        #[arg(long)]
        mac: Option<String>,
    },
    /// Statistics, by Kea's names.
    Stats,
    /// The Prometheus exposition, as a scraper sees it.
    Metrics,
}

#[derive(Debug, Subcommand)]
enum LeaseAction {
    /// Delete the lease of an address.
    Del {
        /// The address.
        address: String,
    },
}

#[derive(Debug, Subcommand)]
enum Reservation {
    /// Reserve an address (or options) for a client.
    Add {
        /// The subnet id.
        #[arg(long)]
        subnet: u32,
        /// The client's MAC.
        #[arg(long, required_unless_present = "client_id")]
        mac: Option<String>,
        /// The client identifier (option 61), as in the config.
        #[arg(long)]
        client_id: Option<String>,
        /// The reserved address.
        #[arg(long)]
        ip: Option<String>,
        /// The host name given to the client.
        #[arg(long)]
        hostname: Option<String>,
        /// Free text for people.
        #[arg(long)]
        description: Option<String>,
        /// The client's group.
        #[arg(long)]
        group: Option<String>,
    },
    /// Delete the reservation of a MAC or client identifier.
    Del {
        /// The MAC or client identifier.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum Group {
    /// Create or replace a group.
    Set {
        /// The group's name.
        name: String,
        /// Lease time for its members, in seconds.
        #[arg(long)]
        lease_time: Option<u32>,
        /// Routers (option 3), comma-separated.
        #[arg(long)]
        gateway: Option<String>,
        /// DNS servers (option 6), comma-separated.
        #[arg(long)]
        dns: Option<String>,
        /// Domain name (option 15).
        #[arg(long)]
        domain: Option<String>,
        /// NTP servers (option 42), comma-separated.
        #[arg(long)]
        ntp: Option<String>,
    },
    /// Delete a group.
    Del {
        /// The group's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Validate a config file with the server's rules, changing nothing.
    Test {
        /// The file.
        file: std::path::PathBuf,
    },
    /// Make the server read its config file again (refused, and nothing changes, if invalid).
    Reload,
    /// Put the last good config back into the server's config file and apply it.
    Rollback,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Some(token) = args.token.clone() else {
        eprintln!("dhcp-cli: no API token: pass --token or set DHCP_API_TOKEN");
        return ExitCode::from(2);
    };
    let client = AdminClient::new(&args.url, &token);
    match run(&client, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Client(e)) => {
            eprintln!("dhcp-cli: {e}");
            match e {
                ClientError::Api { .. } => ExitCode::from(1),
                _ => ExitCode::from(2),
            }
        }
        Err(Failure::Usage(message)) => {
            eprintln!("dhcp-cli: {message}");
            ExitCode::from(2)
        }
    }
}

enum Failure {
    Client(ClientError),
    Usage(String),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::Client(e)
    }
}

fn run(client: &AdminClient, args: &Args) -> Result<(), Failure> {
    let answer = match &args.command {
        Command::Show { what } => show(client, what, args.json)?,
        Command::Reservation {
            action: Reservation::Add { subnet, mac, client_id, ip, hostname, description, group },
        } => {
            let mut body = json!({ "subnet": subnet });
            for (key, value) in [
                ("hw-address", mac),
                ("client-id", client_id),
                ("ip-address", ip),
                ("hostname", hostname),
                ("description", description),
                ("group", group),
            ] {
                if let Some(v) = value {
                    body[key] = json!(v);
                }
            }
            client.post_json("/api/v1/reservations", &body)?
        }
        Command::Lease { action: LeaseAction::Del { address } } => {
            client.delete(&format!("/api/v1/leases/{}", encode(address)))?
        }
        Command::Reservation { action: Reservation::Del { id } } => {
            client.delete(&format!("/api/v1/reservations/{}", encode(id)))?
        }
        Command::Group { action: Group::Set { name, lease_time, gateway, dns, domain, ntp } } => {
            fn list(text: &Option<String>) -> Option<Vec<String>> {
                text.as_deref()
                    .map(|t| t.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
            }
            let mut options = serde_json::Map::new();
            if let Some(v) = list(gateway) {
                options.insert("routers".into(), json!(v));
            }
            if let Some(v) = list(dns) {
                options.insert("domain-name-servers".into(), json!(v));
            }
            if let Some(v) = domain {
                options.insert("domain-name".into(), json!(v));
            }
            if let Some(v) = list(ntp) {
                options.insert("ntp-servers".into(), json!(v));
            }
            let mut body = json!({ "options": options });
            if let Some(t) = lease_time {
                body["lease-time"] = json!(t);
            }
            client.put_json(&format!("/api/v1/groups/{}", encode(name)), &body)?
        }
        Command::Group { action: Group::Del { name } } => client.delete(&format!("/api/v1/groups/{}", encode(name)))?,
        Command::Config { action: ConfigAction::Test { file } } => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", file.display())))?;
            client.post_text("/api/v1/config/test", &text)?
        }
        Command::Config { action: ConfigAction::Reload } => client.post_text("/api/v1/config/reload", "")?,
        Command::Config { action: ConfigAction::Rollback } => client.post_text("/api/v1/config/rollback", "")?,
    };
    match (&args.command, args.json) {
        (Command::Show { .. }, false) => {}
        (_, true) => println!("{answer:#}"),
        (_, false) => println!("{}", summary(&answer)),
    }
    Ok(())
}

/// One line for a change the server made.
fn summary(answer: &Value) -> String {
    if let Some(applied) = answer.get("applied") {
        let mut line =
            format!("ok: config applied ({} subnets, {} reservations)", applied["subnets"], applied["reservations"]);
        if let Some(list) = applied["restart-needed"].as_array().filter(|l| !l.is_empty()) {
            let names: Vec<String> = list.iter().filter_map(Value::as_str).map(|s| format!("server.{s}")).collect();
            line.push_str(&format!("; restart needed for {}", names.join(", ")));
        }
        line
    } else if answer.get("valid").is_some() {
        format!("ok: the config is valid ({} subnets)", answer["subnets"])
    } else {
        "ok".to_owned()
    }
}

/// Percent-encodes a path segment.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b':' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn show(client: &AdminClient, what: &Show, json_out: bool) -> Result<Value, Failure> {
    let answer = match what {
        Show::Groups => client.get("/api/v1/groups")?,
        Show::Clients => client.get("/api/v1/reservations")?,
        Show::Mac { mac } => {
            let reservations = client.get("/api/v1/reservations")?;
            let leases = client.get(&format!("/api/v1/leases?mac={}", encode(mac)))?;
            let wanted = mac.to_ascii_lowercase().replace('-', ":");
            let reservation = reservations["reservations"]
                .as_array()
                .and_then(|l| {
                    l.iter().find(|r| {
                        r["hw-address"].as_str().is_some_and(|m| m.to_ascii_lowercase().replace('-', ":") == wanted)
                    })
                })
                .cloned();
            json!({ "mac": wanted, "reservation": reservation, "leases": leases["leases"] })
        }
        Show::Leases { subnet, state, mac } => {
            let mut query = Vec::new();
            if let Some(s) = subnet {
                query.push(format!("subnet={s}"));
            }
            if let Some(s) = state {
                query.push(format!("state={}", encode(s)));
            }
            if let Some(m) = mac {
                query.push(format!("mac={}", encode(m)));
            }
            let path = if query.is_empty() {
                "/api/v1/leases".to_owned()
            } else {
                format!("/api/v1/leases?{}", query.join("&"))
            };
            client.get(&path)?
        }
        Show::Stats => client.get("/api/v1/stats")?,
        Show::Metrics => client.get("/metrics")?,
    };
    if let (Show::Metrics, Value::String(text)) = (what, &answer) {
        print!("{text}");
        return Ok(answer);
    }
    if json_out {
        return Ok(answer);
    }
    let text = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).unwrap_or_else(|| i.to_string()))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = match what {
        Show::Groups => {
            let mut rows = vec![
                vec!["GROUP", "LEASE-TIME", "GATEWAY", "DNS", "DOMAIN", "NTP"].into_iter().map(String::from).collect(),
            ];
            for g in answer["groups"].as_array().into_iter().flatten() {
                let o = &g["options"];
                rows.push(vec![
                    text(&g["name"]),
                    text(&g["lease-time"]),
                    text(&o["routers"]),
                    text(&o["domain-name-servers"]),
                    text(&o["domain-name"]),
                    text(&o["ntp-servers"]),
                ]);
            }
            rows
        }
        Show::Clients => {
            let mut rows = vec![
                vec!["MAC", "IP", "HOSTNAME", "GROUP", "LAST-SEEN", "DESCRIPTION"]
                    .into_iter()
                    .map(String::from)
                    .collect(),
            ];
            for r in answer["reservations"].as_array().into_iter().flatten() {
                let who = if r["hw-address"].is_null() { &r["client-id"] } else { &r["hw-address"] };
                rows.push(vec![
                    text(who),
                    text(&r["ip-address"]),
                    text(&r["hostname"]),
                    text(&r["group"]),
                    time(&r["last-seen"]),
                    text(&r["description"]),
                ]);
            }
            rows
        }
        Show::Mac { .. } => {
            let r = &answer["reservation"];
            let lease = answer["leases"].as_array().and_then(|l| l.first()).cloned().unwrap_or(Value::Null);
            let address = if r["ip-address"].is_null() { &lease["address"] } else { &r["ip-address"] };
            let seen = if lease["last-seen"].is_null() { &r["last-seen"] } else { &lease["last-seen"] };
            vec![
                vec!["MAC".into(), text(&answer["mac"])],
                vec!["ADDRESS".into(), text(address)],
                vec!["LEASE".into(), format!("{} until {}", text(&lease["state"]), time(&lease["deadline"]))],
                vec!["LAST-SEEN".into(), time(seen)],
                vec![
                    "HOSTNAME".into(),
                    text(if r["hostname"].is_null() { &lease["hostname"] } else { &r["hostname"] }),
                ],
                vec!["DESCRIPTION".into(), text(&r["description"])],
                vec!["GROUP".into(), text(&r["group"])],
            ]
        }
        Show::Leases { .. } => {
            let mut rows = vec![
                vec!["ADDRESS", "MAC", "STATE", "UNTIL", "SUBNET", "HOSTNAME", "LAST-SEEN"]
                    .into_iter()
                    .map(String::from)
                    .collect(),
            ];
            for l in answer["leases"].as_array().into_iter().flatten() {
                rows.push(vec![
                    text(&l["address"]),
                    text(&l["hw-address"]),
                    text(&l["state"]),
                    time(&l["deadline"]),
                    text(&l["subnet"]),
                    text(&l["hostname"]),
                    time(&l["last-seen"]),
                ]);
            }
            rows
        }
        Show::Metrics => Vec::new(),
        Show::Stats => {
            let mut rows = vec![vec!["STATISTIC".to_owned(), "VALUE".to_owned()]];
            for (k, v) in answer.as_object().into_iter().flatten() {
                rows.push(vec![k.clone(), text(v)]);
            }
            rows
        }
    };
    print_table(&rows);
    Ok(answer)
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC); `-` for none.
fn time(value: &Value) -> String {
    let Some(secs) = value.as_u64() else { return "-".to_owned() };
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Prints aligned columns; a closed pipe (`| head`) ends the output quietly.
fn print_table(rows: &[Vec<String>]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        if writeln!(out, "{}", line.join("  ").trim_end()).is_err() {
            return;
        }
    }
}
