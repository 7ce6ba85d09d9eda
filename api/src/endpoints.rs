//! `/v1/endpoints`: an account's webhook endpoints — create (the signing secret is shown once),
//! list, show, change, delete, rotate the secret, and delivery stats. Every query carries the
//! caller's account; another account's ids are 404. Every change is audited.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use hookstream_core::db::deliveries::{self, EndpointStats};
use hookstream_core::db::endpoints::{self, Endpoint, EndpointPatch, NewEndpoint};
use hookstream_core::db::DbError;
use hookstream_core::http::{
    page, ApiError, Caller, ErrorBody, JsonBody, JsonErrors, PageQuery, PathId, Query,
};
use hookstream_core::tier::RateLimit;
use hookstream_core::EndpointId;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::paths::EndpointPath;
use crate::state::AppState;

/// A per-endpoint delivery limit.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitBody {
    /// Deliveries per second, 1 to 100,000.
    pub per_second: u32,
    /// Burst (default: `per_second`).
    pub burst: Option<u32>,
}

impl From<RateLimitBody> for RateLimit {
    fn from(l: RateLimitBody) -> Self {
        RateLimit { per_second: l.per_second, burst: l.burst.unwrap_or(l.per_second) }
    }
}

/// `POST /v1/endpoints`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// Where to deliver: `https://` (unless the installation allows `http://`), not a private
    /// address.
    pub url: String,
    /// Free text, up to 1,000 characters.
    #[serde(default)]
    pub description: String,
    /// Event types (`subscriber.created`), wildcards (`subscriber.*`) or `*` (the default).
    #[serde(default = "all_types")]
    pub event_types: Vec<String>,
    /// Per-endpoint delivery limit (default: only the account's).
    pub rate_limit: Option<RateLimitBody>,
    /// Whether deliveries are made (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn all_types() -> Vec<String> {
    vec!["*".into()]
}

fn yes() -> bool {
    true
}

/// `PATCH /v1/endpoints/{id}`: absent fields stay as they are; `"rate_limit": null` removes the
/// endpoint's own limit.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpoint {
    /// New URL.
    pub url: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New event types.
    pub event_types: Option<Vec<String>>,
    /// New limit, or null to remove it.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable)]
    pub rate_limit: Option<Option<RateLimitBody>>,
    /// Enable or disable.
    pub enabled: Option<bool>,
}

/// A field that is present (even as null) becomes `Some`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A created endpoint with its signing secret, shown only now.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedEndpoint {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// `whsec_…`: verify the `webhook-signature` header with it (Standard Webhooks).
    pub secret: String,
}

/// A page of endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointPage {
    /// Endpoints, oldest first.
    pub data: Vec<Endpoint>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub next_cursor: Option<EndpointId>,
}

/// A rotated secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedSecret {
    /// The new secret, shown only now.
    pub secret: String,
    /// Until when the previous secret still signs deliveries too.
    pub previous_valid_until: DateTime<Utc>,
}

/// The stats window.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// How far back, e.g. `15m`, `24h` (default), at most `30d`.
    pub window: Option<String>,
}

/// A unique-URL clash is a 409; anything else is as [`ApiError`]'s `From<DbError>` says.
fn write_error(e: DbError) -> ApiError {
    if let DbError::Query(sqlx::Error::Database(d)) = &e {
        if d.constraint() == Some("endpoints_account_url") {
            return ApiError::Conflict("this account already has an endpoint with this URL".into());
        }
    }
    e.into()
}

/// The answer of an endpoint's routes to an id the account does not have (OpenAPI).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // read by utoipa only
enum NoSuchEndpoint {
    /// No such endpoint in this account
    #[response(status = 404)]
    NotFound(ErrorBody),
}

/// Create an endpoint.
#[utoipa::path(
    post,
    path = "/v1/endpoints",
    request_body = CreateEndpoint,
    responses(
        (status = 201, description = "Created; the secret is shown only now", body = CreatedEndpoint),
        (status = 409, description = "An endpoint with this URL exists", body = ErrorBody),
        (status = 422, description = "A bad field, named", body = ErrorBody),
        JsonErrors,
    ),
    tag = "endpoints"
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<CreateEndpoint>,
) -> Result<(StatusCode, Json<CreatedEndpoint>), ApiError> {
    let new = NewEndpoint {
        url: req.url,
        description: req.description,
        event_types: req.event_types,
        rate_limit: req.rate_limit.map(RateLimit::from),
    };
    let new = state.rules.check_new(new).await?;
    let actor = caller.actor();
    let (mut endpoint, secret) = endpoints::create(&state.pool, caller.account(), &new, &actor)
        .await
        .map_err(write_error)?;
    if !req.enabled {
        let patch = EndpointPatch { enabled: Some(false), ..EndpointPatch::default() };
        let patch = state.rules.check_patch(patch).await?;
        endpoint = endpoints::update(&state.pool, caller.account(), endpoint.id, &patch, &actor)
            .await?
            .ok_or(ApiError::NotFound)?;
    }
    Ok((StatusCode::CREATED, Json(CreatedEndpoint { endpoint, secret })))
}

