//! `/v1/endpoints`: an account's webhook endpoints — create (the signing secret is shown once),
//! list, show, change, delete, rotate the secret, and delivery stats. Every query carries the
//! caller's account; another account's ids are 404. Every change is audited.

use std::net::IpAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use hookstream_core::db::api_keys::KeyOwner;
use hookstream_core::db::deliveries::{self, EndpointStats};
use hookstream_core::db::endpoints::{self, Endpoint, EndpointPatch, NewEndpoint};
use hookstream_core::db::DbError;
use hookstream_core::delivery::guard;
use hookstream_core::tier::RateLimit;
use hookstream_core::EndpointId;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody};
use crate::request::{parse_query, parse_stored_json, read_limited, require_json};
use crate::state::AppState;

/// Longest URL accepted.
const MAX_URL: usize = 2048;
/// Longest description accepted, in characters.
const MAX_DESCRIPTION: usize = 1000;
/// Most event types per endpoint.
const MAX_TYPES: usize = 50;
/// Highest per-endpoint rate accepted.
const MAX_RATE: u32 = 100_000;
/// Page size bounds.
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

/// A per-endpoint delivery limit.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitBody {
    /// Deliveries per second, 1 to 100,000.
    pub per_second: u32,
    /// Burst (default: `per_second`).
    pub burst: Option<u32>,
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

/// Paging of a list.
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
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid("limit", format!("must be between 1 and {MAX_LIMIT}")));
        }
        Ok(limit)
    }
}

/// The stats window.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// How far back, e.g. `15m`, `24h` (default), at most `30d`.
    pub window: Option<String>,
}

/// A failed query as the client sees it: 503 while the database cannot be reached, 500 for a
/// failure that retrying cannot mend (logged: it is a bug, input is checked before it gets here).
pub(crate) fn unavailable(e: DbError) -> ApiError {
    if e.is_transient() {
        tracing::error!(error = %e, "database query failed");
        ApiError::Unavailable { what: "database", retry_after_secs: 5 }
    } else {
        tracing::error!(error = %e, "database refused a query");
        ApiError::Internal
    }
}

fn actor(owner: &KeyOwner) -> String {
    format!("key:{}", owner.key_id)
}

/// An id in a path: anything that is not one of the account's ids is 404, malformed or not.
fn endpoint_id(id: &str) -> Result<EndpointId, ApiError> {
    id.parse().map_err(|_| ApiError::NotFound)
}

/// Checks a URL: parseable, https unless allowed, no private target unless allowed. Returns
/// it normalized (scheme and host in lower case, no default port, `.` segments resolved), the
/// form stored and compared, so `https://EXAMPLE.com:443/a` and `https://example.com/a` are one
/// endpoint URL.
async fn checked_url(state: &AppState, url: &str) -> Result<String, ApiError> {
    let bad = |m: &str| ApiError::invalid("/url", m);
    if url.len() > MAX_URL {
        return Err(bad(&format!("longer than {MAX_URL} characters")));
    }
    let parsed = url::Url::parse(url).map_err(|e| bad(&format!("not a URL: {e}")))?;
    match parsed.scheme() {
        "https" => {}
        "http" if state.settings.allow_http_endpoints => {}
        "http" => return Err(bad("must be https")),
        other => return Err(bad(&format!("scheme {other:?} is not http(s)"))),
    }
    let Some(host) = parsed.host_str() else { return Err(bad("has no host")) };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("must not carry credentials"));
    }
    let normalized = parsed.to_string();
    if state.settings.allow_private_endpoints {
        return Ok(normalized);
    }
    // The refusal's own text names the dispatcher's setting, which an API user cannot change.
    guard::check_literal(&parsed).map_err(|e| {
        bad(&format!(
            "{} is a loopback, private or otherwise internal address: webhooks go to public \
             addresses only",
            e.0
        ))
    })?;
    if host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_err() {
        let port = parsed.port_or_known_default().unwrap_or(443);
        let lookup = tokio::time::timeout(
            Duration::from_secs(3),
            tokio::net::lookup_host((host.to_owned(), port)),
        )
        .await;
        // Unresolvable now is allowed (DNS may come later); the delivery-time guard still
        // refuses private answers. Resolving to a private address now is refused.
        if let Ok(Ok(addrs)) = lookup {
            if addrs.into_iter().any(|a| guard::is_internal(a.ip())) {
                return Err(bad(
                    "resolves to a loopback, private or otherwise internal address: webhooks go \
                     to public addresses only",
                ));
            }
        }
    }
    Ok(normalized)
}

