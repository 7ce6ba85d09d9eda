//! Reading and checking request bodies: content type, size, JSON syntax, shape.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use crate::error::ApiError;

/// Refuses anything but `application/json` (with or without parameters).
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if ok {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

/// Reads at most `limit` bytes of body; a larger body is refused with 413 without being read
/// to the end.
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::PayloadTooLarge { limit })
        }
        Err(e) => Err(ApiError::MalformedJson(format!("could not read the body: {e}"))),
    }
}

/// Parses JSON text: a syntax error is a 400, a wrong shape a 422 naming the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    from_value(value, "")
}

/// [`parse_json`] for bodies whose text is stored in Postgres (endpoints, DLQ filters): a
/// string holding NUL, which Postgres text cannot store, is a 422 naming its field.
pub fn parse_stored_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    if let Some(field) = nul_at(&value, String::new()) {
        return Err(ApiError::invalid(field, "must not contain NUL (\\u0000)"));
    }
    from_value(value, "")
}

/// The JSON pointer of the first string or key holding NUL.
fn nul_at(value: &serde_json::Value, at: String) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::String(s) if s.contains('\0') => Some(if at.is_empty() { "/".into() } else { at }),
        Value::Array(items) => {
            items.iter().enumerate().find_map(|(i, v)| nul_at(v, format!("{at}/{i}")))
        }
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let here = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
            if k.contains('\0') {
                Some(here)
            } else {
                nul_at(v, here)
            }
        }),
        _ => None,
    }
}

/// Deserializes a JSON value, naming the failing field (JSON pointer under `prefix`).
pub fn from_value<T: DeserializeOwned>(
    value: serde_json::Value,
    prefix: &str,
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut field = prefix.to_owned();
        for segment in e.path().iter() {
            match segment {
                Segment::Seq { index } => field.push_str(&format!("/{index}")),
                Segment::Map { key } => field.push_str(&format!("/{key}")),
                Segment::Enum { variant } => field.push_str(&format!("/{variant}")),
                Segment::Unknown => {}
            }
        }
        let message = e.into_inner().to_string();
        // serde reports a missing field at its parent; name the field itself.
        if let Some(missing) =
            message.strip_prefix("missing field `").and_then(|m| m.split('`').next())
        {
            field.push_str(&format!("/{missing}"));
        }
        if field.is_empty() {
            field.push('/');
        }
        ApiError::invalid(field, message)
    })
}

/// Parses a query string, naming the offending parameter on error.
pub fn parse_query<T: serde::de::DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    // Query values are compared with stored text: NUL (or a name holding one) is refused here.
    if let Some((name, _)) = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, v)| k.contains('\0') || v.contains('\0'))
    {
        let name = hookstream_core::db::text::pg_text(&name).into_owned();
        return Err(ApiError::invalid(name, "must not contain NUL (%00)"));
    }
    let de = serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { "query".to_owned() } else { field };
        ApiError::invalid(field, e.into_inner().to_string())
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Shape {
        name: String,
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Item {
        n: u32,
    }

    #[test]
    fn syntax_errors_are_400_and_shape_errors_name_the_field() {
        assert!(matches!(parse_json::<Shape>(b"{nope"), Err(ApiError::MalformedJson(_))));
        match parse_json::<Shape>(br#"{"name": "x", "items": [{"n": 1}, {"n": "two"}]}"#) {
            Err(ApiError::Invalid { field, .. }) => assert_eq!(field, "/items/1/n"),
            other => panic!("{other:?}"),
        }
        match parse_json::<Shape>(br#"{"items": []}"#) {
            Err(ApiError::Invalid { field, message }) => {
                assert_eq!(field, "/name", "a missing field is named");
                assert!(message.contains("name"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nul_in_stored_text_is_422_naming_the_field() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Body {
            url: String,
            types: Vec<String>,
        }
        match parse_stored_json::<Body>(br#"{"url": "https://a.example/\u0000", "types": []}"#) {
            Err(ApiError::Invalid { field, .. }) => assert_eq!(field, "/url"),
            other => panic!("{other:?}"),
        }
        match parse_stored_json::<Body>(
            br#"{"url": "https://a.example/", "types": ["a", "b\u0000"]}"#,
        ) {
            Err(ApiError::Invalid { field, .. }) => assert_eq!(field, "/types/1"),
            other => panic!("{other:?}"),
        }
        match parse_query::<std::collections::HashMap<String, String>>("limit=1&event_type=a%00b") {
            Err(ApiError::Invalid { field, .. }) => assert_eq!(field, "event_type"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_json_content_types_pass() {
        let mut h = HeaderMap::new();
        assert!(require_json(&h).is_err());
        h.insert(header::CONTENT_TYPE, "application/json; charset=utf-8".parse().expect("hv"));
        assert!(require_json(&h).is_ok());
        h.insert(header::CONTENT_TYPE, "text/plain".parse().expect("hv"));
        assert!(require_json(&h).is_err());
    }
}
