//! The management API: HTTP with JSON, every `/api/v1` request behind a bearer token; the
//! Prometheus exposition at `/metrics` (no token, for scrapers: bind `api-listen` to a
//! management address).
//!
//! | method and path | what |
//! |---|---|
//! | `GET /api/v1/leases?subnet=&state=&mac=&client=` | every lease that matches, in address order, streamed |
//! | `GET /api/v1/leases?...&limit=N&after=ADDRESS` | a page: at most N (1 to 10,000) above `after`, and `next` when more match |
//! | `GET /api/v1/leases/{address}` | one lease |
//! | `DELETE /api/v1/leases/{address}` | delete a lease |
//! | `GET /api/v1/reservations` | reservations of every subnet |
//! | `POST /api/v1/reservations` | add one (`subnet`, `hw-address` or `client-id`, `ip-address`, `hostname`, `description`, `group`, `options`) |
//! | `PUT /api/v1/reservations/{mac or client-id}` | replace one |
//! | `DELETE /api/v1/reservations/{mac or client-id}` | delete one |
//! | `GET /api/v1/groups` | groups |
//! | `PUT /api/v1/groups/{name}` | add or replace one (`lease-time`, `options`, `match`) |
//! | `DELETE /api/v1/groups/{name}` | delete one |
//! | `GET /api/v1/stats` | statistics by Kea's names |
//! | `GET /api/v1/health` | 200 when the sockets are bound and the store answers, else 503 |
//! | `GET /api/v1/config` | the running config's text (`api-token` and store passwords shown as `***`) and file |
//! | `POST /api/v1/config/test` | validate the posted config text, change nothing |
//! | `POST /api/v1/config/reload` | read the config file again and apply it if valid |
//! | `POST /api/v1/config/rollback[?version=N]` | put version N of the history (default: the newest, the last config applied) back into the file and apply it |
//! | `GET /api/v1/config/history` | every config applied, newest first: version, time, user, source, message |
//! | `GET /api/v1/config/history/{version}` | one version and its text (secrets shown as `***`) |
//! | `GET /api/v1/config/diff?from=A&to=B` | a unified diff between two versions |
//! | `GET /api/v1/audit?limit=N` | the last N lines of the audit log (default 100) |
//! | `GET /api/v1/ha` | high-availability state of this server and its partner (404 without `[ha]`) |
//! | `POST /api/v1/ha/heartbeat` | a partner's heartbeat; answered with this server's |
//! | `POST /api/v1/ha/partner-down` | take the partner's clients over now (409 for a backup) |
//! | `POST /api/v1/ha/maintenance/start`, `.../stop` | this server stops answering while its partner answers all; and back |
//! | `POST /api/v1/ha/sync` | fetch the partner's leases now |
//! | `POST /api/v1/ha/lease-updates` | lease changes from a peer, stored without sending them back |
//! | `GET /api/v1/ha/leases?after=&limit=` | a page of this server's leases, for a peer's sync |
//!
//! Reservation and group changes edit the running config, are validated as a whole, applied to
//! the next packet and written to the config file; an invalid change gets 400 naming the field
//! and changes nothing. Every config applied becomes a version of the history, and every change
//! (and every refused token) a line of the audit log, with the user; a change may say why in
//! an `X-Change-Message` header (percent-encoded UTF-8). Errors are `{"error": "...", "field": "..."}`. At most two lease
//! listings run at once; another gets 503 with `Retry-After`.
//!
//! The API is served by [`Service`](crate::Service) when `api-listen` is set; the typed
//! bodies are in [`model`], and [`AdminClient`] (feature `client`) speaks them.

pub(crate) mod admin;
pub(crate) mod auth;
mod changes;
mod client;
pub(crate) mod edit;
pub(crate) mod entries;
pub(crate) mod error;
pub(crate) mod listing;
pub mod model;
pub mod report;
pub(crate) mod who;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Extension, Router};
use dhcp_core::{Lease, LeaseStore};
use serde_json::Value;
use tracing::{info, warn};

pub use client::{AdminClient, ClientError, LISTING_BUSY_WAIT, LISTING_READ_TIMEOUT};
pub use who::{CHANGE_MESSAGE_HEADER, percent_encode};

