//! What the HTTP services (ingest and the management API) share: the server with its walls
//! ([`server`]), one error format ([`error`]), API-key authentication ([`auth`]) and the
//! extractors that turn a request into checked input ([`extract`]): a handler names what it
//! needs (`Caller`, `PathId<EndpointId>`, `JsonBody<T>`, `Query<T>`) and gets it, or the
//! request gets the right status and a JSON error without reaching the handler.

pub mod auth;
pub mod error;
pub mod extract;
pub mod server;
mod unparsable;

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

pub use auth::{Caller, KeyResolver};
pub use error::{ApiError, ErrorBody, ErrorDetail, JsonErrors, KeyedErrors};
pub use extract::{JsonBody, PageQuery, PathId, Query};

/// What the shared extractors need of a service's handler state.
pub trait HttpState: Send + Sync {
    /// The API keys ([`Caller`]).
    fn keys(&self) -> &KeyResolver;
    /// The largest body accepted, in bytes ([`JsonBody`]; 413 above it).
    fn max_body_bytes(&self) -> usize;
}

/// Times a request into the histogram `metric{route, status}` and runs it in a span naming
/// the route (with empty `trace_id` and `span_id` the handler may fill in:
/// [`crate::trace::record_on_current`]). For
/// `axum::middleware::from_fn(move |r, n| observe(METRIC, r, n))`.
pub async fn observe(metric: &'static str, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!("request", method = %request.method(), %route, trace_id = tracing::field::Empty, span_id = tracing::field::Empty);
    let started = Instant::now();
    let response = tracing::Instrument::instrument(next.run(request), span).await;
    metrics::histogram!(metric, "route" => route, "status" => response.status().as_u16().to_string())
        .record(started.elapsed());
    response
}

/// One page of a list read with `limit + 1` rows: the first `limit`, and the cursor of the
/// next page (the last row's key) when there was more.
pub fn page<T, C>(mut rows: Vec<T>, limit: i64, key: impl Fn(&T) -> C) -> (Vec<T>, Option<C>) {
    let limit = usize::try_from(limit).unwrap_or(0);
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(key);
        (rows, next)
    } else {
        (rows, None)
    }
}

/// For a document whose every route takes a key (ingest's and the management API's), a utoipa
/// modifier: the `api_key` bearer scheme is declared and required at the top level, and every
/// operation answers [`KeyedErrors`] (401, 503) besides its own answers, unless it describes
/// them itself.
pub struct KeyedApi;

impl utoipa::Modify for KeyedApi {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        use utoipa::IntoResponses;
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![SecurityRequirement::new("api_key", Vec::<String>::new())]);
        let keyed = KeyedErrors::responses();
        for item in openapi.paths.paths.values_mut() {
            let operations =
                [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                for (status, response) in &keyed {
                    operation
                        .responses
                        .responses
                        .entry(status.clone())
                        .or_insert_with(|| response.clone());
                }
            }
        }
    }
}

/// An OpenAPI document as pretty JSON (what a service's `/openapi.json` serves).
pub fn openapi_json(document: &utoipa::openapi::OpenApi) -> String {
    document.to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
