//! `GET /v1/dlq`, `GET /v1/dlq/{id}` and `POST /v1/dlq/redrive`: an account's own dead-letter
//! entries. Every query carries the caller's account; another account's ids are 404.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use hookstream_core::db::redrive_jobs::{self, RedriveJob};
use hookstream_core::dlq::{self, DeadLetter, ErrorClass, Filter};
use hookstream_core::http::extract::page_limit;
use hookstream_core::http::{
    page, ApiError, Caller, ErrorBody, JsonBody, JsonErrors, PathId, Query,
};
use hookstream_core::{DeadLetterId, EndpointId, RedriveJobId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::redrive::JobSpec;
use crate::state::AppState;

/// Filters of `GET /v1/dlq`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this endpoint.
    #[param(value_type = Option<String>, format = Uuid)]
    pub endpoint_id: Option<EndpointId>,
    /// Only this event type, or a `prefix.*` wildcard.
    pub event_type: Option<String>,
    /// Dead-lettered at or after (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Dead-lettered before (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// Only this error class: http_4xx, http_5xx, gone, timeout, connection, circuit_open,
    /// refused, endpoint_unavailable, other.
    pub error_class: Option<String>,
    /// Also entries already redriven.
    pub include_redriven: Option<bool>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<String>, format = Uuid)]
    pub cursor: Option<DeadLetterId>,
}

/// A page of entries.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterPage {
    /// Entries, oldest first.
    pub data: Vec<DeadLetter>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub next_cursor: Option<DeadLetterId>,
}

/// Which entries `POST /v1/dlq/redrive` puts back on the retry schedule.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    /// Only this endpoint.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub endpoint_id: Option<EndpointId>,
    /// Only this event type, or a `prefix.*` wildcard.
    pub event_type: Option<String>,
    /// Dead-lettered at or after.
    pub from: Option<DateTime<Utc>>,
    /// Dead-lettered before.
    pub to: Option<DateTime<Utc>>,
    /// Only this error class.
    pub error_class: Option<String>,
    /// Count what would be redriven and change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// What a redrive did.
#[derive(Debug, Serialize, ToSchema)]
pub struct RedriveResponse {
    /// Live entries the filter matched.
    pub matched: u64,
    /// Entries put back on the retry schedule (at most `api.redrive_max` per call).
    pub redriven: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

/// Checks a filter's time window and error class (the class, parsed, for the filter).
fn check(
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    error_class: Option<&str>,
    field_prefix: &str,
) -> Result<Option<ErrorClass>, ApiError> {
    if let (Some(from), Some(to)) = (from, to) {
        if to <= from {
            return Err(ApiError::invalid(format!("{field_prefix}to"), "must be after `from`"));
        }
    }
    error_class
        .map(|c| c.parse::<ErrorClass>())
        .transpose()
        .map_err(|e| ApiError::invalid(format!("{field_prefix}error_class"), e.to_string()))
}

/// List the account's dead-lettered deliveries.
#[utoipa::path(
    get,
    path = "/v1/dlq",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of entries", body = DeadLetterPage),
        (status = 422, description = "A bad filter, naming it", body = ErrorBody),
    ),
    tag = "dlq"
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    let error_class = check(q.from, q.to, q.error_class.as_deref(), "")?;
    let limit = page_limit(q.limit)?;
    let filter = Filter {
        account: Some(caller.account()),
        endpoint: q.endpoint_id,
        event_type: q.event_type,
        from: q.from,
        to: q.to,
        error_class,
        include_redriven: q.include_redriven.unwrap_or(false),
    };
    let rows = dlq::list(&state.pool, &filter, q.cursor, limit + 1).await?;
    let (data, next_cursor) = page(rows, limit, |e| e.id);
    Ok(Json(DeadLetterPage { data, next_cursor }))
}

/// One entry with its whole task.
#[utoipa::path(
    get,
    path = "/v1/dlq/{id}",
    params(("id" = String, Path, format = Uuid, description = "Entry id")),
    responses(
        (status = 200, description = "The entry, with the task as it would be redriven"),
        (status = 404, description = "No such entry in this account", body = ErrorBody),
    ),
    tag = "dlq"
)]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId<DeadLetterId>,
) -> Result<Json<dlq::DeadLetterDetail>, ApiError> {
    dlq::get(&state.pool, Some(caller.account()), id).await?.map(Json).ok_or(ApiError::NotFound)
}

/// Put the account's matching entries back on the retry schedule: starts a job and answers
/// at once with it (a dry run answers with the count instead).
#[utoipa::path(
    post,
    path = "/v1/dlq/redrive",
    request_body = RedriveRequest,
    responses(
        (status = 200, description = "Dry run: what would be redriven", body = RedriveResponse),
        (status = 202, description = "The job, started; read its progress at `Location`", body = RedriveJob),
        (status = 422, description = "A bad filter, naming it", body = ErrorBody),
        (status = 503, description = "Database unavailable; nothing started", body = ErrorBody),
        JsonErrors,
    ),
    tag = "dlq"
)]
pub async fn redrive(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(r): JsonBody<RedriveRequest>,
) -> Result<Response, ApiError> {
    let error_class = check(r.from, r.to, r.error_class.as_deref(), "/")?;
    let filter = Filter {
        account: Some(caller.account()),
        endpoint: r.endpoint_id,
        event_type: r.event_type.clone(),
        from: r.from,
        to: r.to,
        error_class,
        include_redriven: false,
    };
    if r.dry_run {
        let matched = dlq::count(&state.pool, &filter).await?.max(0) as u64;
        let answer = RedriveResponse { matched, redriven: 0, dry_run: true };
        return Ok(Json(answer).into_response());
    }
    let spec = JobSpec {
        account: caller.account(),
        actor: caller.actor(),
        filter,
        filter_json: serde_json::to_value(&r).unwrap_or_default(),
        limit: state.settings.redrive_max,
    };
    let job = state.redrives.start(&state.pool, state.handoff.clone(), spec).await?;
    let location = format!("/v1/dlq/redrive/{}", job.id);
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(job)).into_response())
}

/// A redrive job: its state and progress.
#[utoipa::path(
    get,
    path = "/v1/dlq/redrive/{id}",
    params(("id" = String, Path, format = Uuid, description = "Job id, as POST /v1/dlq/redrive answered")),
    responses(
        (status = 200, description = "The job", body = RedriveJob),
        (status = 404, description = "No such job in this account", body = ErrorBody),
    ),
    tag = "dlq"
)]
pub async fn redrive_job(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId<RedriveJobId>,
) -> Result<Json<RedriveJob>, ApiError> {
    redrive_jobs::get(&state.pool, caller.account(), id).await?.map(Json).ok_or(ApiError::NotFound)
}
