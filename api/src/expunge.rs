//! `DELETE /v1/events/{id}`: the account deletes what hookstream keeps of one event's
//! subscriber data (personal data): the receivers' response bodies and the DLQ entries.

use axum::extract::State;
use axum::Json;
use hookstream_core::db::deliveries::{self, Expunged};
use hookstream_core::http::{ApiError, Caller, ErrorBody, PathId};
use hookstream_core::EventId;
use serde::Serialize;
use utoipa::ToSchema;

use crate::paths::EventPath;
use crate::state::AppState;

/// What was deleted.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventExpunged {
    /// The event id.
    pub event_id: String,
    /// What was removed.
    #[serde(flatten)]
    pub removed: Expunged,
}

/// Expunge an event's stored subscriber data.
#[utoipa::path(
    delete,
    path = "/v1/events/{id}",
    params(EventPath),
    responses(
        (status = 200, description = "Response bodies and DLQ entries of the event deleted; the delivery log's states stay; audited as event.expunge", body = EventExpunged),
        (status = 404, description = "No trace of this event in this account", body = ErrorBody),
    ),
    tag = "events"
)]
pub async fn expunge(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId<EventId>,
) -> Result<Json<EventExpunged>, ApiError> {
    let removed = deliveries::expunge(&state.pool, caller.account(), id.as_str(), &caller.actor())
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(EventExpunged { event_id: id.to_string(), removed }))
}
