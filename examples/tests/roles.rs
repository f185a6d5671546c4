//! Users and roles over real HTTP against the example server on loopback: every role's token
//! against every endpoint (allowed or 403), no token (401), and the portal's sessions: a cookie
//! change without its CSRF token refused, a session that ends when idle and at logout, and a
//! name locked after five wrong passwords; each refusal in the audit log. And the portal's
//! forms as a browser posts them: a lease from a real DORA deleted, groups and reservations
//! edited, each change the logged-in editor's.

mod lab;

use std::time::Duration;

use dhcp_server::api::AdminClient;
use lab::{Server, TempDir, free_port, server_port};
use serde_json::{Value, json};

const TOKEN: &str = "roles-test-shared-token";
const PASSWORD: &str = "a long enough password";

struct Api {
    base: String,
    agent: ureq::Agent,
    _server: Server,
    _dir: TempDir,
}

/// One answer: status, `Set-Cookie`, and the body as JSON (a string when it is not).
#[derive(Debug)]
struct Answer {
    status: u16,
    set_cookie: Option<String>,
    body: Value,
}

/// How a request proves who it is.
#[derive(Clone, Copy)]
enum As<'a> {
    Nobody,
    Bearer(&'a str),
    /// A session cookie, and the CSRF token sent with it (if any).
    Session(&'a str, Option<&'a str>),
}

impl Api {
    fn start(dir_name: &str, server_lines: &str) -> Api {
        let dir = TempDir::new(dir_name);
        let api_port = free_port();
        let lines = format!("api-listen = \"127.0.0.1:{api_port}\"\napi-token = \"{TOKEN}\"\n{server_lines}");
        let server = Server::loopback(&dir, "memory:", server_port(), &lines);
        // A connection per request: a server may close a kept-alive one after refusing a request
        // whose body it did not read, and a POST is not sent again on a new one.
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            // The portal answers a form with 303: the test looks at that, not where it leads.
            .max_redirects(0)
            .build()
            .new_agent();
        Api { base: format!("http://127.0.0.1:{api_port}"), agent, _server: server, _dir: dir }
    }

    fn call(&self, method: &str, path: &str, who: As<'_>, body: Option<&Value>) -> Answer {
        let url = format!("{}{path}", self.base);
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        match who {
            As::Nobody => {}
            As::Bearer(token) => request = request.header("Authorization", format!("Bearer {token}")),
            As::Session(cookie, csrf) => {
                request = request.header("Cookie", format!("dhcp_session={cookie}"));
                if let Some(csrf) = csrf {
                    request = request.header("X-CSRF-Token", csrf);
                }
            }
        }
        let sent = match body {
            Some(body) => {
                let request = request.header("Content-Type", "application/json").body(body.to_string());
                self.agent.run(request.expect("request"))
            }
            None => self.agent.run(request.body(()).expect("request")),
        };
        let mut response = sent.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let set_cookie = response.headers().get("set-cookie").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer { status: response.status().as_u16(), set_cookie, body }
    }

    fn admin(&self) -> AdminClient {
        AdminClient::new(&self.base, TOKEN)
    }

    /// Logs `user` in: the session cookie and the CSRF token.
    fn login(&self, user: &str, password: &str) -> Result<(String, String), Answer> {
        let answer = self.call("POST", "/api/v1/login", As::Nobody, Some(&json!({"user": user, "password": password})));
        if answer.status != 200 {
            return Err(answer);
        }
        let cookie = answer.set_cookie.as_deref().expect("a session cookie");
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(cookie.contains(attribute), "{cookie}");
        }
        assert!(!cookie.contains("Secure"), "plain HTTP: not Secure: {cookie}");
        let id = cookie.split(';').next().and_then(|kv| kv.strip_prefix("dhcp_session=")).expect("cookie value");
        let csrf = answer.body["csrf"].as_str().expect("csrf").to_owned();
        Ok((id.to_owned(), csrf))
    }
}

