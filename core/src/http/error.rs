//! The API's errors and their one mapping to HTTP: `{"error": {"code", "message"[, "field"]}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// Why a request (or one event of a batch) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// No key, or a key that matches nothing.
    #[error("missing or invalid API key")]
    Unauthorized,
    /// The key was revoked.
    #[error("this API key has been revoked")]
    KeyRevoked,
    /// The id names nothing this account can see.
    #[error("not found")]
    NotFound,
    /// The body is larger than `ingest.max_body_bytes`.
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// Not `application/json`.
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    /// The request breaks a rule (an event's schema, a setting's bounds); `field` is a JSON
    /// pointer into the body, or the query parameter.
    #[error("{field}: {message}")]
    Invalid {
        /// JSON pointer of the failing field, e.g. `/data/subscriber/email`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The change clashes with what exists (e.g. a second endpoint with the same URL).
    #[error("{0}")]
    Conflict(String),
    /// The account is over its intake limit.
    #[error("rate limit exceeded; retry after {retry_after_secs} s")]
    RateLimited {
        /// Seconds until a retry can pass.
        retry_after_secs: u64,
    },
    /// A failure on our side that retrying will not mend (logged with its cause).
    #[error("internal error")]
    Internal,
    /// The broker (or the key store) did not answer in time; nothing was accepted.
    #[error("{what} unavailable; nothing was accepted, retry after {retry_after_secs} s")]
    Unavailable {
        /// What is down.
        what: &'static str,
        /// Seconds to wait.
        retry_after_secs: u64,
    },
}

impl ApiError {
    /// An invalid-field error.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid { field: field.into(), message: message.into() }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::KeyRevoked => StatusCode::UNAUTHORIZED,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::Unauthorized => "unauthorized",
            ApiError::KeyRevoked => "key_revoked",
            ApiError::NotFound => "not_found",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Invalid { .. } => "invalid_request",
            ApiError::Conflict(_) => "conflict",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Internal => "internal",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorDetail {
        let field = match self {
            ApiError::Invalid { field, .. } => Some(field.clone()),
            _ => None,
        };
        ErrorDetail { code: self.code().to_owned(), message: self.to_string(), field }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after_secs }
            | ApiError::Unavailable { retry_after_secs, .. } => Some(*retry_after_secs),
            _ => None,
        }
    }
}

/// The error object.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable code: `malformed_json`, `unauthorized`, `key_revoked`, `not_found`,
    /// `payload_too_large`, `unsupported_media_type`, `invalid_request`, `conflict`, `rate_limited`,
    /// `unavailable`, `internal`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// JSON pointer of the failing field, for `invalid_request`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The answers every management route gives besides its own (OpenAPI): the key and the
/// database.
#[derive(utoipa::IntoResponses)]
pub enum KeyedErrors {
    /// Missing, invalid or revoked key
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Database unavailable
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The answers of every route that takes a JSON body, besides its own (OpenAPI).
#[derive(utoipa::IntoResponses)]
pub enum JsonErrors {
    /// Malformed JSON
    #[response(status = 400)]
    Malformed(ErrorBody),
    /// Not application/json
    #[response(status = 415)]
    NotJson(ErrorBody),
}

/// Every error response: `{"error": {...}}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(ErrorBody { error: self.body() })).into_response();
        if let Some(secs) = self.retry_after() {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if matches!(self, ApiError::Unauthorized | ApiError::KeyRevoked) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A failed query as the client sees it: 503 while the database cannot be reached, 500 for a
/// failure that retrying cannot mend (logged: it is a bug, input is checked before it gets here).
impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        if e.is_transient() {
            tracing::error!(error = %e, "database query failed");
            ApiError::Unavailable { what: "database", retry_after_secs: 5 }
        } else {
            tracing::error!(error = %e, "database refused a query");
            ApiError::Internal
        }
    }
}

impl From<crate::db::endpoint_rules::Invalid> for ApiError {
    fn from(e: crate::db::endpoint_rules::Invalid) -> Self {
        ApiError::Invalid { field: e.field, message: e.message }
    }
}
