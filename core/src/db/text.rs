//! Outside data in a form Postgres stores, and the line between a failure worth retrying and
//! one that never heals.
//!
//! Postgres `text` cannot hold NUL, and `jsonb` rejects the `\u0000` escape. Text that comes
//! from receivers (status lines, response bodies, error messages) or from producers (event
//! data) is passed through [`pg_text`] / [`pg_json`] before it is written, so one tenant's bytes
//! can never make a shared writer's batch fail. [`is_transient`] tells the writers whether to
//! retry a failed write (database down: retry, loudly) or to quarantine what they hold
//! (this row can never be written).

use std::borrow::Cow;

/// What a NUL becomes in stored text (U+2400 SYMBOL FOR NULL: visible, and not a NUL).
pub const NUL_REPLACEMENT: char = '\u{2400}';

/// `s` with every NUL replaced by [`NUL_REPLACEMENT`]; borrowed when there is none.
pub fn pg_text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', &NUL_REPLACEMENT.to_string()))
    } else {
        Cow::Borrowed(s)
    }
}

/// A JSON value whose strings (and object keys) hold no NUL, for a `jsonb` column.
pub fn pg_json(value: &serde_json::Value) -> Cow<'_, serde_json::Value> {
    if !json_has_nul(value) {
        return Cow::Borrowed(value);
    }
    Cow::Owned(strip_json(value))
}

fn json_has_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(json_has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

fn strip_json(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(pg_text(s).into_owned()),
        Value::Array(items) => Value::Array(items.iter().map(strip_json).collect()),
        Value::Object(map) => Value::Object(
            map.iter().map(|(k, v)| (pg_text(k).into_owned(), strip_json(v))).collect(),
        ),
        other => other.clone(),
    }
}

/// Whether a failed write may succeed if tried again unchanged: the database unreachable,
/// restarting, out of resources, or a conflict between transactions. Anything else (a value it
/// rejects, a constraint) fails the same way every time: the caller must quarantine, not retry.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // SQLSTATE classes: 08 connection, 53 insufficient resources, 57 operator
            // intervention (admin shutdown, cannot connect now), 58 system error; 40001
            // serialization failure and 40P01 deadlock.
            ["08", "53", "57", "58"].iter().any(|class| code.starts_with(class))
                || code == "40001"
                || code == "40P01"
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nul_is_replaced_and_clean_text_is_borrowed() {
        assert_eq!(pg_text("ok\0ok"), "ok\u{2400}ok");
        assert!(matches!(pg_text("fine"), Cow::Borrowed("fine")));
    }

    #[test]
    fn json_strings_and_keys_lose_their_nul() {
        let v = json!({"a\u{0}": ["x\u{0}", 1, {"b": "c\u{0}"}], "n": null});
        let clean = pg_json(&v);
        assert_eq!(*clean, json!({"a\u{2400}": ["x\u{2400}", 1, {"b": "c\u{2400}"}], "n": null}));
        let fine = json!({"a": "b"});
        assert!(matches!(pg_json(&fine), Cow::Borrowed(_)));
    }

    #[test]
    fn a_rejected_value_is_not_transient_and_a_lost_connection_is() {
        assert!(is_transient(&sqlx::Error::PoolTimedOut));
        assert!(is_transient(&sqlx::Error::Io(std::io::Error::other("reset"))));
        assert!(!is_transient(&sqlx::Error::RowNotFound));
        assert!(!is_transient(&sqlx::Error::ColumnNotFound("x".into())));
    }
}