/// List the account's endpoints.
#[utoipa::path(
    get,
    path = "/v1/endpoints",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of endpoints", body = EndpointPage),
        (status = 422, description = "A bad parameter, named", body = ErrorBody),
    ),
    tag = "endpoints"
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<Json<EndpointPage>, ApiError> {
    let limit = q.limit()?;
    let rows = endpoints::list(&state.pool, caller.account(), q.cursor()?, limit + 1).await?;
    let (data, next_cursor) = page(rows, limit, |e| e.id);
    Ok(Json(EndpointPage { data, next_cursor }))
}

/// One endpoint.
#[utoipa::path(
    get,
    path = "/v1/endpoints/{id}",
    params(EndpointPath),
    responses(
        (status = 200, description = "The endpoint", body = Endpoint),
        NoSuchEndpoint,
    ),
    tag = "endpoints"
)]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId<EndpointId>,
) -> Result<Json<Endpoint>, ApiError> {
    endpoints::get(&state.pool, caller.account(), id).await?.map(Json).ok_or(ApiError::NotFound)
}

/// Change an endpoint.
#[utoipa::path(
    patch,
    path = "/v1/endpoints/{id}",
    params(EndpointPath),
    request_body = UpdateEndpoint,
    responses(
        (status = 200, description = "The changed endpoint", body = Endpoint),
        NoSuchEndpoint,
        (status = 409, description = "An endpoint with this URL exists", body = ErrorBody),
        (status = 422, description = "A bad field, named", body = ErrorBody),
        JsonErrors,
    ),
    tag = "endpoints"
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId<EndpointId>,
    JsonBody(req): JsonBody<UpdateEndpoint>,
) -> Result<Json<Endpoint>, ApiError> {
    let patch = EndpointPatch {
        url: req.url,
        description: req.description,
        event_types: req.event_types,
        rate_limit: req.rate_limit.map(|l| l.map(RateLimit::from)),
        enabled: req.enabled,
    };
    let patch = state.rules.check_patch(patch).await?;
    endpoints::update(&state.pool, caller.account(), id, &patch, &caller.actor())
        .await
        .map_err(write_error)?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

/// Delete an endpoint (its delivery history stays).
#[utoipa::path(
    delete,
    path = "/v1/endpoints/{id}",
    params(EndpointPath),
    responses(
        (status = 204, description = "Deleted"),
        NoSuchEndpoint,
    ),
    tag = "endpoints"
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId<EndpointId>,
) -> Result<StatusCode, ApiError> {
    let deleted = endpoints::delete(&state.pool, caller.account(), id, &caller.actor()).await?;
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

/// Give an endpoint a new signing secret; the previous one keeps signing for the configured
/// overlap, so receivers can switch without missing a delivery.
#[utoipa::path(
    post,
    path = "/v1/endpoints/{id}/rotate-secret",
    params(EndpointPath),
    responses(
        (status = 200, description = "The new secret, shown only now", body = RotatedSecret),
        NoSuchEndpoint,
    ),
    tag = "endpoints"
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId<EndpointId>,
) -> Result<Json<RotatedSecret>, ApiError> {
    let overlap = state.settings.secret_rotation_overlap;
    let (secret, previous_valid_until) =
        endpoints::rotate_secret(&state.pool, caller.account(), id, overlap, &caller.actor())
            .await?
            .ok_or(ApiError::NotFound)?;
    Ok(Json(RotatedSecret { secret, previous_valid_until }))
}

/// Delivered, failed and retrying counts and response-time percentiles over a window.
#[utoipa::path(
    get,
    path = "/v1/endpoints/{id}/stats",
    params(EndpointPath, StatsQuery),
    responses(
        (status = 200, description = "The endpoint's numbers", body = EndpointStats),
        NoSuchEndpoint,
        (status = 422, description = "A bad window", body = ErrorBody),
    ),
    tag = "endpoints"
)]
pub async fn stats(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId<EndpointId>,
    Query(q): Query<StatsQuery>,
) -> Result<Json<EndpointStats>, ApiError> {
    let window = match q.window.as_deref() {
        None => Duration::from_secs(24 * 3600),
        Some(w) => humantime::parse_duration(w)
            .map_err(|e| ApiError::invalid("window", format!("not a duration: {e}")))?,
    };
    if window.is_zero() || window > Duration::from_secs(30 * 24 * 3600) {
        return Err(ApiError::invalid("window", "must be between 1s and 30d"));
    }
    let account = caller.account();
    if endpoints::get(&state.pool, account, id).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    let since = Utc::now() - chrono::Duration::from_std(window).unwrap_or_default();
    Ok(Json(deliveries::endpoint_stats(&state.pool, account, id, since).await?))
}
