//! TLS for the PostgreSQL store, with libpq's `sslmode` values.
//!
//! tokio-postgres understands `sslmode=disable|prefer|require` only, and never verifies a
//! certificate itself. Operators write libpq connection strings, so the store takes libpq's
//! meaning and hands tokio-postgres what it understands:
//!
//! | `sslmode`            | encrypted            | certificate checked                      |
//! |----------------------|----------------------|------------------------------------------|
//! | `disable`            | no                   | -                                        |
//! | `prefer` (default)   | if the server offers | no                                       |
//! | `require`            | yes                  | chain, when `sslrootcert` is given       |
//! | `verify-ca`          | yes                  | chain against `sslrootcert`              |
//! | `verify-full`        | yes                  | chain against `sslrootcert`, and the host name |
//!
//! As with libpq, `sslmode` does not apply to Unix-socket connections.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::{Host, SslMode};

use crate::codec::percent_decode;

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Encryption only (libpq's `prefer` and `require` without a root certificate).
    Nothing,
    /// The chain up to the root certificate, not the name (`verify-ca`).
    Chain,
    /// The chain and the host name (`verify-full`).
    ChainAndName,
}

/// A connection string with the libpq TLS parameters taken out: what tokio-postgres is given,
/// and how the TLS connector checks the server.
#[derive(Debug)]
pub(crate) struct TlsParams {
    /// The connection string without `sslmode` verify values and `sslrootcert`.
    pub(crate) url: String,
    mode: SslMode,
    check: Check,
    root_cert: Option<String>,
}

impl TlsParams {
    /// Splits libpq's TLS parameters off a URL (`postgres://...?sslmode=verify-full&...`) or a
    /// key=value string.
    pub(crate) fn parse(url: &str) -> Result<TlsParams, String> {
        let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let (head, params, separator): (&str, Vec<&str>, &str) = if is_url {
            match url.split_once('?') {
                Some((head, query)) => (head, query.split('&').filter(|p| !p.is_empty()).collect(), "&"),
                None => (url, Vec::new(), "&"),
            }
        } else {
            ("", url.split_whitespace().collect(), " ")
        };
        let (mut mode, mut check, mut root_cert, mut sslmode_given) = (SslMode::Prefer, Check::Nothing, None, false);
        let mut kept = Vec::new();
        for param in params {
            match param.split_once('=') {
                Some(("sslmode", value)) => {
                    sslmode_given = true;
                    (mode, check) = match value {
                        "disable" => (SslMode::Disable, Check::Nothing),
                        "prefer" => (SslMode::Prefer, Check::Nothing),
                        "require" => (SslMode::Require, Check::Nothing),
                        "verify-ca" => (SslMode::Require, Check::Chain),
                        "verify-full" => (SslMode::Require, Check::ChainAndName),
                        other => {
                            return Err(format!(
                                "sslmode={other:?} is not one of disable, prefer, require, verify-ca, verify-full"
                            ));
                        }
                    };
                }
                Some(("sslrootcert", path)) => root_cert = Some(percent_decode(path)),
                _ => kept.push(param),
            }
        }
        if root_cert.is_some() && check == Check::Nothing && mode == SslMode::Require {
            // libpq: with a root certificate at hand, `require` behaves as `verify-ca`.
            check = Check::Chain;
        }
        if check != Check::Nothing && root_cert.is_none() {
            return Err("sslmode=verify-ca and verify-full need sslrootcert=PATH (the CA certificate, PEM)".into());
        }
        if sslmode_given {
            kept.push(match mode {
                SslMode::Disable => "sslmode=disable",
                SslMode::Require => "sslmode=require",
                _ => "sslmode=prefer",
            });
        }
        let url = if is_url {
            if kept.is_empty() { head.to_owned() } else { format!("{head}?{}", kept.join(separator)) }
        } else {
            kept.join(separator)
        };
        Ok(TlsParams { url, mode, check, root_cert })
    }

    /// Whether TLS is attempted at all for `hosts` (never over Unix sockets, never with
    /// `disable`).
    pub(crate) fn wanted(&self, hosts: &[Host]) -> bool {
        self.mode != SslMode::Disable && hosts.iter().any(|h| matches!(h, Host::Tcp(_)))
    }

    /// The rustls client configuration that checks the server as the mode says.
    pub(crate) fn client_config(&self) -> Result<ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let config = match self.check {
            Check::Nothing => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
                .with_no_client_auth(),
            Check::Chain | Check::ChainAndName => {
                let roots = Arc::new(self.roots()?);
                if self.check == Check::ChainAndName {
                    builder.with_root_certificates(roots).with_no_client_auth()
                } else {
                    let inner = WebPkiServerVerifier::builder_with_provider(roots, provider)
                        .build()
                        .map_err(|e| format!("sslrootcert: {e}"))?;
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
                        .with_no_client_auth()
                }
            }
        };
        Ok(config)
    }

    fn roots(&self) -> Result<RootCertStore, String> {
        let path = self.root_cert.as_deref().unwrap_or_default();
        let mut roots = RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("sslrootcert {path:?}: {e}"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("sslrootcert {path:?}: {e}"))?;
        if certs.is_empty() {
            return Err(format!("sslrootcert {path:?}: no certificate in the file"));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| format!("sslrootcert {path:?}: {e}"))?;
        }
        Ok(roots)
    }
}

/// Accepts any certificate but still checks the handshake signatures: libpq's `require`
/// without a root certificate (protects against eavesdropping, not against impersonation).
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The full WebPKI check except the host name: libpq's `verify-ca`.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_libpq_parameters_out_of_urls() {
        let p = TlsParams::parse("postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&connect_timeout=2")
            .expect("valid");
        assert_eq!(p.url, "postgres://u@h/db?connect_timeout=2&sslmode=require");
        assert_eq!((p.mode, p.check), (SslMode::Require, Check::ChainAndName));
        assert_eq!(p.root_cert.as_deref(), Some("/tmp/ca.pem"));

        let p = TlsParams::parse("host=h user=u sslmode=verify-ca sslrootcert=/ca.pem").expect("valid");
        assert_eq!(p.url, "host=h user=u sslmode=require");
        assert_eq!(p.check, Check::Chain);

        let p = TlsParams::parse("postgres://u@h/db").expect("valid");
        assert_eq!((p.url.as_str(), p.mode, p.check), ("postgres://u@h/db", SslMode::Prefer, Check::Nothing));

        let p = TlsParams::parse("postgres://u@h/db?sslmode=require&sslrootcert=/ca.pem").expect("valid");
        assert_eq!(p.check, Check::Chain, "require with a root certificate checks the chain, as libpq");
    }

    #[test]
    fn refuses_unknown_modes_and_verification_without_a_root() {
        let err = TlsParams::parse("postgres://h/db?sslmode=allow-ish").expect_err("bad mode");
        assert!(err.contains("allow-ish"), "{err}");
        let err = TlsParams::parse("postgres://h/db?sslmode=verify-full").expect_err("no root");
        assert!(err.contains("sslrootcert"), "{err}");
    }
}
