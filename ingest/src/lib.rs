//! Ingest: the HTTP door into the pipeline. Authenticates producers, validates events and
//! produces them to the event lanes, answering only after the broker acknowledged.

mod config;

pub use config::{IngestConfig, IngestSettings};
use hookstream_core::service::{self, ServiceError};
use tokio_util::sync::CancellationToken;

/// Runs ingest until `shutdown` is cancelled.
///
/// Until the event API lands (issue 3) it connects to the broker and the database and serves
/// `/healthz`, `/readyz` and `/metrics` on `http.listen`.
pub async fn run(config: IngestConfig, shutdown: CancellationToken) -> Result<(), ServiceError> {
    let backends = service::connect(&config.kafka, &config.database).await?;
    tracing::info!(listen = %config.http.listen, "connected to kafka and postgres");
    service::serve_admin(&config.http, &backends, shutdown).await
}
