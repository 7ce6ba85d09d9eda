//! `GET /v1/audit`: the account's audit log, oldest first.

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::Json;
use hookstream_core::db::audit::{self, Entry};
use serde::Serialize;
use utoipa::ToSchema;

use crate::endpoints::{unavailable, PageQuery};
use crate::error::{ApiError, ErrorBody};
use crate::request::parse_query;
use crate::state::AppState;

/// A page of the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Entries, oldest first.
    pub data: Vec<Entry>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The account's audit log.
#[utoipa::path(
    get,
    path = "/v1/audit",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of entries", body = AuditPage),
        (status = 401, description = "Missing, invalid or revoked key", body = ErrorBody),
        (status = 422, description = "A bad parameter, named", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ),
    security(("api_key" = [])),
    tag = "audit"
)]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<AuditPage>, ApiError> {
    let owner = state.auth.authenticate(&headers).await?;
    let q: PageQuery = parse_query(query.as_deref().unwrap_or_default())?;
    let limit = q.limit()?;
    let after = q
        .cursor
        .as_deref()
        .map(|c| c.parse::<i64>().map_err(|_| ApiError::invalid("cursor", "not a cursor")))
        .transpose()?;
    let mut data = audit::list(&state.pool, Some(owner.account_id), after, limit + 1)
        .await
        .map_err(unavailable)?;
    let next_cursor = if data.len() as i64 > limit {
        data.truncate(limit as usize);
        data.last().map(|e| e.id.to_string())
    } else {
        None
    };
    Ok(Json(AuditPage { data, next_cursor }))
}
