//! What the API's handlers share: the server they act on ([`Admin`]), the audit line a change
//! writes, and config text as the API shows it.

use std::sync::Arc;

use axum::http::StatusCode;
use dhcp_net::Server;
use serde_json::Value;

use super::entries;
use super::error::ApiError;
use super::model::{Group, Reservation};
use super::who::Who;
use crate::audit::AuditLog;
use crate::control::{Applied, ConfigControl};
use crate::ha::Ha;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::redact::{REDACTED, redact_config, redact_secrets};
use crate::seen::LastSeen;
use crate::sessions::Sessions;
use crate::users::Users;

pub(crate) type ApiResult<T> = Result<axum::Json<T>, ApiError>;

/// What the API serves: the server (engine and sockets), the config file's control when the
/// server has one, the metrics registry and the last-seen times.
pub(crate) struct Admin<S> {
    pub(crate) server: Arc<Server<S>>,
    pub(crate) control: Option<Arc<ConfigControl>>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) seen: Arc<LastSeen>,
    pub(crate) ha: Option<Arc<Ha>>,
    pub(crate) limits: Option<Arc<Limits>>,
    /// The host and group entries the store keeps, when it is Redis.
    pub(crate) entries: entries::StoreEntries,
    pub(crate) token: String,
    pub(crate) audit: Arc<AuditLog>,
    /// The users and their tokens.
    pub(crate) users: Arc<Users>,
    /// Logged-in users' sessions and the login lockout.
    pub(crate) sessions: Arc<Sessions>,
    /// Whether the session cookie is `Secure` (the API serves HTTPS).
    pub(crate) secure_cookies: bool,
    /// How long a session lives at most, for the cookie's `Max-Age`.
    pub(crate) sessions_lifetime_secs: u64,
    /// Packet rates for the portal's dashboard.
    pub(crate) rates: Arc<crate::rates::PacketRates>,
    /// Portal login by OpenID Connect, when configured.
    pub(crate) oidc: Option<Arc<crate::oidc::Oidc>>,
    /// The running config's reservations and groups, parsed once per config.
    pub(crate) hosts: std::sync::Mutex<Option<ParsedHosts>>,
}

/// A config's reservations and groups, as [`edit`](super::edit) reads them.
pub(crate) type ConfigHosts = (Arc<Vec<Reservation>>, Arc<Vec<Group>>);

/// A config's text and its [`ConfigHosts`].
pub(crate) type ParsedHosts = (String, Arc<Vec<Reservation>>, Arc<Vec<Group>>);

impl<S> Admin<S> {
    /// The running config's reservations and groups: parsed again only when the config changed,
    /// so that pages listing ten thousand reservations do not parse the config each time.
    pub(crate) fn config_hosts(&self) -> Result<ConfigHosts, ApiError> {
        let text = control(self)?.running_text();
        let mut cached = self.hosts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((seen, reservations, groups)) = cached.as_ref()
            && *seen == text
        {
            return Ok((Arc::clone(reservations), Arc::clone(groups)));
        }
        let broken = |e: String| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e);
        let reservations = Arc::new(super::edit::reservations(&text).map_err(broken)?);
        let groups = Arc::new(super::edit::groups(&text).map_err(broken)?);
        *cached = Some((text, Arc::clone(&reservations), Arc::clone(&groups)));
        Ok((reservations, groups))
    }
}

impl<S> Admin<S> {
    /// Writes an audit line for a change by `who` whose result is `result`.
    pub(crate) fn audit_result<T, E: std::fmt::Display>(
        &self,
        who: &Who,
        action: &str,
        target: &str,
        result: &Result<T, E>,
        detail: Value,
    ) where
        T: AuditDetail,
    {
        let (outcome, detail) = match result {
            Ok(done) => ("ok".to_owned(), done.add_to(detail)),
            Err(e) => (redact_secrets(&e.to_string()), detail),
        };
        self.audit.record(&who.user, action, target, &outcome, who.detail(detail));
    }
}

impl<S: dhcp_core::LeaseStore> Admin<S> {
    /// Runs a config edit by `who` through `source` (`action` on `target`, `detail` for the
    /// audit log): validated whole, applied, written, kept in the history and audited.
    pub(crate) fn edit_config(
        &self,
        who: &Who,
        source: crate::history::Source,
        (action, target, detail): (&str, &str, Value),
        edit: impl FnOnce(&str) -> Result<String, ApiError>,
    ) -> Result<Applied, ApiError> {
        let result = control(self)?.edit(self.server.engine(), &who.change(source), edit);
        let result = match result {
            Ok(applied) => applied.map_err(ApiError::from),
            Err(refused) => Err(refused),
        };
        self.audit_result(who, action, target, &result, detail);
        result
    }
}

/// What a change's result adds to its audit line.
pub(crate) trait AuditDetail {
    fn add_to(&self, detail: Value) -> Value;
}

impl AuditDetail for Applied {
    fn add_to(&self, detail: Value) -> Value {
        let mut map = match detail {
            Value::Object(map) => map,
            Value::Null => serde_json::Map::new(),
            other => serde_json::Map::from_iter([("value".to_owned(), other)]),
        };
        if let Some(version) = self.version {
            map.insert("version".into(), version.into());
        }
        Value::Object(map)
    }
}

impl AuditDetail for () {
    fn add_to(&self, detail: Value) -> Value {
        detail
    }
}

/// Config text as the API shows it: without the token and store passwords.
pub(crate) fn shown<S>(admin: &Admin<S>, text: &str) -> String {
    without(&redact_config(text), &admin.token)
}

pub(crate) fn control<S>(admin: &Admin<S>) -> Result<&ConfigControl, ApiError> {
    admin
        .control
        .as_deref()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_IMPLEMENTED, "this server was started without a config file"))
}

/// `text` with every occurrence of `secret` (wherever the config writes it) [`REDACTED`].
fn without(text: &str, secret: &str) -> String {
    if secret.is_empty() { text.to_owned() } else { text.replace(secret, REDACTED) }
}
