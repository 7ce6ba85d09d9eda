//! What the dispatcher and the retrier both run around their consumer loops: the endpoint
//! cache (kept fresh), the delivery log's writer, the hand-off producer and the engine, and
//! their stop in the one order that loses nothing.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::endpoints::EndpointCache;
use super::engine::{Engine, EngineParts, Lanes};
use super::handoff::Handoff;
use super::record::Recorder;
use super::DeliveryConfig;
use crate::config::{KafkaConfig, TopicsConfig};
use crate::db::log_partitions;
use crate::partitions::Partitions;
use crate::producer::HealingProducer;
use crate::service::{self, ServiceError};
use crate::trace::Tracer;

/// What [`DeliveryRuntime::start`] needs.
pub struct RuntimeParts<'a> {
    /// The producer's client id (`hookstream-dispatcher`, …).
    pub client: &'static str,
    /// `[kafka]`.
    pub kafka: &'a KafkaConfig,
    /// `[topics]`: the names, and how long records are kept (no task is parked for more than
    /// half of it).
    pub topics: &'a TopicsConfig,
    /// `[delivery]`.
    pub delivery: &'a DeliveryConfig,
    /// Postgres.
    pub pool: &'a PgPool,
    /// The in-flight bounds.
    pub lanes: Lanes,
    /// The consumer's partition state.
    pub partitions: Arc<Partitions>,
    /// Buffered deliveries per partition before it is paused.
    pub buffer_bound: usize,
    /// How often the endpoint cache is refreshed.
    pub endpoint_refresh: Duration,
    /// The service's tracer.
    pub tracer: Tracer,
}

/// How often the delivery log's partitions are created ahead and expired.
const LOG_MAINTENANCE_EVERY: Duration = Duration::from_secs(3600);

/// The running delivery side of a consumer service.
pub struct DeliveryRuntime {
    /// Enabled endpoints by account, refreshed in the background.
    pub cache: EndpointCache,
    /// The delivery engine.
    pub engine: Arc<Engine>,
    /// Hand-off to the retry tiers and the DLQ (the engine's own, shared).
    pub handoff: Handoff,
    background: CancellationToken,
    recorder_task: tokio::task::JoinHandle<()>,
}

impl DeliveryRuntime {
    /// Loads the endpoint cache (failing if the database does not answer), starts its
    /// refresh and the delivery log's writer, warms the producer up and builds the engine.
    pub async fn start(parts: RuntimeParts<'_>) -> Result<Self, ServiceError> {
        let cache = EndpointCache::default();
        cache.reload(parts.pool).await?;
        cache.warn_if_guard_disagrees(parts.delivery.allow_private_targets);
        let background = CancellationToken::new();
        cache.spawn_refresh(parts.pool.clone(), parts.endpoint_refresh, background.clone());
        let (recorder, recorder_task) = Recorder::spawn(
            parts.pool.clone(),
            parts.delivery.record_batch_size,
            parts.delivery.record_flush_interval,
            background.clone(),
            service::LOG_FLUSH_BUDGET,
        );
        // Every process that writes the log keeps its days created ahead and its retention.
        log_partitions::spawn_maintenance(
            parts.pool.clone(),
            parts.delivery.log_retention,
            LOG_MAINTENANCE_EVERY,
            background.clone(),
        );
        let producer = HealingProducer::new(parts.kafka, parts.client)?;
        let handoff = Handoff::new(
            producer,
            parts.topics.topics(),
            parts.kafka.produce_timeout,
            parts.tracer.clone(),
        );
        handoff.warm_up().await;
        let engine = Engine::new(EngineParts {
            delivery: parts.delivery.clone(),
            handoff: handoff.clone(),
            recorder,
            pool: parts.pool.clone(),
            lanes: parts.lanes,
            partitions: parts.partitions,
            buffer_bound: parts.buffer_bound,
            park_horizon: parts.topics.retention / 2,
            tracer: parts.tracer,
        })
        .map_err(ServiceError::startup)?;
        Ok(Self { cache, engine: Arc::new(engine), handoff, background, recorder_task })
    }

    /// Cancelled at [`Self::stop`]: for the service's own background tasks (admin server, …).
    pub fn background(&self) -> CancellationToken {
        self.background.clone()
    }

    /// After the drain: the workers end (each finishes the job in hand), then `final_commit`
    /// runs, so what they finished meanwhile is committed; then the background tasks stop and
    /// the delivery log's writer writes what they recorded.
    pub async fn stop(self, final_commit: impl FnOnce()) {
        self.engine.stop(Duration::from_secs(1)).await;
        final_commit();
        self.background.cancel();
        let _ = self.recorder_task.await;
    }
}
