//! A blocking client of the management API, for `dhcp-cli` and for scripts written in Rust:
//! typed calls over the [`model`](super::model), and raw JSON calls for anything else.

use std::collections::BTreeMap;
use std::io::BufReader;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::model::{
    self, AuditList, Changed, ConfigDiff, ConfigHistoryList, ConfigTested, ConfigVersion, DeletedLease, ErrorBody,
    Group, GroupList, HaStatus, Health, LeaseFilter, LeaseInfo, LeaseList, PREFIX, Reservation, ReservationList,
    StatsMap, StoreEntry, StoreEntryList, TokenIssued, UserList,
};

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Nothing answered at the API's address.
    #[error("cannot reach the management API at {url}: {reason}")]
    Unreachable {
        /// The address tried.
        url: String,
        /// Why.
        reason: String,
    },
    /// The server refused the token.
    #[error("the management API refused the token (401): check --token or DHCP_API_TOKEN")]
    Unauthorized,
    /// The server answered with an error.
    #[error("{status}: {error}{}", field.as_deref().filter(|f| !error.contains(*f)).map(|f| format!(" (field {f})")).unwrap_or_default())]
    Api {
        /// The HTTP status.
        status: u16,
        /// The server's message.
        error: String,
        /// The field at fault, when the server named one.
        field: Option<String>,
    },
    /// The server answered with a body that is not what the API promises (another program on
    /// the port, or another version of the API).
    #[error("unexpected answer from {url}: {reason}")]
    Unexpected {
        /// The address asked.
        url: String,
        /// What did not fit.
        reason: String,
    },
}

/// How long [`AdminClient::leases`] waits for each read of a listing (and for the connection
/// and the answer's start); the call as a whole has no limit, as a listing of millions of
/// leases takes a while.
pub const LISTING_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`AdminClient::leases`] keeps asking a server that is running as many listings as
/// it allows.
pub const LISTING_BUSY_WAIT: Duration = Duration::from_secs(60);

/// The management API of one server.
#[derive(Debug, Clone)]
pub struct AdminClient {
    base: String,
    token: String,
    agent: ureq::Agent,
    /// Why the changes this client makes are made (`X-Change-Message`).
    message: Option<String>,
}

impl AdminClient {
    /// A client of the API at `base` (such as `http://127.0.0.1:8067`) with a bearer token; an
    /// `https://` API's certificate is checked against the web's roots.
    pub fn new(base: &str, token: &str) -> Self {
        Self::with_tls(base, token, ureq::tls::TlsConfig::default())
    }

    /// A client of an `https://` API whose certificate is checked against the CA certificates
    /// in the PEM file `ca`.
    pub fn with_ca(base: &str, token: &str, ca: &std::path::Path) -> Result<Self, ClientError> {
        let tls = crate::tls::client_config(Some(ca))
            .map_err(|reason| ClientError::Unreachable { url: base.to_owned(), reason })?;
        Ok(Self::with_tls(base, token, tls))
    }

