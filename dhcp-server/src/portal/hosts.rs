//! Reservations and groups: list, add, edit, delete, with the config's own validation messages
//! naming the field; reservations also exported and imported as CSV (see [`super::csv`]).

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use dhcp_core::LeaseStore;
use maud::{Markup, html};
use serde_json::{Map, Value};

use super::page::{ROOT, Refused, Viewer, answer, csrf_field, page, require, require_form, see_other};
use crate::api::admin::Admin;
use crate::api::edit;
use crate::api::error::ApiError;
use crate::api::model::{Group, Reservation, encode, normal_id};
use crate::api::report::unix_time;
use crate::history::Source;
use crate::users::Role;

/// Reservations on one page.
const PAGE: usize = 200;

/// The reservation fields the form edits, in the order shown.
pub(crate) const RESERVATION_FIELDS: [(&str, &str); 7] = [
    ("subnet", "Subnet id"),
    ("hw-address", "MAC address"),
    ("client-id", "Client id (instead of a MAC)"),
    ("ip-address", "IPv4 address"),
    ("hostname", "Host name"),
    ("description", "Description"),
    ("group", "Group"),
];

/// The text fields of a form, by name.
pub(crate) type Fields = std::collections::BTreeMap<String, String>;

/// A reservation's fields as the API takes them: the non-empty ones, `subnet` as a number.
pub(crate) fn reservation_body(fields: &Fields) -> Result<Map<String, Value>, ApiError> {
    let mut body = Map::new();
    for (name, _) in RESERVATION_FIELDS {
        let Some(value) = fields.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) else { continue };
        let value = if name == "subnet" {
            let id: i64 =
                value.parse().map_err(|_| ApiError::bad("subnet", format!("{value:?} is not a subnet id")))?;
            Value::from(id)
        } else {
            Value::from(value)
        };
        body.insert(name.to_owned(), value);
    }
    Ok(body)
}

/// The reservation's id in paths: its MAC, else its client id, else its circuit id.
fn id_of(r: &Reservation) -> String {
    r.hw_address.clone().or_else(|| r.client_id.clone()).or_else(|| r.circuit_id.clone()).unwrap_or_default()
}

/// A refusal as the portal shows it: the message, naming the field.
pub(crate) fn error_text(e: &ApiError) -> String {
    e.to_string()
}

fn reservation_form(viewer: &Viewer, action: &str, values: &Fields, groups: &[Group], error: Option<&str>) -> Markup {
    html! {
        @if let Some(error) = error { p role="alert" { (error) } }
        form method="post" action=(action) {
            (csrf_field(viewer))
            @for (name, label) in RESERVATION_FIELDS {
                label for=(format!("r-{name}")) { (label) }
                @if name == "group" {
                    select id=(format!("r-{name}")) name=(name) {
                        option value="" { "(none)" }
                        @for g in groups {
                            @let gname = g.name.as_deref().unwrap_or("");
                            option value=(gname) selected[values.get(name).map(String::as_str) == Some(gname)] { (gname) }
                        }
                    }
                } @else {
                    input id=(format!("r-{name}")) name=(name) type="text" value=(values.get(name).map(String::as_str).unwrap_or(""))
                        inputmode=[(name == "subnet").then_some("numeric")];
                }
            }
            p { button type="submit" { "Save" } }
        }
    }
}

/// `?q=&page=` of the reservations page.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: usize,
}

/// `GET /portal/reservations`.
pub(crate) async fn list<S: LeaseStore + 'static>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Response, Refused> {
    let viewer = require(&admin, &headers, Role::Viewer)?;
    Ok(reservations_page(&admin, &viewer, &query, &Fields::new(), None))
}

