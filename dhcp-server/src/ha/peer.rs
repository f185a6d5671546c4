//! How a server of a pair calls its peers' management APIs: one kept-alive HTTP/1.1 connection
//! per caller (the heartbeat task, the lease-update task), driven on the server's own runtime.
//!
//! Lease updates are on the path of every ACK when `sync-lease-updates` is set, so the call
//! costs what it must and no more: no blocking thread to hand each request to and back, no new
//! connection per request, Nagle off so a small request is not held back.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::debug;

/// The largest answer taken from a peer: a page of a sync at the largest page size fits.
const MAX_ANSWER: usize = 256 << 20;

/// A peer's management API, as one caller reaches it.
pub(crate) struct PeerClient {
    /// `host:port` to connect to, and the `Host` header.
    authority: String,
    /// The path the API's own paths are under (empty for a URL without a path).
    prefix: String,
    /// The name the peer's certificate must carry, for `https://` peers.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    authorization: String,
    timeout: Duration,
    /// The kept connection; none before the first call and after a failed one.
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl PeerClient {
    /// A client of the API at `url` (`http://HOST:PORT[/PATH]` or `https://…`, as the `[ha]`
    /// table checked it), calling with `token` and giving up on a call after `timeout`.
    pub(crate) fn new(
        url: &str,
        token: &str,
        tls: &Arc<rustls::ClientConfig>,
        timeout: Duration,
    ) -> Result<PeerClient, String> {
        let (https, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => return Err(format!("{url:?}: expected http:// or https://")),
        };
        let (authority, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        let host = host_of(authority);
        let authority = if has_port(authority) {
            authority.to_owned()
        } else {
            format!("{authority}:{}", if https { 443 } else { 80 })
        };
        let tls = if https {
            let name = ServerName::try_from(host.to_owned()).map_err(|e| format!("{url:?}: {e}"))?;
            Some((TlsConnector::from(Arc::clone(tls)), name))
        } else {
            None
        };
        Ok(PeerClient {
            authority,
            prefix: prefix.trim_end_matches('/').to_owned(),
            tls,
            authorization: format!("Bearer {token}"),
            timeout,
            sender: None,
        })
    }

    /// `POST path` with `body` as JSON; the JSON answer, or why there is none.
    pub(crate) async fn post_json<B: Serialize, T: DeserializeOwned>(
        &mut self,
        path: &str,
        body: &B,
    ) -> Result<T, String> {
        let json = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        self.post(path, "application/json", Bytes::from(json)).await
    }

    /// `POST path` with `body` of `content_type`; the JSON answer, or why there is none.
    pub(crate) async fn post<T: DeserializeOwned>(
        &mut self,
        path: &str,
        content_type: &'static str,
        body: Bytes,
    ) -> Result<T, String> {
        let answer = self.call(Method::POST, path, Some(content_type), body).await?;
        serde_json::from_slice(&answer).map_err(|e| format!("unexpected answer: {e}"))
    }

    /// `GET path`; the JSON answer, or why there is none.
    pub(crate) async fn get_json<T: DeserializeOwned>(&mut self, path: &str) -> Result<T, String> {
        let answer = self.call(Method::GET, path, None, Bytes::new()).await?;
        serde_json::from_slice(&answer).map_err(|e| format!("unexpected answer: {e}"))
    }

    /// One call within the timeout; the body of a 200 answer, or why there is none.
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&'static str>,
        body: Bytes,
    ) -> Result<Bytes, String> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.call_retrying(method, path, content_type, body)).await {
            Ok(answer) => answer,
            Err(_) => {
                // What the connection carries now is unknown: the next call starts a new one.
                self.sender = None;
                Err(format!("no answer within {} ms", timeout.as_millis()))
            }
        }
    }

    /// A kept connection the peer closed meanwhile (it restarted, or dropped an idle one) fails
    /// the call at once: the call is made once more on a new connection. Every call here is
    /// safe to repeat (heartbeats, lease fetches, and lease updates, which store a lease as it
    /// is, whatever was stored before).
    async fn call_retrying(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&'static str>,
        body: Bytes,
    ) -> Result<Bytes, String> {
        let reused = self.sender.as_ref().is_some_and(|s| !s.is_closed());
        match self.call_once(method.clone(), path, content_type, body.clone()).await {
            Err(Failure::Connection(reason)) if reused => {
                debug!(peer = self.authority, %reason, "HA: kept connection failed; calling again on a new one");
                self.call_once(method, path, content_type, body).await.map_err(Failure::into_reason)
            }
            other => other.map_err(Failure::into_reason),
        }
    }

    async fn call_once(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&'static str>,
        body: Bytes,
    ) -> Result<Bytes, Failure> {
        let mut sender = match self.sender.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.connect().await.map_err(Failure::Other)?,
        };
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.prefix))
            .header(header::HOST, &self.authority)
            .header(header::AUTHORIZATION, &self.authorization);
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let request = request.body(Full::new(body)).map_err(|e| Failure::Other(e.to_string()))?;
        sender.ready().await.map_err(|e| Failure::Connection(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| Failure::Connection(e.to_string()))?;
        let status = response.status();
        let answer = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| Failure::Other(e.to_string()))?
            .to_bytes();
        // The answer was read whole: the connection can carry the next call.
        self.sender = Some(sender);
        if status != StatusCode::OK {
            return Err(Failure::Other(format!("status {}: {}", status.as_u16(), String::from_utf8_lossy(&answer))));
        }
        Ok(answer)
    }

    /// A new connection to the peer (TLS when `https://`), its HTTP/1.1 side driven by a task
    /// of its own that ends when the connection is dropped.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let tcp = TcpStream::connect(&self.authority).await.map_err(|e| format!("connect {}: {e}", self.authority))?;
        // Small requests and answers, each awaited: Nagle's algorithm would only delay them.
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        match &self.tls {
            Some((connector, name)) => {
                let stream = connector.connect(name.clone(), tcp).await.map_err(|e| format!("TLS: {e}"))?;
                handshake(TokioIo::new(stream)).await
            }
            None => handshake(TokioIo::new(tcp)).await,
        }
    }
}

