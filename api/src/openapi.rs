//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::OpenApi;

use crate::audit::AuditPage;
use crate::deliveries::EventDeliveries;
use crate::dlq::{DeadLetterPage, RedriveRequest, RedriveResponse};
use crate::endpoints::{
    CreateEndpoint, CreatedEndpoint, EndpointPage, RateLimitBody, RotatedSecret, UpdateEndpoint,
};
use crate::expunge::EventExpunged;
use hookstream_core::db::audit::Entry;
use hookstream_core::db::deliveries::{AttemptLog, Delivery, EndpointStats, Expunged};
use hookstream_core::db::endpoints::Endpoint;
use hookstream_core::db::redrive_jobs::RedriveJob;
use hookstream_core::dlq::DeadLetter;
use hookstream_core::http::{ErrorBody, ErrorDetail, KeyedApi};

/// hookstream's management API (event intake is ingest's: its own `/openapi.json`).
#[derive(OpenApi)]
#[openapi(
    info(title = "hookstream management API", description = "Webhook delivery for multi-tenant SaaS: endpoints, delivery status, audit log, dead letters. Events are sent to ingest (its own /openapi.json)."),
    paths(
        crate::dlq::list,
        crate::dlq::show,
        crate::dlq::redrive,
        crate::dlq::redrive_job,
        crate::deliveries::for_event,
        crate::expunge::expunge,
        crate::endpoints::create,
        crate::endpoints::list,
        crate::endpoints::show,
        crate::endpoints::update,
        crate::endpoints::delete,
        crate::endpoints::rotate_secret,
        crate::endpoints::stats,
        crate::audit::list
    ),
    components(schemas(
        ErrorBody, ErrorDetail, DeadLetter, DeadLetterPage, RedriveRequest, RedriveResponse, RedriveJob,
        Endpoint, EndpointPage, CreateEndpoint, UpdateEndpoint, RateLimitBody, CreatedEndpoint,
        RotatedSecret, EndpointStats, EventDeliveries, Delivery, AttemptLog, AuditPage, Entry,
        EventExpunged, Expunged
    )),
    modifiers(&KeyedApi),
    tags(
        (name = "events", description = "Where the caller's events went"),
        (name = "endpoints", description = "Webhook endpoints of the caller's account"),
        (name = "audit", description = "Changes to the caller's account"),
        (name = "dlq", description = "Dead-lettered deliveries of the caller's account: inspect and redrive")
    )
)]
pub struct ApiDoc;

/// The document as pretty JSON (what `/openapi.json` serves and `api/openapi.json` holds).
pub fn document() -> String {
    hookstream_core::http::openapi_json(&ApiDoc::openapi())
}