pub(crate) use self::admin::Admin;
use self::admin::{ApiResult, control, shown};
use self::error::{ApiError, store_error};
use self::model::{
    Changed, ConfigTested, ConfigText, DeletedLease, GroupList, HaStatus, Health, Heartbeat, LeaseInfo, LeasePage,
    LeaseUpdates, ReservationList, StatsMap, StoreEntry, StoreEntryList, UpdatesApplied,
};
use self::who::Who;
use crate::control::{ConfigControl, ControlError};
use crate::ha::{Ha, LEASE_UPDATES_TYPE, ReplicaStore, change_from_model, decode_updates};
use crate::history::Source;
use crate::redact::redact_secrets;

/// The API's routes.
pub(crate) fn router<S: LeaseStore + ReplicaStore + 'static>(admin: Admin<S>) -> Router {
    let admin = Arc::new(admin);
    let api = Router::new()
        .route("/leases", get(list_leases::<S>).layer(Extension(listing::Listings::new(listing::CONCURRENT_LISTINGS))))
        .route("/leases/{addr}", get(get_lease::<S>).delete(delete_lease::<S>))
        .route("/reservations", get(list_reservations::<S>).post(add_reservation::<S>))
        .route("/reservations/{id}", put(replace_reservation::<S>).delete(delete_reservation::<S>))
        .route("/groups", get(list_groups::<S>))
        .route("/groups/{name}", put(set_group::<S>).delete(delete_group::<S>))
        .route("/store/entries", get(list_store_entries::<S>))
        .route("/store/entries/{key}", put(put_store_entry::<S>).delete(delete_store_entry::<S>))
        .route("/stats", get(stats::<S>))
        .route("/health", get(health::<S>))
        .route("/config", get(config_text::<S>))
        .route("/config/test", post(config_test))
        .route("/config/reload", post(changes::reload::<S>))
        .route("/config/rollback", post(changes::rollback::<S>))
        .route("/config/history", get(changes::list::<S>))
        .route("/config/history/{version}", get(changes::show::<S>))
        .route("/config/diff", get(changes::diff::<S>))
        .route("/audit", get(changes::audit::<S>))
        .route("/ha", get(ha_status::<S>))
        .route("/ha/heartbeat", post(ha_heartbeat::<S>))
        .route("/ha/partner-down", post(ha_partner_down::<S>))
        .route("/ha/lease-updates", post(ha_lease_updates::<S>))
        .route("/ha/maintenance/start", post(ha_maintenance_start::<S>))
        .route("/ha/maintenance/stop", post(ha_maintenance_stop::<S>))
        .route("/ha/sync", post(ha_sync::<S>))
        .route("/ha/leases", get(ha_leases::<S>))
        .route("/session", get(auth::session))
        .route("/users", get(auth::list_users::<S>))
        .route("/users/{name}", put(auth::put_user::<S>).delete(auth::delete_user::<S>))
        .route("/users/{name}/tokens", post(auth::issue_token::<S>))
        .route("/users/{name}/tokens/{id}", delete(auth::revoke_token::<S>))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&admin), auth::gate::<S>));
    // Outside the gate: logging in needs no session yet.
    let public = Router::new().route("/login", post(auth::login::<S>)).route("/logout", post(auth::logout::<S>));
    Router::new()
        .nest("/api/v1", api.merge(public))
        .nest("/portal", crate::portal::router::<S>())
        .route("/portal/", get(crate::portal::to_root))
        .route("/metrics", get(metrics_text::<S>))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(admin)
}

/// Serves the API on `listener` until the task is dropped.
pub(crate) async fn serve<S, L>(listener: L, admin: Admin<S>)
where
    S: LeaseStore + ReplicaStore + 'static,
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    // The dashboard's packet rates: the counters sampled on this thread while it serves.
    let (rates, server) = (Arc::clone(&admin.rates), Arc::clone(&admin.server));
    let sampler = tokio::spawn(async move {
        let mut tick = tokio::time::interval(crate::rates::SAMPLE_EVERY);
        loop {
            tick.tick().await;
            rates.sample(server.engine().stats(), std::time::Instant::now());
        }
    });
    if let Err(e) = axum::serve(listener, router(admin)).await {
        warn!(error = %e, "management API stopped");
    }
    sampler.abort();
}

