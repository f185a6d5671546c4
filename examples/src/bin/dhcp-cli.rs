//! `dhcp-cli`: look at and change a running server through its management API.
//!
//! ```text
//! dhcp-cli show groups | clients | mac [MAC] | leases [--subnet N] [--state S] [--mac M] | stats | metrics | ha
//! dhcp-cli entry set KEY FIELD=VALUE... | entry del KEY
//!
//! With hosts in Redis, `reservation add --mac M [--ip A] [--hostname H] [--description D]
//! [--group G]`, `reservation del`, `group set` and `group del` write the `mac:`, `client:` and
//! `group:` entries (no `--subnet` needed) instead of the config.
//! dhcp-cli reservation add --subnet N --mac MAC [--ip A] [--hostname H] [--description D] [--group G]
//! dhcp-cli reservation del MAC
//! dhcp-cli lease del ADDRESS
//! dhcp-cli group set NAME [--lease-time S] [--gateway A] [--dns A,B] [--domain D] [--ntp A]
//! dhcp-cli group del NAME
//! dhcp-cli config test FILE | reload | rollback [VERSION] | history | show VERSION | diff FROM TO
//! dhcp-cli audit [--limit N]
//! dhcp-cli user list | set NAME --role viewer|editor|admin (password on stdin) | del NAME
//! dhcp-cli user token NAME [--role R] | revoke NAME ID
//! (any change takes `--message WHY`, kept in the config history and the audit log)
//! dhcp-cli show ha | ha partner-down | ha maintenance start|stop | ha sync
//! ```
//!
//! The API is at `--url` (or `DHCP_API_URL`, default `http://127.0.0.1:8067`) with the token
//! `--token` (or `DHCP_API_TOKEN`); an https:// API's certificate is checked against `--ca`
//! (or `DHCP_API_CA`). Tables for people; `--json` prints the API's answer for
//! scripts. Exit status: 0 done, 1 the server refused (the message says why), 2 the server
//! could not be reached, the token was refused, or the command line is wrong.
//!
//! With hosts kept in Redis (`host-source = "store"`), `show groups`, `show clients` and `show
//! mac` print the store's `group:`, `client:` and `mac:` entries as the Go Redis DHCP server's
//! CLI does (`show mac` without a MAC lists every one, with its last-seen time), and `entry`
//! writes them in the same schema. Otherwise they show the config's groups and reservations.
//!
//! The calls, the bodies and the tables are `dhcp_server::api`; this is the command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dhcp_server::api::model::{
    Group as GroupBody, LeaseFilter, Reservation as ReservationBody, StoreEntryList, normal_id,
};
use dhcp_server::api::{AdminClient, ClientError, report};
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(version, about = "Manage a running dhcp-server through its API")]
struct Args {
    /// The management API's address.
    #[arg(long, env = "DHCP_API_URL", default_value = "http://127.0.0.1:8067", global = true)]
    url: String,
    /// The API's bearer token.
    #[arg(long, env = "DHCP_API_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// For an https:// API: the CA certificate (PEM) its certificate is checked against.
    #[arg(long, env = "DHCP_API_CA", global = true)]
    ca: Option<std::path::PathBuf>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Why: kept with the change in the config history and the audit log.
    #[arg(long, short = 'm', global = true)]
    message: Option<String>,
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
    /// Test a config file, reload the server's, list its history, or roll it back to a version.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Users of the API and the portal, their roles and their API tokens.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Show the last lines of the audit log: every change, with the user.
    Audit {
        /// How many lines.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// High availability: act on this server of a pair.
    Ha {
        #[command(subcommand)]
        action: HaAction,
    },
    /// Write or delete a host or group entry kept in the store (`mac:...`, `client:...`,
    /// `group:...`), in the Go Redis DHCP server's schema.
    Entry {
        #[command(subcommand)]
        action: EntryAction,
    },
}

#[derive(Debug, Subcommand)]
enum EntryAction {
    /// Write KEY with exactly these fields (what it held before goes).
    Set {
        /// `mac:aa:bb:cc:dd:ee:ff`, `client:ID` or `group:NAME`.
        key: String,
        /// `FIELD=VALUE`, such as `ip=172.17.7.5` or `lease-time=24h`.
        #[arg(required = true)]
        fields: Vec<String>,
    },
    /// Delete KEY.
    Del {
        /// The key.
        key: String,
    },
}

#[derive(Debug, Subcommand)]
enum HaAction {
    /// Take the partner's clients, and the whole pool, over now (the partner is known down).
    PartnerDown,
    /// Stop answering while the partner answers everyone (`start`), or take the part back.
    Maintenance {
        /// `start` or `stop`.
        #[arg(value_parser = ["start", "stop"])]
        action: String,
    },
    /// Fetch the partner's leases now.
    Sync,
}

#[derive(Debug, Subcommand)]
enum Show {
    /// Every group with its options.
    Groups,
    /// Every reserved client, with when it was last seen.
    Clients,
    /// One client by MAC: its address, last-seen time, description and group; with hosts in
    /// the store, every MAC when none is given.
    Mac {
        /// The MAC address.
        mac: Option<String>,
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
    /// High-availability state of this server and its partner.
    Ha,
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
    /// Reserve an address (or options) for a client: in the config, or, with hosts in Redis, as
    /// its `mac:` (or `client:`) entry.
    Add {
        /// The subnet id (for a reservation in the config).
        #[arg(long)]
        subnet: Option<u32>,
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
    /// Put a version of the config history back into the server's config file and apply it
    /// (validated first); without VERSION, the newest (the last config applied).
    Rollback {
        /// The version, as `config history` lists it.
        version: Option<u64>,
    },
    /// List every config the server applied: version, time, user, source and message.
    History,
    /// Print one version of the config history (secrets shown as ***).
    Show {
        /// The version.
        version: u64,
    },
    /// Show what changed between two versions, as a unified diff.
    Diff {
        /// The older version.
        from: u64,
        /// The newer version.
        to: u64,
    },
}

#[derive(Debug, Subcommand)]
enum UserAction {
    /// List the users, their roles and their tokens' ids.
    List,
    /// Add a user, or change its role; the password is read from standard input (a new user
    /// needs one; an empty line keeps the old one).
    Set {
        /// The name (a-z, 0-9, '.', '_', '-').
        name: String,
        /// viewer, editor or admin.
        #[arg(long)]
        role: String,
    },
    /// Delete a user, its tokens and its sessions.
    Del {
        /// The name.
        name: String,
    },
    /// Make an API token for a user (printed once: keep it).
    Token {
        /// The name.
        name: String,
        /// What the token may do, at most the user's role (default: the user's).
        #[arg(long)]
        role: Option<String>,
    },
    /// Revoke one of a user's API tokens.
    Revoke {
        /// The name.
        name: String,
        /// The token's id, as `user list` shows it.
        id: String,
    },
}

/// One line of standard input, without its line end: a password, never on the command line.
fn password_from_stdin() -> Result<Option<String>, Failure> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| Failure::Usage(format!("reading the password: {e}")))?;
    let line = line.trim_end_matches(['\r', '\n']).to_owned();
    Ok((!line.is_empty()).then_some(line))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Some(token) = args.token.clone() else {
        eprintln!("dhcp-cli: no API token: pass --token or set DHCP_API_TOKEN");
        return ExitCode::from(2);
    };
    let client = match &args.ca {
        None => AdminClient::new(&args.url, &token),
        Some(ca) => match AdminClient::with_ca(&args.url, &token, ca) {
            Ok(client) => client,
            Err(e) => {
                eprintln!("dhcp-cli: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let client = client.with_message(args.message.as_deref());
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

/// What a command printed: the API's answer as JSON with `--json`, else a table or one line.
enum Output {
    Table(report::Table),
    Line(String),
    Text(String),
}

fn run(client: &AdminClient, args: &Args) -> Result<(), Failure> {
    let json = args.json;
    // The answer as JSON for scripts, or `human` of it for people.
    fn answer<T: Serialize>(json: bool, value: T, human: impl FnOnce(&T) -> Output) -> Output {
        if json { Output::Text(serde_json::to_string_pretty(&value).unwrap_or_default()) } else { human(&value) }
    }
    let changed = |c: &_| Output::Line(report::changed(c));
    let output = match &args.command {
        Command::Show { what: Show::Groups } => match store_entries(client, "group")? {
            Some(list) => answer(json, list, |l| Output::Text(report::store_groups(&l.entries))),
            None => answer(json, client.groups()?, |g| Output::Table(report::groups(&g.groups))),
        },
        Command::Show { what: Show::Clients } => match store_entries(client, "client")? {
            Some(list) => answer(json, list, |l| Output::Text(report::store_clients(&l.entries))),
            None => answer(json, client.reservations()?, |r| Output::Table(report::clients(&r.reservations))),
        },
        Command::Show { what: Show::Mac { mac } } => {
            if let Some(mut list) = store_entries(client, "mac")? {
                if let Some(mac) = mac {
                    let key = format!("mac:{}", normal_id(mac));
                    list.entries.retain(|e| normal_id(&e.key) == normal_id(&key));
                }
                return print(answer(json, list, |l| Output::Text(report::store_macs(&l.entries))));
            }
            let Some(mac) = mac else {
                return Err(Failure::Usage("show mac needs a MAC: this server keeps its hosts in its config".into()));
            };
            let wanted = normal_id(mac);
            let reservations = client.reservations()?.reservations;
            let reservation =
                reservations.into_iter().find(|r| r.hw_address.as_deref().map(normal_id) == Some(wanted.clone()));
            let leases = client.leases(&LeaseFilter { mac: Some(mac.clone()), ..LeaseFilter::default() })?.leases;
            let card = report::client_card(&wanted, reservation.as_ref(), leases.first());
            answer(json, serde_json::json!({ "mac": wanted, "reservation": reservation, "leases": leases }), |_| {
                Output::Table(card)
            })
        }
        Command::Show { what: Show::Leases { subnet, state, mac } } => {
            let filter = LeaseFilter { subnet: *subnet, state: state.clone(), mac: mac.clone(), client: None };
            answer(json, client.leases(&filter)?, |l| Output::Table(report::leases(&l.leases)))
        }
        Command::Show { what: Show::Stats } => answer(json, client.stats()?, |s| Output::Table(report::stats(s))),
        Command::Show { what: Show::Metrics } => Output::Text(client.metrics_text()?),
        Command::Show { what: Show::Ha } => answer(json, client.ha_status()?, |h| Output::Table(report::ha(h))),
        Command::Ha { action: HaAction::Maintenance { action } } => {
            let on = action == "start";
            answer(json, client.ha_maintenance(on)?, |h| Output::Line(format!("ok: {} is {}", h.this_server, h.state)))
        }
        Command::Ha { action: HaAction::Sync } => answer(json, client.ha_sync()?, |h| {
            Output::Line(format!("ok: {} fetches its partner's leases", h.this_server))
        }),
        Command::Ha { action: HaAction::PartnerDown } => {
            answer(json, client.ha_partner_down()?, |h| Output::Line(format!("ok: {} is {}", h.this_server, h.state)))
        }
        Command::Reservation {
            action: Reservation::Add { subnet, mac, client_id, ip, hostname, description, group },
        } => {
            if hosts_in_store(client)? {
                let key = match (mac, client_id) {
                    (Some(mac), _) => format!("mac:{}", normal_id(mac)),
                    (None, Some(id)) => format!("client:{}", normal_id(id)),
                    (None, None) => return Err(Failure::Usage("give --mac or --client-id".into())),
                };
                let fields: std::collections::BTreeMap<String, String> =
                    [("ip", ip), ("hostname", hostname), ("description", description), ("group", group)]
                        .into_iter()
                        .filter_map(|(field, value)| Some((field.to_owned(), value.clone()?)))
                        .collect();
                return print(answer(json, client.put_store_entry(&key, &fields)?, |e| {
                    Output::Line(format!("ok: {} written", e.key))
                }));
            }
            let Some(subnet) = subnet else {
                return Err(Failure::Usage("--subnet is needed: this server keeps its hosts in its config".into()));
            };
            let body = ReservationBody {
                subnet: Some(i64::from(*subnet)),
                hw_address: mac.clone(),
                client_id: client_id.clone(),
                ip_address: ip.clone(),
                hostname: hostname.clone(),
                description: description.clone(),
                group: group.clone(),
                ..ReservationBody::default()
            };
            answer(json, client.add_reservation(&body)?, changed)
        }
        Command::Reservation { action: Reservation::Del { id } } => {
            if hosts_in_store(client)? {
                let id = normal_id(id);
                let kind = if dhcp_core::HwAddr::parse(&id).is_some() { "mac" } else { "client" };
                let key = format!("{kind}:{id}");
                return print(answer(json, client.delete_store_entry(&key)?, |_| {
                    Output::Line(format!("ok: {key} deleted"))
                }));
            }
            answer(json, client.delete_reservation(id)?, changed)
        }
        Command::Lease { action: LeaseAction::Del { address } } => {
            answer(json, client.delete_lease(address)?, |_| Output::Line("ok".to_owned()))
        }
        Command::Group { action: Group::Set { name, lease_time, gateway, dns, domain, ntp } } => {
            if hosts_in_store(client)? {
                // The Go server's `group:` fields, as its operators write them.
                let lease_time = lease_time.map(|t| t.to_string());
                let fields: std::collections::BTreeMap<String, String> =
                    [("lease-time", &lease_time), ("gateway", gateway), ("dns", dns), ("domain", domain), ("ntp", ntp)]
                        .into_iter()
                        .filter_map(|(field, value)| Some((field.to_owned(), value.clone()?)))
                        .collect();
                let key = format!("group:{name}");
                return print(answer(json, client.put_store_entry(&key, &fields)?, |e| {
                    Output::Line(format!("ok: {} written", e.key))
                }));
            }
            fn list(text: &Option<String>) -> Option<Vec<&str>> {
                text.as_deref().map(|t| t.split(',').map(str::trim).filter(|s| !s.is_empty()).collect())
            }
            let mut options = serde_json::Map::new();
            for (name, value) in [
                ("routers", list(gateway).map(serde_json::Value::from)),
                ("domain-name-servers", list(dns).map(serde_json::Value::from)),
                ("domain-name", domain.as_deref().map(serde_json::Value::from)),
                ("ntp-servers", list(ntp).map(serde_json::Value::from)),
            ] {
                if let Some(value) = value {
                    options.insert(name.to_owned(), value);
                }
            }
            let body = GroupBody { lease_time: *lease_time, options: Some(options), ..GroupBody::default() };
            answer(json, client.set_group(name, &body)?, changed)
        }
        Command::Group { action: Group::Del { name } } => {
            if hosts_in_store(client)? {
                let key = format!("group:{name}");
                return print(answer(json, client.delete_store_entry(&key)?, |_| {
                    Output::Line(format!("ok: {key} deleted"))
                }));
            }
            answer(json, client.delete_group(name)?, changed)
        }
        Command::Config { action: ConfigAction::Test { file } } => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", file.display())))?;
            answer(json, client.test_config(&text)?, |t| Output::Line(report::tested(t)))
        }
        Command::Config { action: ConfigAction::Reload } => answer(json, client.reload_config()?, changed),
        Command::Config { action: ConfigAction::Rollback { version: None } } => {
            answer(json, client.rollback_config()?, changed)
        }
        Command::Config { action: ConfigAction::Rollback { version: Some(version) } } => {
            answer(json, client.rollback_config_to(*version)?, changed)
        }
        Command::Config { action: ConfigAction::History } => {
            answer(json, client.config_history()?, |list| Output::Table(report::history(list)))
        }
        Command::Config { action: ConfigAction::Show { version } } => {
            answer(json, client.config_version(*version)?, |v| Output::Text(v.text.clone()))
        }
        Command::Config { action: ConfigAction::Diff { from, to } } => {
            answer(json, client.config_diff(*from, *to)?, |d| Output::Text(d.diff.clone()))
        }
        Command::User { action: UserAction::List } => {
            answer(json, client.users()?, |list| Output::Table(report::users(list)))
        }
        Command::User { action: UserAction::Set { name, role } } => {
            let password = password_from_stdin()?;
            answer(json, client.put_user(name, role, password.as_deref())?, |_| {
                Output::Line(format!("ok: {name} is {role}"))
            })
        }
        Command::User { action: UserAction::Del { name } } => {
            answer(json, client.delete_user(name)?, |_| Output::Line(format!("ok: {name} deleted")))
        }
        Command::User { action: UserAction::Token { name, role } } => {
            answer(json, client.issue_token(name, role.as_deref())?, |t| Output::Line(t.token.clone()))
        }
        Command::User { action: UserAction::Revoke { name, id } } => {
            answer(json, client.revoke_token(name, id)?, |_| Output::Line(format!("ok: {name}'s token {id} revoked")))
        }
        Command::Audit { limit } => answer(json, client.audit(*limit)?, |list| Output::Table(report::audit(list))),
        Command::Entry { action: EntryAction::Set { key, fields } } => {
            let mut map = std::collections::BTreeMap::new();
            for pair in fields {
                let Some((field, value)) = pair.split_once('=') else {
                    return Err(Failure::Usage(format!("{pair:?}: give fields as FIELD=VALUE")));
                };
                map.insert(field.trim().to_owned(), value.to_owned());
            }
            answer(json, client.put_store_entry(key, &map)?, |e| Output::Line(format!("ok: {} written", e.key)))
        }
        Command::Entry { action: EntryAction::Del { key } } => {
            answer(json, client.delete_store_entry(key)?, |_| Output::Line(format!("ok: {key} deleted")))
        }
    };
    print(output)
}

/// The store's entries of `kind`, or `None` where the server keeps its hosts in its config (it
/// answers 409) or predates the store's entries (404).
fn store_entries(client: &AdminClient, kind: &str) -> Result<Option<StoreEntryList>, Failure> {
    match client.store_entries(kind) {
        Ok(list) => Ok(Some(list)),
        Err(ClientError::Api { status: 404 | 409, .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether the server keeps its hosts and groups in Redis (`host-source = "store"`), where
/// `reservation` and `group` then write them.
fn hosts_in_store(client: &AdminClient) -> Result<bool, Failure> {
    Ok(store_entries(client, "group")?.is_some())
}

fn print(output: Output) -> Result<(), Failure> {
    // A closed pipe (`| head`) ends the output quietly.
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = match output {
        Output::Table(table) => table.write_to(&mut out),
        Output::Line(line) => writeln!(out, "{line}"),
        Output::Text(text) => {
            write!(out, "{text}").and_then(|()| if text.ends_with('\n') { Ok(()) } else { writeln!(out) })
        }
    };
    Ok(())
}