/// Why a call failed: the connection (worth one more try on a new one when it was a kept
/// one), or anything else.
enum Failure {
    Connection(String),
    Other(String),
}

impl Failure {
    fn into_reason(self) -> String {
        match self {
            Failure::Connection(reason) | Failure::Other(reason) => reason,
        }
    }
}

async fn handshake<T>(io: T) -> Result<SendRequest<Full<Bytes>>, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(io).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            debug!(error = %e, "HA: connection to a peer ended");
        }
    });
    Ok(sender)
}

/// The host of `host[:port]` or `[v6][:port]`, without brackets.
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.rsplit_once(':').map_or(authority, |(host, _)| host)
}

fn has_port(authority: &str) -> bool {
    match authority.rfind(']') {
        Some(end) => authority[end..].contains(':'),
        None => authority.contains(':'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(url: &str) -> Result<PeerClient, String> {
        let tls = crate::tls::peer_client_config(None)?;
        PeerClient::new(url, "t", &tls, Duration::from_secs(1))
    }

    #[test]
    fn urls_give_authority_prefix_and_tls_name() {
        let c = client("http://10.0.0.1:8067").expect("valid");
        assert_eq!((c.authority.as_str(), c.prefix.as_str(), c.tls.is_none()), ("10.0.0.1:8067", "", true));
        let c = client("https://dhcp-b.example:8443/admin/").expect("valid");
        assert_eq!((c.authority.as_str(), c.prefix.as_str()), ("dhcp-b.example:8443", "/admin"));
        assert_eq!(c.tls.as_ref().map(|(_, n)| n.to_str().into_owned()), Some("dhcp-b.example".to_owned()));
        let c = client("https://[2001:db8::2]").expect("valid");
        assert_eq!(c.authority, "[2001:db8::2]:443");
        assert_eq!(c.tls.as_ref().map(|(_, n)| n.to_str().into_owned()), Some("2001:db8::2".to_owned()));
        assert!(client("ftp://10.0.0.1").is_err());
        assert!(client("http:///x").is_err());
    }

    /// A call to a port nobody listens on fails with the reason, and within the timeout.
    #[tokio::test]
    async fn a_peer_that_is_down_is_an_error_not_a_hang() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
        let mut c = client(&format!("http://127.0.0.1:{port}")).expect("valid");
        let answer: Result<serde_json::Value, String> = c.get_json("/api/v1/ha").await;
        assert!(answer.expect_err("nobody listens").contains("connect"));
    }
}
