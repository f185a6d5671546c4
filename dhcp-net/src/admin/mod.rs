//! The management API: HTTP with JSON, every `/api/v1` request behind a bearer token; the
//! Prometheus exposition at `/metrics` (no token, for scrapers: bind `api-listen` to a
//! management address).
//!
//! | method and path | what |
//! |---|---|
//! | `GET /api/v1/leases?subnet=&state=&mac=&client=` | leases, filtered |
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
//! | `GET /api/v1/config` | the running config's text and file |
//! | `POST /api/v1/config/test` | validate the posted config text, change nothing |
//! | `POST /api/v1/config/reload` | read the config file again and apply it if valid |
//! | `POST /api/v1/config/rollback` | restore the last good config to the file and apply it |
//!
//! Reservation and group changes edit the running config, are validated as a whole, applied to
//! the next packet and written to the config file; an invalid change gets 400 naming the field
//! and changes nothing. Errors are `{"error": "...", "field": "..."}`.
//!
//! # Example
//! A server with metrics, reloads and the API, as `dhcp-server` builds it:
//! ```no_run
//! use std::sync::Arc;
//! use dhcp_core::Engine;
//! use dhcp_net::admin::{MeteredStore, Metrics};
//! use dhcp_net::{ConfigControl, Server, ServerConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let path = "/etc/dhcp/server.toml";
//! let text = std::fs::read_to_string(path)?; // with api-listen and api-token in [server]
//! let config = ServerConfig::from_toml_str(&text)?;
//! let metrics = Arc::new(Metrics::new());
//! let store = MeteredStore::new(dhcp_store::open(&config.settings.store).await?, &metrics);
//! let engine = Arc::new(Engine::new(config.dhcp, store));
//! let control = Arc::new(ConfigControl::new(path, text, config.settings.clone()));
//! let server = Server::bind(engine, config.settings)?.with_control(control).with_metrics(metrics);
//! Arc::new(server).serve(std::future::pending()).await?; // SIGHUP reloads; the API is served
//! # Ok(()) }
//! ```

mod client;
mod edit;
mod metrics;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use dhcp_core::{Lease, LeaseStore};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{info, warn};

pub use client::{AdminClient, ClientError};
pub use metrics::{MeteredStore, Metrics};

use crate::control::{Applied, ControlError};
use crate::server::Server;

/// An API error: a status and a JSON body naming the field at fault, when there is one.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    error: String,
    field: Option<String>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError { status, error: error.into(), field: None }
    }

    pub(crate) fn bad(field: impl Into<String>, error: impl Into<String>) -> Self {
        ApiError { status: StatusCode::BAD_REQUEST, error: error.into(), field: Some(field.into()) }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            // The config path ("subnets[0].reservations[2].ip-address") names the field.
            ControlError::Invalid(config) => {
                let field = (!config.path.is_empty()).then(|| config.path.clone());
                ApiError { status: StatusCode::BAD_REQUEST, error: config.to_string(), field }
            }
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({ "error": self.error, "field": self.field }))).into_response()
    }
}

type ApiResult = Result<axum::Json<Value>, ApiError>;

/// The API's state: the server (engine, config control, last-seen times) and its metrics.
struct Admin<S> {
    server: Arc<Server<S>>,
    metrics: Arc<Metrics>,
    token: String,
}

/// The API's routes over `server`.
pub(crate) fn router<S: LeaseStore + 'static>(server: Arc<Server<S>>, metrics: Arc<Metrics>, token: String) -> Router {
    let admin = Arc::new(Admin { server, metrics, token });
    let api = Router::new()
        .route("/leases", get(list_leases::<S>))
        .route("/leases/{addr}", get(get_lease::<S>).delete(delete_lease::<S>))
        .route("/reservations", get(list_reservations::<S>).post(add_reservation::<S>))
        .route("/reservations/{id}", put(replace_reservation::<S>).delete(delete_reservation::<S>))
        .route("/groups", get(list_groups::<S>))
        .route("/groups/{name}", put(set_group::<S>).delete(delete_group::<S>))
        .route("/stats", get(stats::<S>))
        .route("/health", get(health::<S>))
        .route("/config", get(config_text::<S>))
        .route("/config/test", post(config_test))
        .route("/config/reload", post(config_reload::<S>))
        .route("/config/rollback", post(config_rollback::<S>))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&admin), require_token::<S>));
    Router::new()
        .nest("/api/v1", api)
        .route("/metrics", get(metrics_text::<S>))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(admin)
}

/// Serves the API on `listener` until the task is dropped.
pub(crate) async fn serve<S: LeaseStore + 'static>(
    listener: tokio::net::TcpListener,
    server: Arc<Server<S>>,
    metrics: Arc<Metrics>,
    token: String,
) {
    if let Err(e) = axum::serve(listener, router(server, metrics, token)).await {
        warn!(error = %e, "management API stopped");
    }
}

