//! Reservations as CSV, the format spreadsheets produce: exported with a header row, and
//! imported with a preview of every row (added, changed, the same, or refused and why) before
//! anything is applied; a file with any refused row applies nothing.
//!
//! Columns by header name, in any order and any case: `subnet`, `hw-address` (or `mac`),
//! `client-id`, `ip-address` (or `ip`), `hostname`, `description`, `group`. A byte order mark,
//! CRLF line ends, quoted fields and blank lines are taken as spreadsheets write them.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dhcp_core::LeaseStore;
use maud::html;
use serde_json::{Map, Value};

use super::hosts::{Fields, RESERVATION_FIELDS, error_text, reservation_body};
use super::page::{ROOT, Refused, Viewer, answer, csrf_field, page, require, require_form};
use crate::api::admin::{Admin, control};
use crate::api::edit;
use crate::api::model::{Reservation, normal_id};
use crate::history::Source;
use crate::users::Role;

/// The most rows one import takes.
const MAX_ROWS: usize = 50_000;

/// The columns written, in order.
const COLUMNS: [&str; 7] = ["subnet", "hw-address", "client-id", "ip-address", "hostname", "description", "group"];

/// `GET /portal/reservations.csv`.
pub(crate) async fn export<S: LeaseStore + 'static>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let viewer = require(&admin, &headers, Role::Viewer)?;
    let text = control(&admin).map(|c| c.running_text()).unwrap_or_default();
    let mut out = csv::Writer::from_writer(Vec::new());
    let _ = out.write_record(COLUMNS);
    for r in edit::reservations(&text).unwrap_or_default() {
        let row = [
            r.subnet.map(|s| s.to_string()),
            r.hw_address,
            r.client_id,
            r.ip_address,
            r.hostname,
            r.description,
            r.group,
        ];
        let _ = out.write_record(row.iter().map(|v| v.as_deref().unwrap_or("")));
    }
    let bytes = out.into_inner().unwrap_or_default();
    admin.audit.record(&viewer.user, "reservations.export", "", "ok", Value::Null);
    let disposition = "attachment; filename=\"reservations.csv\"";
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8"), (header::CONTENT_DISPOSITION, disposition)], bytes)
        .into_response())
}

/// What importing one row would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Add,
    Change,
    Same,
    Refused(String),
}

/// A parsed row: its line in the file, its fields, and what it would do.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) line: u64,
    pub(crate) fields: Fields,
    pub(crate) change: Verdict,
}

/// A column's header as one of [`COLUMNS`].
fn column(header: &str) -> Option<&'static str> {
    let h = header.trim().trim_start_matches('\u{feff}').to_ascii_lowercase().replace(['_', ' '], "-");
    match h.as_str() {
        "mac" | "mac-address" | "hw-address" | "hardware-address" => Some("hw-address"),
        "ip" | "ip-address" | "address" => Some("ip-address"),
        "host-name" | "hostname" => Some("hostname"),
        other => COLUMNS.iter().find(|c| **c == other).copied(),
    }
}

/// Reads `text` and judges every row against the running config `config`; the file-level
/// error (no header, an unknown column) when it cannot be read at all.
pub(crate) fn preview(text: &str, config: &str) -> Result<Vec<Row>, String> {
    let text = text.trim_start_matches('\u{feff}');
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| format!("the header row: {e}"))?.clone();
    let mut columns = Vec::new();
    for h in headers.iter() {
        match column(h) {
            Some(c) => columns.push(Some(c)),
            None if h.trim().is_empty() => columns.push(None),
            None => return Err(format!("unknown column {h:?}; known are {}", COLUMNS.join(", "))),
        }
    }
    if !columns.contains(&Some("hw-address")) && !columns.contains(&Some("client-id")) {
        return Err("a hw-address (or mac) or client-id column is needed".into());
    }
    let existing = edit::reservations(config).map_err(|e| e.to_string())?;
    let subnets = subnet_nets(config);
    let groups: HashSet<String> = edit::groups(config).unwrap_or_default().into_iter().filter_map(|g| g.name).collect();
    let by_id: HashMap<String, &Reservation> = existing
        .iter()
        .flat_map(|r| [&r.hw_address, &r.client_id].into_iter().flatten().map(move |id| (normal_id(id), r)))
        .collect();
    let mut seen_ids = HashSet::new();
    let mut seen_ips: HashMap<String, String> = HashMap::new();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| format!("the file: {e}"))?;
        if record.iter().all(str::is_empty) {
            continue;
        }
        if rows.len() >= MAX_ROWS {
            return Err(format!("more than {MAX_ROWS} rows: split the file"));
        }
        let line = record.position().map_or(0, |p| p.line());
        let mut fields = Fields::new();
        for (value, col) in record.iter().zip(&columns) {
            if let Some(col) = col.filter(|_| !value.is_empty()) {
                fields.insert(col.to_owned(), value.to_owned());
            }
        }
        let change = judge(&fields, &by_id, &subnets, &groups, &mut seen_ids, &mut seen_ips);
        rows.push(Row { line, fields, change });
    }
    Ok(rows)
}