impl<S: LeaseStore + 'static> listing::LeaseSource for Admin<S> {
    type Store = S;

    fn store(&self) -> &S {
        self.server.engine().store()
    }
}

/// `GET /api/v1/leases?subnet=&state=&mac=&client=&after=&limit=`.
async fn list_leases<S: LeaseStore + 'static>(
    State(admin): State<Arc<Admin<S>>>,
    Extension(listings): Extension<listing::Listings>,
    pairs: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let seen = Arc::clone(&admin.seen);
    listing::list_leases(admin, seen, listings, pairs).await
}

/// A lease as the API shows it.
fn lease_info<S>(admin: &Admin<S>, lease: &dhcp_core::Lease) -> LeaseInfo {
    LeaseInfo::new(lease, admin.seen.get(&lease.hwaddr))
}

fn parse_addr(text: &str) -> Result<Ipv4Addr, ApiError> {
    text.parse().map_err(|_| ApiError::bad("address", format!("{text:?} is not an IPv4 address")))
}

async fn get_lease<S: LeaseStore>(
    State(admin): State<Arc<Admin<S>>>,
    Path(addr): Path<String>,
) -> ApiResult<LeaseInfo> {
    let addr = parse_addr(&addr)?;
    match admin.server.engine().store().lease_by_addr(addr).await.map_err(store_error)? {
        Some(lease) => Ok(axum::Json(lease_info(&admin, &lease))),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no lease for {addr}"))),
    }
}

async fn delete_lease<S: LeaseStore>(
    State(admin): State<Arc<Admin<S>>>,
    Path(addr): Path<String>,
    who: Who,
) -> ApiResult<DeletedLease> {
    let addr = parse_addr(&addr)?;
    let result = match admin.server.engine().delete_lease(addr).await.map_err(store_error) {
        Ok(Some(lease)) => Ok(lease),
        Ok(None) => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no lease for {addr}"))),
        Err(e) => Err(e),
    };
    let detail = match &result {
        Ok(lease) => serde_json::json!({ "hw-address": lease.hwaddr.to_string(), "subnet": lease.subnet }),
        Err(_) => Value::Null,
    };
    admin.audit_result(&who, "lease.delete", &addr.to_string(), &result.as_ref().map(|_| ()), detail);
    let lease = result?;
    info!(%addr, "lease deleted through the API");
    Ok(axum::Json(DeletedLease { deleted: lease_info(&admin, &lease) }))
}

async fn list_reservations<S: LeaseStore>(State(admin): State<Arc<Admin<S>>>) -> ApiResult<ReservationList> {
    let mut reservations = admin.config_hosts()?.0.as_ref().clone();
    for r in &mut reservations {
        let hw = r.hw_address.as_deref().and_then(dhcp_core::HwAddr::parse);
        r.last_seen = hw.and_then(|hw| admin.seen.get(&hw));
    }
    Ok(axum::Json(ReservationList { reservations }))
}

/// Parses a JSON body, naming what is wrong.
fn json_body(body: &Bytes) -> Result<serde_json::Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad("body", "expected a JSON object")),
        Err(e) => Err(ApiError::bad("body", format!("malformed JSON: {e}"))),
    }
}

/// Runs a config edit by `who` (`action` on `target`, `detail` for the audit log) and answers
/// with what it applied.
fn apply_edit<S: LeaseStore>(
    admin: &Admin<S>,
    who: &Who,
    audit: (&str, &str, Value),
    status: StatusCode,
    edit: impl FnOnce(&str) -> Result<String, ApiError>,
) -> Result<Response, ApiError> {
    let applied = admin.edit_config(who, Source::Api, audit, edit)?;
    Ok((status, axum::Json(Changed { applied: (&applied).into() })).into_response())
}