fn reservations_page<S>(
    admin: &Admin<S>,
    viewer: &Viewer,
    query: &ListQuery,
    values: &Fields,
    error: Option<&str>,
) -> Response {
    let (all, groups) = admin.config_hosts().unwrap_or_default();
    let q = query.q.trim().to_lowercase();
    let matching: Vec<&Reservation> = all
        .iter()
        .filter(|r| {
            q.is_empty()
                || [&r.hw_address, &r.client_id, &r.ip_address, &r.hostname, &r.description, &r.group]
                    .iter()
                    .any(|f| f.as_deref().is_some_and(|v| v.to_lowercase().contains(&q)))
        })
        .collect();
    let pages = matching.len().div_ceil(PAGE).max(1);
    let shown = matching.iter().skip(query.page * PAGE).take(PAGE);
    let editor = viewer.may(Role::Editor);
    let body = html! {
        form role="search" method="get" action=(format!("{ROOT}/reservations")) {
            label for="q" { "Search reservations" }
            input #q type="search" name="q" value=(query.q);
            " " button type="submit" { "Search" }
        }
        p.muted { (matching.len()) " of " (all.len()) " reservations; page " (query.page + 1) " of " (pages) ". "
            a href=(format!("{ROOT}/reservations.csv")) { "Export as CSV" }
            @if editor { " · " a href=(format!("{ROOT}/import")) { "Import from CSV" } } }
        div.scroll { table {
            thead { tr {
                th scope="col" { "Subnet" } th scope="col" { "MAC or client id" } th scope="col" { "Address" }
                th scope="col" { "Host name" } th scope="col" { "Description" } th scope="col" { "Group" }
                th scope="col" { "Last seen" }
                @if editor { th scope="col" { span.muted { "Actions" } } }
            } }
            tbody {
                @for r in shown {
                    @let id = id_of(r);
                    @let last = r.hw_address.as_deref().and_then(dhcp_core::HwAddr::parse).and_then(|hw| admin.seen.get(&hw));
                    tr {
                        td { (r.subnet.map(|s| s.to_string()).unwrap_or_default()) } td { (id) }
                        td { (r.ip_address.as_deref().unwrap_or("")) } td { (r.hostname.as_deref().unwrap_or("")) }
                        td { (r.description.as_deref().unwrap_or("")) } td { (r.group.as_deref().unwrap_or("")) }
                        td { (unix_time(last)) }
                        @if editor { td {
                            a href=(format!("{ROOT}/reservations/{}/edit", encode(&id))) aria-label=(format!("Edit {id}")) { "Edit" }
                            " "
                            form.inline method="post" action=(format!("{ROOT}/reservations/{}/delete", encode(&id))) {
                                (csrf_field(viewer))
                                button.danger type="submit" aria-label=(format!("Delete {id}")) { "Delete" }
                            }
                        } }
                    }
                }
            }
        } }
        @if query.page + 1 < pages {
            a rel="next" href=(format!("{ROOT}/reservations?q={}&page={}", encode(&query.q), query.page + 1)) { "Next page" }
        }
        @if editor {
            h2 #add { "Add a reservation" }
            (reservation_form(viewer, &format!("{ROOT}/reservations"), values, &groups, error))
        }
    };
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    answer(status, page("Reservations", Some(viewer), body))
}

/// `POST /portal/reservations`: adds one.
pub(crate) async fn add<S: LeaseStore + 'static>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Result<Response, Refused> {
    let csrf = fields.get("csrf").cloned().unwrap_or_default();
    let viewer = require_form(&admin, &headers, Role::Editor, &csrf)?;
    let result = reservation_body(&fields).and_then(|body| {
        let target = body.get("hw-address").or(body.get("client-id")).and_then(Value::as_str).unwrap_or("").to_owned();
        let audit = ("reservation.add", target.as_str(), Value::Object(body.clone()));
        admin.edit_config(&viewer.who(), Source::Portal, audit, |text| edit::add_reservation(text, &body))
    });
    match result {
        Ok(_) => Ok(see_other(&format!("{ROOT}/reservations"))),
        Err(e) => Ok(reservations_page(&admin, &viewer, &ListQuery::default(), &fields, Some(&error_text(&e)))),
    }
}

fn edit_page<S>(admin: &Admin<S>, viewer: &Viewer, id: &str, values: &Fields, error: Option<&str>) -> Response {
    let groups = admin.config_hosts().map(|h| h.1).unwrap_or_default();
    let body = html! {
        (reservation_form(viewer, &format!("{ROOT}/reservations/{}", encode(id)), values, &groups, error))
        p { a href=(format!("{ROOT}/reservations")) { "Back to the reservations" } }
    };
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    answer(status, page(&format!("Reservation {id}"), Some(viewer), body))
}

/// `GET /portal/reservations/{id}/edit`.
pub(crate) async fn edit_form<S: LeaseStore + 'static>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Refused> {
    let viewer = require(&admin, &headers, Role::Editor)?;
    let all = admin.config_hosts().map(|h| h.0).unwrap_or_default();
    let wanted = normal_id(&id);
    let Some(r) = all.iter().find(|r| normal_id(&id_of(r)) == wanted) else {
        let body = html! { p role="alert" { "No reservation for " (id) "." } };
        return Ok(answer(StatusCode::NOT_FOUND, page("Reservation", Some(&viewer), body)));
    };
    let mut values = Fields::new();
    let parts = [
        ("subnet", r.subnet.map(|s| s.to_string())),
        ("hw-address", r.hw_address.clone()),
        ("client-id", r.client_id.clone()),
        ("ip-address", r.ip_address.clone()),
        ("hostname", r.hostname.clone()),
        ("description", r.description.clone()),
        ("group", r.group.clone()),
    ];
    for (name, value) in parts {
        if let Some(value) = value {
            values.insert(name.to_owned(), value);
        }
    }
    Ok(edit_page(&admin, &viewer, &id, &values, None))
}

