//! The admin's pages: the config history (list, show, diff, roll back), the audit log, and the
//! users.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use dhcp_core::LeaseStore;
use maud::html;
use serde_json::Value;

use super::hosts::Fields;
use super::page::{ROOT, Refused, Viewer, answer, csrf_field, page, require, require_form, see_other};
use crate::api::admin::{Admin, control, shown};
use crate::api::report::unix_time;
use crate::history::{self, Source};
use crate::users::Role;

fn source_name(source: Source) -> String {
    serde_json::to_value(source).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn history_page<S>(admin: &Admin<S>, viewer: &Viewer, notice: Option<(bool, String)>) -> Response {
    let listed = control(admin).map_err(|e| e.to_string()).and_then(|c| c.history().map_err(|e| e.to_string()));
    let versions = listed.and_then(|h| h.list().map_err(|e| e.to_string()));
    let body = html! {
        @match &notice {
            Some((true, text)) => p.ok role="status" { (text) },
            Some((false, text)) => p role="alert" { (text) },
            None => {},
        }
        @match &versions {
            Err(why) => p role="alert" { "No history: " (why) },
            Ok(versions) => {
                form method="get" action=(format!("{ROOT}/history/diff")) {
                    fieldset {
                        legend { "Compare two versions" }
                        label for="from" { "From version" }
                        input #from name="from" type="number" min="1" required value=(versions.get(1).map_or(1, |v| v.version));
                        label for="to" { "To version" }
                        input #to name="to" type="number" min="1" required value=(versions.first().map_or(1, |v| v.version));
                        p { button type="submit" { "Show the differences" } }
                    }
                }
                div.scroll { table {
                    thead { tr { th scope="col" { "Version" } th scope="col" { "Applied" } th scope="col" { "By" }
                        th scope="col" { "How" } th scope="col" { "Why" } th scope="col" { span.muted { "Actions" } } } }
                    tbody { @for (i, v) in versions.iter().enumerate() { tr {
                        td { a href=(format!("{ROOT}/history/{}", v.version)) { (v.version) } }
                        td { (unix_time(Some(v.at))) } td { (v.user) } td { (source_name(v.source))
                            @if let Some(r) = v.restores { " (restores " (r) ")" } }
                        td { (v.message.as_deref().unwrap_or("")) }
                        td { @if i > 0 {
                            form.inline method="post" action=(format!("{ROOT}/history/{}/rollback", v.version)) {
                                (csrf_field(viewer))
                                label.muted for=(format!("why-{}", v.version)) { "Why" }
                                input id=(format!("why-{}", v.version)) name="message" type="text" size="16";
                                " " button.danger type="submit" aria-label=(format!("Roll back to version {}", v.version)) { "Roll back to this" }
                            }
                        } @else { span.muted { "running" } } }
                    } } }
                } }
            },
        }
    };
    let status = if matches!(notice, Some((false, _))) { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    answer(status, page("Config history", Some(viewer), body))
}

/// `GET /portal/history`.
pub(crate) async fn history<S: LeaseStore + 'static>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let viewer = require(&admin, &headers, Role::Admin)?;
    Ok(history_page(&admin, &viewer, None))
}

/// `GET /portal/history/{version}`.
pub(crate) async fn version<S: LeaseStore + 'static>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
    Path(version): Path<u64>,
) -> Result<Response, Refused> {
    let viewer = require(&admin, &headers, Role::Admin)?;
    let found = control(&admin).ok().and_then(|c| c.history().ok()).and_then(|h| h.get(version).ok().flatten());
    let Some((v, text)) = found else {
        let body = html! { p role="alert" { "The history holds no version " (version) "." } };
        return Ok(answer(StatusCode::NOT_FOUND, page("Config version", Some(&viewer), body)));
    };
    let body = html! {
        p { "Applied " (unix_time(Some(v.at))) " by " (v.user) " (" (source_name(v.source)) ")"
            @if let Some(m) = &v.message { ": " (m) } }
        pre { code { (shown(&admin, &text)) } }
        p { a href=(format!("{ROOT}/history")) { "Back to the history" } }
    };
    Ok(answer(StatusCode::OK, page(&format!("Config version {version}"), Some(&viewer), body)))
}