async fn add_reservation<S: LeaseStore>(
    State(admin): State<Arc<Admin<S>>>,
    who: Who,
    body: Bytes,
) -> Result<Response, ApiError> {
    let fields = json_body(&body)?;
    let target = ["hw-address", "client-id"].iter().find_map(|k| fields.get(*k).and_then(Value::as_str));
    let audit = ("reservation.add", target.unwrap_or_default(), Value::Object(fields.clone()));
    apply_edit(&admin, &who, audit, StatusCode::CREATED, |text| edit::add_reservation(text, &fields))
}

async fn replace_reservation<S: LeaseStore>(
    State(admin): State<Arc<Admin<S>>>,
    Path(id): Path<String>,
    who: Who,
    body: Bytes,
) -> Result<Response, ApiError> {
    let fields = json_body(&body)?;
    let audit = ("reservation.replace", id.as_str(), Value::Object(fields.clone()));
    apply_edit(&admin, &who, audit, StatusCode::OK, |text| edit::replace_reservation(text, &id, &fields))
}

async fn delete_reservation<S: LeaseStore>(
    State(admin): State<Arc<Admin<S>>>,
    Path(id): Path<String>,
    who: Who,
) -> Result<Response, ApiError> {
    let audit = ("reservation.delete", id.as_str(), Value::Null);
    apply_edit(&admin, &who, audit, StatusCode::OK, |text| edit::delete_reservation(text, &id))
}

async fn list_groups<S: LeaseStore>(State(admin): State<Arc<Admin<S>>>) -> ApiResult<GroupList> {
    let groups = admin.config_hosts()?.1.as_ref().clone();
    Ok(axum::Json(GroupList { groups }))
}

async fn set_group<S: LeaseStore>(
    State(admin): State<Arc<Admin<S>>>,
    Path(name): Path<String>,
    who: Who,
    body: Bytes,
) -> Result<Response, ApiError> {
    let fields = json_body(&body)?;
    let audit = ("group.set", name.as_str(), Value::Object(fields.clone()));
    apply_edit(&admin, &who, audit, StatusCode::OK, |text| edit::set_group(text, &name, &fields))
}

async fn delete_group<S: LeaseStore>(
    State(admin): State<Arc<Admin<S>>>,
    Path(name): Path<String>,
    who: Who,
) -> Result<Response, ApiError> {
    let audit = ("group.delete", name.as_str(), Value::Null);
    apply_edit(&admin, &who, audit, StatusCode::OK, |text| edit::delete_group(text, &name))
}

/// `?kind=` of `GET /store/entries`.
#[derive(Debug, serde::Deserialize)]
struct EntryKind {
    kind: String,
}

/// The store's entries are the engine's hosts only with `host-source = "store"`: elsewhere,
/// editing them would change nothing the server serves.
fn entries<S: LeaseStore>(admin: &Admin<S>) -> Result<&entries::StoreEntries, ApiError> {
    if admin.server.engine().config().hosts_from_store {
        Ok(&admin.entries)
    } else {
        Err(ApiError::new(StatusCode::CONFLICT, "the config reads hosts from itself (host-source = \"config\")"))
    }
}

async fn list_store_entries<S: LeaseStore>(
    State(admin): State<Arc<Admin<S>>>,
    Query(kind): Query<EntryKind>,
) -> ApiResult<StoreEntryList> {
    Ok(axum::Json(StoreEntryList { entries: entries(&admin)?.list(&kind.kind).await? }))
}

async fn put_store_entry<S: LeaseStore>(
    State(admin): State<Arc<Admin<S>>>,
    Path(key): Path<String>,
    who: Who,
    body: Bytes,
) -> Result<Response, ApiError> {
    let fields: std::collections::BTreeMap<String, String> = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad("fields", format!("a JSON object of string fields: {e}")))?;
    let result = entries(&admin)?.put(&key, &fields).await;
    let detail = serde_json::to_value(&fields).unwrap_or_default();
    admin.audit_result(&who, "store-entry.set", &key, &result, detail);
    result?;
    info!(key = %key, "store entry written");
    Ok(axum::Json(StoreEntry { key, fields }).into_response())
}

