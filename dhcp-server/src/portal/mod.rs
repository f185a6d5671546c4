//! The web portal for the people who run the service, served by the management API at
//! `/portal/` on the same listener: server-rendered pages (maud) and plain forms, no
//! JavaScript and no build step.
//!
//! Pages: the dashboard (per-subnet use, packet rates, HA state, store health), leases
//! (search, pages, delete), reservations and groups (list, add, edit, delete, CSV export and
//! import with a preview), subnets and pools, and for admins the config history (diff, roll
//! back), the audit log and the users. Logging in starts the same session the API's
//! `POST /api/v1/login` does; every form carries the session's CSRF token, and every change is
//! made by the logged-in user, checked against its role, kept in the history and audited.

mod csv;
mod hosts;
mod leases;
mod manage;
mod page;
mod status;

use std::sync::Arc;
use std::time::Instant;

use axum::Form;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use dhcp_core::LeaseStore;
use maud::html;

use self::hosts::Fields;
use self::page::{ROOT, answer, page, viewer};
use crate::api::admin::Admin;
use crate::api::auth::{SESSION_COOKIE, cleared_cookie, cookie, session_cookie, try_login};

/// The portal's routes, to be nested at [`page::ROOT`].
pub(crate) fn router<S: LeaseStore + 'static>() -> Router<Arc<Admin<S>>> {
    Router::new()
        .route("/", get(status::dashboard::<S>))
        .route("/login", get(login_form::<S>).post(login::<S>))
        .route("/logout", post(logout::<S>))
        .route("/oidc/login", get(oidc_login::<S>))
        .route("/oidc/callback", get(oidc_callback::<S>))
        .route("/subnets", get(status::subnets::<S>))
        .route("/leases", get(leases::list::<S>))
        .route("/leases/{addr}/delete", post(leases::delete::<S>))
        .route("/reservations", get(hosts::list::<S>).post(hosts::add::<S>))
        .route("/reservations.csv", get(csv::export::<S>))
        .route("/reservations/{id}/edit", get(hosts::edit_form::<S>))
        .route("/reservations/{id}", post(hosts::save::<S>))
        .route("/reservations/{id}/delete", post(hosts::delete::<S>))
        .route("/import", get(csv::form::<S>).post(csv::import::<S>))
        .route("/groups", get(hosts::groups::<S>).post(hosts::set_group::<S>))
        .route("/groups/{name}/delete", post(hosts::delete_group::<S>))
        .route("/history", get(manage::history::<S>))
        .route("/history/diff", get(manage::diff::<S>))
        .route("/history/{version}", get(manage::version::<S>))
        .route("/history/{version}/rollback", post(manage::rollback::<S>))
        .route("/audit", get(manage::audit::<S>))
        .route("/users", get(manage::users::<S>).post(manage::put_user::<S>))
        .route("/users/{name}/delete", post(manage::delete_user::<S>))
}

/// `/portal` without the slash: to the dashboard.
pub(crate) async fn to_root() -> Redirect {
    Redirect::permanent(ROOT)
}

fn login_page(error: Option<&str>, status: StatusCode, oidc: bool) -> Response {
    let body = html! {
        @if let Some(error) = error { p role="alert" { (error) } }
        @if oidc {
            p { a href=(format!("{ROOT}/oidc/login")) { "Log in with your organisation's account" } }
            p.muted { "Or with a user of this server:" }
        }
        form method="post" action=(format!("{ROOT}/login")) {
            label for="user" { "User" }
            input #user name="user" type="text" autocomplete="username" required autofocus;
            label for="password" { "Password" }
            input #password name="password" type="password" autocomplete="current-password" required;
            p { button type="submit" { "Log in" } }
        }
    };
    answer(status, page("Log in", None, body))
}

/// `GET /portal/login`: the form, or the dashboard for a live session.
async fn login_form<S: LeaseStore + 'static>(State(admin): State<Arc<Admin<S>>>, headers: HeaderMap) -> Response {
    if viewer(&admin, &headers).is_some() {
        return Redirect::to(ROOT).into_response();
    }
    login_page(None, StatusCode::OK, admin.oidc.is_some())
}

