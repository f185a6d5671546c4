//! Who may call what: a bearer token (the shared `api-token`, an admin, or a user's own
//! token) or a session cookie from `POST /login`, checked against the role each endpoint needs
//! ([`required_role`]); changes made with a cookie must carry the session's CSRF token in
//! `X-CSRF-Token`. Login, logout and the users' endpoints are here too.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::admin::{Admin, ApiResult};
use super::error::ApiError;
use super::model::{LoginAnswer, TokenIssued, UserList};
use super::who::{User, Who};
use crate::sessions::{Refusal, csrf_matches};
use crate::users::{Role, UserError, same};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "dhcp_session";

/// The header a cookie-authenticated change carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The role an endpoint needs, by method and route (as the router writes it, under `/api/v1`):
/// reading needs `viewer`, except the config, its history, the audit log, the users and a
/// peer's lease sync (`admin`); changing reservations, groups, store entries and deleting a
/// lease needs `editor`; every other change (config, HA, users) `admin`.
pub fn required_role(method: &Method, route: &str) -> Role {
    let route = route.strip_prefix("/api/v1").unwrap_or(route);
    let read = method == Method::GET || method == Method::HEAD;
    match route {
        "/config"
        | "/config/history"
        | "/config/history/{version}"
        | "/config/diff"
        | "/audit"
        | "/users"
        | "/ha/leases" => Role::Admin,
        _ if read => Role::Viewer,
        "/leases/{addr}" | "/reservations" | "/reservations/{id}" | "/groups/{name}" | "/store/entries/{key}" => {
            Role::Editor
        }
        _ => Role::Admin,
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
}

/// How the caller proved who it is.
enum Proof {
    Token,
    Session { csrf_ok: bool },
}

/// The caller's name and role, or why it has none.
fn identify<S>(admin: &Admin<S>, request: &Request) -> Result<(String, Role, Proof), &'static str> {
    let headers = request.headers();
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if let Some(given) = bearer {
        if same(given.as_bytes(), admin.token.as_bytes()) {
            // The shared token is the admin's, as before there were users.
            return Ok(("api-token".to_owned(), Role::Admin, Proof::Token));
        }
        return match admin.users.check_token(given) {
            Some((name, role)) => Ok((name, role, Proof::Token)),
            None => Err("wrong bearer token"),
        };
    }
    let Some(id) = cookie(headers, SESSION_COOKIE) else { return Err("no bearer token or session") };
    let session = admin.sessions.get(id, Instant::now()).ok_or("session ended or unknown")?;
    // The role as it is now: a user demoted or deleted since the login has what is left.
    let role = session.role.or_else(|| admin.users.role_of(&session.user)).ok_or("session of a deleted user")?;
    let given = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    Ok((session.user.clone(), role, Proof::Session { csrf_ok: csrf_matches(&session, given) }))
}

/// The API's gate: 401 without a valid token or session, 403 for a cookie change without the
/// CSRF token and for a role below the endpoint's; each refusal is written to the audit log.
pub(crate) async fn gate<S>(State(admin): State<Arc<Admin<S>>>, mut request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let method = request.method().clone();
    let detail = serde_json::json!({ "method": method.as_str(), "path": request.uri().path() });
    let (name, role, proof) = match identify(&admin, &request) {
        Ok(found) => found,
        Err(why) => {
            admin.audit.record("-", "login.refused", "", why, detail);
            return ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token or session").into_response();
        }
    };
    let changes = method != Method::GET && method != Method::HEAD;
    if changes && matches!(proof, Proof::Session { csrf_ok: false }) {
        admin.audit.record(&name, "csrf.refused", "", "no or wrong CSRF token", detail);
        return ApiError::new(StatusCode::FORBIDDEN, format!("a change made with a session needs its {CSRF_HEADER}"))
            .into_response();
    }
    let needed = required_role(&method, &route);
    if role < needed {
        let why = format!("{name} is {}: {method} {} needs {}", role.as_str(), request.uri().path(), needed.as_str());
        admin.audit.record(&name, "forbidden", "", &why, detail);
        return ApiError::new(StatusCode::FORBIDDEN, why).into_response();
    }
    request.extensions_mut().insert(User(name));
    request.extensions_mut().insert(role);
    next.run(request).await
}