/// Checks event types against the known ones: exact, `prefix.*` covering at least one, or `*`.
fn check_types(state: &AppState, types: &[String]) -> Result<(), ApiError> {
    if types.is_empty() {
        return Err(ApiError::invalid("/event_types", "needs at least one type (or \"*\")"));
    }
    if types.len() > MAX_TYPES {
        return Err(ApiError::invalid("/event_types", format!("at most {MAX_TYPES} types")));
    }
    let known = state.schemas.event_types();
    for (i, t) in types.iter().enumerate() {
        let ok = match t.strip_suffix('*') {
            Some("") => true,
            Some(prefix) => prefix.ends_with('.') && known.iter().any(|k| k.starts_with(prefix)),
            None => known.contains(&t.as_str()),
        };
        if !ok {
            return Err(ApiError::invalid(
                format!("/event_types/{i}"),
                format!("unknown event type {t:?}; known: {}", known.join(", ")),
            ));
        }
    }
    Ok(())
}

fn check_description(d: &str) -> Result<(), ApiError> {
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(ApiError::invalid(
            "/description",
            format!("longer than {MAX_DESCRIPTION} characters"),
        ));
    }
    Ok(())
}

fn check_limit(l: RateLimitBody) -> Result<RateLimit, ApiError> {
    if !(1..=MAX_RATE).contains(&l.per_second) {
        return Err(ApiError::invalid(
            "/rate_limit/per_second",
            format!("must be between 1 and {MAX_RATE}"),
        ));
    }
    let burst = l.burst.unwrap_or(l.per_second);
    if !(1..=MAX_RATE).contains(&burst) {
        return Err(ApiError::invalid(
            "/rate_limit/burst",
            format!("must be between 1 and {MAX_RATE}"),
        ));
    }
    Ok(RateLimit { per_second: l.per_second, burst })
}

/// A unique-URL clash is a 409; anything else the database says is a 503.
fn write_error(e: DbError) -> ApiError {
    if let DbError::Query(sqlx::Error::Database(d)) = &e {
        if d.constraint() == Some("endpoints_account_url") {
            return ApiError::Conflict("this account already has an endpoint with this URL".into());
        }
    }
    unavailable(e)
}

async fn body<T: serde::de::DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    require_json(headers)?;
    let bytes = read_limited(headers, body, state.settings.max_body_bytes).await?;
    parse_stored_json(&bytes)
}

/// Create an endpoint.
#[utoipa::path(
    post,
    path = "/v1/endpoints",
    request_body = CreateEndpoint,
    responses(
        (status = 201, description = "Created; the secret is shown only now", body = CreatedEndpoint),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing, invalid or revoked key", body = ErrorBody),
        (status = 409, description = "An endpoint with this URL exists", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "A bad field, named", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ),
    security(("api_key" = [])),
    tag = "endpoints"
)]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    raw: Body,
) -> Result<(StatusCode, Json<CreatedEndpoint>), ApiError> {
    let owner = state.auth.authenticate(&headers).await?;
    let req: CreateEndpoint = body(&state, &headers, raw).await?;
    let url = checked_url(&state, &req.url).await?;
    check_description(&req.description)?;
    check_types(&state, &req.event_types)?;
    let rate_limit = req.rate_limit.map(check_limit).transpose()?;
    let new =
        NewEndpoint { url, description: req.description, event_types: req.event_types, rate_limit };
    let actor = actor(&owner);
    let (mut endpoint, secret) = endpoints::create(&state.pool, owner.account_id, &new, &actor)
        .await
        .map_err(write_error)?;
    if !req.enabled {
        let patch = EndpointPatch { enabled: Some(false), ..EndpointPatch::default() };
        endpoint = endpoints::update(&state.pool, owner.account_id, endpoint.id, &patch, &actor)
            .await
            .map_err(unavailable)?
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
        (status = 401, description = "Missing, invalid or revoked key", body = ErrorBody),
        (status = 422, description = "A bad parameter, named", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ),
    security(("api_key" = [])),
    tag = "endpoints"
)]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<EndpointPage>, ApiError> {
    let owner = state.auth.authenticate(&headers).await?;
    let q: PageQuery = parse_query(query.as_deref().unwrap_or_default())?;
    let limit = q.limit()?;
    let after = q
        .cursor
        .as_deref()
        .map(|c| c.parse::<EndpointId>().map_err(|_| ApiError::invalid("cursor", "not a cursor")))
        .transpose()?;
    let mut data = endpoints::list(&state.pool, owner.account_id, after, limit + 1)
        .await
        .map_err(unavailable)?;
    let next_cursor = if data.len() as i64 > limit {
        data.truncate(limit as usize);
        data.last().map(|e| e.id)
    } else {
        None
    };
    Ok(Json(EndpointPage { data, next_cursor }))
}

