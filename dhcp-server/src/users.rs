//! The people who operate the server: users with a role and a password, and API tokens of
//! their own, kept in `STATE-DIR/users.json` (0600).
//!
//! Passwords are stored as Argon2id hashes (PHC strings, salt included). An API token is
//! `dhcp_ID_SECRET`: the ID finds it, and only the SHA-256 of the 32 random bytes of SECRET is
//! kept, which is enough for a secret that long and cheap to check on every request. A token
//! is shown once, when it is made.
//!
//! Roles, each including the one before: `viewer` reads; `editor` also changes reservations,
//! groups, store entries and leases; `admin` also the config, its history, HA and users.

use std::collections::BTreeMap;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};

use crate::clock;
use crate::files::replace_file;

/// What a user may do; each role may do all the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads leases, reservations, groups, statistics, health.
    Viewer,
    /// Also changes reservations, groups and store entries, and deletes leases.
    Editor,
    /// Also the config (reload, rollback, history), the audit log, HA actions and users.
    Admin,
}

impl Role {
    /// The role's name, as the config and the API write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    /// The role named `text`.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Names the server uses for itself in the history and the audit log: no user may take them.
const RESERVED_NAMES: [&str; 3] = ["api-token", "system", "-"];

/// The shortest password taken.
pub const MIN_PASSWORD: usize = 10;

/// An API token as stored: its id, the SHA-256 of its secret, its role, when it was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredToken {
    /// The id, the token's second part.
    pub id: String,
    /// Hex SHA-256 of the secret.
    pub hash: String,
    /// What the token may do: at most its user's role.
    pub role: Role,
    /// When it was made, seconds since the epoch.
    pub created: u64,
}

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredUser {
    role: Role,
    /// The Argon2id PHC string.
    password: String,
    #[serde(default)]
    tokens: Vec<StoredToken>,
}

/// A user as the API lists it: no secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSummary {
    /// The name.
    pub name: String,
    /// The role.
    pub role: Role,
    /// The ids, roles and times of the user's API tokens.
    pub tokens: Vec<TokenSummary>,
}

/// An API token as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSummary {
    /// The id.
    pub id: String,
    /// Its role.
    pub role: Role,
    /// When it was made, seconds since the epoch.
    pub created: u64,
}

/// Why a change to the users was refused: the field and the reason.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// A field is not acceptable.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field (`name`, `password`, `role`).
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// No such user or token.
    #[error("{0}")]
    NotFound(String),
    /// The users file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> UserError {
    UserError::Invalid { field, reason: reason.into() }
}

/// The users and their tokens, in their file (see the module docs).
#[derive(Debug)]
pub struct Users {
    path: PathBuf,
    users: Mutex<BTreeMap<String, StoredUser>>,
    /// Checked against when the name is unknown, so that a wrong name costs as long as a wrong
    /// password and does not tell which names exist.
    dummy: String,
}

/// Fills `buf` with random bytes from the operating system.
pub(crate) fn random(buf: &mut [u8]) -> io::Result<()> {
    getrandom::fill(buf).map_err(|e| io::Error::other(e.to_string()))
}