/// Logs `user` in with `password`: the answer and the `Set-Cookie` value of its session
/// (HttpOnly, SameSite=Strict, Secure over HTTPS); 401 for a wrong name or password, 429 while
/// the name is locked or too many logins arrive at once. Each outcome is audited.
pub(crate) fn try_login<S>(admin: &Admin<S>, user: &str, password: &str) -> Result<(LoginAnswer, String), ApiError> {
    let now = Instant::now();
    match admin.sessions.may_try(user, now) {
        Ok(()) => {}
        Err(Refusal::Locked(left)) => {
            admin.audit.record(user, "login.refused", "", "locked after failed logins", Value::Null);
            let secs = u32::try_from(left.as_secs()).unwrap_or(u32::MAX).max(1);
            return Err(ApiError::too_many(format!("{user} is locked after failed logins; try later"), secs));
        }
        Err(Refusal::Busy) => return Err(ApiError::too_many("too many logins at once; try again", 1)),
    }
    let Some(role) = admin.users.check_password(user, password) else {
        let locked = admin.sessions.failed(user, now);
        let why = if locked { "wrong password; now locked" } else { "wrong user or password" };
        admin.audit.record(user, "login.refused", "", why, Value::Null);
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong user or password"));
    };
    let (id, csrf) = admin
        .sessions
        .start(user, now)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("no session: {e}")))?;
    admin.audit.record(user, "login", "", "ok", Value::Null);
    Ok((LoginAnswer { user: user.to_owned(), role, csrf }, session_cookie(admin, &id)))
}

/// The `Set-Cookie` value of session `id`: HttpOnly, SameSite=Strict, Secure over HTTPS.
pub(crate) fn session_cookie<S>(admin: &Admin<S>, id: &str) -> String {
    let secure = if admin.secure_cookies { "; Secure" } else { "" };
    format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        admin.sessions_lifetime_secs
    )
}

/// `POST /api/v1/login` with `{"user": ..., "password": ...}`: the session cookie and the
/// session's CSRF token (see [`try_login`]).
pub(crate) async fn login<S>(State(admin): State<Arc<Admin<S>>>, body: Bytes) -> Result<Response, ApiError> {
    #[derive(serde::Deserialize)]
    struct Login {
        user: String,
        password: String,
    }
    let form: Login = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad("body", format!("expected {{\"user\": ..., \"password\": ...}}: {e}")))?;
    let (answer, cookie) = try_login(&admin, &form.user, &form.password)?;
    let mut response = axum::Json(answer).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// The `Set-Cookie` value that clears the session cookie.
pub(crate) fn cleared_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// `POST /api/v1/logout`: ends the session and clears the cookie.
pub(crate) async fn logout<S>(State(admin): State<Arc<Admin<S>>>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        admin.sessions.end(id);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&cleared_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `GET /api/v1/session`: who the caller is.
pub(crate) async fn session(who: Who, role: axum::Extension<Role>) -> ApiResult<Value> {
    Ok(axum::Json(serde_json::json!({ "user": who.user, "role": role.0 })))
}

fn user_error(e: UserError) -> ApiError {
    match e {
        UserError::Invalid { field, reason } => ApiError::bad(field, reason),
        UserError::NotFound(what) => ApiError::new(StatusCode::NOT_FOUND, what),
        other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

/// `GET /api/v1/users`.
pub(crate) async fn list_users<S>(State(admin): State<Arc<Admin<S>>>) -> ApiResult<UserList> {
    Ok(axum::Json(UserList { users: admin.users.list() }))
}

/// `PUT /api/v1/users/{name}` with `{"role": ..., "password": ...}` (the password required for
/// a new user): adds the user or changes its role or password. A new password ends the user's
/// sessions.
pub(crate) async fn put_user<S>(
    State(admin): State<Arc<Admin<S>>>,
    Path(name): Path<String>,
    who: Who,
    body: Bytes,
) -> Result<Response, ApiError> {
    #[derive(serde::Deserialize)]
    struct Body {
        role: String,
        password: Option<String>,
    }
    let body: Body = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad("body", format!("expected {{\"role\": ..., \"password\": ...}}: {e}")))?;
    let role = Role::parse(&body.role).ok_or_else(|| ApiError::bad("role", "viewer, editor or admin"))?;
    let result = admin.users.put(&name, role, body.password.as_deref());
    let detail = serde_json::json!({ "role": role, "password-changed": body.password.is_some() });
    admin.audit_result(&who, "user.put", &name, &result.as_ref().map(|_| ()), detail);
    let created = result.map_err(user_error)?;
    if body.password.is_some() && !created {
        admin.sessions.end_all_of(&name);
    }
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(serde_json::json!({ "user": name, "role": role }))).into_response())
}

