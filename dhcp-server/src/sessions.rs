//! Browser sessions of logged-in users, and the lockout that stops password guessing.
//!
//! A session is 32 random bytes (the cookie) with a CSRF token of its own, which every change
//! made with the cookie must carry. It ends after `session-idle-timeout` without a request,
//! after `session-lifetime` in any case, and at logout. Sessions live in memory: a restart logs
//! everyone out. Past [`MAX_SESSIONS`], the least recently used goes.
//!
//! A user name with [`MAX_FAILURES`] failed logins within [`FAILURE_WINDOW`] is locked for
//! [`LOCKOUT`], the right password included; and the server checks at most
//! [`LOGINS_PER_SECOND`] passwords a second in all, since each check costs an Argon2 hash.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::users::{Role, random_hex, same};

/// Sessions kept at most.
pub const MAX_SESSIONS: usize = 10_000;

/// Failed logins for one name that lock it.
pub const MAX_FAILURES: u32 = 5;

/// How far back failures count.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// How long a locked name stays locked.
pub const LOCKOUT: Duration = Duration::from_secs(15 * 60);

/// Password checks a second, over every name.
pub const LOGINS_PER_SECOND: u32 = 10;

/// A logged-in user's session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The user.
    pub user: String,
    /// The role the identity provider gave a user logged in by OpenID Connect; `None` for a
    /// user of `users.json`, whose role is looked up on each request.
    pub role: Option<Role>,
    /// The token every change made with this session must carry.
    pub csrf: String,
    created: Instant,
    last: Instant,
}

#[derive(Debug, Default)]
struct Failures {
    count: u32,
    first: Option<Instant>,
    locked_until: Option<Instant>,
}

#[derive(Debug)]
struct State {
    sessions: HashMap<String, Session>,
    failures: HashMap<String, Failures>,
    /// The second being counted and the password checks in it.
    second: Option<Instant>,
    checks: u32,
}

/// Why a login is not even tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The name is locked for this long yet.
    Locked(Duration),
    /// Too many logins at once: try again in a second.
    Busy,
}

/// The sessions and the login lockout.
#[derive(Debug)]
pub struct Sessions {
    idle: Duration,
    lifetime: Duration,
    state: Mutex<State>,
}

impl Sessions {
    /// Sessions that end after `idle` without a request, or `lifetime` after login.
    pub fn new(idle: Duration, lifetime: Duration) -> Sessions {
        let state = State { sessions: HashMap::new(), failures: HashMap::new(), second: None, checks: 0 };
        Sessions { idle, lifetime, state: Mutex::new(state) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a login for `name` may be tried now (and counts the try).
    pub fn may_try(&self, name: &str, now: Instant) -> Result<(), Refusal> {
        let mut state = self.state();
        if let Some(until) = state.failures.get(name).and_then(|f| f.locked_until)
            && until > now
        {
            return Err(Refusal::Locked(until - now));
        }
        if state.second.is_none_or(|s| now.duration_since(s) >= Duration::from_secs(1)) {
            (state.second, state.checks) = (Some(now), 0);
        }
        if state.checks >= LOGINS_PER_SECOND {
            return Err(Refusal::Busy);
        }
        state.checks += 1;
        Ok(())
    }

    /// Notes a failed login for `name`; whether the name is locked now.
    pub fn failed(&self, name: &str, now: Instant) -> bool {
        let mut state = self.state();
        // Bounded like the sessions: a flood of made-up names cannot grow the map for good.
        if state.failures.len() >= MAX_SESSIONS && !state.failures.contains_key(name) {
            state.failures.retain(|_, f| f.first.is_some_and(|t| now.duration_since(t) < FAILURE_WINDOW));
        }
        let failures = state.failures.entry(name.to_owned()).or_default();
        if failures.first.is_none_or(|t| now.duration_since(t) >= FAILURE_WINDOW) {
            (failures.count, failures.first) = (0, Some(now));
        }
        failures.count += 1;
        if failures.count >= MAX_FAILURES {
            failures.locked_until = Some(now + LOCKOUT);
            return true;
        }
        false
    }

    /// Starts a session for `user` after a login that succeeded: its id (the cookie) and CSRF
    /// token. The name's failures are forgotten.
    pub fn start(&self, user: &str, now: Instant) -> std::io::Result<(String, String)> {
        self.start_with_role(user, None, now)
    }

    /// [`start`](Self::start) for a user the identity provider vouched for, with its role.
    pub fn start_with_role(&self, user: &str, role: Option<Role>, now: Instant) -> std::io::Result<(String, String)> {
        let (id, csrf) = (random_hex(32)?, random_hex(32)?);
        let mut state = self.state();
        state.failures.remove(user);
        if state.sessions.len() >= MAX_SESSIONS {
            let oldest = state.sessions.iter().min_by_key(|(_, s)| s.last).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                state.sessions.remove(&oldest);
            }
        }
        let session = Session { user: user.to_owned(), role, csrf: csrf.clone(), created: now, last: now };
        state.sessions.insert(id.clone(), session);
        Ok((id, csrf))
    }

    /// The live session `id`, touched by this request; `None` (and gone) when it ended.
    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let mut state = self.state();
        let session = state.sessions.get_mut(id)?;
        if now.duration_since(session.last) > self.idle || now.duration_since(session.created) > self.lifetime {
            state.sessions.remove(id);
            return None;
        }
        session.last = now;
        Some(session.clone())
    }