/// One endpoint.
#[utoipa::path(
    get,
    path = "/v1/endpoints/{id}",
    params(("id" = String, Path, format = Uuid, description = "Endpoint id")),
    responses(
        (status = 200, description = "The endpoint", body = Endpoint),
        (status = 401, description = "Missing, invalid or revoked key", body = ErrorBody),
        (status = 404, description = "No such endpoint in this account", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ),
    security(("api_key" = [])),
    tag = "endpoints"
)]
pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Endpoint>, ApiError> {
    let owner = state.auth.authenticate(&headers).await?;
    endpoints::get(&state.pool, owner.account_id, endpoint_id(&id)?)
        .await
        .map_err(unavailable)?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

/// Change an endpoint.
#[utoipa::path(
    patch,
    path = "/v1/endpoints/{id}",
    params(("id" = String, Path, format = Uuid, description = "Endpoint id")),
    request_body = UpdateEndpoint,
    responses(
        (status = 200, description = "The changed endpoint", body = Endpoint),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing, invalid or revoked key", body = ErrorBody),
        (status = 404, description = "No such endpoint in this account", body = ErrorBody),
        (status = 409, description = "An endpoint with this URL exists", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "A bad field, named", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ),
    security(("api_key" = [])),
    tag = "endpoints"
)]
pub async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: Body,
) -> Result<Json<Endpoint>, ApiError> {
    let owner = state.auth.authenticate(&headers).await?;
    let id = endpoint_id(&id)?;
    let req: UpdateEndpoint = body(&state, &headers, raw).await?;
    let url = match &req.url {
        Some(url) => Some(checked_url(&state, url).await?),
        None => None,
    };
    if let Some(d) = &req.description {
        check_description(d)?;
    }
    if let Some(t) = &req.event_types {
        check_types(&state, t)?;
    }
    let rate_limit = match req.rate_limit {
        Some(Some(l)) => Some(Some(check_limit(l)?)),
        Some(None) => Some(None),
        None => None,
    };
    let patch = EndpointPatch {
        url,
        description: req.description,
        event_types: req.event_types,
        rate_limit,
        enabled: req.enabled,
    };
    endpoints::update(&state.pool, owner.account_id, id, &patch, &actor(&owner))
        .await
        .map_err(write_error)?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

/// Delete an endpoint (its delivery history stays).
#[utoipa::path(
    delete,
    path = "/v1/endpoints/{id}",
    params(("id" = String, Path, format = Uuid, description = "Endpoint id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing, invalid or revoked key", body = ErrorBody),
        (status = 404, description = "No such endpoint in this account", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ),
    security(("api_key" = [])),
    tag = "endpoints"
)]
pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let owner = state.auth.authenticate(&headers).await?;
    let deleted =
        endpoints::delete(&state.pool, owner.account_id, endpoint_id(&id)?, &actor(&owner))
            .await
            .map_err(unavailable)?;
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
    params(("id" = String, Path, format = Uuid, description = "Endpoint id")),
    responses(
        (status = 200, description = "The new secret, shown only now", body = RotatedSecret),
        (status = 401, description = "Missing, invalid or revoked key", body = ErrorBody),
        (status = 404, description = "No such endpoint in this account", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ),
    security(("api_key" = [])),
    tag = "endpoints"
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<RotatedSecret>, ApiError> {
    let owner = state.auth.authenticate(&headers).await?;
    let overlap = state.settings.secret_rotation_overlap;
    let (secret, previous_valid_until) = endpoints::rotate_secret(
        &state.pool,
        owner.account_id,
        endpoint_id(&id)?,
        overlap,
        &actor(&owner),
    )
    .await
    .map_err(unavailable)?
    .ok_or(ApiError::NotFound)?;
    Ok(Json(RotatedSecret { secret, previous_valid_until }))
}

/// Delivered, failed and retrying counts and response-time percentiles over a window.
#[utoipa::path(
    get,
    path = "/v1/endpoints/{id}/stats",
    params(("id" = String, Path, format = Uuid, description = "Endpoint id"), StatsQuery),
    responses(
        (status = 200, description = "The endpoint's numbers", body = EndpointStats),
        (status = 401, description = "Missing, invalid or revoked key", body = ErrorBody),
        (status = 404, description = "No such endpoint in this account", body = ErrorBody),
        (status = 422, description = "A bad window", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ),
    security(("api_key" = [])),
    tag = "endpoints"
)]
pub async fn stats(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<EndpointStats>, ApiError> {
    let owner = state.auth.authenticate(&headers).await?;
    let id = endpoint_id(&id)?;
    let q: StatsQuery = parse_query(query.as_deref().unwrap_or_default())?;
    let window = match q.window.as_deref() {
        None => Duration::from_secs(24 * 3600),
        Some(w) => humantime::parse_duration(w)
            .map_err(|e| ApiError::invalid("window", format!("not a duration: {e}")))?,
    };
    if window.is_zero() || window > Duration::from_secs(30 * 24 * 3600) {
        return Err(ApiError::invalid("window", "must be between 1s and 30d"));
    }
    if endpoints::get(&state.pool, owner.account_id, id).await.map_err(unavailable)?.is_none() {
        return Err(ApiError::NotFound);
    }
    let since = Utc::now() - chrono::Duration::from_std(window).unwrap_or_default();
    deliveries::endpoint_stats(&state.pool, owner.account_id, id, since)
        .await
        .map(Json)
        .map_err(unavailable)
}
