//! A blocking client of the management API, for `dhcp-cli` and for scripts written in Rust.

use std::time::Duration;

use serde_json::Value;

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
}

/// The management API of one server.
#[derive(Debug, Clone)]
pub struct AdminClient {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl AdminClient {
    /// A client of the API at `base` (such as `http://127.0.0.1:8067`) with a bearer token.
    pub fn new(base: &str, token: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .new_agent();
        AdminClient { base: base.trim_end_matches('/').to_owned(), token: token.to_owned(), agent }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path` (such as `/api/v1/leases?subnet=1`).
    pub fn get(&self, path: &str) -> Result<Value, ClientError> {
        let response = self.agent.get(&self.url(path)).header("Authorization", &self.bearer()).call();
        self.answer(path, response)
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Result<Value, ClientError> {
        let response = self.agent.delete(&self.url(path)).header("Authorization", &self.bearer()).call();
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
        let response = request.header("Authorization", &self.bearer()).header("Content-Type", content_type).send(body);
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
            _ => Err(ClientError::Api {
                status,
                error: body.get("error").and_then(Value::as_str).unwrap_or("error").to_owned(),
                field: body.get("field").and_then(Value::as_str).map(str::to_owned),
            }),
        }
    }
}
