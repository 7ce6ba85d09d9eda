//! The dispatcher: consumes the event lanes and delivers each event to every subscribed
//! endpoint of its account (DESIGN.md, "Delivery semantics" and "Fairness").

mod config;

pub use config::{DispatcherConfig, DispatcherSettings};
use hookstream_core::service::{self, ServiceError};
use tokio_util::sync::CancellationToken;

/// Runs the dispatcher until `shutdown` is cancelled.
///
/// Until the delivery loop lands (issue 4) it connects to the broker and the database,
/// serves its admin endpoints, and stops cleanly.
pub async fn run(
    config: DispatcherConfig,
    shutdown: CancellationToken,
) -> Result<(), ServiceError> {
    let backends = service::connect(&config.kafka, &config.database).await?;
    tracing::info!(group = %config.dispatcher.group_id, "connected to kafka and postgres");
    service::serve_admin(&config.admin, &backends, shutdown).await
}