/// `?from=&to=` of the diff page.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct DiffQuery {
    from: u64,
    to: u64,
}

/// `GET /portal/history/diff?from=&to=`.
pub(crate) async fn diff<S: LeaseStore + 'static>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
    Query(query): Query<DiffQuery>,
) -> Result<Response, Refused> {
    let viewer = require(&admin, &headers, Role::Admin)?;
    let history = control(&admin).ok().and_then(|c| c.history().ok());
    let text = |v: u64| history.and_then(|h| h.get(v).ok().flatten()).map(|(_, t)| shown(&admin, &t));
    let (Some(old), Some(new)) = (text(query.from), text(query.to)) else {
        let body = html! { p role="alert" { "The history does not hold both versions." } };
        return Ok(answer(StatusCode::NOT_FOUND, page("Differences", Some(&viewer), body)));
    };
    let diff = history::diff(&old, &new, &format!("version {}", query.from), &format!("version {}", query.to));
    let body = html! {
        @if diff.is_empty() { p { "The two versions are the same." } }
        @else { pre { code { @for line in diff.lines() {
            @if line.starts_with('+') && !line.starts_with("+++") { ins { (line) } "\n" }
            @else if line.starts_with('-') && !line.starts_with("---") { del { (line) } "\n" }
            @else { (line) "\n" }
        } } } }
        p { a href=(format!("{ROOT}/history")) { "Back to the history" } }
    };
    Ok(answer(StatusCode::OK, page(&format!("Version {} to {}", query.from, query.to), Some(&viewer), body)))
}

/// `POST /portal/history/{version}/rollback`: puts the version back, validated first.
pub(crate) async fn rollback<S: LeaseStore + 'static>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
    Path(version): Path<u64>,
    Form(fields): Form<Fields>,
) -> Result<Response, Refused> {
    let csrf = fields.get("csrf").cloned().unwrap_or_default();
    let viewer = require_form(&admin, &headers, Role::Admin, &csrf)?;
    let mut who = viewer.who();
    who.message = fields.get("message").map(|m| m.trim().to_owned()).filter(|m| !m.is_empty());
    let result = control(&admin).map_err(|e| e.to_string()).and_then(|c| {
        c.rollback_to(admin.server.engine(), version, &who.change(Source::Rollback)).map_err(|e| e.to_string())
    });
    admin.audit_result(&who, "config.rollback", &version.to_string(), &result.as_ref().map(|_| ()), Value::Null);
    let notice = match result {
        Ok(applied) => {
            (true, format!("Version {version} is running again (as version {}).", applied.version.unwrap_or(0)))
        }
        Err(why) => (false, format!("Version {version} was not put back: {why}")),
    };
    Ok(history_page(&admin, &viewer, Some(notice)))
}

/// `GET /portal/audit`: the audit log's last lines, newest first.
pub(crate) async fn audit<S: LeaseStore + 'static>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let viewer = require(&admin, &headers, Role::Admin)?;
    let entries = admin.audit.tail(500).unwrap_or_default();
    let body = html! {
        p.muted { "The last " (entries.len()) " entries of " code { (admin.audit.path().display()) } ", newest first." }
        div.scroll { table {
            thead { tr { th scope="col" { "Time" } th scope="col" { "User" } th scope="col" { "Action" }
                th scope="col" { "Target" } th scope="col" { "Outcome" } th scope="col" { "Detail" } } }
            tbody { @for e in entries.iter().rev() { tr {
                td { (e.time) } td { (e.user) } td { (e.action) } td { (e.target) } td { (e.outcome) }
                td { @if !e.detail.is_null() { code { (e.detail.to_string()) } } }
            } } }
        } }
    };
    Ok(answer(StatusCode::OK, page("Audit log", Some(&viewer), body)))
}