async fn delete_store_entry<S: LeaseStore>(
    State(admin): State<Arc<Admin<S>>>,
    Path(key): Path<String>,
    who: Who,
) -> Result<Response, ApiError> {
    let result = match entries(&admin)?.delete(&key).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no entry {key}"))),
        Err(e) => Err(e),
    };
    admin.audit_result(&who, "store-entry.delete", &key, &result, Value::Null);
    result?;
    info!(key = %key, "store entry deleted");
    Ok(axum::Json(serde_json::json!({ "deleted": key })).into_response())
}

async fn stats<S: LeaseStore>(State(admin): State<Arc<Admin<S>>>) -> ApiResult<StatsMap> {
    let limits = admin.limits.as_ref().map(|l| l.stats()).unwrap_or_default();
    Ok(axum::Json(admin.server.engine().stats().snapshot().into_iter().chain(limits).collect()))
}

async fn health<S: LeaseStore>(State(admin): State<Arc<Admin<S>>>) -> Response {
    // Any cheap read will do: the store must answer, and soon.
    let probe = admin.server.engine().store().lease_by_addr(Ipv4Addr::UNSPECIFIED);
    let store = match tokio::time::timeout(Duration::from_secs(2), probe).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(redact_secrets(&e.to_string())),
        Err(_) => Err("no answer within 2 s".to_owned()),
    };
    let sockets = admin.server.sockets().len();
    let ready = store.is_ok() && sockets > 0;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = Health { ready, sockets, store: store.err().unwrap_or_else(|| "ok".to_owned()) };
    (status, axum::Json(body)).into_response()
}

async fn config_text<S: LeaseStore>(State(admin): State<Arc<Admin<S>>>) -> ApiResult<ConfigText> {
    let control = control(&admin)?;
    Ok(axum::Json(ConfigText {
        path: control.path().display().to_string(),
        history: control.history().ok().map(|h| h.dir().display().to_string()),
        // Shown without the token and store passwords; the file and the running text keep them.
        text: shown(&admin, &control.running_text()),
    }))
}

async fn config_test(body: Bytes) -> ApiResult<ConfigTested> {
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::bad("body", "the config must be UTF-8 text"))?;
    let config = ConfigControl::test(text).map_err(|e| ApiError::from(ControlError::Invalid(e)))?;
    Ok(axum::Json(ConfigTested { valid: true, subnets: config.dhcp.subnets.len() }))
}

async fn metrics_text<S: LeaseStore>(State(admin): State<Arc<Admin<S>>>) -> Response {
    let ha = admin.ha.as_ref().map(|ha| ha.status());
    let mut text = admin.metrics.render(admin.server.engine().stats(), ha.as_ref(), admin.limits.as_deref());
    if let Some((hits, misses)) = admin.entries.cache_counts() {
        use std::fmt::Write;
        let _ = write!(
            text,
            "# HELP dhcp4_host_cache_hits_total Host lookups the Redis host cache answered from memory.\n\
             # TYPE dhcp4_host_cache_hits_total counter\ndhcp4_host_cache_hits_total {hits}\n\
             # HELP dhcp4_host_cache_misses_total Host lookups that went to Redis.\n\
             # TYPE dhcp4_host_cache_misses_total counter\ndhcp4_host_cache_misses_total {misses}\n"
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

fn ha<S>(admin: &Admin<S>) -> Result<&Ha, ApiError> {
    admin.ha.as_deref().ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "this server has no [ha] table"))
}

async fn ha_status<S: LeaseStore>(State(admin): State<Arc<Admin<S>>>) -> ApiResult<HaStatus> {
    Ok(axum::Json(ha(&admin)?.status()))
}

async fn ha_heartbeat<S: LeaseStore>(State(admin): State<Arc<Admin<S>>>, body: Bytes) -> ApiResult<Heartbeat> {
    let ha = ha(&admin)?;
    let partner: Heartbeat =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad("body", format!("not a heartbeat: {e}")))?;
    let peers = &ha.config().peers;
    if partner.name == ha.config().this_server || !peers.iter().any(|p| p.name == partner.name) {
        return Err(ApiError::bad("name", format!("{:?} is not a peer of this server", partner.name)));
    }
    // Only the partner's heartbeats say whether the partner is up; a backup's are answered.
    let pools = crate::ha::pools_fingerprint(&admin.server.engine().config());
    if ha.config().partner().is_some_and(|p| p.name == partner.name) {
        ha.heard(&partner, pools);
    }
    Ok(axum::Json(ha.heartbeat(crate::ha::assigned_leases(admin.server.engine()), pools)))
}

