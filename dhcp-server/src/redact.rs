//! Secrets as they may be shown: in `GET /api/v1/config`, in logs, in API errors. The text
//! on disk and the running config keep the real values.

/// What secrets are shown as.
pub const REDACTED: &str = "***";

/// The config keys whose values are secrets, shown as [`REDACTED`].
const SECRET_KEYS: [&str; 2] = ["api-token", "oidc-client-secret"];

/// Config text as it may be shown (`GET /api/v1/config`, logs): `api-token` and
/// `oidc-client-secret` values and the passwords in URLs are [`REDACTED`] (see
/// [`redact_secrets`]); layout and comments stay. The text on disk and the running text keep the
/// real values.
pub fn redact_config(text: &str) -> String {
    let text = match text.parse::<toml_edit::DocumentMut>() {
        Ok(mut doc) => {
            redact_tokens(doc.as_table_mut());
            doc.to_string()
        }
        // Not TOML (it was validated, so this is unlikely): a line-wise `api-token = ...`.
        Err(_) => text
            .lines()
            .map(|line| match line.split_once('=') {
                Some((key, _)) if SECRET_KEYS.contains(&key.trim().trim_matches(['"', '\''])) => {
                    format!("{key}= \"{REDACTED}\"")
                }
                _ => line.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n"),
    };
    redact_secrets(&text)
}

fn redact_tokens(table: &mut dyn toml_edit::TableLike) {
    for (key, item) in table.iter_mut() {
        if SECRET_KEYS.contains(&key.get()) && (item.is_str() || item.is_value()) {
            let decor = item.as_value().map(|v| v.decor().clone());
            let mut value = toml_edit::Value::from(REDACTED);
            if let Some(decor) = decor {
                *value.decor_mut() = decor;
            }
            *item = toml_edit::Item::Value(value);
        } else if let Some(inner) = item.as_table_like_mut() {
            redact_tokens(inner);
        } else if let Some(tables) = item.as_array_of_tables_mut() {
            for inner in tables.iter_mut() {
                redact_tokens(inner);
            }
        }
    }
}

/// `text` (a store URL, config text, an error message) with every password it carries
/// [`REDACTED`]: the password in a URL's user information (`postgres://user:PASS@host`,
/// `redis://:PASS@host`, `rediss://`, `redis+sentinel://`, any scheme) and the value of any
/// `password=` or `...password=` parameter (`?password=PASS`, `sentinel_password=PASS`).
pub fn redact_secrets(text: &str) -> String {
    redact_password_params(&redact_userinfo(text))
}

/// Ends a URL (or a parameter's value) in free text.
fn ends_url(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>')
}

fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail.find(ends_url).unwrap_or(tail.len());
        let (url, after) = tail.split_at(end);
        // User information ends at the last `@` before the query: a password may hold `@`.
        let query = url.find(['?', '#']).unwrap_or(url.len());
        match url[..query].rfind('@').and_then(|at| url[..at].find(':').map(|colon| (colon, at))) {
            Some((colon, at)) => {
                out.push_str(&url[..=colon]);
                out.push_str(REDACTED);
                out.push_str(&url[at..]);
            }
            None => out.push_str(url),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

fn redact_password_params(text: &str) -> String {
    const KEY: &str = "password=";
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    while let Some(found) = lower[from..].find(KEY) {
        let value = from + found + KEY.len();
        out.push_str(&text[from..value]);
        let end =
            text[value..].find(|c: char| ends_url(c) || matches!(c, '&' | ',' | ';')).map_or(text.len(), |e| value + e);
        if end > value {
            out.push_str(REDACTED);
        }
        from = end;
    }
    out.push_str(&text[from..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_passwords_are_redacted() {
        for (url, shown) in [
            ("postgres://dhcp:s3cr@t/x@db.example:5432/leases", "postgres://dhcp:***@db.example:5432/leases"),
            ("redis://:hunter2@10.0.0.5:6379/0", "redis://:***@10.0.0.5:6379/0"),
            ("rediss://user:pw@redis.example/1", "rediss://user:***@redis.example/1"),
            (
                "redis+sentinel://:pw@s1:26379,s2:26379/mymaster?sentinel_password=spw&db=2",
                "redis+sentinel://:***@s1:26379,s2:26379/mymaster?sentinel_password=***&db=2",
            ),
            (
                "postgres://db.example/leases?user=dhcp&password=pw&sslmode=require",
                "postgres://db.example/leases?user=dhcp&password=***&sslmode=require",
            ),
            ("postgres://dhcp@db.example/leases", "postgres://dhcp@db.example/leases"),
            ("memory:?journal=/var/lib/dhcp/leases.journal", "memory:?journal=/var/lib/dhcp/leases.journal"),
            ("sqlite:///var/lib/dhcp/leases.db", "sqlite:///var/lib/dhcp/leases.db"),
        ] {
            assert_eq!(redact_secrets(url), shown, "{url}");
        }
        assert_eq!(
            redact_secrets("store \"redis://:pw@h/0\" cannot be opened: Password=x y"),
            "store \"redis://:***@h/0\" cannot be opened: Password=*** y"
        );
    }

    #[test]
    fn the_config_view_hides_the_token_and_passwords_and_keeps_the_rest() {
        let text = "# the server\n[server]\napi-token = \"tok-tok-tok\"  # keep it secret\n\
                    store = \"postgres://dhcp:pw@db/leases\"\n\n[[subnets]]\nid = 1 # first\n";
        let shown = redact_config(text);
        assert_eq!(
            shown,
            "# the server\n[server]\napi-token = \"***\"  # keep it secret\n\
             store = \"postgres://dhcp:***@db/leases\"\n\n[[subnets]]\nid = 1 # first\n"
        );
        let inline = redact_config("server = { api-token = \"tok-tok-tok\" }\n");
        assert!(!inline.contains("tok-tok-tok"), "{inline}");
        let oidc = redact_config("[server]\noidc-client-secret = \"idp-secret\"\n");
        assert_eq!(oidc, "[server]\noidc-client-secret = \"***\"\n");
    }
}