/// Every endpoint, with a body or argument that does no harm, and the least role it needs.
const ENDPOINTS: &[(&str, &str, &str, &str)] = &[
    ("GET", "/api/v1/leases", "", "viewer"),
    ("GET", "/api/v1/leases/10.0.0.1", "", "viewer"),
    ("GET", "/api/v1/reservations", "", "viewer"),
    ("GET", "/api/v1/groups", "", "viewer"),
    ("GET", "/api/v1/store/entries?kind=mac", "", "viewer"),
    ("GET", "/api/v1/stats", "", "viewer"),
    ("GET", "/api/v1/health", "", "viewer"),
    ("GET", "/api/v1/ha", "", "viewer"),
    ("GET", "/api/v1/session", "", "viewer"),
    ("DELETE", "/api/v1/leases/10.0.0.1", "", "editor"),
    ("POST", "/api/v1/reservations", r#"{"subnet": 1}"#, "editor"),
    ("PUT", "/api/v1/reservations/02:00:00:00:00:01", r#"{"subnet": 1}"#, "editor"),
    ("DELETE", "/api/v1/reservations/02:00:00:00:00:01", "", "editor"),
    ("PUT", "/api/v1/groups/x", r#"{"lease-time": "soon"}"#, "editor"),
    ("DELETE", "/api/v1/groups/none", "", "editor"),
    ("PUT", "/api/v1/store/entries/mac:02:00:00:00:00:01", r#"{"ip": "10.0.0.5"}"#, "editor"),
    ("DELETE", "/api/v1/store/entries/mac:02:00:00:00:00:01", "", "editor"),
    ("GET", "/api/v1/config", "", "admin"),
    ("GET", "/api/v1/config/history", "", "admin"),
    ("GET", "/api/v1/config/history/1", "", "admin"),
    ("GET", "/api/v1/config/diff?from=1&to=1", "", "admin"),
    ("GET", "/api/v1/audit", "", "admin"),
    ("GET", "/api/v1/users", "", "admin"),
    ("GET", "/api/v1/ha/leases", "", "admin"),
    ("POST", "/api/v1/config/test", "not toml [", "admin"),
    ("POST", "/api/v1/config/reload", "", "admin"),
    ("POST", "/api/v1/config/rollback?version=999", "", "admin"),
    ("POST", "/api/v1/ha/partner-down", "", "admin"),
    ("POST", "/api/v1/ha/maintenance/start", "", "admin"),
    ("POST", "/api/v1/ha/maintenance/stop", "", "admin"),
    ("POST", "/api/v1/ha/sync", "", "admin"),
    ("POST", "/api/v1/ha/heartbeat", "{}", "admin"),
    ("POST", "/api/v1/ha/lease-updates", "{}", "admin"),
    ("PUT", "/api/v1/users/nobody", r#"{"role": "root"}"#, "admin"),
    ("DELETE", "/api/v1/users/nobody", "", "admin"),
    ("POST", "/api/v1/users/nobody/tokens", "", "admin"),
    ("DELETE", "/api/v1/users/nobody/tokens/x", "", "admin"),
];

fn rank(role: &str) -> u8 {
    match role {
        "viewer" => 1,
        "editor" => 2,
        _ => 3,
    }
}

#[test]
fn every_role_against_every_endpoint_allowed_or_refused() {
    let api = Api::start("roles", "");
    let admin = api.admin();
    let mut tokens = Vec::new();
    for (name, role) in [("vera", "viewer"), ("ed", "editor"), ("ada", "admin")] {
        admin.put_user(name, role, Some(PASSWORD)).expect("user");
        tokens.push((role, admin.issue_token(name, None).expect("token").token));
    }
    for (method, path, body, needs) in ENDPOINTS {
        let body: Option<Value> =
            (!body.is_empty()).then(|| serde_json::from_str(body).unwrap_or_else(|_| Value::String((*body).into())));
        let answer = api.call(method, path, As::Nobody, body.as_ref());
        assert_eq!(answer.status, 401, "{method} {path} without a token");
        for (role, token) in &tokens {
            let answer = api.call(method, path, As::Bearer(token), body.as_ref());
            if rank(role) >= rank(needs) {
                assert!(
                    ![401, 403].contains(&answer.status),
                    "{role} may {method} {path}: {} {}",
                    answer.status,
                    answer.body
                );
            } else {
                assert_eq!(answer.status, 403, "{role} may not {method} {path}: {}", answer.body);
            }
        }
    }
    // A token limited below its user's role, and a revoked one.
    let viewer_of_ada = admin.issue_token("ada", Some("viewer")).expect("token");
    assert_eq!(api.call("GET", "/api/v1/config", As::Bearer(&viewer_of_ada.token), None).status, 403);
    admin.revoke_token("ada", &viewer_of_ada.id).expect("revoke");
    assert_eq!(api.call("GET", "/api/v1/stats", As::Bearer(&viewer_of_ada.token), None).status, 401);
    // The refusals are in the audit log, with who was refused.
    let audit = admin.audit(500).expect("audit");
    let forbidden = audit.entries.iter().filter(|e| e.action == "forbidden" && e.user == "vera").count();
    assert!(forbidden >= 20, "the viewer's refusals are written down: {forbidden}");
    assert!(audit.entries.iter().any(|e| e.action == "token.revoke" && e.user == "api-token"));
}

#[test]
fn sessions_need_their_csrf_token_end_when_idle_and_at_logout_and_lock_after_five_wrong_passwords() {
    let api = Api::start("sessions", "session-idle-timeout = 3");
    let admin = api.admin();
    admin.put_user("ed", "editor", Some(PASSWORD)).expect("user");
    admin.put_user("vera", "viewer", Some(PASSWORD)).expect("user");

    let (ed, csrf) = api.login("ed", PASSWORD).expect("login");
    let me = api.call("GET", "/api/v1/session", As::Session(&ed, None), None);
    assert_eq!((me.status, me.body["user"].as_str(), me.body["role"].as_str()), (200, Some("ed"), Some("editor")));
    let reservation = json!({"subnet": 1, "hw-address": "02:00:00:00:00:42", "ip-address": "192.0.2.42"});

    // A forged change: the session's cookie (which a browser sends along) without its token.
    for forged in [None, Some("not-the-token")] {
        let answer = api.call("POST", "/api/v1/reservations", As::Session(&ed, forged), Some(&reservation));
        assert_eq!(answer.status, 403, "{}", answer.body);
    }
    assert_eq!(admin.reservations().expect("list").reservations.len(), 0, "nothing applied");
    let answer = api.call("POST", "/api/v1/reservations", As::Session(&ed, Some(&csrf)), Some(&reservation));
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(admin.reservations().expect("list").reservations.len(), 1);
    let history = admin.config_history().expect("history");
    assert_eq!(history.versions[0].user, "ed", "the change is the session's user's");

    // A viewer's session with its CSRF token still may not change anything.
    let (vera, vera_csrf) = api.login("vera", PASSWORD).expect("login");
    let answer =
        api.call("DELETE", "/api/v1/reservations/02:00:00:00:00:42", As::Session(&vera, Some(&vera_csrf)), None);
    assert_eq!(answer.status, 403, "{}", answer.body);

    // Logout ends the session.
    let out = api.call("POST", "/api/v1/logout", As::Session(&vera, None), None);
    assert!(out.set_cookie.as_deref().is_some_and(|c| c.contains("Max-Age=0")), "the cookie is cleared");
    assert_eq!(api.call("GET", "/api/v1/stats", As::Session(&vera, None), None).status, 401);

    // Idle for longer than session-idle-timeout (3 s): gone.
    assert_eq!(api.call("GET", "/api/v1/stats", As::Session(&ed, None), None).status, 200);
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(api.call("GET", "/api/v1/stats", As::Session(&ed, None), None).status, 401, "idle too long");

    // Five wrong passwords lock the name, the right one included; another name stays open.
    std::thread::sleep(Duration::from_millis(1100));
    for _ in 0..5 {
        let refused = api.login("vera", "wrong password!!").expect_err("wrong");
        assert_eq!(refused.status, 401, "{}", refused.body);
    }
    let locked = api.login("vera", PASSWORD).expect_err("locked");
    assert_eq!(locked.status, 429, "{}", locked.body);
    assert!(api.login("ed", PASSWORD).is_ok(), "ed is not locked");
    let unknown = api.login("mallory", PASSWORD).expect_err("no such user");
    assert_eq!(unknown.status, 401);

    let audit = admin.audit(200).expect("audit");
    let count =
        |action: &str, user: &str| audit.entries.iter().filter(|e| e.action == action && e.user == user).count();
    assert_eq!(count("csrf.refused", "ed"), 2);
    assert_eq!(count("login.refused", "vera"), 6, "five wrong passwords and the locked try");
    assert!(count("login", "ed") >= 2);
    assert_eq!(count("forbidden", "vera"), 1);
}

/// An HTTP agent that trusts only the CA certificates in the PEM file `ca`.
fn agent_trusting(ca: &std::path::Path) -> ureq::Agent {
    let pem = std::fs::read(ca).expect("CA file");
    let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
            _ => None,
        })
        .collect();
    let tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::new_with_certs(&certs)).build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .tls_config(tls)
        .build()
        .new_agent()
}

#[test]
fn https_serves_a_renewed_certificate_after_sighup_and_marks_the_session_cookie_secure() {
    let dir = TempDir::new("https");
    let first = lab::Certs::make(&dir, "first");
    let (cert, key) = (dir.join("api.pem"), dir.join("api.key"));
    std::fs::copy(&first.cert, &cert).expect("cert");
    std::fs::copy(&first.key, &key).expect("key");
    let api_port = free_port();
    let lines = format!(
        "api-listen = \"127.0.0.1:{api_port}\"\napi-token = \"{TOKEN}\"\napi-tls-cert = \"{}\"\napi-tls-key = \"{}\"",
        cert.display(),
        key.display()
    );
    let server = Server::loopback(&dir, "memory:", server_port(), &lines);
    let base = format!("https://127.0.0.1:{api_port}");
    let admin = AdminClient::with_ca(&base, TOKEN, &first.ca).expect("client");
    admin.put_user("ed", "editor", Some(PASSWORD)).expect("user over HTTPS");

    // The session cookie over HTTPS is Secure.
    let login = json!({"user": "ed", "password": PASSWORD}).to_string();
    let mut answer = agent_trusting(&first.ca)
        .post(&format!("{base}/api/v1/login"))
        .header("Content-Type", "application/json")
        .send(&login)
        .expect("login");
    assert_eq!(answer.status().as_u16(), 200, "{:?}", answer.body_mut().read_to_string());
    let cookie = answer.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(cookie.contains("; Secure") && cookie.contains("HttpOnly"), "{cookie}");

    // A renewed certificate from another CA, put in place and signalled: served to the next
    // connection, without a restart.
    let second = lab::Certs::make(&dir, "second");
    std::fs::copy(&second.cert, &cert).expect("cert");
    std::fs::copy(&second.key, &key).expect("key");
    server.signal("HUP");
    let renewed = AdminClient::with_ca(&base, TOKEN, &second.ca).expect("client");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while renewed.stats().is_err() {
        assert!(std::time::Instant::now() < deadline, "the renewed certificate is not served:\n{}", server.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    // A new client (a new connection: the old one's handshake is done) no longer trusts it.
    let old_ca = AdminClient::with_ca(&base, TOKEN, &first.ca).expect("client");
    assert!(old_ca.stats().is_err(), "the old CA no longer vouches for what is served");

    // A key that does not match the certificate is refused, and the renewed pair stays.
    std::fs::copy(&first.key, &key).expect("key");
    server.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !server.log_text().contains("new certificate is refused") {
        assert!(std::time::Instant::now() < deadline, "no refusal logged:\n{}", server.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    renewed.stats().expect("still served with the renewed pair");
}

/// `pairs` as `application/x-www-form-urlencoded`.
fn form_body(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        text.bytes().fold(String::new(), |mut out, b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
            out
        })
    };
    pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

impl Api {
    /// A portal page with the session cookie: its status and HTML.
    fn page(&self, path: &str, cookie: &str) -> (u16, String) {
        let answer = self.call("GET", path, As::Session(cookie, None), None);
        (answer.status, answer.body.as_str().unwrap_or_default().to_owned())
    }

    /// A portal form posted with the session cookie: its status and HTML.
    fn post_form(&self, path: &str, cookie: &str, pairs: &[(&str, &str)]) -> (u16, String) {
        let request = ureq::http::Request::builder()
            .method("POST")
            .uri(format!("{}{path}", self.base))
            .header("Cookie", format!("dhcp_session={cookie}"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form_body(pairs))
            .expect("request");
        let mut response = self.agent.run(request).unwrap_or_else(|e| panic!("POST {path}: {e}"));
        (response.status().as_u16(), response.body_mut().read_to_string().unwrap_or_default())
    }
}

/// The CSRF token in a portal page's hidden fields.
fn csrf_in(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    html[at..].chars().take_while(|c| c.is_ascii_hexdigit()).collect()
}

#[test]
fn the_portals_forms_delete_leases_and_edit_groups_and_reservations_as_the_logged_in_editor() {
    let api = Api::start("portal-forms", "");
    let admin = api.admin();
    admin.put_user("ed", "editor", Some(PASSWORD)).expect("user");
    let (ed, _) = api.login("ed", PASSWORD).expect("login");
    let (status, html) = api.page("/portal/leases", &ed);
    assert_eq!(status, 200, "{html}");
    let csrf = csrf_in(&html);

    // A lease from a real DORA, found by address and deleted from the portal; a post without
    // the CSRF token first, which changes nothing.
    let addr = api._server.probe(7).expect("a lease").to_string();
    let (_, found) = api.page(&format!("/portal/leases?q={addr}"), &ed);
    assert!(found.contains(&addr) && found.contains("02:00:0e:00:00:07"), "{found}");
    let (_, by_mac) = api.page("/portal/leases?q=02-00-0E-00-00-07", &ed);
    assert!(by_mac.contains(&addr), "found by MAC in any spelling");
    let (status, _) = api.post_form(&format!("/portal/leases/{addr}/delete"), &ed, &[("csrf", "forged")]);
    assert_eq!(status, 403);
    assert!(admin.lease(&addr).is_ok(), "a forged post deleted nothing");
    let (status, _) = api.post_form(&format!("/portal/leases/{addr}/delete"), &ed, &[("csrf", &csrf)]);
    assert_eq!(status, 303);
    assert!(admin.lease(&addr).is_err(), "the lease is gone");

    // A group: a bad value refused with the config's message naming the field, then added,
    // shown for editing, changed and deleted.
    let bad = [("csrf", csrf.as_str()), ("name", "lab"), ("routers", "not-an-ip")];
    let (status, html) = api.post_form("/portal/groups", &ed, &bad);
    assert_eq!(status, 400);
    assert!(html.contains("groups.lab.options.routers"), "the field is named: {html}");
    let good = [("csrf", csrf.as_str()), ("name", "lab"), ("lease-time", "900"), ("routers", "192.0.2.1, 192.0.2.2")];
    assert_eq!(api.post_form("/portal/groups", &ed, &good).0, 303);
    let groups = admin.groups().expect("groups").groups;
    let lab = groups.iter().find(|g| g.name.as_deref() == Some("lab")).expect("lab added");
    assert_eq!(lab.lease_time, Some(900));
    let (_, edit) = api.page("/portal/groups?edit=lab", &ed);
    assert!(edit.contains("value=\"900\"") && edit.contains("192.0.2.1, 192.0.2.2"), "the form is filled: {edit}");
    assert_eq!(api.post_form("/portal/groups/lab/delete", &ed, &[("csrf", &csrf)]).0, 303);
    assert!(admin.groups().expect("groups").groups.iter().all(|g| g.name.as_deref() != Some("lab")));

    // A reservation added, changed and deleted.
    let mac = "02:00:00:00:00:55";
    let add = [("csrf", csrf.as_str()), ("subnet", "1"), ("hw-address", mac), ("ip-address", "192.0.2.55")];
    assert_eq!(api.post_form("/portal/reservations", &ed, &add).0, 303);
    let change = [("csrf", csrf.as_str()), ("subnet", "1"), ("hw-address", mac), ("ip-address", "192.0.2.56")];
    assert_eq!(api.post_form(&format!("/portal/reservations/{mac}"), &ed, &change).0, 303);
    let reservations = admin.reservations().expect("list").reservations;
    assert_eq!(reservations.len(), 1);
    assert_eq!(reservations[0].ip_address.as_deref(), Some("192.0.2.56"));
    assert_eq!(api.post_form(&format!("/portal/reservations/{mac}/delete"), &ed, &[("csrf", &csrf)]).0, 303);
    assert!(admin.reservations().expect("list").reservations.is_empty());

    // Every change is the editor's, made in the portal: in the history and the audit log.
    let history = admin.config_history().expect("history");
    let portal = history.versions.iter().filter(|v| v.user == "ed" && v.source == dhcp_server::history::Source::Portal);
    assert_eq!(portal.count(), 5, "group set and delete, reservation add, change and delete");
    let audit = admin.audit(100).expect("audit");
    assert!(audit.entries.iter().any(|e| e.action == "lease.delete" && e.user == "ed" && e.outcome == "ok"));
    assert!(audit.entries.iter().any(|e| e.action == "csrf.refused" && e.user == "ed"));
}
