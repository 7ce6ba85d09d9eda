//! Ingest: the HTTP door into the pipeline. Authenticates producers, validates events and
//! produces them to the event lanes, answering only after the broker acknowledged.

pub mod audit;
pub mod auth;
mod config;
pub mod deliveries;
pub mod dlq;
pub mod encode;
pub mod endpoints;
pub mod error;
pub mod events;
pub mod idempotency;
pub mod openapi;
pub mod publish;
pub mod rate_limit;
pub mod redrive;
pub mod request;
pub mod state;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
pub use config::{IngestConfig, IngestSettings};
pub use error::ApiError;
use hookstream_core::schema::Schemas;
use hookstream_core::service::{self, ServiceError};
use hookstream_core::{admin, http_server};
pub use openapi::document as openapi_document;
use tokio_util::sync::CancellationToken;

use crate::auth::KeyResolver;
use crate::encode::Encoder;
use crate::idempotency::IdempotencyKeys;
use crate::publish::Publisher;
use crate::rate_limit::IntakeLimits;
use crate::redrive::Redrives;
use crate::state::AppState;

/// Runs ingest until `shutdown` is cancelled: stops accepting, finishes in-flight requests,
/// flushes the producer.
pub async fn run(config: IngestConfig, shutdown: CancellationToken) -> Result<(), ServiceError> {
    let backends = service::connect(&config.kafka, &config.database).await?;
    let schemas = Schemas::load().map_err(|e| ServiceError::Startup(e.to_string()))?;
    let encoder = Encoder::new(config.ingest.schema_registry_url.as_ref())
        .map_err(|e| ServiceError::Startup(e.to_string()))?;
    let publisher = Publisher::new(&config.kafka, config.topics.topics(), encoder)?;
    let settings = &config.ingest;
    let drain = service::drain_budget(settings.shutdown_deadline);
    if settings.allow_private_endpoints {
        tracing::warn!(
            "ingest.allow_private_endpoints is on: endpoints on loopback and internal addresses \
             are accepted; the dispatcher and retrier deliver to them only with \
             delivery.allow_private_targets on (they say so at start when it is off)"
        );
    }
    let redrives = Redrives::new(NonZeroU32::new(settings.redrive_rate).unwrap_or(NonZeroU32::MIN));
    let state = AppState {
        redrives: redrives.clone(),
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
        pool: backends.database.clone(),
        schemas: Arc::new(schemas),
        settings: Arc::new(config.ingest),
    };
    state.auth.spawn_reload(shutdown.clone()).await;
    let app = router(state).merge(admin::liveness());
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| ServiceError::Http { addr: config.http.listen, source })?;
    let admin_server = tokio::spawn({
        let (admin, backends, stop) = (config.admin.clone(), backends.clone(), shutdown.clone());
        async move { service::serve_admin(&admin, &backends, Vec::new(), stop).await }
    });
    tracing::info!(listen = %config.http.listen, admin = %config.admin.listen, "ingest listening");
    http_server::serve(listener, app, &config.http, "ingest", shutdown, drain).await;
    // Jobs stop between pages (a page takes about a second at the default pace).
    redrives.shutdown(Duration::from_secs(2)).await;
    publisher.flush(service::FINAL_STEPS - Duration::from_secs(1)).await;
    match admin_server.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "admin server stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "admin server panicked"),
        Ok(Ok(())) => {}
    }
    Ok(())
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/events", post(events::post_event))
        .route("/v1/events/batch", post(events::post_batch))
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
        .layer(middleware::from_fn(observe))
}

/// Times every request into `ingest_http_request_duration_seconds{route, status}` and gives
/// it a span carrying the trace id.
async fn observe(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!("request", method = %request.method(), %route, trace_id = tracing::field::Empty);
    let started = Instant::now();
    let response = tracing::Instrument::instrument(next.run(request), span).await;
    metrics::histogram!(
        "ingest_http_request_duration_seconds",
        "route" => route,
        "status" => response.status().as_u16().to_string()
    )
    .record(started.elapsed());
    response
}
