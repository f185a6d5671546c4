//! Who changes something through the API: the user the token check let in ([`User`]) and the
//! reason the request gives for its change ([`Who`], from `X-Change-Message`).

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde_json::Value;

use crate::history::{Change, Source};

/// The header a change's reason comes in, percent-encoded UTF-8.
pub const CHANGE_MESSAGE_HEADER: &str = "x-change-message";

/// The user the token check let in, put on the request for the handlers.
#[derive(Debug, Clone)]
pub(crate) struct User(pub(crate) String);

/// The user behind a request and the reason it gives for its change, if any.
#[derive(Debug, Clone)]
pub(crate) struct Who {
    pub(crate) user: String,
    pub(crate) message: Option<String>,
}

impl Who {
    /// The change this request makes, by `source`.
    pub(crate) fn change(&self, source: Source) -> Change {
        Change::by(&self.user, source, self.message.clone())
    }

    /// The detail an audit line keeps: `detail`, with the message when one was given.
    pub(crate) fn detail(&self, detail: Value) -> Value {
        match (&self.message, detail) {
            (None, detail) => detail,
            (Some(message), Value::Object(mut map)) => {
                map.insert("message".into(), message.clone().into());
                Value::Object(map)
            }
            (Some(message), Value::Null) => serde_json::json!({ "message": message }),
            (Some(message), other) => serde_json::json!({ "message": message, "value": other }),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Who {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let user = parts.extensions.get::<User>().map_or_else(|| "-".to_owned(), |u| u.0.clone());
        let message = parts
            .headers
            .get(CHANGE_MESSAGE_HEADER)
            .map(|v| dhcp_store::percent_decode(&String::from_utf8_lossy(v.as_bytes())))
            .filter(|m| !m.trim().is_empty());
        Ok(Who { user, message })
    }
}

/// `text` percent-encoded for [`CHANGE_MESSAGE_HEADER`]: everything but unreserved ASCII.
pub fn percent_encode(text: &str) -> String {
    text.bytes().fold(String::new(), |mut out, b| {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_survives_the_header_encoding() {
        for text in ["plain words", "naïve: 50% more → leases\nline two", "%zz stays"] {
            assert_eq!(dhcp_store::percent_decode(&percent_encode(text)), text);
        }
        assert_eq!(dhcp_store::percent_decode("100%"), "100%", "a lone % is kept");
    }
}
