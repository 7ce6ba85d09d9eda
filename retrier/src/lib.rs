//! The retrier: consumes the retry tiers, waits until each task is due, attempts it again and
//! passes failures to the next tier or the DLQ (DESIGN.md, "The flow").

mod config;

pub use config::{RetrierConfig, RetrierSettings};
use hookstream_core::service::{self, ServiceError};
use tokio_util::sync::CancellationToken;

/// Runs the retrier until `shutdown` is cancelled.
///
/// Until the retry loop lands (issue 5) it connects to the broker and the database, serves
/// its admin endpoints, and stops cleanly.
pub async fn run(config: RetrierConfig, shutdown: CancellationToken) -> Result<(), ServiceError> {
    let backends = service::connect(&config.kafka, &config.database).await?;
    tracing::info!(group = %config.retrier.group_id, "connected to kafka and postgres");
    service::serve_admin(&config.admin, &backends, shutdown).await
}
