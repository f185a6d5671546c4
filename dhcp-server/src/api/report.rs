//! The API's answers as tables for people: what `dhcp-cli` prints, kept beside the model so
//! that any front end shows the same columns.

use std::io::{self, Write};

use serde_json::{Map, Value};

use super::model::{
    AuditList, Changed, ConfigHistoryList, ConfigTested, Group, HaStatus, LeaseInfo, Reservation, StatsMap, StoreEntry,
    UserList,
};

/// Rows of cells; the first row is the header (or, for a card, every row is a label and value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// The rows.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    fn with_header(header: &[&str]) -> Table {
        Table { rows: vec![header.iter().map(|h| (*h).to_owned()).collect()] }
    }

    /// Writes aligned columns, two spaces apart, without trailing blanks.
    pub fn write_to(&self, mut out: impl Write) -> io::Result<()> {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| self.rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
            .collect();
        for row in &self.rows {
            let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
            writeln!(out, "{}", line.join("  ").trim_end())?;
        }
        Ok(())
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC); `-` for none.
pub fn unix_time(secs: Option<u64>) -> String {
    let Some(secs) = secs else { return "-".to_owned() };
    let ((year, month, day), rem) = (crate::clock::civil_from_days(secs / 86_400), secs % 86_400);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The store's groups as the Go server's `dhcp-cli show groups` prints them: each key, then
/// its fields as `  FIELD = VALUE`, then a blank line.
pub fn store_groups(entries: &[StoreEntry]) -> String {
    let mut out = String::from("DHCP groups:\n\n");
    for entry in entries {
        out.push_str(&entry.key);
        out.push('\n');
        for (field, value) in &entry.fields {
            out.push_str(&format!("  {field} = {value}\n"));
        }
        out.push('\n');
    }
    out
}

/// The store's `client:` entries as the Go server's `dhcp-cli show clients` prints them.
pub fn store_clients(entries: &[StoreEntry]) -> String {
    let mut out = String::from("DHCP Clients:\n\n");
    for entry in entries {
        out.push_str(&entry.key);
        out.push('\n');
        for (field, value) in &entry.fields {
            out.push_str(&format!("  {field} = {value}\n"));
        }
    }
    out
}

/// The store's `mac:` entries as the Go server's `dhcp-cli show mac` prints them, a line each:
/// the key, the address, `*` for an address its dynamic pool gave, the last-seen time (`ts`,
/// UTC), the description and the group in brackets.
pub fn store_macs(entries: &[StoreEntry]) -> String {
    let mut out = String::from("DHCP by Ethernet address:\n\n");
    for entry in entries {
        let field = |name: &str| entry.fields.get(name).map(String::as_str).filter(|v| !v.is_empty());
        let mut line = format!("  {}  {:<16}", entry.key, field("ip").unwrap_or(""));
        line.push_str(if field("dynamic") == Some("1") { "* " } else { "  " });
        match field("ts").and_then(|ts| ts.trim().parse::<u64>().ok()) {
            Some(ts) => line.push_str(&format!("  {}", unix_time(Some(ts)))),
            None => line.push_str(&" ".repeat(21)),
        }
        if let Some(description) = field("description") {
            line.push_str(&format!("  {description}"));
        }
        if let Some(group) = field("group") {
            line.push_str(&format!("  (group:{group})"));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A cell: `-` for nothing.
fn cell(text: Option<&str>) -> String {
    text.unwrap_or("-").to_owned()
}

/// An option's value as a cell: lists comma-separated.
fn option_cell(options: Option<&Map<String, Value>>, name: &str) -> String {
    match options.and_then(|o| o.get(name)) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).unwrap_or_else(|| i.to_string()))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

/// `dhcp-cli show leases`.
pub fn leases(leases: &[LeaseInfo]) -> Table {
    let mut table = Table::with_header(&["ADDRESS", "MAC", "STATE", "UNTIL", "SUBNET", "HOSTNAME", "LAST-SEEN"]);
    for l in leases {
        table.rows.push(vec![
            l.address.to_string(),
            l.hw_address.clone(),
            l.state.clone(),
            unix_time(l.deadline),
            l.subnet.to_string(),
            cell(l.hostname.as_deref()),
            unix_time(l.last_seen),
        ]);
    }
    table
}

/// `dhcp-cli show groups`: the options the Go server's groups carry.
pub fn groups(groups: &[Group]) -> Table {
    let mut table = Table::with_header(&["GROUP", "LEASE-TIME", "GATEWAY", "DNS", "DOMAIN", "NTP"]);
    for g in groups {
        let options = g.options.as_ref();
        table.rows.push(vec![
            cell(g.name.as_deref()),
            g.lease_time.map_or_else(|| "-".to_owned(), |t| t.to_string()),
            option_cell(options, "routers"),
            option_cell(options, "domain-name-servers"),
            option_cell(options, "domain-name"),
            option_cell(options, "ntp-servers"),
        ]);
    }
    table
}

/// `dhcp-cli show clients`: every reserved client with when it was last seen.
pub fn clients(reservations: &[Reservation]) -> Table {
    let mut table = Table::with_header(&["MAC", "IP", "HOSTNAME", "GROUP", "LAST-SEEN", "DESCRIPTION"]);
    for r in reservations {
        table.rows.push(vec![
            cell(r.who()),
            cell(r.ip_address.as_deref()),
            cell(r.hostname.as_deref()),
            cell(r.group.as_deref()),
            unix_time(r.last_seen),
            cell(r.description.as_deref()),
        ]);
    }
    table
}

/// `dhcp-cli show mac`: one client's reservation and lease on one card.
pub fn client_card(mac: &str, reservation: Option<&Reservation>, lease: Option<&LeaseInfo>) -> Table {
    let reserved = |f: fn(&Reservation) -> Option<&str>| reservation.and_then(f);
    let address = reserved(|r| r.ip_address.as_deref()).map(str::to_owned).or(lease.map(|l| l.address.to_string()));
    let seen = lease.and_then(|l| l.last_seen).or(reservation.and_then(|r| r.last_seen));
    let hostname = reserved(|r| r.hostname.as_deref()).or(lease.and_then(|l| l.hostname.as_deref()));
    let rows = [
        ("MAC", mac.to_owned()),
        ("ADDRESS", cell(address.as_deref())),
        (
            "LEASE",
            format!("{} until {}", cell(lease.map(|l| l.state.as_str())), unix_time(lease.and_then(|l| l.deadline))),
        ),
        ("LAST-SEEN", unix_time(seen)),
        ("HOSTNAME", cell(hostname)),
        ("DESCRIPTION", cell(reserved(|r| r.description.as_deref()))),
        ("GROUP", cell(reserved(|r| r.group.as_deref()))),
    ];
    Table { rows: rows.into_iter().map(|(label, value)| vec![label.to_owned(), value]).collect() }
}

/// `dhcp-cli show stats`.
pub fn stats(stats: &StatsMap) -> Table {
    let mut table = Table::with_header(&["STATISTIC", "VALUE"]);
    table.rows.extend(stats.iter().map(|(k, v)| vec![k.clone(), v.to_string()]));
    table
}

/// `dhcp-cli show ha`: this server's state and its partner's, on one card.
pub fn ha(status: &HaStatus) -> Table {
    let partner = status.partner.as_ref();
    let ms = |ms: Option<u64>| ms.map_or_else(|| "never".to_owned(), |ms| format!("{:.1} s ago", ms as f64 / 1000.0));
    let rows = [
        ("SERVER", format!("{} ({}, {})", status.this_server, status.role, status.mode)),
        ("STATE", status.state.clone()),
        ("PARTNER", partner.map_or_else(|| "-".to_owned(), |p| format!("{} ({}) at {}", p.name, p.role, p.url))),
        ("PARTNER-STATE", cell(partner.and_then(|p| p.state.as_deref()))),
        ("LAST-CONTACT", partner.map_or_else(|| "-".to_owned(), |p| ms(p.last_contact_ms))),
        ("UNACKED-CLIENTS", status.unacked_clients.to_string()),
        ("NOT-IN-SCOPE", status.not_in_scope.to_string()),
        ("POOLS", if status.pools_differ { "DIFFER from the partner's".to_owned() } else { "same".to_owned() }),
    ];
    Table { rows: rows.into_iter().map(|(label, value)| vec![label.to_owned(), value]).collect() }
}

/// One line for a change the server applied.
pub fn changed(changed: &Changed) -> String {
    let applied = &changed.applied;
    let mut line = format!("ok: config applied ({} subnets, {} reservations)", applied.subnets, applied.reservations);
    if let Some(version) = applied.version {
        line.push_str(&format!(", version {version}"));
    }
    if !applied.restart_needed.is_empty() {
        let names: Vec<String> = applied.restart_needed.iter().map(|s| format!("server.{s}")).collect();
        line.push_str(&format!("; restart needed for {}", names.join(", ")));
    }
    line
}

/// `dhcp-cli config history`: every version, newest first.
pub fn history(list: &ConfigHistoryList) -> Table {
    let mut table = Table::with_header(&["VERSION", "TIME", "USER", "SOURCE", "MESSAGE"]);
    for v in &list.versions {
        let source = serde_json::to_value(v.source).ok().and_then(|s| s.as_str().map(str::to_owned));
        let mut message = v.message.clone().unwrap_or_default();
        if let Some(restored) = v.restores {
            message = format!("(restores {restored}) {message}").trim_end().to_owned();
        }
        table.rows.push(vec![
            v.version.to_string(),
            unix_time(Some(v.at)),
            v.user.clone(),
            source.unwrap_or_default(),
            message,
        ]);
    }
    table
}

/// `dhcp-cli user list`: every user, its role and its tokens' ids.
pub fn users(list: &UserList) -> Table {
    let mut table = Table::with_header(&["USER", "ROLE", "TOKENS"]);
    for u in &list.users {
        let tokens: Vec<String> = u.tokens.iter().map(|t| format!("{} ({})", t.id, t.role.as_str())).collect();
        table.rows.push(vec![
            u.name.clone(),
            u.role.as_str().to_owned(),
            cell(Some(tokens.join(", ").as_str()).filter(|t| !t.is_empty())),
        ]);
    }
    table
}

/// `dhcp-cli audit`: the audit log's last lines, oldest first.
pub fn audit(list: &AuditList) -> Table {
    let mut table = Table::with_header(&["TIME", "USER", "ACTION", "TARGET", "OUTCOME"]);
    for e in &list.entries {
        table.rows.push(vec![
            e.time.clone(),
            e.user.clone(),
            e.action.clone(),
            cell(Some(e.target.as_str()).filter(|t| !t.is_empty())),
            e.outcome.clone(),
        ]);
    }
    table
}

/// One line for a config that passed the server's test.
pub fn tested(tested: &ConfigTested) -> String {
    format!("ok: the config is valid ({} subnets)", tested.subnets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::AppliedInfo;

    #[test]
    fn times_are_utc_calendar_dates() {
        assert_eq!(unix_time(Some(0)), "1970-01-01 00:00:00");
        assert_eq!(unix_time(Some(951_782_400)), "2000-02-29 00:00:00");
        assert_eq!(unix_time(Some(1_798_761_599)), "2026-12-31 23:59:59");
        assert_eq!(unix_time(None), "-");
    }

    #[test]
    fn tables_align_and_summaries_name_restarts() {
        let table = Table { rows: vec![vec!["A".into(), "BB".into()], vec!["ccc".into(), "d".into()]] };
        let mut out = Vec::new();
        table.write_to(&mut out).expect("written");
        assert_eq!(String::from_utf8(out).expect("utf-8"), "A    BB\nccc  d\n");
        let change = Changed {
            applied: AppliedInfo {
                subnets: 2,
                reservations: 1,
                restart_needed: vec!["listen".into()],
                version: Some(3),
            },
        };
        assert_eq!(
            changed(&change),
            "ok: config applied (2 subnets, 1 reservations), version 3; restart needed for server.listen"
        );
    }
}
