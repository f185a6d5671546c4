//! The API's refusals: a status and an [`ErrorBody`] naming the field at fault.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::model::ErrorBody;
use crate::control::ControlError;

/// An API error: a status and a JSON body naming the field at fault, when there is one.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) error: String,
    pub(crate) field: Option<String>,
    /// Seconds for a `Retry-After` header: the server is busy, not broken.
    pub(crate) retry_after: Option<u32>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError { status, error: error.into(), field: None, retry_after: None }
    }

    /// 503 with `Retry-After: secs`.
    pub(crate) fn busy(error: impl Into<String>, secs: u32) -> Self {
        ApiError { retry_after: Some(secs), ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error) }
    }

    /// 429 with `Retry-After: secs`: slow down.
    pub(crate) fn too_many(error: impl Into<String>, secs: u32) -> Self {
        ApiError { retry_after: Some(secs), ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, error) }
    }

    pub(crate) fn bad(field: impl Into<String>, error: impl Into<String>) -> Self {
        ApiError { status: StatusCode::BAD_REQUEST, error: error.into(), field: Some(field.into()), retry_after: None }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            // A config error names its path already.
            Some(field) if !self.error.starts_with(field.as_str()) => write!(f, "{field}: {}", self.error),
            _ => f.write_str(&self.error),
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            // The config path ("subnets[0].reservations[2].ip-address") names the field.
            ControlError::Invalid(config) => {
                let field = (!config.path.is_empty()).then(|| config.path.clone());
                // A refused store URL is quoted in the message: without its password.
                let error = crate::redact::redact_secrets(&config.to_string());
                ApiError { status: StatusCode::BAD_REQUEST, error, field, retry_after: None }
            }
            ControlError::NoVersion(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            ControlError::NoHistory(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(ErrorBody { error: self.error, field: self.field })).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A store failure as the API answers it: 503, with any secret in the message hidden.
pub(crate) fn store_error(e: dhcp_core::StoreError) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, crate::redact::redact_secrets(&format!("lease store: {e}")))
}
