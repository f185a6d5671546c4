//! Logging in to the portal with the organisation's identity provider: OpenID Connect's
//! authorization code flow with PKCE, as the service in our sources used its organisation's.
//!
//! `/portal/oidc/login` sends the browser to the provider's authorization endpoint (found by
//! discovery at `ISSUER/.well-known/openid-configuration`) with a random `state`, `nonce` and
//! PKCE challenge; `/portal/oidc/callback` takes the code back, exchanges it at the token
//! endpoint (with the client secret, when there is one, and the PKCE verifier), and checks the ID
//! token: an RS256 signature by a key of the provider's JWKS, `iss` the issuer, `aud` this
//! client, `exp` not past, `nonce` the login's. The user is `preferred_username` (else `email`,
//! else `sub`); the role is the highest of `viewer`, `editor` and `admin` found in the claim
//! `oidc-role-claim` (a string or a list); a user without one is refused.
//!
//! The provider is called with ureq, blocking, off the async threads (`spawn_blocking`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::users::{Role, random_hex};

/// How long a login may take at the provider.
const PENDING_FOR: Duration = Duration::from_secs(600);

/// Logins pending at the provider, at most: an unauthenticated visitor starts one per request.
const MAX_PENDING: usize = 10_000;

/// Clock skew allowed on `exp`.
const SKEW_SECS: u64 = 60;

/// The `[server]` keys of OpenID Connect login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSettings {
    /// `oidc-issuer`: the provider's issuer URL.
    pub issuer: String,
    /// `oidc-client-id`.
    pub client_id: String,
    /// `oidc-client-secret` (or `DHCP_OIDC_CLIENT_SECRET`); none for a public client.
    pub client_secret: Option<String>,
    /// `oidc-redirect-url`: `/portal/oidc/callback` as the browser reaches it.
    pub redirect_url: String,
    /// `oidc-role-claim`: the claim holding the user's role (default `dhcp_role`).
    pub role_claim: String,
    /// `oidc-ca`: PEM CA certificates the provider's certificate is checked against (default:
    /// the web's roots).
    pub ca: Option<PathBuf>,
}

/// A login waiting for the provider's answer.
#[derive(Debug)]
struct Pending {
    nonce: String,
    verifier: String,
    at: Instant,
}

/// The provider's endpoints, from discovery.
#[derive(Debug, Clone)]
struct Endpoints {
    authorization: String,
    token: String,
    jwks: String,
}

/// An RSA public key as a JWK gives it: modulus and exponent, big-endian.
type RsaKey = (Vec<u8>, Vec<u8>);

/// OpenID Connect login (see the module docs).
#[derive(Debug)]
pub struct Oidc {
    settings: OidcSettings,
    agent: ureq::Agent,
    pending: Mutex<HashMap<String, Pending>>,
    endpoints: Mutex<Option<Endpoints>>,
    /// The provider's RS256 keys by `kid`: modulus and exponent, big-endian.
    keys: Mutex<HashMap<String, RsaKey>>,
}

/// Base64url without padding, as JWTs and PKCE write it.
fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn from_b64url(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|e| format!("bad base64url: {e}"))
}

/// Percent-encodes a query value.
fn query_value(text: &str) -> String {
    text.bytes().fold(String::new(), |mut out, b| {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
        out
    })
}

impl Oidc {
    /// Login through the provider `settings` name; the error names what is wrong.
    pub fn new(settings: OidcSettings) -> Result<Oidc, String> {
        let tls = crate::tls::client_config(settings.ca.as_deref())?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .tls_config(tls)
            .build()
            .new_agent();
        Ok(Oidc {
            settings,
            agent,
            pending: Mutex::new(HashMap::new()),
            endpoints: Mutex::new(None),
            keys: Mutex::new(HashMap::new()),
        })
    }

