//! TLS for the management API and for the traffic between HA peers (rustls with ring).
//!
//! The API serves HTTPS when `[server] api-tls-cert` and `api-tls-key` are set, and reads them
//! again on SIGHUP; peers reach an
//! `https://` URL checking its certificate against `[ha] tls-ca` (or the web's roots without
//! it).

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::debug;

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The API's certificate chain and private key, read from their files at start and again on
/// SIGHUP ([`ApiCert::reload`]): a renewed certificate is served to the next connection
/// without a restart; a pair that cannot be read or does not match is refused, logged, and the
/// old one stays.
#[derive(Debug)]
pub(crate) struct ApiCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ApiCert {
    /// The pair in the PEM files `cert` (the chain) and `key`; the error names the file and the
    /// reason.
    fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .map_err(|e| format!("{}: {e}", cert.display()))?;
        if chain.is_empty() {
            return Err(format!("{}: no certificate in it", cert.display()));
        }
        let der = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
        let provider = rustls::crypto::ring::default_provider();
        let signing = provider.key_provider.load_private_key(der).map_err(|e| format!("{}: {e}", key.display()))?;
        let certified = CertifiedKey::new(chain, signing);
        certified.keys_match().map_err(|e| format!("{} and {}: {e}", cert.display(), key.display()))?;
        Ok(Arc::new(certified))
    }

    /// Reads the files again and serves the new pair from the next handshake on.
    pub(crate) fn reload(&self) -> Result<(), String> {
        let fresh = ApiCert::load(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }
}

impl ResolvesServerCert for ApiCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner)))
    }
}

/// A TLS server config serving the PEM certificate chain `cert` with its PEM private key
/// `key`, and the handle that reloads them; the error names the file and the reason.
pub(crate) fn server_config(cert: &Path, key: &Path) -> Result<(Arc<rustls::ServerConfig>, Arc<ApiCert>), String> {
    let current = RwLock::new(ApiCert::load(cert, key)?);
    let api_cert = Arc::new(ApiCert { cert: cert.to_owned(), key: key.to_owned(), current });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|builder| builder.with_no_client_auth().with_cert_resolver(Arc::clone(&api_cert) as _))
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    Ok((Arc::new(config), api_cert))
}

/// The HTTP client's TLS settings: certificates checked against the PEM CA certificates in
/// `ca`, or against the web's roots when there is none.
pub(crate) fn client_config(ca: Option<&Path>) -> Result<ureq::tls::TlsConfig, String> {
    let builder = ureq::tls::TlsConfig::builder();
    let Some(ca) = ca else { return Ok(builder.build()) };
    let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", ca.display()));
    }
    Ok(builder.root_certs(ureq::tls::RootCerts::new_with_certs(&certs)).build())
}

/// The TLS settings peers are called with: certificates checked against the PEM CA
/// certificates in `ca`, or against the web's roots when there is none; HTTP/1.1 only.
pub(crate) fn peer_client_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(ca) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
                .and_then(|certs| certs.collect::<Result<_, _>>())
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            if certs.is_empty() {
                return Err(format!("{}: no certificate in it", ca.display()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A listener handing out TLS connections whose handshakes are done: each handshake runs on its
/// own task, so a client that never finishes one holds up nobody else.
pub(crate) struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    /// Accepts and shakes hands; stopped with the listener, which frees the port.
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsListener {
    /// Takes over `listener`, accepting TLS with `config`.
    pub(crate) fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, ready) = mpsc::channel(64);
        let task = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        debug!(error = %e, "management API: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "management API: TLS handshake failed"),
                        Err(_) => debug!(%peer, "management API: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { local, ready, task })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accepting task ended (the runtime is shutting down): never hand out more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}