async fn ha_partner_down<S: LeaseStore>(State(admin): State<Arc<Admin<S>>>) -> ApiResult<HaStatus> {
    let ha = ha(&admin)?;
    if ha.partner_down().is_none() && ha.state() != crate::ha::HaState::PartnerDown {
        return Err(ApiError::new(StatusCode::CONFLICT, "this server may not take its partner's clients over"));
    }
    Ok(axum::Json(ha.status()))
}

async fn ha_lease_updates<S: LeaseStore + ReplicaStore>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<UpdatesApplied> {
    let ha = ha(&admin)?;
    // The peers send the binary form; JSON is for an operator (and a test) by hand.
    let binary = headers.get(header::CONTENT_TYPE).is_some_and(|t| t.as_bytes() == LEASE_UPDATES_TYPE.as_bytes());
    let (from, changes) = if binary {
        decode_updates(&body).map_err(|e| ApiError::bad("body", format!("not lease updates: {e}")))?
    } else {
        let updates: LeaseUpdates =
            serde_json::from_slice(&body).map_err(|e| ApiError::bad("body", format!("not lease updates: {e}")))?;
        let changes = updates
            .changes
            .iter()
            .enumerate()
            .map(|(i, change)| change_from_model(change).map_err(|e| ApiError::bad(format!("changes[{i}]"), e)))
            .collect::<Result<Vec<_>, _>>()?;
        (updates.from, changes)
    };
    if from == ha.config().this_server || !ha.config().peers.iter().any(|p| p.name == from) {
        return Err(ApiError::bad("from", format!("{from:?} is not a peer of this server")));
    }
    let engine = admin.server.engine();
    let now = dhcp_net::now();
    let changed = |before: Option<&Lease>, after: Option<&Lease>| engine.lease_changed(before, after);
    let applied = engine.store().apply_changes(&changes, now, &changed).await.map_err(store_error)?;
    Ok(axum::Json(applied))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    after: Option<Ipv4Addr>,
    limit: Option<usize>,
}

async fn ha_leases<S: LeaseStore + ReplicaStore>(
    State(admin): State<Arc<Admin<S>>>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<LeasePage> {
    ha(&admin)?;
    let Query(query) = query.map_err(|e| ApiError::bad("query", e.body_text()))?;
    let limit = query.limit.unwrap_or(10_000).clamp(1, 100_000);
    let page = admin.server.engine().store().lease_page(query.after, limit).await.map_err(store_error)?;
    Ok(axum::Json(page))
}

async fn ha_maintenance_start<S: LeaseStore>(State(admin): State<Arc<Admin<S>>>) -> ApiResult<HaStatus> {
    let ha = ha(&admin)?;
    if ha.maintenance(true).is_none() && ha.state() != crate::ha::HaState::InMaintenance {
        return Err(ApiError::new(StatusCode::CONFLICT, "a server without a partner cannot hand its clients over"));
    }
    Ok(axum::Json(ha.status()))
}

async fn ha_maintenance_stop<S: LeaseStore>(State(admin): State<Arc<Admin<S>>>) -> ApiResult<HaStatus> {
    let ha = ha(&admin)?;
    if ha.maintenance(false).is_none() {
        return Err(ApiError::new(StatusCode::CONFLICT, "this server is not in maintenance"));
    }
    Ok(axum::Json(ha.status()))
}

async fn ha_sync<S: LeaseStore>(State(admin): State<Arc<Admin<S>>>) -> ApiResult<HaStatus> {
    let ha = ha(&admin)?;
    if !ha.config().send_lease_updates {
        return Err(ApiError::new(StatusCode::CONFLICT, "the pair shares one store: there is nothing to sync"));
    }
    ha.request_sync();
    Ok(axum::Json(ha.status()))
}
