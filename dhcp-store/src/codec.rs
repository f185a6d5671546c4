//! The stored form of a lease's state, shared by every store, and the hex encoding of the
//! identifiers the text formats hold.
//!
//! A [`LeaseState`] carries its deadline in its variant; the stores keep it flat, as a state
//! code, a nullable deadline and a `free_at` column they can index ("which addresses may anyone
//! take at `now`?"). This module is the only place that knows that mapping, so the stores cannot
//! drift apart, and a store decoding bad data gets `None` back instead of a guess or a panic.
//!
//! The codes and names are an on-disk format: existing journals, SQLite files, PostgreSQL
//! tables and Redis hashes hold them, so they never change.
//!
//! | state      | code | name       | deadline  | `free_at`   |
//! |------------|------|------------|-----------|-------------|
//! | offered    | 0    | `offered`  | hold end  | hold end    |
//! | bound      | 1    | `bound`    | expiry    | expiry      |
//! | declined   | 2    | `declined` | probation | probation   |
//! | released   | 3    | `released` | none      | 0 (now)     |
//! | expired    | 4    | `expired`  | none      | 0 (now)     |

// Each store uses its part of the codec (the journal the names, the SQL stores the column
// conversions, the journal and Redis the hex), so a build with only some stores leaves the rest
// unused. The default build has every store, and there anything really unused is still reported.
#![cfg_attr(
    not(all(feature = "journal", feature = "sqlite", feature = "postgres", feature = "redis")),
    allow(dead_code)
)]

use dhcp_core::{LeaseState, Timestamp};

/// Code of [`LeaseState::Offered`].
pub(crate) const OFFERED: u8 = 0;
/// Code of [`LeaseState::Bound`].
pub(crate) const BOUND: u8 = 1;
/// Code of [`LeaseState::Declined`].
pub(crate) const DECLINED: u8 = 2;
/// Code of [`LeaseState::Released`].
pub(crate) const RELEASED: u8 = 3;
/// Code of [`LeaseState::Expired`].
pub(crate) const EXPIRED: u8 = 4;

/// A lease state as the stores write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stored {
    /// The state code (see the module table).
    pub(crate) code: u8,
    /// The state's deadline in Unix seconds: `None` for released and expired, which have none.
    pub(crate) deadline: Option<u64>,
    /// When anyone may take the address, in Unix seconds. A held address (offered, bound, or
    /// declined and in probation) is free at its deadline; a released or expired one is free
    /// already, written as 0 so that "`free_at <= now`" finds it whatever `now` is.
    pub(crate) free_at: u64,
}

/// The stored form of `state`.
pub(crate) fn encode(state: LeaseState) -> Stored {
    let held = |code, at: Timestamp| Stored { code, deadline: Some(at.as_secs()), free_at: at.as_secs() };
    match state {
        LeaseState::Offered { until } => held(OFFERED, until),
        LeaseState::Bound { expires } => held(BOUND, expires),
        LeaseState::Declined { until } => held(DECLINED, until),
        LeaseState::Released => Stored { code: RELEASED, deadline: None, free_at: 0 },
        LeaseState::Expired => Stored { code: EXPIRED, deadline: None, free_at: 0 },
    }
}

/// The state a stored `code` and `deadline` (Unix seconds) stand for, or `None` when they do not
/// make one: an unknown code, or a held state without its deadline.
///
/// A deadline beside a released or expired code is ignored: the stores clear it when they write
/// those states, and a leftover one (an operator's edit, say) has always been readable.
pub(crate) fn decode(code: u8, deadline: Option<u64>) -> Option<LeaseState> {
    let at = deadline.map(Timestamp::from_secs);
    match code {
        OFFERED => Some(LeaseState::Offered { until: at? }),
        BOUND => Some(LeaseState::Bound { expires: at? }),
        DECLINED => Some(LeaseState::Declined { until: at? }),
        RELEASED => Some(LeaseState::Released),
        EXPIRED => Some(LeaseState::Expired),
        _ => None,
    }
}

/// The journal's name for `state`: `offered`, `bound`, `declined`, `released` or `expired`, as
/// [`LeaseState::name`] spells it for the API and the lease dump too. These are a file format:
/// the tests below pin every one, so a renamed state fails them before old journals break.
pub(crate) fn name(state: LeaseState) -> &'static str {
    state.name()
}

/// The state code a journal `name` stands for; `None` for a word that is not a state's name.
pub(crate) fn code_named(name: &str) -> Option<u8> {
    match name {
        "offered" => Some(OFFERED),
        "bound" => Some(BOUND),
        "declined" => Some(DECLINED),
        "released" => Some(RELEASED),
        "expired" => Some(EXPIRED),
        _ => None,
    }
}

/// Seconds as an SQL `BIGINT`. Times past `i64::MAX` seconds (which no clock reaches, but a
/// lease time added to one could) saturate, so they still sort as "far in the future".
pub(crate) fn sql_secs(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// The state of an SQL row's `state` and `deadline` columns, or `None` when they do not make one.
/// A negative deadline counts as none: no store writes one, so a held state with it is damaged.
pub(crate) fn decode_sql(code: i64, deadline: Option<i64>) -> Option<LeaseState> {
    decode(u8::try_from(code).ok()?, deadline.and_then(|d| u64::try_from(d).ok()))
}

/// `bytes` as lowercase hex, two digits a byte: how the journal and Redis keep identifiers
/// and host names, so that a space or `-` inside one cannot be mistaken for a separator.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// The bytes of hex `text` (either case), or `None` when it is not an even number of hex digits.
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if digits.len() % 2 != 0 {
        return None;
    }
    digits
        .chunks_exact(2)
        .map(|pair| match pair {
            [high, low] => Some((nibble(*high)? << 4) | nibble(*low)?),
            _ => None,
        })
        .collect()
}