/// `POST /portal/login`: starts a session and goes to the dashboard; the form again, saying
/// why, when refused (a wrong password, a locked name).
async fn login<S: LeaseStore + 'static>(State(admin): State<Arc<Admin<S>>>, Form(fields): Form<Fields>) -> Response {
    let (user, password) = (fields.get("user").map(|u| u.trim()).unwrap_or(""), fields.get("password"));
    match try_login(&admin, user, password.map(String::as_str).unwrap_or("")) {
        Ok((_, cookie)) => {
            let mut response = page::see_other(ROOT);
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(e) => login_page(Some(&e.error), e.status, admin.oidc.is_some()),
    }
}

/// `GET /portal/oidc/login`: to the identity provider.
async fn oidc_login<S: LeaseStore + 'static>(State(admin): State<Arc<Admin<S>>>) -> Response {
    let Some(oidc) = admin.oidc.clone() else {
        return login_page(Some("This server has no OpenID Connect login."), StatusCode::NOT_FOUND, false);
    };
    match tokio::task::spawn_blocking(move || oidc.start(Instant::now())).await {
        Ok(Ok(url)) => Redirect::to(&url).into_response(),
        Ok(Err(why)) => {
            login_page(Some(&format!("The identity provider cannot be used: {why}")), StatusCode::BAD_GATEWAY, true)
        }
        Err(_) => login_page(Some("The login could not be started."), StatusCode::INTERNAL_SERVER_ERROR, true),
    }
}

/// `?code=&state=` (or `?error=`) the identity provider sends the browser back with.
#[derive(Debug, serde::Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /portal/oidc/callback`: checks the provider's answer and starts a session with the
/// role its token gives.
async fn oidc_callback<S: LeaseStore + 'static>(
    State(admin): State<Arc<Admin<S>>>,
    Query(callback): Query<Callback>,
) -> Response {
    let Some(oidc) = admin.oidc.clone() else {
        return login_page(Some("This server has no OpenID Connect login."), StatusCode::NOT_FOUND, false);
    };
    let (code, state) = match (callback.code, callback.state, callback.error) {
        (_, _, Some(error)) => {
            admin.audit.record(
                "-",
                "login.refused",
                "",
                &format!("identity provider: {error}"),
                serde_json::json!({"via": "oidc"}),
            );
            return login_page(Some(&format!("The identity provider refused: {error}")), StatusCode::FORBIDDEN, true);
        }
        (Some(code), Some(state), None) => (code, state),
        _ => return login_page(Some("The identity provider sent no code."), StatusCode::BAD_REQUEST, true),
    };
    let finished = tokio::task::spawn_blocking(move || oidc.finish(&code, &state, Instant::now())).await;
    let (user, role) = match finished {
        Ok(Ok(found)) => found,
        Ok(Err(why)) => {
            admin.audit.record("-", "login.refused", "", &why, serde_json::json!({"via": "oidc"}));
            return login_page(Some(&format!("Not logged in: {why}")), StatusCode::FORBIDDEN, true);
        }
        Err(_) => return login_page(Some("The login could not be finished."), StatusCode::INTERNAL_SERVER_ERROR, true),
    };
    let Ok((id, _)) = admin.sessions.start_with_role(&user, Some(role), Instant::now()) else {
        return login_page(Some("No session could be started."), StatusCode::INTERNAL_SERVER_ERROR, true);
    };
    admin.audit.record(&user, "login", "", "ok", serde_json::json!({"via": "oidc", "role": role}));
    let mut response = page::see_other(ROOT);
    if let Ok(value) = HeaderValue::from_str(&session_cookie(&admin, &id)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `POST /portal/logout`: ends the session (the CSRF token is not needed to log out).
async fn logout<S: LeaseStore + 'static>(State(admin): State<Arc<Admin<S>>>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        admin.sessions.end(id);
    }
    let mut response = page::see_other(&format!("{ROOT}/login"));
    if let Ok(value) = HeaderValue::from_str(&cleared_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}
