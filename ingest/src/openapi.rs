//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::OpenApi;

use hookstream_core::http::{ErrorBody, ErrorDetail, KeyedApi};

use crate::events::{
    Accepted, BatchEventRequest, BatchRequest, BatchResponse, BatchResult, EventRequest,
};

/// hookstream's event intake (the management API has its own `/openapi.json`).
#[derive(OpenApi)]
#[openapi(
    info(title = "hookstream ingest", description = "Webhook delivery for multi-tenant SaaS: event intake. Endpoints, delivery status, the audit log and dead letters are the management API's (its own /openapi.json)."),
    paths(
        crate::events::post_event,
        crate::events::post_batch
    ),
    components(schemas(
        EventRequest, BatchEventRequest, BatchRequest, Accepted, BatchResult, BatchResponse,
        ErrorBody, ErrorDetail
    )),
    modifiers(&KeyedApi),
    tags(
        (name = "events", description = "Event intake")
    )
)]
pub struct ApiDoc;

/// The document as pretty JSON (what `/openapi.json` serves and `ingest/openapi.json` holds).
pub fn document() -> String {
    hookstream_core::http::openapi_json(&ApiDoc::openapi())
}