fn users_page<S>(admin: &Admin<S>, viewer: &Viewer, notice: Option<(bool, String)>) -> Response {
    let users = admin.users.list();
    let body = html! {
        @match &notice {
            Some((true, text)) => p.ok role="status" { (text) },
            Some((false, text)) => p role="alert" { (text) },
            None => {},
        }
        div.scroll { table {
            thead { tr { th scope="col" { "User" } th scope="col" { "Role" } th scope="col" { "API tokens" }
                th scope="col" { span.muted { "Actions" } } } }
            tbody { @for u in &users { tr {
                td { (u.name) } td { (u.role.as_str()) }
                td { (u.tokens.iter().map(|t| format!("{} ({})", t.id, t.role.as_str())).collect::<Vec<_>>().join(", ")) }
                td { form.inline method="post" action=(format!("{ROOT}/users/{}/delete", u.name)) {
                    (csrf_field(viewer))
                    button.danger type="submit" aria-label=(format!("Delete user {}", u.name)) { "Delete" }
                } }
            } } }
        } }
        h2 { "Add a user or change one" }
        form method="post" action=(format!("{ROOT}/users")) {
            (csrf_field(viewer))
            label for="u-name" { "Name" }
            input #u-name name="name" type="text" required autocomplete="off";
            label for="u-role" { "Role" }
            select #u-role name="role" {
                option value="viewer" { "viewer: reads" }
                option value="editor" { "editor: also reservations, groups, leases" }
                option value="admin" { "admin: also config, history, users" }
            }
            label for="u-password" { "Password (at least 10 characters; empty keeps an existing user's)" }
            input #u-password name="password" type="password" autocomplete="new-password";
            p { button type="submit" { "Save user" } }
        }
    };
    let status = if matches!(notice, Some((false, _))) { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    answer(status, page("Users", Some(viewer), body))
}

/// `GET /portal/users`.
pub(crate) async fn users<S: LeaseStore + 'static>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let viewer = require(&admin, &headers, Role::Admin)?;
    Ok(users_page(&admin, &viewer, None))
}

/// `POST /portal/users`: adds a user or changes its role or password.
pub(crate) async fn put_user<S: LeaseStore + 'static>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Result<Response, Refused> {
    let csrf = fields.get("csrf").cloned().unwrap_or_default();
    let viewer = require_form(&admin, &headers, Role::Admin, &csrf)?;
    let name = fields.get("name").map(|n| n.trim().to_owned()).unwrap_or_default();
    let password = fields.get("password").filter(|p| !p.is_empty());
    let Some(role) = fields.get("role").and_then(|r| Role::parse(r)) else {
        return Ok(users_page(&admin, &viewer, Some((false, "role: viewer, editor or admin".into()))));
    };
    let result = admin.users.put(&name, role, password.map(String::as_str));
    let detail = serde_json::json!({ "role": role, "password-changed": password.is_some(), "via": "portal" });
    admin.audit_result(&viewer.who(), "user.put", &name, &result.as_ref().map(|_| ()), detail);
    let notice = match result {
        Ok(created) => {
            if password.is_some() && !created {
                admin.sessions.end_all_of(&name);
            }
            (true, format!("{name} is {}.", role.as_str()))
        }
        Err(e) => (false, e.to_string()),
    };
    Ok(users_page(&admin, &viewer, Some(notice)))
}

/// `POST /portal/users/{name}/delete`.
pub(crate) async fn delete_user<S: LeaseStore + 'static>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(fields): Form<Fields>,
) -> Result<Response, Refused> {
    let csrf = fields.get("csrf").cloned().unwrap_or_default();
    let viewer = require_form(&admin, &headers, Role::Admin, &csrf)?;
    let result = admin.users.delete(&name);
    admin.audit_result(&viewer.who(), "user.delete", &name, &result, serde_json::json!({"via": "portal"}));
    if result.is_ok() {
        admin.sessions.end_all_of(&name);
    }
    Ok(see_other(&format!("{ROOT}/users")))
}