    /// Ends session `id`.
    pub fn end(&self, id: &str) {
        self.state().sessions.remove(id);
    }

    /// Ends every session of `user` (deleted, or its password changed).
    pub fn end_all_of(&self, user: &str) {
        self.state().sessions.retain(|_, s| s.user != user);
    }
}

/// Whether `given` is the session's CSRF token.
pub fn csrf_matches(session: &Session, given: &str) -> bool {
    same(session.csrf.as_bytes(), given.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_ends_when_idle_or_too_old_and_at_logout() {
        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_secs(300));
        let t0 = Instant::now();
        let (id, csrf) = sessions.start("alice", t0).expect("start");
        let session = sessions.get(&id, t0 + Duration::from_secs(50)).expect("live");
        assert!(csrf_matches(&session, &csrf) && !csrf_matches(&session, "x"));
        assert!(sessions.get(&id, t0 + Duration::from_secs(100)).is_some(), "touched at 50 s: idle for 50 s");
        assert!(sessions.get(&id, t0 + Duration::from_secs(161)).is_none(), "idle for 61 s");
        assert!(sessions.get(&id, t0 + Duration::from_secs(162)).is_none(), "and gone");

        let (id, _) = sessions.start("alice", t0).expect("start");
        for s in (50..=300).step_by(50) {
            assert!(sessions.get(&id, t0 + Duration::from_secs(s)).is_some(), "{s}");
        }
        assert!(sessions.get(&id, t0 + Duration::from_secs(301)).is_none(), "past its lifetime");
        let (id, _) = sessions.start("alice", t0).expect("start");
        sessions.end(&id);
        assert!(sessions.get(&id, t0).is_none());
    }

    #[test]
    fn five_failures_lock_the_name_for_a_while_and_other_names_stay_open() {
        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_secs(300));
        let t0 = Instant::now();
        for n in 1..=MAX_FAILURES {
            assert_eq!(sessions.may_try("alice", t0 + Duration::from_secs(u64::from(n))), Ok(()));
            assert_eq!(sessions.failed("alice", t0 + Duration::from_secs(u64::from(n))), n == MAX_FAILURES);
        }
        let later = t0 + Duration::from_secs(10);
        assert!(matches!(sessions.may_try("alice", later), Err(Refusal::Locked(_))));
        assert_eq!(sessions.may_try("bob", later + Duration::from_secs(1)), Ok(()));
        assert_eq!(sessions.may_try("alice", t0 + LOCKOUT + Duration::from_secs(6)), Ok(()), "unlocked");
    }

    #[test]
    fn at_most_so_many_password_checks_a_second() {
        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_secs(300));
        let t0 = Instant::now();
        let tried = (0..50).filter(|n| sessions.may_try(&format!("user{n}"), t0).is_ok()).count();
        assert_eq!(tried, LOGINS_PER_SECOND as usize);
        assert_eq!(sessions.may_try("late", t0 + Duration::from_secs(1)), Ok(()));
    }
}
