//! Reading and checking request input: content type, size, JSON syntax and shape, query
//! parameters, ids in paths, pages. The extractors ([`JsonBody`], [`Query`], [`PathId`]) are
//! what handlers use; the functions serve handlers that read a body their own way (events).

use std::str::FromStr;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_path_to_error::Segment;
use utoipa::IntoParams;

use super::error::ApiError;
use super::HttpState;

/// A JSON body, checked: 415 unless `application/json`, 413 over the state's limit (without
/// reading past it), 400 for bad syntax, 422 naming the field for a wrong shape or for text
/// Postgres cannot store (NUL).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: HttpState, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let limit = state.max_body_bytes();
        let (parts, body) = request.into_parts();
        require_json(&parts.headers)?;
        let bytes = read_limited(&parts.headers, body, limit).await?;
        parse_stored_json(&bytes).map(JsonBody)
    }
}

/// Query parameters, checked: 422 naming the parameter that is wrong (or holds NUL).
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or_default()).map(Query)
    }
}

/// The one id in a request's path. Text that is not an id of this kind names nothing the
/// caller can see: 404, as for another account's id, so a malformed id tells nothing more. A
/// path that is not text at all (invalid UTF-8) is a bad request: 400.
#[derive(Debug)]
pub struct PathId<T>(pub T);

impl<S: Send + Sync, T: FromStr> FromRequestParts<S> for PathId<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        raw.parse().map(PathId).map_err(|_| ApiError::NotFound.into_response())
    }
}

/// Rows per page unless `limit` says otherwise.
pub const DEFAULT_PAGE: i64 = 100;
/// Rows per page, at most.
pub const MAX_PAGE: i64 = 1000;

/// Paging of a list: `?limit=&cursor=`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The page size, checked.
    pub fn limit(&self) -> Result<i64, ApiError> {
        page_limit(self.limit)
    }

    /// The cursor, parsed as the list's key.
    pub fn cursor<C: FromStr>(&self) -> Result<Option<C>, ApiError> {
        self.cursor
            .as_deref()
            .map(|c| c.parse().map_err(|_| ApiError::invalid("cursor", "not a cursor")))
            .transpose()
    }
}

/// A page size as a client asked for it, checked (the default when absent).
pub fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("must be between 1 and {MAX_PAGE}")));
    }
    Ok(limit)
}

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
        let name = crate::db::text::pg_text(&name).into_owned();
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