/// 401 unless the request carries `Authorization: Bearer <token>`.
async fn require_token<S>(State(admin): State<Arc<Admin<S>>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !same(given.as_bytes(), admin.token.as_bytes()) {
        return ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response();
    }
    next.run(request).await
}

/// Compares in time that depends on the lengths only, not on where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn store_error(e: dhcp_core::StoreError) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("lease store: {e}"))
}

/// A lease as the API shows it.
fn lease_json<S: LeaseStore>(server: &Server<S>, lease: &Lease) -> Value {
    json!({
        "address": lease.addr.to_string(),
        "subnet": lease.subnet,
        "hw-address": lease.hwaddr.to_string(),
        "client-id": lease.client.to_string(),
        "state": lease.state.name(),
        "deadline": lease.state.deadline().map(|t| t.as_secs()),
        "hostname": lease.hostname,
        "last-seen": server.last_seen().get(&lease.hwaddr),
    })
}

/// `02-00-0A-...` and `02:00:0a:...` alike.
pub(crate) fn normal_mac(text: &str) -> String {
    text.trim().to_ascii_lowercase().replace('-', ":")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseFilter {
    subnet: Option<u32>,
    state: Option<String>,
    mac: Option<String>,
    client: Option<String>,
}

async fn list_leases<S: LeaseStore>(
    State(admin): State<Arc<Admin<S>>>,
    filter: Result<Query<LeaseFilter>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(filter) = filter.map_err(|e| ApiError::bad("query", e.body_text()))?;
    if let Some(state) = &filter.state
        && !["offered", "bound", "declined", "released", "expired"].contains(&state.as_str())
    {
        return Err(ApiError::bad("state", format!("{state:?}: offered, bound, declined, released or expired")));
    }
    let leases = admin.server.engine().store().list(filter.subnet).await.map_err(store_error)?;
    // Any spelling of a MAC (`02-00-..`, `0200..`) matches the leases' `02:00:..`.
    let mac =
        filter.mac.as_deref().map(|m| dhcp_core::HwAddr::parse(m).map_or_else(|| normal_mac(m), |h| h.to_string()));
    let client = filter.client.as_deref().map(normal_mac);
    let shown: Vec<Value> = leases
        .iter()
        .filter(|l| filter.state.as_deref().is_none_or(|s| l.state.name() == s))
        .filter(|l| mac.as_deref().is_none_or(|m| l.hwaddr.to_string() == m))
        .filter(|l| client.as_deref().is_none_or(|c| l.client.to_string() == c))
        .map(|l| lease_json(&admin.server, l))
        .collect();
    Ok(axum::Json(json!({ "leases": shown })))
}

fn parse_addr(text: &str) -> Result<Ipv4Addr, ApiError> {
    text.parse().map_err(|_| ApiError::bad("address", format!("{text:?} is not an IPv4 address")))
}

async fn get_lease<S: LeaseStore>(State(admin): State<Arc<Admin<S>>>, Path(addr): Path<String>) -> ApiResult {
    let addr = parse_addr(&addr)?;
    match admin.server.engine().store().lease_by_addr(addr).await.map_err(store_error)? {
        Some(lease) => Ok(axum::Json(lease_json(&admin.server, &lease))),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no lease for {addr}"))),
    }
}

async fn delete_lease<S: LeaseStore>(State(admin): State<Arc<Admin<S>>>, Path(addr): Path<String>) -> ApiResult {
    let addr = parse_addr(&addr)?;
    match admin.server.engine().delete_lease(addr, crate::clock::now()).await.map_err(store_error)? {
        Some(lease) => {
            info!(%addr, "lease deleted through the API");
            Ok(axum::Json(json!({ "deleted": lease_json(&admin.server, &lease) })))
        }
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no lease for {addr}"))),
    }
}

fn control<S: LeaseStore>(admin: &Admin<S>) -> Result<&crate::control::ConfigControl, ApiError> {
    admin
        .server
        .control()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_IMPLEMENTED, "this server was started without a config file"))
}

fn applied_json(applied: &Applied) -> Value {
    json!({
        "subnets": applied.subnets,
        "reservations": applied.reservations,
        "restart-needed": applied.restart_needed,
    })
}

async fn list_reservations<S: LeaseStore>(State(admin): State<Arc<Admin<S>>>) -> ApiResult {
    let text = control(&admin)?.running_text();
    let mut list = edit::reservations(&text).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    for r in &mut list {
        let hw = r.get("hw-address").and_then(Value::as_str).and_then(dhcp_core::HwAddr::parse);
        if let (Some(hw), Some(obj)) = (hw, r.as_object_mut()) {
            obj.insert("last-seen".into(), json!(admin.server.last_seen().get(&hw)));
        }
    }
    Ok(axum::Json(json!({ "reservations": list })))
}