/// Random bytes as lower-case hex.
pub(crate) fn random_hex(bytes: usize) -> io::Result<String> {
    let mut buf = vec![0u8; bytes];
    random(&mut buf)?;
    Ok(hex(&buf))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

/// Compares in time that depends on the lengths only, not on where the bytes differ.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hash_password(password: &str) -> Result<String, UserError> {
    let mut salt = [0u8; 16];
    random(&mut salt).map_err(|e| invalid("password", format!("no randomness for the salt: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| invalid("password", e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| invalid("password", e.to_string()))
}

fn check_name(name: &str) -> Result<(), UserError> {
    let ok_chars = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if name.is_empty() || name.len() > 64 || !ok_chars {
        return Err(invalid("name", "1 to 64 of a-z, 0-9, '.', '_' and '-'"));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(invalid("name", format!("{name:?} is the server's own")));
    }
    Ok(())
}

fn check_password(password: &str) -> Result<(), UserError> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(invalid("password", format!("at least {MIN_PASSWORD} characters")));
    }
    Ok(())
}

impl Users {
    /// Reads the users in `path` (none when it does not exist yet). A file that cannot be read
    /// or parsed is an error: the server does not start with its users lost.
    pub fn open(path: &Path) -> io::Result<Users> {
        let users = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| io::Error::new(ErrorKind::InvalidData, format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        let dummy = hash_password("not a password of anyone").map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Users { path: path.to_owned(), users: Mutex::new(users), dummy })
    }

    fn save(&self, users: &BTreeMap<String, StoredUser>) -> Result<(), UserError> {
        let text = serde_json::to_string_pretty(users)
            .map_err(|e| UserError::Io { path: self.path.clone(), source: io::Error::other(e) })?;
        if let Some(dir) = self.path.parent() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| UserError::Io { path: dir.to_owned(), source })?;
        }
        replace_file(&self.path, &text).map_err(|source| UserError::Io { path: self.path.clone(), source })
    }

    /// Every user, by name, without secrets.
    pub fn list(&self) -> Vec<UserSummary> {
        let users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        users
            .iter()
            .map(|(name, u)| UserSummary {
                name: name.clone(),
                role: u.role,
                tokens: u
                    .tokens
                    .iter()
                    .map(|t| TokenSummary { id: t.id.clone(), role: t.role, created: t.created })
                    .collect(),
            })
            .collect()
    }

    /// The role of user `name`, if there is one.
    pub fn role_of(&self, name: &str) -> Option<Role> {
        self.users.lock().unwrap_or_else(PoisonError::into_inner).get(name).map(|u| u.role)
    }

    /// Adds user `name` or changes its role and, when given, its password (required for a new
    /// user). A role change lowers the user's tokens to it. Whether the user is new.
    pub fn put(&self, name: &str, role: Role, password: Option<&str>) -> Result<bool, UserError> {
        check_name(name)?;
        let hashed = password.map(|p| check_password(p).and_then(|()| hash_password(p))).transpose()?;
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = users.clone();
        let created = match next.get_mut(name) {
            Some(user) => {
                user.role = role;
                for token in &mut user.tokens {
                    token.role = token.role.min(role);
                }
                if let Some(hashed) = hashed {
                    user.password = hashed;
                }
                false
            }
            None => {
                let password = hashed.ok_or_else(|| invalid("password", "a new user needs one"))?;
                next.insert(name.to_owned(), StoredUser { role, password, tokens: Vec::new() });
                true
            }
        };
        self.save(&next)?;
        *users = next;
        Ok(created)
    }

    /// Deletes user `name` and its tokens.
    pub fn delete(&self, name: &str) -> Result<(), UserError> {
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = users.clone();
        if next.remove(name).is_none() {
            return Err(UserError::NotFound(format!("no user {name:?}")));
        }
        self.save(&next)?;
        *users = next;
        Ok(())
    }

    /// The user's role when `password` is theirs. An unknown name costs the same time.
    pub fn check_password(&self, name: &str, password: &str) -> Option<Role> {
        let found = self.users.lock().unwrap_or_else(PoisonError::into_inner).get(name).cloned();
        let stored = found.as_ref().map_or(self.dummy.as_str(), |u| u.password.as_str());
        let matches = PasswordHash::new(stored)
            .is_ok_and(|hash| Argon2::default().verify_password(password.as_bytes(), &hash).is_ok());
        found.filter(|_| matches).map(|u| u.role)
    }

    /// Makes an API token for user `name` with `role` (at most the user's; the user's when
    /// none): the token itself, shown only now, and its id.
    pub fn issue_token(&self, name: &str, role: Option<Role>) -> Result<(String, TokenSummary), UserError> {
        let io = |source| UserError::Io { path: self.path.clone(), source };
        let (id, secret) = (random_hex(4).map_err(io)?, random_hex(32).map_err(io)?);
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = users.clone();
        let user = next.get_mut(name).ok_or_else(|| UserError::NotFound(format!("no user {name:?}")))?;
        let role = role.unwrap_or(user.role);
        if role > user.role {
            return Err(invalid("role", format!("{name} is {}: a token cannot do more", user.role.as_str())));
        }
        let stored =
            StoredToken { id: id.clone(), hash: sha256_hex(secret.as_bytes()), role, created: clock::now_secs() };
        let summary = TokenSummary { id: id.clone(), role, created: stored.created };
        user.tokens.push(stored);
        self.save(&next)?;
        *users = next;
        Ok((format!("dhcp_{id}_{secret}"), summary))
    }

    /// Revokes user `name`'s token `id`.
    pub fn revoke_token(&self, name: &str, id: &str) -> Result<(), UserError> {
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = users.clone();
        let user = next.get_mut(name).ok_or_else(|| UserError::NotFound(format!("no user {name:?}")))?;
        let before = user.tokens.len();
        user.tokens.retain(|t| t.id != id);
        if user.tokens.len() == before {
            return Err(UserError::NotFound(format!("{name} has no token {id:?}")));
        }
        self.save(&next)?;
        *users = next;
        Ok(())
    }

    /// The user and role an API token (`dhcp_ID_SECRET`) stands for, if it is one of theirs.
    pub fn check_token(&self, token: &str) -> Option<(String, Role)> {
        let (id, secret) = token.strip_prefix("dhcp_")?.split_once('_')?;
        let hash = sha256_hex(secret.as_bytes());
        let users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        users.iter().find_map(|(name, user)| {
            let token = user.tokens.iter().find(|t| t.id == id)?;
            same(token.hash.as_bytes(), hash.as_bytes()).then(|| (name.clone(), token.role.min(user.role)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> (tempfile::TempDir, Users) {
        let dir = tempfile::tempdir().expect("temp dir");
        let users = Users::open(&dir.path().join("state/users.json")).expect("open");
        (dir, users)
    }

    #[test]
    fn passwords_are_checked_and_kept_as_argon2_hashes_in_a_private_file() {
        let (_dir, users) = users();
        assert!(users.put("alice", Role::Editor, Some("correct horse battery")).expect("put"));
        assert_eq!(users.check_password("alice", "correct horse battery"), Some(Role::Editor));
        assert_eq!(users.check_password("alice", "wrong horse battery"), None);
        assert_eq!(users.check_password("nobody", "correct horse battery"), None);
        let text = std::fs::read_to_string(&users.path).expect("read");
        assert!(text.contains("$argon2id$") && !text.contains("correct horse"), "{text}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&users.path).expect("meta").permissions().mode() & 0o777, 0o600);
        // Read back by a new process.
        let again = Users::open(&users.path).expect("reopen");
        assert_eq!(again.check_password("alice", "correct horse battery"), Some(Role::Editor));
    }

    #[test]
    fn bad_names_and_short_passwords_are_refused_naming_the_field() {
        let (_dir, users) = users();
        for (name, password, field) in [
            ("Alice", Some("long enough pw"), "name"),
            ("api-token", Some("long enough pw"), "name"),
            ("bob", Some("short"), "password"),
            ("bob", None, "password"),
        ] {
            match users.put(name, Role::Viewer, password) {
                Err(UserError::Invalid { field: f, .. }) => assert_eq!(f, field, "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        assert!(users.list().is_empty());
    }

    #[test]
    fn tokens_stand_for_their_user_at_most_its_role_and_can_be_revoked() {
        let (_dir, users) = users();
        users.put("carol", Role::Editor, Some("long enough pw")).expect("put");
        let (token, summary) = users.issue_token("carol", Some(Role::Viewer)).expect("issue");
        assert_eq!(users.check_token(&token), Some(("carol".to_owned(), Role::Viewer)));
        assert!(users.issue_token("carol", Some(Role::Admin)).is_err(), "no more than the user");
        let last = if token.ends_with('0') { '1' } else { '0' };
        let tampered = format!("{}{last}", &token[..token.len() - 1]);
        assert_eq!(users.check_token(&tampered), None);
        let text = std::fs::read_to_string(&users.path).expect("read");
        assert!(!text.contains(token.rsplit('_').next().unwrap_or("x")), "the secret is not stored");
        // Demoted: the token follows.
        users.put("carol", Role::Viewer, None).expect("demote");
        let (editor_token, _) = users.issue_token("carol", None).expect("issue");
        assert_eq!(users.check_token(&editor_token).map(|t| t.1), Some(Role::Viewer));
        users.revoke_token("carol", &summary.id).expect("revoke");
        assert_eq!(users.check_token(&token), None);
        users.delete("carol").expect("delete");
        assert_eq!(users.check_token(&editor_token), None);
    }
}
