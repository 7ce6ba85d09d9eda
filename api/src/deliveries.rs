//! `GET /v1/events/{id}/deliveries`: where one of the account's events went, per endpoint,
//! with every attempt.

use axum::extract::State;
use axum::Json;
use hookstream_core::db::deliveries::{self, Delivery};
use hookstream_core::http::{ApiError, Caller, ErrorBody, PathId};
use hookstream_core::EventId;
use serde::Serialize;
use utoipa::ToSchema;

use crate::paths::EventPath;
use crate::state::AppState;

/// An event's deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventDeliveries {
    /// The event id.
    pub event_id: String,
    /// One entry per endpoint it was (or is being) delivered to.
    pub data: Vec<Delivery>,
}

/// Where an event went.
#[utoipa::path(
    get,
    path = "/v1/events/{id}/deliveries",
    params(EventPath),
    responses(
        (status = 200, description = "Per endpoint: state and every attempt", body = EventDeliveries),
        (status = 404, description = "No delivery of this event in this account", body = ErrorBody),
    ),
    tag = "events"
)]
pub async fn for_event(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId<EventId>,
) -> Result<Json<EventDeliveries>, ApiError> {
    let data = deliveries::for_event(&state.pool, caller.account(), id.as_str()).await?;
    if data.is_empty() {
        return Err(ApiError::NotFound);
    }
    Ok(Json(EventDeliveries { event_id: id.to_string(), data }))
}
