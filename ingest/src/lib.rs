//! Ingest: the HTTP door into the pipeline and nothing else. Authenticates producers,
//! validates events and produces them to the event lanes, answering only after the broker
//! acknowledged. The management API is a service of its own (`hookstream-api`).

mod config;
pub mod events;
pub mod idempotency;
pub mod openapi;
pub mod publish;
pub mod rate_limit;
pub mod state;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::middleware;
use axum::routing::{get, post};
use axum::Router;
pub use config::{IngestConfig, IngestSettings};
use hookstream_core::http::{self, KeyResolver};
use hookstream_core::schema::Schemas;
use hookstream_core::service::{self, ServiceError};
use hookstream_core::trace::Tracing;
use hookstream_core::wire::EnvelopeCodec;
pub use openapi::document as openapi_document;
use tokio_util::sync::CancellationToken;

use crate::idempotency::IdempotencyKeys;
use crate::publish::Publisher;
use crate::rate_limit::IntakeLimits;
use crate::state::AppState;

/// Runs ingest until `shutdown` is cancelled: stops accepting, finishes in-flight requests,
/// flushes the producer.
pub async fn run(config: IngestConfig, shutdown: CancellationToken) -> Result<(), ServiceError> {
    let backends = service::connect(&config.kafka, &config.database).await?;
    let schemas = Schemas::load().map_err(ServiceError::startup)?;
    let codec = EnvelopeCodec::new(config.kafka.schema_registry_url.as_ref())
        .map_err(ServiceError::startup)?;
    let traces = Tracing::start(&config.telemetry, "hookstream-ingest")?;
    let publisher = Publisher::new(&config.kafka, config.topics.topics(), codec, traces.tracer())?;
    let settings = &config.ingest;
    let drain = service::drain_budget(settings.shutdown_deadline);
    let state = AppState {
        auth: KeyResolver::new(
            backends.database.clone(),
            settings.key_cache_ttl,
            settings.key_stale_ttl,
            NonZeroU32::new(settings.unknown_key_lookups_per_second).unwrap_or(NonZeroU32::MIN),
        ),
        limits: IntakeLimits::default(),
        idempotency: IdempotencyKeys::new(
            settings.idempotency_window,
            settings.idempotency_capacity,
        ),
        publisher: publisher.clone(),
        tracer: traces.tracer(),
        schemas: Arc::new(schemas),
        settings: Arc::new(config.ingest),
    };
    state.auth.spawn_reload(shutdown.clone()).await;
    let (http, admin) = (&config.http, &config.admin);
    service::serve_http("ingest", http, admin, &backends, router(state), shutdown, drain).await?;
    publisher.flush(service::FINAL_STEPS - Duration::from_secs(1)).await;
    traces.shutdown();
    Ok(())
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/events", post(events::post_event))
        .route("/v1/events/batch", post(events::post_batch))
        .route(
            "/openapi.json",
            get(|| async { ([("content-type", "application/json")], openapi::document()) }),
        )
        .with_state(state)
        .layer(middleware::from_fn(|r, n| {
            http::observe("ingest_http_request_duration_seconds", r, n)
        }))
}
