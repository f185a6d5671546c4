//! The config history's endpoints and the audit log's.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use dhcp_core::LeaseStore;
use serde_json::Value;

use super::admin::{Admin, ApiResult, control, shown};
use super::error::ApiError;
use super::model::{AuditList, Changed, ConfigDiff, ConfigHistoryList, ConfigVersion};
use super::who::Who;
use crate::control::ControlError;
use crate::history::{self, Source};

fn history_error(e: std::io::Error) -> ApiError {
    ApiError::from(ControlError::Io { path: std::path::PathBuf::from("config history"), source: e })
}

/// `GET /config/history`: every version, newest first.
pub(crate) async fn list<S: LeaseStore>(State(admin): State<Arc<Admin<S>>>) -> ApiResult<ConfigHistoryList> {
    let history = control(&admin)?.history()?;
    let versions = history.list().map_err(history_error)?;
    Ok(axum::Json(ConfigHistoryList { dir: history.dir().display().to_string(), versions }))
}

/// `GET /config/history/{version}`: one version and its text (secrets shown as `***`).
pub(crate) async fn show<S: LeaseStore>(
    State(admin): State<Arc<Admin<S>>>,
    Path(version): Path<u64>,
) -> ApiResult<ConfigVersion> {
    let found = control(&admin)?.history()?.get(version).map_err(history_error)?;
    let (version, text) = found.ok_or(ControlError::NoVersion(version))?;
    Ok(axum::Json(ConfigVersion { version, text: shown(&admin, &text) }))
}

/// `?from=&to=` of `GET /config/diff`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct DiffQuery {
    from: u64,
    to: u64,
}

/// `GET /config/diff?from=A&to=B`: what changed from version A to version B.
pub(crate) async fn diff<S: LeaseStore>(
    State(admin): State<Arc<Admin<S>>>,
    Query(query): Query<DiffQuery>,
) -> ApiResult<ConfigDiff> {
    let history = control(&admin)?.history()?;
    let text = |v: u64| -> Result<String, ApiError> {
        let found = history.get(v).map_err(history_error)?;
        Ok(found.ok_or(ControlError::NoVersion(v))?.1)
    };
    let (old, new) = (shown(&admin, &text(query.from)?), shown(&admin, &text(query.to)?));
    let diff = history::diff(&old, &new, &format!("version {}", query.from), &format!("version {}", query.to));
    Ok(axum::Json(ConfigDiff { from: query.from, to: query.to, diff }))
}

/// `?version=` of `POST /config/rollback`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct RollbackQuery {
    version: Option<u64>,
}

/// `POST /config/rollback[?version=N]`: version N (validated first), or without one the
/// newest version (the last config applied) put back into the file and applied.
pub(crate) async fn rollback<S: LeaseStore>(
    State(admin): State<Arc<Admin<S>>>,
    who: Who,
    Query(query): Query<RollbackQuery>,
) -> ApiResult<Changed> {
    let change = who.change(Source::Rollback);
    let control = control(&admin)?;
    let engine = admin.server.engine();
    let result = match query.version {
        Some(version) => control.rollback_to(engine, version, &change),
        None => control.rollback(engine, &change),
    };
    let target = query.version.map(|v| v.to_string()).unwrap_or_default();
    admin.audit_result(&who, "config.rollback", &target, &result, Value::Null);
    Ok(axum::Json(Changed { applied: (&result?).into() }))
}

/// `POST /config/reload`: the config file read again and applied if valid.
pub(crate) async fn reload<S: LeaseStore>(State(admin): State<Arc<Admin<S>>>, who: Who) -> ApiResult<Changed> {
    let result = control(&admin)?.reload(admin.server.engine(), &who.change(Source::Reload));
    admin.audit_result(&who, "config.reload", "", &result, Value::Null);
    Ok(axum::Json(Changed { applied: (&result?).into() }))
}

/// `?limit=` of `GET /audit`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct AuditQuery {
    limit: Option<usize>,
}

/// `GET /audit?limit=N`: the last N entries of the audit log (100 by default), oldest first.
pub(crate) async fn audit<S: LeaseStore>(
    State(admin): State<Arc<Admin<S>>>,
    Query(query): Query<AuditQuery>,
) -> ApiResult<AuditList> {
    let limit = query.limit.unwrap_or(100).clamp(1, 10_000);
    let entries = match admin.audit.tail(limit) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(history_error(e)),
    };
    Ok(axum::Json(AuditList { path: admin.audit.path().display().to_string(), entries }))
}