    fn get_json(&self, url: &str) -> Result<Value, String> {
        let mut answer = self.agent.get(url).call().map_err(|e| format!("{url}: {e}"))?;
        let status = answer.status().as_u16();
        let text = answer.body_mut().read_to_string().map_err(|e| format!("{url}: {e}"))?;
        if status != 200 {
            return Err(format!("{url}: HTTP {status}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("{url}: not JSON: {e}"))
    }

    /// The provider's endpoints, discovered once.
    fn endpoints(&self) -> Result<Endpoints, String> {
        if let Some(found) = self.endpoints.lock().unwrap_or_else(PoisonError::into_inner).clone() {
            return Ok(found);
        }
        let issuer = self.settings.issuer.trim_end_matches('/');
        let meta = self.get_json(&format!("{issuer}/.well-known/openid-configuration"))?;
        if meta["issuer"].as_str().map(|i| i.trim_end_matches('/')) != Some(issuer) {
            return Err(format!("the provider's discovery names issuer {}, not {issuer}", meta["issuer"]));
        }
        let field = |name: &str| meta[name].as_str().map(str::to_owned).ok_or(format!("discovery has no {name}"));
        let found = Endpoints {
            authorization: field("authorization_endpoint")?,
            token: field("token_endpoint")?,
            jwks: field("jwks_uri")?,
        };
        *self.endpoints.lock().unwrap_or_else(PoisonError::into_inner) = Some(found.clone());
        Ok(found)
    }

    /// Starts a login: the provider's URL to send the browser to.
    pub(crate) fn start(&self, now: Instant) -> Result<String, String> {
        let endpoints = self.endpoints()?;
        let no_randomness = |e: std::io::Error| format!("no randomness: {e}");
        let state = random_hex(16).map_err(no_randomness)?;
        let nonce = random_hex(16).map_err(no_randomness)?;
        let verifier = random_hex(32).map_err(no_randomness)?;
        let challenge = b64url(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()).as_ref());
        {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            pending.retain(|_, p| now.duration_since(p.at) < PENDING_FOR);
            if pending.len() >= MAX_PENDING {
                return Err("too many logins under way; try again shortly".into());
            }
            pending.insert(state.clone(), Pending { nonce: nonce.clone(), verifier, at: now });
        }
        let s = &self.settings;
        let sep = if endpoints.authorization.contains('?') { '&' } else { '?' };
        Ok(format!(
            "{}{sep}response_type=code&client_id={}&redirect_uri={}&scope=openid%20profile%20email&state={state}\
             &nonce={nonce}&code_challenge={challenge}&code_challenge_method=S256",
            endpoints.authorization,
            query_value(&s.client_id),
            query_value(&s.redirect_url),
        ))
    }

    /// Finishes the login `state` with the provider's `code`: the user and its role.
    pub(crate) fn finish(&self, code: &str, state: &str, now: Instant) -> Result<(String, Role), String> {
        let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner).remove(state);
        let pending = pending
            .filter(|p| now.duration_since(p.at) < PENDING_FOR)
            .ok_or("this login is unknown or took too long: start again")?;
        let endpoints = self.endpoints()?;
        let s = &self.settings;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", s.redirect_url.as_str()),
            ("client_id", s.client_id.as_str()),
            ("code_verifier", pending.verifier.as_str()),
        ];
        if let Some(secret) = &s.client_secret {
            form.push(("client_secret", secret.as_str()));
        }
        let mut answer =
            self.agent.post(&endpoints.token).send_form(form).map_err(|e| format!("{}: {e}", endpoints.token))?;
        let status = answer.status().as_u16();
        let text = answer.body_mut().read_to_string().map_err(|e| format!("{}: {e}", endpoints.token))?;
        if status != 200 {
            return Err(format!("the provider refused the code: HTTP {status}"));
        }
        let tokens: Value = serde_json::from_str(&text).map_err(|e| format!("the token answer is not JSON: {e}"))?;
        let id_token = tokens["id_token"].as_str().ok_or("the provider sent no ID token")?;
        let claims = self.verify(id_token, &pending.nonce, &endpoints)?;
        let user = ["preferred_username", "email", "sub"]
            .iter()
            .find_map(|c| claims[*c].as_str().filter(|v| !v.is_empty()))
            .ok_or("the ID token names no user")?
            .to_owned();
        let roles: Vec<&str> = match &claims[s.role_claim.as_str()] {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let role = roles.into_iter().filter_map(Role::parse).max();
        let role =
            role.ok_or_else(|| format!("{user} has no viewer, editor or admin role in the {} claim", s.role_claim))?;
        Ok((user, role))
    }

    /// The provider's key `kid`, fetching the JWKS again when it is not known (a key rotated).
    fn key(&self, kid: &str, endpoints: &Endpoints) -> Result<RsaKey, String> {
        if let Some(found) = self.keys.lock().unwrap_or_else(PoisonError::into_inner).get(kid) {
            return Ok(found.clone());
        }
        let jwks = self.get_json(&endpoints.jwks)?;
        let mut keys = HashMap::new();
        for key in jwks["keys"].as_array().into_iter().flatten() {
            if key["kty"] != "RSA" {
                continue;
            }
            let (Some(id), Some(n), Some(e)) = (key["kid"].as_str(), key["n"].as_str(), key["e"].as_str()) else {
                continue;
            };
            keys.insert(id.to_owned(), (from_b64url(n)?, from_b64url(e)?));
        }
        let found = keys.get(kid).cloned();
        *self.keys.lock().unwrap_or_else(PoisonError::into_inner) = keys;
        found.ok_or_else(|| format!("the provider has no key {kid:?}"))
    }

    /// The ID token's claims, once its signature, issuer, audience, expiry and nonce hold.
    fn verify(&self, token: &str, nonce: &str, endpoints: &Endpoints) -> Result<Value, String> {
        let mut parts = token.split('.');
        let (Some(head), Some(body), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err("the ID token is not a JWT".into());
        };
        let header: Value = serde_json::from_slice(&from_b64url(head)?).map_err(|e| format!("JWT header: {e}"))?;
        if header["alg"] != "RS256" {
            return Err(format!("the ID token is signed with {}, not RS256", header["alg"]));
        }
        let (n, e) = self.key(header["kid"].as_str().unwrap_or(""), endpoints)?;
        let public = ring::signature::RsaPublicKeyComponents { n: &n, e: &e };
        public
            .verify(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                format!("{head}.{body}").as_bytes(),
                &from_b64url(sig)?,
            )
            .map_err(|_| "the ID token's signature does not verify")?;
        let claims: Value = serde_json::from_slice(&from_b64url(body)?).map_err(|e| format!("JWT claims: {e}"))?;
        let s = &self.settings;
        if claims["iss"].as_str().map(|i| i.trim_end_matches('/')) != Some(s.issuer.trim_end_matches('/')) {
            return Err(format!("the ID token is from {}, not {}", claims["iss"], s.issuer));
        }
        let for_us = match &claims["aud"] {
            Value::String(aud) => *aud == s.client_id,
            Value::Array(auds) => auds.iter().any(|a| a.as_str() == Some(s.client_id.as_str())),
            _ => false,
        };
        if !for_us {
            return Err(format!("the ID token is for {}, not this client", claims["aud"]));
        }
        let now = crate::clock::now_secs();
        if claims["exp"].as_u64().is_none_or(|exp| exp + SKEW_SECS < now) {
            return Err("the ID token has expired".into());
        }
        if claims["nonce"].as_str() != Some(nonce) {
            return Err("the ID token is not this login's (nonce)".into());
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips_and_queries_are_encoded() {
        for bytes in [&b""[..], b"a", b"ab", b"abc", b"\xff\xfe\xfd\x00"] {
            assert_eq!(from_b64url(&b64url(bytes)).expect("decodes"), bytes);
        }
        assert_eq!(query_value("https://h/p?x=1 2"), "https%3A%2F%2Fh%2Fp%3Fx%3D1%202");
    }

    #[test]
    fn a_login_unknown_or_too_old_is_refused() {
        let settings = OidcSettings {
            issuer: "http://127.0.0.1:9".into(),
            client_id: "c".into(),
            client_secret: None,
            redirect_url: "http://127.0.0.1/portal/oidc/callback".into(),
            role_claim: "dhcp_role".into(),
            ca: None,
        };
        let oidc = Oidc::new(settings).expect("settings");
        let err = oidc.finish("code", "no-such-state", Instant::now()).expect_err("unknown");
        assert!(err.contains("unknown"), "{err}");
    }
}