    fn with_tls(base: &str, token: &str, tls: ureq::tls::TlsConfig) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .tls_config(tls)
            .build()
            .new_agent();
        AdminClient { base: base.trim_end_matches('/').to_owned(), token: token.to_owned(), agent, message: None }
    }

    /// The client with `message` as the reason for every change it makes, kept in the config
    /// history and the audit log.
    pub fn with_message(mut self, message: Option<&str>) -> Self {
        self.message = message.map(str::to_owned);
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Every lease matching `filter`, in address order.
    ///
    /// The server streams the whole list in one answer, read as it arrives: no limit on its
    /// size, and [`LISTING_READ_TIMEOUT`] on each read rather than a limit on the whole call.
    /// When the server is running as many listings as it allows (503 with `Retry-After`), the
    /// call waits as told and asks again, for up to [`LISTING_BUSY_WAIT`]. Should the server
    /// answer with a page (`next`), the pages are followed to the end.
    pub fn leases(&self, filter: &LeaseFilter) -> Result<LeaseList, ClientError> {
        let mut leases = Vec::new();
        let mut after = None;
        loop {
            let page = self.lease_list(&filter.page_path(after, None))?;
            leases.extend(page.leases);
            match page.next {
                // A cursor that does not move on would never end.
                Some(next) if after.is_none_or(|a| next > a) => after = Some(next),
                _ => return Ok(LeaseList { leases, next: None }),
            }
        }
    }

    /// One page of the leases matching `filter`: at most `limit` (1 to
    /// [`MAX_LEASE_LIMIT`](model::MAX_LEASE_LIMIT)) with addresses above `after`, in address
    /// order, and `next` (pass it as `after`) when more match.
    pub fn leases_page(
        &self,
        filter: &LeaseFilter,
        after: Option<Ipv4Addr>,
        limit: usize,
    ) -> Result<LeaseList, ClientError> {
        self.lease_list(&filter.page_path(after, Some(limit)))
    }

    /// `GET path` of a lease listing, waiting out a busy server.
    fn lease_list(&self, path: &str) -> Result<LeaseList, ClientError> {
        let give_up = Instant::now() + LISTING_BUSY_WAIT;
        loop {
            let response = self
                .agent
                .get(&self.url(path))
                .config()
                .timeout_global(None)
                .timeout_connect(Some(LISTING_READ_TIMEOUT))
                .timeout_recv_response(Some(LISTING_READ_TIMEOUT))
                .timeout_per_read(Some(LISTING_READ_TIMEOUT))
                .build()
                .header("Authorization", &self.bearer())
                .call()
                .map_err(|e| ClientError::Unreachable { url: self.url(path), reason: e.to_string() })?;
            if response.status().is_success() {
                let reader = BufReader::new(response.into_body().into_reader());
                return serde_json::from_reader(reader).map_err(|e| {
                    let (url, reason) = (self.url(path), e.to_string());
                    if e.is_io() {
                        ClientError::Unreachable { url, reason }
                    } else {
                        ClientError::Unexpected { url, reason }
                    }
                });
            }
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|secs| Duration::from_secs(secs.clamp(1, 10)));
            match retry_after {
                Some(wait) if response.status().as_u16() == 503 && Instant::now() + wait <= give_up => {
                    std::thread::sleep(wait);
                }
                _ => return self.answer(path, Ok(response)).and_then(|body| self.typed(path, body)),
            }
        }
    }

    /// The lease of one address.
    pub fn lease(&self, address: &str) -> Result<LeaseInfo, ClientError> {
        let path = model::lease_path(address);
        self.typed(&path, self.get(&path)?)
    }

    /// Deletes the lease of an address (it is free at once).
    pub fn delete_lease(&self, address: &str) -> Result<DeletedLease, ClientError> {
        let path = model::lease_path(address);
        self.typed(&path, self.delete(&path)?)
    }

    /// Every reservation, with when each client was last seen.
    pub fn reservations(&self) -> Result<ReservationList, ClientError> {
        let path = format!("{PREFIX}/reservations");
        self.typed(&path, self.get(&path)?)
    }

    /// Adds a reservation (`subnet` and one of `hw-address`, `client-id`, `circuit-id` set).
    pub fn add_reservation(&self, reservation: &Reservation) -> Result<Changed, ClientError> {
        let path = format!("{PREFIX}/reservations");
        self.typed(&path, self.post_json(&path, &Self::body(&path, reservation)?)?)
    }

    /// Replaces the reservation of a MAC or client identifier.
    pub fn replace_reservation(&self, id: &str, reservation: &Reservation) -> Result<Changed, ClientError> {
        let path = model::reservation_path(id);
        self.typed(&path, self.put_json(&path, &Self::body(&path, reservation)?)?)
    }

    /// Deletes the reservation of a MAC or client identifier.
    pub fn delete_reservation(&self, id: &str) -> Result<Changed, ClientError> {
        let path = model::reservation_path(id);
        self.typed(&path, self.delete(&path)?)
    }

    /// Every group.
    pub fn groups(&self) -> Result<GroupList, ClientError> {
        let path = format!("{PREFIX}/groups");
        self.typed(&path, self.get(&path)?)
    }

    /// Adds or replaces group `name`.
    pub fn set_group(&self, name: &str, group: &Group) -> Result<Changed, ClientError> {
        let path = model::group_path(name);
        self.typed(&path, self.put_json(&path, &Self::body(&path, group)?)?)
    }

    /// Deletes group `name`.
    pub fn delete_group(&self, name: &str) -> Result<Changed, ClientError> {
        let path = model::group_path(name);
        self.typed(&path, self.delete(&path)?)
    }

    /// The host or group entries of `kind` (`mac`, `client`, `group`) the store keeps (a Redis
    /// store with `host-source = "store"`); a 409 [`ClientError::Api`] where it keeps none.
    pub fn store_entries(&self, kind: &str) -> Result<StoreEntryList, ClientError> {
        let path = format!("{PREFIX}/store/entries?kind={kind}");
        self.typed(&path, self.get(&path)?)
    }

    /// Writes store entry `key` with exactly `fields`.
    pub fn put_store_entry(&self, key: &str, fields: &BTreeMap<String, String>) -> Result<StoreEntry, ClientError> {
        let path = model::store_entry_path(key);
        self.typed(&path, self.put_json(&path, &Self::body(&path, fields)?)?)
    }

    /// Deletes store entry `key`.
    pub fn delete_store_entry(&self, key: &str) -> Result<Value, ClientError> {
        self.delete(&model::store_entry_path(key))
    }

    /// The statistics, by Kea's names.
    pub fn stats(&self) -> Result<StatsMap, ClientError> {
        let path = format!("{PREFIX}/stats");
        self.typed(&path, self.get(&path)?)
    }

    /// The server's health; a server that is not ready answers 503, an [`ClientError::Api`].
    pub fn health(&self) -> Result<Health, ClientError> {
        let path = format!("{PREFIX}/health");
        self.typed(&path, self.get(&path)?)
    }

    /// The server's high-availability state and its partner's.
    pub fn ha_status(&self) -> Result<HaStatus, ClientError> {
        let path = format!("{PREFIX}/ha");
        self.typed(&path, self.get(&path)?)
    }

    /// Makes the server take its partner's clients over now.
    pub fn ha_partner_down(&self) -> Result<HaStatus, ClientError> {
        let path = format!("{PREFIX}/ha/partner-down");
        self.typed(&path, self.post_text(&path, "")?)
    }

    /// Puts the server in maintenance (`on`: its partner answers everyone) or takes it out.
    pub fn ha_maintenance(&self, on: bool) -> Result<HaStatus, ClientError> {
        let path = format!("{PREFIX}/ha/maintenance/{}", if on { "start" } else { "stop" });
        self.typed(&path, self.post_text(&path, "")?)
    }

    /// Makes the server fetch its partner's leases now.
    pub fn ha_sync(&self) -> Result<HaStatus, ClientError> {
        let path = format!("{PREFIX}/ha/sync");
        self.typed(&path, self.post_text(&path, "")?)
    }

    /// The Prometheus exposition, as a scraper sees it.
    pub fn metrics_text(&self) -> Result<String, ClientError> {
        match self.get("/metrics")? {
            Value::String(text) => Ok(text),
            other => Err(ClientError::Unexpected { url: self.url("/metrics"), reason: format!("JSON {other}") }),
        }
    }

    /// Validates config text with the server's rules, changing nothing.
    pub fn test_config(&self, text: &str) -> Result<ConfigTested, ClientError> {
        let path = format!("{PREFIX}/config/test");
        self.typed(&path, self.post_text(&path, text)?)
    }

    /// Makes the server read its config file again (refused, and nothing changes, if invalid).
    pub fn reload_config(&self) -> Result<Changed, ClientError> {
        let path = format!("{PREFIX}/config/reload");
        self.typed(&path, self.post_text(&path, "")?)
    }

    /// Puts the newest version of the server's config history (the last config applied) back
    /// into its config file and applies it.
    pub fn rollback_config(&self) -> Result<Changed, ClientError> {
        let path = format!("{PREFIX}/config/rollback");
        self.typed(&path, self.post_text(&path, "")?)
    }

    /// Puts version `version` of the config history back and applies it (validated first).
    pub fn rollback_config_to(&self, version: u64) -> Result<Changed, ClientError> {
        let path = format!("{PREFIX}/config/rollback?version={version}");
        self.typed(&path, self.post_text(&path, "")?)
    }

    /// Every version of the config history, newest first.
    pub fn config_history(&self) -> Result<ConfigHistoryList, ClientError> {
        let path = format!("{PREFIX}/config/history");
        self.typed(&path, self.get(&path)?)
    }

    /// One version of the config history and its text.
    pub fn config_version(&self, version: u64) -> Result<ConfigVersion, ClientError> {
        let path = format!("{PREFIX}/config/history/{version}");
        self.typed(&path, self.get(&path)?)
    }

    /// A unified diff between two versions of the config history.
    pub fn config_diff(&self, from: u64, to: u64) -> Result<ConfigDiff, ClientError> {
        let path = format!("{PREFIX}/config/diff?from={from}&to={to}");
        self.typed(&path, self.get(&path)?)
    }

    /// Every user, without secrets.
    pub fn users(&self) -> Result<UserList, ClientError> {
        let path = format!("{PREFIX}/users");
        self.typed(&path, self.get(&path)?)
    }

    /// Adds user `name` with `role` and `password`, or changes its role (and its password when
    /// given).
    pub fn put_user(&self, name: &str, role: &str, password: Option<&str>) -> Result<Value, ClientError> {
        let mut body = serde_json::json!({ "role": role });
        if let Some(password) = password {
            body["password"] = password.into();
        }
        self.put_json(&format!("{PREFIX}/users/{name}"), &body)
    }

    /// Deletes user `name`, its tokens and sessions.
    pub fn delete_user(&self, name: &str) -> Result<Value, ClientError> {
        self.delete(&format!("{PREFIX}/users/{name}"))
    }

    /// A new API token for user `name` (with `role`, at most the user's): shown only now.
    pub fn issue_token(&self, name: &str, role: Option<&str>) -> Result<TokenIssued, ClientError> {
        let path = format!("{PREFIX}/users/{name}/tokens");
        let body = role.map_or(Value::Null, |r| serde_json::json!({ "role": r }));
        self.typed(&path, self.post_json(&path, &body)?)
    }

    /// Revokes user `name`'s token `id`.
    pub fn revoke_token(&self, name: &str, id: &str) -> Result<Value, ClientError> {
        self.delete(&format!("{PREFIX}/users/{name}/tokens/{id}"))
    }

    /// The last `limit` entries of the audit log, oldest first.
    pub fn audit(&self, limit: usize) -> Result<AuditList, ClientError> {
        let path = format!("{PREFIX}/audit?limit={limit}");
        self.typed(&path, self.get(&path)?)
    }

    fn typed<T: DeserializeOwned>(&self, path: &str, body: Value) -> Result<T, ClientError> {
        serde_json::from_value(body).map_err(|e| ClientError::Unexpected { url: self.url(path), reason: e.to_string() })
    }

    fn body(path: &str, value: &impl Serialize) -> Result<Value, ClientError> {
        serde_json::to_value(value).map_err(|e| ClientError::Unexpected { url: path.to_owned(), reason: e.to_string() })
    }

    /// `GET path` (such as `/api/v1/leases?subnet=1`).
    pub fn get(&self, path: &str) -> Result<Value, ClientError> {
        let response = self.agent.get(&self.url(path)).header("Authorization", &self.bearer()).call();
        self.answer(path, response)
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Result<Value, ClientError> {
        let mut request = self.agent.delete(&self.url(path)).header("Authorization", &self.bearer());
        if let Some(message) = &self.message {
            request = request.header(super::who::CHANGE_MESSAGE_HEADER, &super::who::percent_encode(message));
        }
        let response = request.call();
        self.answer(path, response)
    }

    /// `POST path` with a JSON body.
    pub fn post_json(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.send(self.agent.post(&self.url(path)), path, "application/json", &body.to_string())
    }

    /// `PUT path` with a JSON body.
    pub fn put_json(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.send(self.agent.put(&self.url(path)), path, "application/json", &body.to_string())
    }

    /// `POST path` with a text body (a config to test), or none.
    pub fn post_text(&self, path: &str, body: &str) -> Result<Value, ClientError> {
        self.send(self.agent.post(&self.url(path)), path, "text/plain", body)
    }

    fn send(
        &self,
        request: ureq::RequestBuilder<ureq::typestate::WithBody>,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> Result<Value, ClientError> {
        let mut request = request.header("Authorization", &self.bearer()).header("Content-Type", content_type);
        if let Some(message) = &self.message {
            request = request.header(super::who::CHANGE_MESSAGE_HEADER, &super::who::percent_encode(message));
        }
        let response = request.send(body);
        self.answer(path, response)
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    fn answer(
        &self,
        path: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, ClientError> {
        let mut response =
            response.map_err(|e| ClientError::Unreachable { url: self.url(path), reason: e.to_string() })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| ClientError::Unreachable { url: self.url(path), reason: e.to_string() })?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        match status {
            200..=299 => Ok(body),
            401 => Err(ClientError::Unauthorized),
            _ => {
                let ErrorBody { error, field } = serde_json::from_value(body)
                    .unwrap_or_else(|_| ErrorBody { error: "error".to_owned(), field: None });
                Err(ClientError::Api { status, error, field })
            }
        }
    }
}
