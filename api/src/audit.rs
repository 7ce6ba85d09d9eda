//! `GET /v1/audit`: the account's audit log, oldest first.

use axum::extract::State;
use axum::Json;
use hookstream_core::db::audit::{self, Entry};
use hookstream_core::http::{page, ApiError, Caller, ErrorBody, PageQuery, Query};
use serde::Serialize;
use utoipa::ToSchema;

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
        (status = 422, description = "A bad parameter, named", body = ErrorBody),
    ),
    tag = "audit"
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = q.limit()?;
    let rows = audit::list(&state.pool, Some(caller.account()), q.cursor()?, limit + 1).await?;
    let (data, next_cursor) = page(rows, limit, |e| e.id.to_string());
    Ok(Json(AuditPage { data, next_cursor }))
}
