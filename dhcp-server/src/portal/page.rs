//! What every portal page shares: who is looking ([`Viewer`]), the layout, the style, and the
//! answers (a page, a redirect, a refusal).

use std::time::Instant;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::api::admin::Admin;
use crate::api::auth::{SESSION_COOKIE, cookie};
use crate::api::who::Who;
use crate::sessions::csrf_matches;
use crate::users::Role;

/// The portal's root.
pub(crate) const ROOT: &str = "/portal";

/// The logged-in user looking at a page.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    pub(crate) user: String,
    pub(crate) role: Role,
    /// The session's CSRF token, put in every form.
    pub(crate) csrf: String,
}

impl Viewer {
    /// The viewer as the history and the audit log name it.
    pub(crate) fn who(&self) -> Who {
        Who { user: self.user.clone(), message: None }
    }

    /// Whether the viewer may do what `role` may.
    pub(crate) fn may(&self, role: Role) -> bool {
        self.role >= role
    }
}

/// The viewer behind a request's session cookie, if its session is live.
pub(crate) fn viewer<S>(admin: &Admin<S>, headers: &HeaderMap) -> Option<Viewer> {
    let id = cookie(headers, SESSION_COOKIE)?;
    let session = admin.sessions.get(id, Instant::now())?;
    let role = session.role.or_else(|| admin.users.role_of(&session.user))?;
    Some(Viewer { user: session.user, role, csrf: session.csrf })
}

/// Why a page is not shown: not logged in (to the login page), or not allowed.
pub(crate) enum Refused {
    Login,
    Forbidden(String),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Login => Redirect::to(&format!("{ROOT}/login")).into_response(),
            Refused::Forbidden(why) => {
                let body = html! { p role="alert" { (why) } p { a href=(ROOT) { "Back to the dashboard" } } };
                answer(StatusCode::FORBIDDEN, page("Not allowed", None, body))
            }
        }
    }
}

/// The viewer, who must be at least `role`.
pub(crate) fn require<S>(admin: &Admin<S>, headers: &HeaderMap, role: Role) -> Result<Viewer, Refused> {
    let viewer = viewer(admin, headers).ok_or(Refused::Login)?;
    if !viewer.may(role) {
        let why = format!("{} is {}: this needs {}.", viewer.user, viewer.role.as_str(), role.as_str());
        admin.audit.record(&viewer.user, "forbidden", "", &why, serde_json::Value::Null);
        return Err(Refused::Forbidden(why));
    }
    Ok(viewer)
}

/// The viewer of a form post, who must be at least `role` and send the session's CSRF token:
/// a form posted from another site carries the cookie but not the token.
pub(crate) fn require_form<S>(
    admin: &Admin<S>,
    headers: &HeaderMap,
    role: Role,
    csrf: &str,
) -> Result<Viewer, Refused> {
    let viewer = viewer(admin, headers).ok_or(Refused::Login)?;
    let session_ok = cookie(headers, SESSION_COOKIE)
        .and_then(|id| admin.sessions.get(id, Instant::now()))
        .is_some_and(|s| csrf_matches(&s, csrf));
    if !session_ok {
        admin.audit.record(&viewer.user, "csrf.refused", "", "no or wrong CSRF token", serde_json::Value::Null);
        return Err(Refused::Forbidden("This form is out of date or was not sent from the portal.".into()));
    }
    require(admin, headers, role)
}

/// A 303 to `to` after a change (so a reload does not post again).
pub(crate) fn see_other(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// The portal's style: readable on a phone, high contrast, visible focus.
const STYLE: &str = r#"
:root { color-scheme: light; --fg: #111; --bg: #fff; --muted: #444; --line: #bbb; --accent: #0b4fa8; --bad: #a30000; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header { background: #0b2d5b; color: #fff; padding: .5rem 1rem; display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: center; }
header a { color: #fff; }
nav ul { list-style: none; display: flex; flex-wrap: wrap; gap: .25rem 1rem; margin: 0; padding: 0; }
main { padding: 1rem; max-width: 80rem; }
a { color: var(--accent); }
a:focus, button:focus, input:focus, select:focus, textarea:focus { outline: 3px solid #f5a623; outline-offset: 2px; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; }
th, td { border-bottom: 1px solid var(--line); padding: .35rem .5rem; text-align: left; vertical-align: top; }
th { background: #eef2f7; }
.scroll { overflow-x: auto; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
form.inline { display: inline; }
fieldset { border: 1px solid var(--line); margin: 0 0 1rem; }
label { display: block; font-weight: 600; margin-top: .5rem; }
input, select, textarea { font: inherit; padding: .3rem; max-width: 100%; }
button { font: inherit; padding: .3rem .8rem; background: var(--accent); color: #fff; border: 0; border-radius: 3px; cursor: pointer; }
button.danger { background: var(--bad); }
[role=alert] { color: var(--bad); font-weight: 600; border-left: 4px solid var(--bad); padding-left: .5rem; }
.ok { border-left: 4px solid #1a7f37; padding-left: .5rem; }
.muted { color: var(--muted); }
pre { background: #f4f4f4; padding: .5rem; overflow-x: auto; }
.bar { background: #dde3ea; height: .8rem; min-width: 6rem; border-radius: 2px; }
.bar > span { display: block; height: 100%; background: var(--accent); border-radius: 2px; }
"#;

/// A whole page: `title`, the navigation for `viewer` (none on the login page), and `body`.
pub(crate) fn page(title: &str, viewer: Option<&Viewer>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · DHCP portal" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    strong { "DHCP portal" }
                    @if let Some(viewer) = viewer {
                        nav aria-label="Main" {
                            ul {
                                li { a href=(ROOT) { "Dashboard" } }
                                li { a href=(format!("{ROOT}/leases")) { "Leases" } }
                                li { a href=(format!("{ROOT}/reservations")) { "Reservations" } }
                                li { a href=(format!("{ROOT}/groups")) { "Groups" } }
                                li { a href=(format!("{ROOT}/subnets")) { "Subnets" } }
                                @if viewer.may(Role::Admin) {
                                    li { a href=(format!("{ROOT}/history")) { "Config history" } }
                                    li { a href=(format!("{ROOT}/audit")) { "Audit log" } }
                                    li { a href=(format!("{ROOT}/users")) { "Users" } }
                                }
                            }
                        }
                        form.inline method="post" action=(format!("{ROOT}/logout")) {
                            input type="hidden" name="csrf" value=(viewer.csrf);
                            span { (viewer.user) " (" (viewer.role.as_str()) ") " }
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The hidden CSRF field every form carries.
pub(crate) fn csrf_field(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.csrf); }
}

/// A page answered with `status`.
pub(crate) fn answer(status: StatusCode, markup: Markup) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Html(markup.into_string())).into_response()
}
