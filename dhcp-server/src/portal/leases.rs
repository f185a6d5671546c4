//! The leases page: search by address, MAC, host name or client id, a page at a time, and
//! delete (editors).

use std::net::Ipv4Addr;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use dhcp_core::LeaseStore;
use maud::html;

use super::page::{ROOT, Refused, answer, csrf_field, page, require, require_form, see_other};
use crate::api::admin::Admin;
use crate::api::listing::{LeaseQuery, read_page};
use crate::api::model::LeaseInfo;
use crate::api::report::unix_time;
use crate::users::Role;

/// Leases on one page.
pub(crate) const PAGE: usize = 100;

/// `?q=&after=` of the leases page.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct Search {
    #[serde(default)]
    q: String,
    after: Option<Ipv4Addr>,
}

/// `GET /portal/leases?q=&after=`.
pub(crate) async fn list<S: LeaseStore + 'static>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
    Query(search): Query<Search>,
) -> Result<Response, Refused> {
    let viewer = require(&admin, &headers, Role::Viewer)?;
    let store = admin.server.engine().store();
    let q = search.q.trim();
    let found = match q.parse::<Ipv4Addr>() {
        Ok(addr) => store.lease_by_addr(addr).await.map(|l| (l.into_iter().collect::<Vec<_>>(), None)),
        Err(_) => read_page(store, LeaseQuery::search(q, search.after), PAGE).await,
    };
    let (leases, next) = match found {
        Ok(found) => found,
        Err(e) => {
            let body = html! { p role="alert" { "The store did not answer: " (crate::redact::redact_secrets(&e.to_string())) } };
            return Ok(answer(StatusCode::SERVICE_UNAVAILABLE, page("Leases", Some(&viewer), body)));
        }
    };
    let rows: Vec<LeaseInfo> = leases.iter().map(|l| LeaseInfo::new(l, admin.seen.get(&l.hwaddr))).collect();
    let editor = viewer.may(Role::Editor);
    let body = html! {
        form role="search" method="get" action=(format!("{ROOT}/leases")) {
            label for="q" { "Address, MAC, host name or client id" }
            input #q type="search" name="q" value=(q) autocomplete="off";
            " " button type="submit" { "Search" }
        }
        p.muted { (rows.len()) " leases shown" @if search.after.is_some() { " (continued)" } "." }
        div.scroll { table {
            thead { tr {
                th scope="col" { "Address" } th scope="col" { "MAC" } th scope="col" { "Host name" }
                th scope="col" { "Client id" } th scope="col" { "State" } th scope="col" { "Until" }
                th scope="col" { "Subnet" } th scope="col" { "Last seen" }
                @if editor { th scope="col" { span.muted { "Actions" } } }
            } }
            tbody {
                @for l in &rows {
                    tr {
                        td { (l.address) } td { (l.hw_address) } td { (l.hostname.as_deref().unwrap_or("")) }
                        td { (l.client_id) } td { (l.state) } td { (unix_time(l.deadline)) } td { (l.subnet) }
                        td { (unix_time(l.last_seen)) }
                        @if editor { td {
                            form.inline method="post" action=(format!("{ROOT}/leases/{}/delete", l.address)) {
                                (csrf_field(&viewer))
                                button.danger type="submit" aria-label=(format!("Delete the lease of {}", l.address)) { "Delete" }
                            }
                        } }
                    }
                }
            }
        } }
        @if let Some(next) = next {
            a href=(format!("{ROOT}/leases?q={}&after={next}", crate::api::model::encode(q))) rel="next" { "Next page" }
        }
    };
    Ok(answer(StatusCode::OK, page("Leases", Some(&viewer), body)))
}

/// The CSRF field of a form that carries nothing else.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct CsrfOnly {
    csrf: String,
}

/// `POST /portal/leases/{addr}/delete`.
pub(crate) async fn delete<S: LeaseStore + 'static>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
    Path(addr): Path<Ipv4Addr>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, Refused> {
    let viewer = require_form(&admin, &headers, Role::Editor, &form.csrf)?;
    let result = admin.server.engine().delete_lease(addr).await;
    let outcome = match &result {
        Ok(Some(_)) => "ok".to_owned(),
        Ok(None) => "no lease".to_owned(),
        Err(e) => crate::redact::redact_secrets(&e.to_string()),
    };
    admin.audit.record(&viewer.user, "lease.delete", &addr.to_string(), &outcome, serde_json::json!({"via": "portal"}));
    Ok(see_other(&format!("{ROOT}/leases")))
}