/// Each subnet's id and network, from the running config.
fn subnet_nets(config: &str) -> HashMap<i64, ipnet::Ipv4Net> {
    let parsed: Option<toml::Table> = toml::from_str(config).ok();
    let subnets =
        parsed.as_ref().and_then(|t| t.get("subnets")).and_then(toml::Value::as_array).cloned().unwrap_or_default();
    subnets
        .iter()
        .filter_map(|s| Some((s.get("id")?.as_integer()?, s.get("subnet")?.as_str()?.parse().ok()?)))
        .collect()
}

/// What one row would do, or why it cannot.
fn judge(
    fields: &Fields,
    by_id: &HashMap<String, &Reservation>,
    subnets: &HashMap<i64, ipnet::Ipv4Net>,
    groups: &HashSet<String>,
    seen_ids: &mut HashSet<String>,
    seen_ips: &mut HashMap<String, String>,
) -> Verdict {
    let refuse = |field: &str, why: String| Verdict::Refused(format!("{field}: {why}"));
    let id = match (fields.get("hw-address"), fields.get("client-id")) {
        (Some(mac), _) => match dhcp_core::HwAddr::parse(mac) {
            Some(hw) => hw.to_string(),
            None => return refuse("hw-address", format!("{mac:?} is not a MAC address")),
        },
        (None, Some(id)) => normal_id(id),
        (None, None) => return refuse("hw-address", "a MAC address or a client id is needed".into()),
    };
    if !seen_ids.insert(id.clone()) {
        return refuse("hw-address", format!("{id} is in the file twice"));
    }
    let old = by_id.get(&id).copied();
    let subnet = match fields.get("subnet").map(|s| s.parse::<i64>()) {
        Some(Ok(s)) => s,
        Some(Err(_)) => return refuse("subnet", format!("{:?} is not a subnet id", fields.get("subnet"))),
        None => match old.and_then(|r| r.subnet) {
            Some(s) => s,
            None => return refuse("subnet", "needed for a new reservation".into()),
        },
    };
    let Some(net) = subnets.get(&subnet) else { return refuse("subnet", format!("no subnet with id {subnet}")) };
    if let Some(ip) = fields.get("ip-address") {
        let Ok(addr) = ip.parse::<Ipv4Addr>() else {
            return refuse("ip-address", format!("{ip:?} is not an IPv4 address"));
        };
        if !net.contains(&addr) {
            return refuse("ip-address", format!("{addr} is outside subnet {subnet} ({net})"));
        }
        if let Some(other) = seen_ips.insert(addr.to_string(), id.clone()) {
            return refuse("ip-address", format!("{addr} is also given to {other} in the file"));
        }
        let holder = by_id.values().find(|r| r.ip_address.as_deref() == Some(ip.as_str()));
        if let Some(holder) =
            holder.filter(|h| [&h.hw_address, &h.client_id].into_iter().flatten().all(|hid| normal_id(hid) != id))
        {
            let who = holder.hw_address.clone().or(holder.client_id.clone()).unwrap_or_default();
            return refuse("ip-address", format!("{addr} is reserved for {who}"));
        }
    }
    if let Some(group) = fields.get("group").filter(|g| !groups.contains(*g)) {
        return refuse("group", format!("no group {group:?}"));
    }
    let Some(old) = old else { return Verdict::Add };
    let same = |name: &str, have: &Option<String>| fields.get(name).map(String::as_str) == have.as_deref();
    let unchanged = old.subnet == Some(subnet)
        && same("ip-address", &old.ip_address)
        && same("hostname", &old.hostname)
        && same("description", &old.description)
        && same("group", &old.group);
    if unchanged { Verdict::Same } else { Verdict::Change }
}

