//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::audit::AuditPage;
use crate::deliveries::EventDeliveries;
use crate::dlq::{DeadLetterPage, RedriveRequest, RedriveResponse};
use crate::endpoints::{
    CreateEndpoint, CreatedEndpoint, EndpointPage, RateLimitBody, RotatedSecret, UpdateEndpoint,
};
use crate::error::{ErrorBody, ErrorDetail};
use crate::events::{
    Accepted, BatchEventRequest, BatchRequest, BatchResponse, BatchResult, EventRequest,
};
use hookstream_core::db::audit::Entry;
use hookstream_core::db::deliveries::{AttemptLog, Delivery, EndpointStats};
use hookstream_core::db::endpoints::Endpoint;
use hookstream_core::db::redrive_jobs::RedriveJob;
use hookstream_core::dlq::DeadLetter;

/// hookstream's public API.
#[derive(OpenApi)]
#[openapi(
    info(title = "hookstream", description = "Webhook delivery for multi-tenant SaaS: event intake, endpoints, delivery status, audit log, dead letters."),
    paths(
        crate::events::post_event,
        crate::events::post_batch,
        crate::dlq::list,
        crate::dlq::show,
        crate::dlq::redrive,
        crate::dlq::redrive_job,
        crate::deliveries::for_event,
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
        EventRequest, BatchEventRequest, BatchRequest, Accepted, BatchResult, BatchResponse,
        ErrorBody, ErrorDetail, DeadLetter, DeadLetterPage, RedriveRequest, RedriveResponse, RedriveJob,
        Endpoint, EndpointPage, CreateEndpoint, UpdateEndpoint, RateLimitBody, CreatedEndpoint,
        RotatedSecret, EndpointStats, EventDeliveries, Delivery, AttemptLog, AuditPage, Entry
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "events", description = "Event intake"),
        (name = "endpoints", description = "Webhook endpoints of the caller's account"),
        (name = "audit", description = "Changes to the caller's account"),
        (name = "dlq", description = "Dead-lettered deliveries of the caller's account: inspect and redrive")
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as pretty JSON (what `/openapi.json` serves and `ingest/openapi.json` holds).
pub fn document() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