/// `DELETE /api/v1/users/{name}`: the user, its tokens and its sessions.
pub(crate) async fn delete_user<S>(
    State(admin): State<Arc<Admin<S>>>,
    Path(name): Path<String>,
    who: Who,
) -> ApiResult<Value> {
    let result = admin.users.delete(&name);
    admin.audit_result(&who, "user.delete", &name, &result, Value::Null);
    result.map_err(user_error)?;
    admin.sessions.end_all_of(&name);
    Ok(axum::Json(serde_json::json!({ "deleted": name })))
}

/// `POST /api/v1/users/{name}/tokens` with an optional `{"role": ...}`: a new API token for
/// the user, shown only in this answer.
pub(crate) async fn issue_token<S>(
    State(admin): State<Arc<Admin<S>>>,
    Path(name): Path<String>,
    who: Who,
    body: Bytes,
) -> ApiResult<TokenIssued> {
    let role = match serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.get("role").cloned()) {
        Some(Value::String(text)) => {
            Some(Role::parse(&text).ok_or_else(|| ApiError::bad("role", "viewer, editor or admin"))?)
        }
        _ => None,
    };
    let result = admin.users.issue_token(&name, role);
    let detail = result.as_ref().map_or(Value::Null, |(_, t)| serde_json::json!({ "id": t.id, "role": t.role }));
    admin.audit_result(&who, "token.issue", &name, &result.as_ref().map(|_| ()), detail);
    let (token, summary) = result.map_err(user_error)?;
    Ok(axum::Json(TokenIssued { user: name, token, id: summary.id, role: summary.role }))
}

/// `DELETE /api/v1/users/{name}/tokens/{id}`.
pub(crate) async fn revoke_token<S>(
    State(admin): State<Arc<Admin<S>>>,
    Path((name, id)): Path<(String, String)>,
    who: Who,
) -> ApiResult<Value> {
    let result = admin.users.revoke_token(&name, &id);
    admin.audit_result(&who, "token.revoke", &format!("{name}/{id}"), &result, Value::Null);
    result.map_err(user_error)?;
    Ok(axum::Json(serde_json::json!({ "revoked": id })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_is_for_viewers_changing_hosts_for_editors_and_the_rest_for_admins() {
        let get = Method::GET;
        assert_eq!(required_role(&get, "/api/v1/leases"), Role::Viewer);
        assert_eq!(required_role(&get, "/api/v1/config"), Role::Admin);
        assert_eq!(required_role(&get, "/api/v1/audit"), Role::Admin);
        assert_eq!(required_role(&Method::DELETE, "/api/v1/leases/{addr}"), Role::Editor);
        assert_eq!(required_role(&Method::POST, "/api/v1/reservations"), Role::Editor);
        assert_eq!(required_role(&Method::POST, "/api/v1/config/rollback"), Role::Admin);
        assert_eq!(required_role(&Method::PUT, "/api/v1/users/{name}"), Role::Admin);
        assert_eq!(required_role(&Method::POST, "/api/v1/ha/partner-down"), Role::Admin);
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; dhcp_session=abc; b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        headers.insert(header::COOKIE, HeaderValue::from_static("dhcp_sessionx=abc"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), None);
    }
}