/// `GET /portal/import`: the upload form.
pub(crate) async fn form<S: LeaseStore + 'static>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let viewer = require(&admin, &headers, Role::Editor)?;
    Ok(import_page(&viewer, "", None, None))
}

fn import_page(viewer: &Viewer, text: &str, rows: Option<&[Row]>, error: Option<&str>) -> Response {
    let refused = rows.map_or(0, |r| r.iter().filter(|r| matches!(r.change, Verdict::Refused(_))).count());
    let changes = rows.map_or(0, |r| r.iter().filter(|r| matches!(r.change, Verdict::Add | Verdict::Change)).count());
    let body = html! {
        p { "Columns by header: " code { (COLUMNS.join(",")) } " (" code { "mac" } " and " code { "ip" } " are taken too). "
            "Rows are matched to reservations by MAC or client id: new ones are added, others changed." }
        @if let Some(error) = error { p role="alert" { (error) } }
        @if let Some(rows) = rows {
            h2 { "Preview" }
            @if refused > 0 {
                p role="alert" { (refused) " of " (rows.len()) " rows are refused: nothing is applied until they are fixed." }
            } @else {
                p.ok { (changes) " of " (rows.len()) " rows change something." }
            }
            div.scroll { table {
                thead { tr { th scope="col" { "Line" } th scope="col" { "Change" }
                    @for (name, _) in RESERVATION_FIELDS { th scope="col" { (name) } } } }
                tbody { @for row in rows { tr {
                    td { (row.line) }
                    td { @match &row.change {
                        Verdict::Add => "add",
                        Verdict::Change => "change",
                        Verdict::Same => span.muted { "no change" },
                        Verdict::Refused(why) => strong role="alert" { "refused: " (why) },
                    } }
                    @for (name, _) in RESERVATION_FIELDS { td { (row.fields.get(name).map(String::as_str).unwrap_or("")) } }
                } } }
            } }
            @if refused == 0 && changes > 0 {
                form method="post" action=(format!("{ROOT}/import")) enctype="multipart/form-data" {
                    (csrf_field(viewer))
                    input type="hidden" name="action" value="apply";
                    textarea hidden name="csv" aria-hidden="true" { (text) }
                    button type="submit" { "Apply " (changes) " changes" }
                }
            }
        }
        h2 { "Upload" }
        form method="post" action=(format!("{ROOT}/import")) enctype="multipart/form-data" {
            (csrf_field(viewer))
            input type="hidden" name="action" value="preview";
            label for="file" { "CSV file" }
            input #file type="file" name="file" accept=".csv,text/csv";
            label for="csv" { "Or paste the CSV" }
            textarea #csv name="csv" rows="8" cols="60" { (text) }
            p { button type="submit" { "Preview" } }
        }
    };
    let status = if error.is_some() || refused > 0 { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    answer(status, page("Import reservations", Some(viewer), body))
}

/// `POST /portal/import` (multipart: `csrf`, `action` = `preview` or `apply`, and the CSV as
/// `file` or `csv`): a preview, or the changes applied in one edit when every row is good.
pub(crate) async fn import<S: LeaseStore + 'static>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Result<Response, Refused> {
    let mut parts = Fields::new();
    while let Ok(Some(field)) = form.next_field().await {
        let name = field.name().unwrap_or("").to_owned();
        let Ok(bytes) = field.bytes().await else { break };
        parts.insert(name, String::from_utf8_lossy(&bytes).into_owned());
    }
    let csrf = parts.get("csrf").cloned().unwrap_or_default();
    let viewer = require_form(&admin, &headers, Role::Editor, &csrf)?;
    // A file chosen takes the place of the text box.
    let file = parts.get("file").filter(|f| !f.trim().is_empty());
    let text = file.or(parts.get("csv")).cloned().unwrap_or_default();
    let config = control(&admin).map(|c| c.running_text()).unwrap_or_default();
    let rows = match preview(&text, &config) {
        Ok(rows) => rows,
        Err(why) => return Ok(import_page(&viewer, &text, None, Some(&why))),
    };
    let refused = rows.iter().any(|r| matches!(r.change, Verdict::Refused(_)));
    if parts.get("action").map(String::as_str) != Some("apply") || refused {
        return Ok(import_page(&viewer, &text, Some(&rows), None));
    }
    let bodies: Result<Vec<Map<String, Value>>, _> = rows
        .iter()
        .filter(|r| matches!(r.change, Verdict::Add | Verdict::Change))
        .map(|r| reservation_body(&r.fields))
        .collect();
    let bodies = match bodies {
        Ok(bodies) => bodies,
        Err(e) => return Ok(import_page(&viewer, &text, Some(&rows), Some(&error_text(&e)))),
    };
    let detail = serde_json::json!({ "rows": rows.len(), "changes": bodies.len() });
    let audit = ("reservations.import", "", detail);
    let result = admin.edit_config(&viewer.who(), Source::Portal, audit, |config| {
        edit::upsert_reservations(config, &bodies).map_err(|(i, e)| {
            let line =
                rows.iter().filter(|r| matches!(r.change, Verdict::Add | Verdict::Change)).nth(i).map_or(0, |r| r.line);
            crate::api::error::ApiError::bad(format!("line {line}"), e.to_string())
        })
    });
    match result {
        Ok(applied) => {
            let body = html! {
                p.ok { (bodies.len()) " reservations added or changed"
                    @if let Some(v) = applied.version { "; config version " (v) } "." }
                p { a href=(format!("{ROOT}/reservations")) { "See the reservations" } }
            };
            Ok(answer(StatusCode::OK, page("Import reservations", Some(&viewer), body)))
        }
        Err(e) => {
            Ok(import_page(&viewer, &text, Some(&rows), Some(&format!("Nothing was applied: {}", error_text(&e)))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[groups.lab]
lease-time = 600

[[subnets]]
id = 1
subnet = "10.0.0.0/24"
pools = ["10.0.0.100-10.0.0.200"]

[[subnets.reservations]]
hw-address = "02:00:00:00:00:01"
ip-address = "10.0.0.11"
hostname = "one"

[[subnets.reservations]]
hw-address = "02:00:00:00:00:0a"
ip-address = "10.0.0.20"
"#;

    #[test]
    fn rows_are_judged_add_change_same_or_refused_with_the_field() {
        let csv = "\u{feff}Subnet,MAC,IP,Hostname,Group\r\n\
                   1,02:00:00:00:00:01,10.0.0.11,one,\r\n\
                   1,02-00-00-00-00-01,10.0.0.12,one,\r\n\
                   1,02:00:00:00:00:02,10.0.0.12,\"two, the second\",lab\r\n\
                   1,02:00:00:00:00:03,10.0.1.5,,\r\n\
                   1,not-a-mac,10.0.0.14,,\r\n\
                   1,02:00:00:00:00:04,10.0.0.11,,\r\n\
                   1,02:00:00:00:00:05,,,nosuch\r\n\
                   \r\n\
                   ,02:00:00:00:00:06,10.0.0.16,,\r\n\
                   1,02:00:00:00:00:07,10.0.0.20,,\r\n";
        let rows = preview(csv, CONFIG).expect("reads");
        let changes: Vec<&Verdict> = rows.iter().map(|r| &r.change).collect();
        assert_eq!(changes[0], &Verdict::Same);
        assert!(matches!(changes[1], Verdict::Refused(w) if w.contains("twice")), "{changes:?}");
        assert_eq!(changes[2], &Verdict::Add);
        assert_eq!(rows[2].fields.get("hostname").map(String::as_str), Some("two, the second"));
        assert!(matches!(changes[3], Verdict::Refused(w) if w.starts_with("ip-address") && w.contains("outside")));
        assert!(matches!(changes[4], Verdict::Refused(w) if w.starts_with("hw-address")));
        assert!(matches!(changes[5], Verdict::Refused(w) if w.contains("also given to 02:00:00:00:00:01")));
        assert!(matches!(changes[6], Verdict::Refused(w) if w.starts_with("group")));
        assert!(matches!(changes[7], Verdict::Refused(w) if w.starts_with("subnet")), "{changes:?}");
        assert!(
            matches!(changes[8], Verdict::Refused(w) if w.contains("reserved for 02:00:00:00:00:0a")),
            "{changes:?}"
        );
        assert_eq!(rows.len(), 9, "the blank line is passed over");
    }

    #[test]
    fn a_file_without_an_id_column_or_with_an_unknown_one_is_refused_whole() {
        assert!(preview("subnet,ip\n1,10.0.0.5\n", CONFIG).is_err());
        assert!(preview("mac,colour\n02:00:00:00:00:09,red\n", CONFIG).is_err_and(|e| e.contains("colour")));
    }
}