/// The value of one hex digit. Only `0-9`, `a-f`, `A-F`: `u8::from_str_radix` would also take a
/// leading `+`.
fn nibble(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// `%2F`, `%40` and the like in a URL's parts (a user, a password, a master name, a path to a
/// certificate); a `%` not followed by two hex digits stays as it is.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timestamp = Timestamp::from_secs(1_700_000_000);

    fn every_state() -> [LeaseState; 5] {
        [
            LeaseState::Offered { until: T },
            LeaseState::Bound { expires: T + 3600 },
            LeaseState::Declined { until: T + 86_400 },
            LeaseState::Released,
            LeaseState::Expired,
        ]
    }

    #[test]
    fn every_state_round_trips() {
        for state in every_state() {
            let stored = encode(state);
            assert_eq!(decode(stored.code, stored.deadline), Some(state), "{stored:?}");
            let sql_deadline = stored.deadline.map(sql_secs);
            assert_eq!(decode_sql(i64::from(stored.code), sql_deadline), Some(state), "{stored:?}");
            assert_eq!(code_named(name(state)), Some(stored.code), "{state:?}");
        }
    }

    #[test]
    fn codes_names_and_deadlines_are_the_stored_format() {
        // These are what existing journals, databases and Redis hashes hold.
        let expected = [
            (0, "offered", Some(T.as_secs())),
            (1, "bound", Some(T.as_secs() + 3600)),
            (2, "declined", Some(T.as_secs() + 86_400)),
            (3, "released", None),
            (4, "expired", None),
        ];
        for (state, (code, text, deadline)) in every_state().into_iter().zip(expected) {
            let stored = encode(state);
            assert_eq!((stored.code, stored.deadline), (code, deadline), "{state:?}");
            assert_eq!(name(state), text);
        }
        assert_eq!((OFFERED, BOUND, DECLINED, RELEASED, EXPIRED), (0, 1, 2, 3, 4));
    }

    #[test]
    fn free_at_is_the_deadline_of_a_held_address_and_zero_for_a_free_one() {
        assert_eq!(encode(LeaseState::Offered { until: T }).free_at, T.as_secs());
        assert_eq!(encode(LeaseState::Bound { expires: T + 3600 }).free_at, T.as_secs() + 3600);
        // A declined address stays taken until its probation ends.
        assert_eq!(encode(LeaseState::Declined { until: T + 86_400 }).free_at, T.as_secs() + 86_400);
        assert_eq!(encode(LeaseState::Released).free_at, 0);
        assert_eq!(encode(LeaseState::Expired).free_at, 0);
    }

    #[test]
    fn bad_codes_and_missing_deadlines_are_refused() {
        for code in [5, 6, 200, u8::MAX] {
            assert_eq!(decode(code, Some(1)), None, "code {code}");
            assert_eq!(decode(code, None), None, "code {code}");
        }
        for code in [OFFERED, BOUND, DECLINED] {
            assert_eq!(decode(code, None), None, "code {code} needs a deadline");
            assert_eq!(decode_sql(i64::from(code), None), None);
            assert_eq!(decode_sql(i64::from(code), Some(-1)), None, "negative deadline");
        }
        for code in [-1, 256, i64::MAX, i64::MIN] {
            assert_eq!(decode_sql(code, Some(1)), None, "code {code}");
        }
        assert_eq!(code_named("leased"), None);
        assert_eq!(code_named("Bound"), None);
        assert_eq!(code_named(""), None);
    }

    #[test]
    fn a_leftover_deadline_beside_a_free_state_is_ignored() {
        assert_eq!(decode(RELEASED, Some(5)), Some(LeaseState::Released));
        assert_eq!(decode(EXPIRED, Some(5)), Some(LeaseState::Expired));
        assert_eq!(decode_sql(i64::from(EXPIRED), Some(-5)), Some(LeaseState::Expired));
    }

    #[test]
    fn sql_seconds_saturate() {
        assert_eq!(sql_secs(0), 0);
        assert_eq!(sql_secs(T.as_secs()), 1_700_000_000);
        assert_eq!(sql_secs(u64::MAX), i64::MAX);
    }

    #[test]
    fn hex_round_trips() {
        let all: Vec<u8> = (0..=u8::MAX).collect();
        for bytes in [&[][..], &[0][..], &[0x0a, 0xff, 0x10][..], &all[..]] {
            let text = hex(bytes);
            assert_eq!(text.len(), bytes.len() * 2);
            assert!(text.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)), "{text}");
            assert_eq!(unhex(&text).as_deref(), Some(bytes));
        }
        assert_eq!(hex(&[0x01, 0xab]), "01ab");
        assert_eq!(unhex("01AB"), Some(vec![0x01, 0xab]));
    }

    #[test]
    fn bad_hex_is_refused() {
        for text in ["0", "abc", "0g", "g0", "zz", " 1", "+1", "-1", "01 2", "é", "0é0"] {
            assert_eq!(unhex(text), None, "{text:?}");
        }
    }
}