/// `POST /portal/reservations/{id}`: saves an edit.
pub(crate) async fn save<S: LeaseStore + 'static>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(fields): Form<Fields>,
) -> Result<Response, Refused> {
    let csrf = fields.get("csrf").cloned().unwrap_or_default();
    let viewer = require_form(&admin, &headers, Role::Editor, &csrf)?;
    let result = reservation_body(&fields).and_then(|body| {
        let audit = ("reservation.replace", id.as_str(), Value::Object(body.clone()));
        admin.edit_config(&viewer.who(), Source::Portal, audit, |text| edit::replace_reservation(text, &id, &body))
    });
    match result {
        Ok(_) => Ok(see_other(&format!("{ROOT}/reservations"))),
        Err(e) => Ok(edit_page(&admin, &viewer, &id, &fields, Some(&error_text(&e)))),
    }
}

/// `POST /portal/reservations/{id}/delete`.
pub(crate) async fn delete<S: LeaseStore + 'static>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(fields): Form<Fields>,
) -> Result<Response, Refused> {
    let csrf = fields.get("csrf").cloned().unwrap_or_default();
    let viewer = require_form(&admin, &headers, Role::Editor, &csrf)?;
    let audit = ("reservation.delete", id.as_str(), Value::Null);
    match admin.edit_config(&viewer.who(), Source::Portal, audit, |text| edit::delete_reservation(text, &id)) {
        Ok(_) => Ok(see_other(&format!("{ROOT}/reservations"))),
        Err(e) => Ok(reservations_page(&admin, &viewer, &ListQuery::default(), &Fields::new(), Some(&error_text(&e)))),
    }
}

/// The group fields the form edits: the lease time and the common options; anything else as a
/// JSON object of options.
const GROUP_OPTIONS: [(&str, &str); 4] = [
    ("routers", "Routers (comma-separated)"),
    ("domain-name-servers", "DNS servers (comma-separated)"),
    ("domain-name", "Domain name"),
    ("ntp-servers", "NTP servers (comma-separated)"),
];

/// A group's form fields as the API's body.
fn group_body(fields: &Fields) -> Result<Map<String, Value>, ApiError> {
    let mut body = Map::new();
    if let Some(lease) = fields.get("lease-time").map(|v| v.trim()).filter(|v| !v.is_empty()) {
        let secs: u32 =
            lease.parse().map_err(|_| ApiError::bad("lease-time", format!("{lease:?} is not a number of seconds")))?;
        body.insert("lease-time".into(), secs.into());
    }
    let mut options = match fields.get("other-options").map(|v| v.trim()).filter(|v| !v.is_empty()) {
        Some(json) => match serde_json::from_str::<Value>(json) {
            Ok(Value::Object(map)) => map,
            _ => return Err(ApiError::bad("other-options", "a JSON object of options by name")),
        },
        None => Map::new(),
    };
    for (name, _) in GROUP_OPTIONS {
        let Some(value) = fields.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) else { continue };
        let value = if name == "domain-name" {
            Value::from(value)
        } else {
            Value::Array(value.split(',').map(|v| Value::from(v.trim())).filter(|v| v != "").collect())
        };
        options.insert(name.to_owned(), value);
    }
    if !options.is_empty() {
        body.insert("options".into(), Value::Object(options));
    }
    Ok(body)
}