/// Parses a JSON body, naming what is wrong.
fn json_body(body: &Bytes) -> Result<serde_json::Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad("body", "expected a JSON object")),
        Err(e) => Err(ApiError::bad("body", format!("malformed JSON: {e}"))),
    }
}

/// Runs a config edit and answers with what it applied.
fn apply_edit<S: LeaseStore>(
    admin: &Admin<S>,
    status: StatusCode,
    edit: impl FnOnce(&str) -> Result<String, ApiError>,
) -> Result<Response, ApiError> {
    let applied = control(admin)?.edit(admin.server.engine(), edit)??;
    Ok((status, axum::Json(json!({ "applied": applied_json(&applied) }))).into_response())
}

async fn add_reservation<S: LeaseStore>(State(admin): State<Arc<Admin<S>>>, body: Bytes) -> Result<Response, ApiError> {
    let fields = json_body(&body)?;
    apply_edit(&admin, StatusCode::CREATED, |text| edit::add_reservation(text, &fields))
}

async fn replace_reservation<S: LeaseStore>(
    State(admin): State<Arc<Admin<S>>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let fields = json_body(&body)?;
    apply_edit(&admin, StatusCode::OK, |text| edit::replace_reservation(text, &id, &fields))
}

async fn delete_reservation<S: LeaseStore>(
    State(admin): State<Arc<Admin<S>>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    apply_edit(&admin, StatusCode::OK, |text| edit::delete_reservation(text, &id))
}

async fn list_groups<S: LeaseStore>(State(admin): State<Arc<Admin<S>>>) -> ApiResult {
    let text = control(&admin)?.running_text();
    let groups = edit::groups(&text).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(axum::Json(json!({ "groups": groups })))
}

async fn set_group<S: LeaseStore>(
    State(admin): State<Arc<Admin<S>>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let fields = json_body(&body)?;
    apply_edit(&admin, StatusCode::OK, |text| edit::set_group(text, &name, &fields))
}

async fn delete_group<S: LeaseStore>(
    State(admin): State<Arc<Admin<S>>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    apply_edit(&admin, StatusCode::OK, |text| edit::delete_group(text, &name))
}

async fn stats<S: LeaseStore>(State(admin): State<Arc<Admin<S>>>) -> ApiResult {
    let map: serde_json::Map<String, Value> =
        admin.server.engine().stats().snapshot().into_iter().map(|(k, v)| (k, json!(v))).collect();
    Ok(axum::Json(Value::Object(map)))
}

async fn health<S: LeaseStore>(State(admin): State<Arc<Admin<S>>>) -> Response {
    // Any cheap read will do: the store must answer, and soon.
    let probe = admin.server.engine().store().lease_by_addr(Ipv4Addr::UNSPECIFIED);
    let store = match tokio::time::timeout(Duration::from_secs(2), probe).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 2 s".to_owned()),
    };
    let sockets = admin.server.sockets().len();
    let ready = store.is_ok() && sockets > 0;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "ready": ready,
        "sockets": sockets,
        "store": match &store { Ok(()) => "ok".to_owned(), Err(e) => e.clone() },
    });
    (status, axum::Json(body)).into_response()
}

async fn config_text<S: LeaseStore>(State(admin): State<Arc<Admin<S>>>) -> ApiResult {
    let control = control(&admin)?;
    Ok(axum::Json(json!({
        "path": control.path().display().to_string(),
        "last-good": control.last_good_path().display().to_string(),
        "text": control.running_text(),
    })))
}

async fn config_test(body: Bytes) -> ApiResult {
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::bad("body", "the config must be UTF-8 text"))?;
    let config = crate::control::ConfigControl::test(text).map_err(|e| ApiError::from(ControlError::Invalid(e)))?;
    Ok(axum::Json(json!({ "valid": true, "subnets": config.dhcp.subnets.len() })))
}

async fn config_reload<S: LeaseStore>(State(admin): State<Arc<Admin<S>>>) -> ApiResult {
    let applied = control(&admin)?.reload(admin.server.engine())?;
    Ok(axum::Json(json!({ "applied": applied_json(&applied) })))
}

async fn config_rollback<S: LeaseStore>(State(admin): State<Arc<Admin<S>>>) -> ApiResult {
    let applied = control(&admin)?.rollback(admin.server.engine())?;
    Ok(axum::Json(json!({ "applied": applied_json(&applied) })))
}

async fn metrics_text<S: LeaseStore>(State(admin): State<Arc<Admin<S>>>) -> Response {
    let text = admin.metrics.render(admin.server.engine().stats());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
