//! The management API: an account's endpoints, its events' deliveries, endpoint stats, the
//! audit log and the dead-letter queue (inspect, redrive as jobs), with `/openapi.json`. A
//! service of its own, so its long queries and redrives never share a pool, a producer or a
//! process with event intake.

pub mod audit;
mod config;
pub mod deliveries;
pub mod dlq;
pub mod endpoints;
pub mod expunge;
pub mod openapi;
mod paths;
pub mod redrive;
pub mod state;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{delete, get, post};
use axum::{middleware, Router};
pub use config::{ApiConfig, ApiSettings};
use hookstream_core::db::endpoint_rules::EndpointRules;
use hookstream_core::delivery::handoff::Handoff;
use hookstream_core::http::{self, KeyResolver};
use hookstream_core::producer::HealingProducer;
use hookstream_core::schema::Schemas;
use hookstream_core::service::{self, ServiceError};
use hookstream_core::trace::Tracing;
pub use openapi::document as openapi_document;
use tokio_util::sync::CancellationToken;

use crate::redrive::Redrives;
use crate::state::AppState;

/// Runs the API until `shutdown` is cancelled: stops accepting, finishes in-flight requests,
/// stops redrive jobs between pages, flushes the producer.
pub async fn run(config: ApiConfig, shutdown: CancellationToken) -> Result<(), ServiceError> {
    let backends = service::connect(&config.kafka, &config.database).await?;
    let schemas = Schemas::load().map_err(ServiceError::startup)?;
    let settings = &config.api;
    let drain = service::drain_budget(settings.shutdown_deadline);
    if settings.allow_private_endpoints {
        tracing::warn!(
            "api.allow_private_endpoints is on: endpoints on loopback and internal addresses \
             are accepted; the dispatcher and retrier deliver to them only with \
             delivery.allow_private_targets on (they say so at start when it is off)"
        );
    }
    let producer = HealingProducer::new(&config.kafka, "hookstream-api")?;
    let traces = Tracing::start(&config.telemetry, "hookstream-api")?;
    let handoff = Handoff::new(
        producer.clone(),
        config.topics.topics(),
        config.kafka.produce_timeout,
        traces.tracer(),
    );
    let redrives = Redrives::new(NonZeroU32::new(settings.redrive_rate).unwrap_or(NonZeroU32::MIN));
    let state = AppState {
        rules: Arc::new(EndpointRules::new(
            settings.allow_http_endpoints,
            settings.allow_private_endpoints,
            &schemas,
        )),
        auth: KeyResolver::new(
            backends.database.clone(),
            settings.key_cache_ttl,
            settings.key_stale_ttl,
            NonZeroU32::new(settings.unknown_key_lookups_per_second).unwrap_or(NonZeroU32::MIN),
        ),
        pool: backends.database.clone(),
        handoff,
        redrives: redrives.clone(),
        settings: Arc::new(config.api),
    };
    state.auth.spawn_reload(shutdown.clone()).await;
    let (http, admin) = (&config.http, &config.admin);
    service::serve_http("api", http, admin, &backends, router(state), shutdown, drain).await?;
    // Jobs stop between pages (a page takes about a second at the default pace).
    redrives.shutdown(Duration::from_secs(2)).await;
    producer.flush(service::FINAL_STEPS - Duration::from_secs(2)).await;
    traces.shutdown();
    Ok(())
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/events/{id}", delete(expunge::expunge))
        .route("/v1/events/{id}/deliveries", get(deliveries::for_event))
        .route("/v1/endpoints", post(endpoints::create).get(endpoints::list))
        .route(
            "/v1/endpoints/{id}",
            get(endpoints::show).patch(endpoints::update).delete(endpoints::delete),
        )
        .route("/v1/endpoints/{id}/rotate-secret", post(endpoints::rotate_secret))
        .route("/v1/endpoints/{id}/stats", get(endpoints::stats))
        .route("/v1/audit", get(audit::list))
        .route("/v1/dlq", get(dlq::list))
        .route("/v1/dlq/redrive", post(dlq::redrive))
        .route("/v1/dlq/redrive/{id}", get(dlq::redrive_job))
        .route("/v1/dlq/{id}", get(dlq::show))
        .route(
            "/openapi.json",
            get(|| async { ([("content-type", "application/json")], openapi::document()) }),
        )
        .with_state(state)
        .layer(middleware::from_fn(|r, n| http::observe("api_http_request_duration_seconds", r, n)))
}