fn option_text(group: &Group, name: &str) -> String {
    match group.options.as_ref().and_then(|o| o.get(name)) {
        Some(Value::Array(items)) => {
            items.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect::<Vec<_>>().join(", ")
        }
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

fn groups_page<S>(admin: &Admin<S>, viewer: &Viewer, values: &Fields, error: Option<&str>) -> Response {
    let groups = admin.config_hosts().map(|h| h.1).unwrap_or_default();
    let editor = viewer.may(Role::Editor);
    let body = html! {
        div.scroll { table {
            thead { tr {
                th scope="col" { "Group" } th scope="col" .num { "Lease time (s)" }
                @for (_, label) in GROUP_OPTIONS { th scope="col" { (label.split(" (").next().unwrap_or(label)) } }
                @if editor { th scope="col" { span.muted { "Actions" } } }
            } }
            tbody { @for g in groups.iter() {
                @let name = g.name.as_deref().unwrap_or("");
                tr {
                    td { (name) } td.num { (g.lease_time.map(|t| t.to_string()).unwrap_or_default()) }
                    @for (option, _) in GROUP_OPTIONS { td { (option_text(g, option)) } }
                    @if editor { td {
                        a href=(format!("{ROOT}/groups?edit={}#g-name", encode(name))) aria-label=(format!("Edit group {name}")) { "Edit" }
                        " "
                        form.inline method="post" action=(format!("{ROOT}/groups/{}/delete", encode(name))) {
                            (csrf_field(viewer))
                            button.danger type="submit" aria-label=(format!("Delete group {name}")) { "Delete" }
                        }
                    } }
                }
            } }
        } }
        @if editor {
            h2 { "Add or change a group" }
            @if let Some(error) = error { p role="alert" { (error) } }
            form method="post" action=(format!("{ROOT}/groups")) {
                (csrf_field(viewer))
                label for="g-name" { "Name" }
                input #g-name name="name" type="text" required value=(values.get("name").map(String::as_str).unwrap_or(""));
                label for="g-lease-time" { "Lease time (seconds)" }
                input #g-lease-time name="lease-time" type="text" inputmode="numeric" value=(values.get("lease-time").map(String::as_str).unwrap_or(""));
                @for (option, label) in GROUP_OPTIONS {
                    label for=(format!("g-{option}")) { (label) }
                    input id=(format!("g-{option}")) name=(option) type="text" value=(values.get(option).map(String::as_str).unwrap_or(""));
                }
                label for="g-other" { "Other options (a JSON object, such as {\"tftp-server-name\": \"boot\"})" }
                textarea #g-other name="other-options" rows="3" cols="40" { (values.get("other-options").map(String::as_str).unwrap_or("")) }
                p { button type="submit" { "Save group" } }
            }
        }
    };
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    answer(status, page("Groups", Some(viewer), body))
}

/// `?edit=NAME` of the groups page: the form filled with that group.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct GroupQuery {
    edit: Option<String>,
}

/// A group as the form's fields.
fn group_fields(group: &Group) -> Fields {
    let mut values = Fields::new();
    values.insert("name".into(), group.name.clone().unwrap_or_default());
    if let Some(lease) = group.lease_time {
        values.insert("lease-time".into(), lease.to_string());
    }
    for (option, _) in GROUP_OPTIONS {
        values.insert(option.to_owned(), option_text(group, option));
    }
    let others: Map<String, Value> = group
        .options
        .iter()
        .flatten()
        .filter(|(k, _)| !GROUP_OPTIONS.iter().any(|(o, _)| o == k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !others.is_empty() {
        values.insert("other-options".into(), Value::Object(others).to_string());
    }
    values
}

/// `GET /portal/groups[?edit=NAME]`.
pub(crate) async fn groups<S: LeaseStore + 'static>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
    Query(query): Query<GroupQuery>,
) -> Result<Response, Refused> {
    let viewer = require(&admin, &headers, Role::Viewer)?;
    let editing = query.edit.and_then(|name| {
        let groups = admin.config_hosts().ok()?.1;
        groups.iter().find(|g| g.name.as_deref() == Some(name.as_str())).map(group_fields)
    });
    Ok(groups_page(&admin, &viewer, &editing.unwrap_or_default(), None))
}

/// `POST /portal/groups`: adds or replaces one.
pub(crate) async fn set_group<S: LeaseStore + 'static>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Result<Response, Refused> {
    let csrf = fields.get("csrf").cloned().unwrap_or_default();
    let viewer = require_form(&admin, &headers, Role::Editor, &csrf)?;
    let name = fields.get("name").map(|n| n.trim().to_owned()).unwrap_or_default();
    let result = group_body(&fields).and_then(|body| {
        let audit = ("group.set", name.as_str(), Value::Object(body.clone()));
        admin.edit_config(&viewer.who(), Source::Portal, audit, |text| edit::set_group(text, &name, &body))
    });
    match result {
        Ok(_) => Ok(see_other(&format!("{ROOT}/groups"))),
        Err(e) => Ok(groups_page(&admin, &viewer, &fields, Some(&error_text(&e)))),
    }
}

/// `POST /portal/groups/{name}/delete`.
pub(crate) async fn delete_group<S: LeaseStore + 'static>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(fields): Form<Fields>,
) -> Result<Response, Refused> {
    let csrf = fields.get("csrf").cloned().unwrap_or_default();
    let viewer = require_form(&admin, &headers, Role::Editor, &csrf)?;
    let audit = ("group.delete", name.as_str(), Value::Null);
    match admin.edit_config(&viewer.who(), Source::Portal, audit, |text| edit::delete_group(text, &name)) {
        Ok(_) => Ok(see_other(&format!("{ROOT}/groups"))),
        Err(e) => Ok(groups_page(&admin, &viewer, &Fields::new(), Some(&error_text(&e)))),
    }
}
