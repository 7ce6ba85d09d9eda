//! The dispatcher: consumes the event lanes and delivers each event to every subscribed
//! endpoint of its account (DESIGN.md, "Delivery semantics" and "Fairness").
//!
//! Offsets are committed manually and only up to the lowest message with unfinished work, so
//! a crash redelivers at most what was in flight, and nothing is lost.

mod config;

use std::sync::Arc;

pub use config::{DispatcherConfig, DispatcherSettings, LaneWeights};
use hookstream_core::admin::ReadinessCheck;
use hookstream_core::backoff::Backoff;
use hookstream_core::delivery::endpoints::EndpointCache;
use hookstream_core::delivery::engine::{Engine, Job, Lanes, Source};
use hookstream_core::delivery::runtime::{DeliveryRuntime, RuntimeParts};
use hookstream_core::envelope::{EventEnvelope, Priority};
use hookstream_core::partitions::{self, Partitions, TrackedConsumer};
use hookstream_core::service::{self, AdminServer, ServiceError};
use hookstream_core::trace::{self, Consumed, Tracer, Tracing};
use hookstream_core::wire::{self, EnvelopeCodec, WireError};
use rdkafka::consumer::CommitMode;
use rdkafka::message::BorrowedMessage;
use rdkafka::Message;
use tokio_util::sync::CancellationToken;

/// Runs the dispatcher until `shutdown`: stops fetching, lets in-flight work finish within
/// `dispatcher.shutdown_deadline`, commits, and leaves the group.
pub async fn run(
    config: DispatcherConfig,
    shutdown: CancellationToken,
) -> Result<(), ServiceError> {
    let backends = service::connect(&config.kafka, &config.database).await?;
    let traces = Tracing::start(&config.telemetry, "hookstream-dispatcher")?;
    let settings = &config.dispatcher;
    let topics = config.topics.topics();
    let (consumer, partitions) = partitions::subscribe(
        &config.kafka,
        "hookstream-dispatcher",
        &settings.group_id,
        &topics.all_events(),
    )?;

    let codec = EnvelopeCodec::new(config.kafka.schema_registry_url.as_ref())
        .map_err(ServiceError::startup)?;
    let runtime = DeliveryRuntime::start(RuntimeParts {
        client: "hookstream-dispatcher",
        kafka: &config.kafka,
        topics: &config.topics,
        delivery: &config.delivery,
        pool: &backends.database,
        lanes: Lanes::weighted(settings.in_flight, &lane_weights(settings)),
        partitions: Arc::clone(&partitions),
        buffer_bound: settings.max_buffered_per_partition,
        endpoint_refresh: settings.endpoint_refresh,
        tracer: traces.tracer(),
    })
    .await?;
    let (cache, engine, background) = (&runtime.cache, &runtime.engine, runtime.background());
    let dispatch = Dispatch {
        engine,
        cache,
        partitions: &partitions,
        consumer: &consumer,
        bound: settings.max_buffered_per_partition,
        tracer: traces.tracer(),
        group: &settings.group_id,
    };

    let checks: Vec<Arc<dyn ReadinessCheck>> = vec![Arc::clone(&partitions) as _];
    let admin = AdminServer::spawn(&config.admin, &backends, checks, background.clone());
    tracing::info!(group = %settings.group_id, "dispatching");
    let mut commit_tick = tokio::time::interval(settings.commit_interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = partitions.changed() => partitions::apply_deferred(&consumer, &partitions),
            _ = commit_tick.tick() => {
                partitions::commit(&consumer, partitions.take_commits(), CommitMode::Async);
                let (buffered, paused) = partitions.totals();
                metrics::gauge!("dispatcher_buffered_tasks").set(buffered as f64);
                metrics::gauge!("dispatcher_paused_partitions").set(paused as f64);
                metrics::gauge!("dispatcher_in_flight").set(engine.in_flight() as f64);
                engine.observe_load();
            }
            received = consumer.recv() => match received {
                Ok(m) => {
                    // The record's timestamp is its produce time (ingest's clock): every
                    // endpoint committed before it must be in the cache first.
                    if let Some(produced_ms) = m.timestamp().to_millis() {
                        cache.catch_up(&backends.database, produced_ms).await;
                    }
                    let Some(read) = read_envelope(&codec, &m, &shutdown).await else { break };
                    dispatch.record(&m, read)
                }
                Err(e) => tracing::warn!(error = %e, "consume error"),
            },
        }
    }

    tracing::info!("stopping: finishing in-flight deliveries");
    let deadline = tokio::time::Instant::now() + service::drain_budget(settings.shutdown_deadline);
    if !partitions.settle(deadline, || partitions.totals().0 == 0).await {
        tracing::warn!(
            buffered = partitions.totals().0,
            "shutdown: deliveries still in flight at the drain deadline; they are redelivered"
        );
    }
    runtime
        .stop(|| partitions::commit(&consumer, partitions.all_committable(), CommitMode::Sync))
        .await;
    admin.finish().await;
    traces.shutdown();
    Ok(())
}

/// Each lane's weight in the shares of `in_flight`.
fn lane_weights(settings: &DispatcherSettings) -> [(Priority, u32); 3] {
    let w = settings.lane_weights;
    [(Priority::High, w.high), (Priority::Normal, w.normal), (Priority::Low, w.low)]
}

/// Reads the envelope of `m`. While the schema registry cannot be reached the record is
/// neither skipped nor committed past: the read is retried (the one backoff pace) until it
/// answers; `None` when `shutdown` came first (nothing of `m` is begun, so its offset stays
/// uncommitted and it is read again).
async fn read_envelope(
    codec: &EnvelopeCodec,
    m: &BorrowedMessage<'_>,
    shutdown: &CancellationToken,
) -> Option<Result<EventEnvelope, WireError>> {
    let mut backoff = Backoff::default();
    loop {
        match codec.decode(m.payload()).await {
            Err(e) if e.is_retriable() => {
                metrics::counter!("dispatcher_decode_retries_total").increment(1);
                tracing::error!(topic = m.topic(), partition = m.partition(), offset = m.offset(), error = %e, "cannot read the event yet; retrying");
                if !backoff.wait_or(shutdown).await {
                    return None;
                }
            }
            read => return Some(read),
        }
    }
}

/// What hands a read record to the engine.
struct Dispatch<'a> {
    engine: &'a Arc<Engine>,
    cache: &'a EndpointCache,
    partitions: &'a Partitions,
    consumer: &'a TrackedConsumer,
    /// Buffered deliveries per partition before it is paused.
    bound: usize,
    tracer: Tracer,
    group: &'a str,
}

impl Dispatch<'_> {
    /// Queues one job per matching endpoint of the event `m` holds, in a `process` span that
    /// continues the trace its headers carry.
    fn record(&self, m: &BorrowedMessage<'_>, read: Result<EventEnvelope, WireError>) {
        let (partitions, consumer, bound) = (self.partitions, self.consumer, self.bound);
        let tp = (m.topic().to_owned(), m.partition());
        let Some(generation) = partitions.generation(&tp) else { return };
        let envelope = match read {
            Ok(e) => e,
            Err(e @ (WireError::NoRegistry | WireError::Registry { .. })) => {
                // Avro (ingest with a schema registry) and no registry to read it, or one
                // that does not know its schema (another registry?): never commit past such a
                // record, which would lose it. Stop the partition and say why, loudly, until
                // a dispatcher with the right kafka.schema_registry_url takes over.
                metrics::counter!("dispatcher_undecodable_total").increment(1);
                tracing::error!(topic = %tp.0, partition = tp.1, offset = m.offset(), error = %e, "partition paused, nothing committed past it");
                partitions::apply(consumer, &tp, partitions.stall(&tp, m.offset()));
                return;
            }
            Err(e) => {
                // Not an envelope this build reads: counted, logged, and committed past, so
                // one bad record cannot stall its partition.
                metrics::counter!("dispatcher_undecodable_total").increment(1);
                tracing::error!(topic = %tp.0, partition = tp.1, offset = m.offset(), error = %e, "undecodable event skipped");
                partitions.begin(&tp, m.offset(), 0, bound);
                return;
            }
        };
        let age =
            (chrono::Utc::now() - envelope.received_at).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::gauge!("webhook_processing_lag_seconds", "lane" => envelope.priority.as_str())
            .set(age);
        let endpoints = self.cache.matching(envelope.account_id, &envelope.event_type);
        let cx = self.tracer.process(
            &wire::headers::context(m),
            &Consumed { topic: &tp.0, partition: tp.1, offset: m.offset(), group: self.group },
        );
        partitions::apply(consumer, &tp, partitions.begin(&tp, m.offset(), endpoints.len(), bound));
        let envelope = Arc::new(envelope);
        let source = Source { tp, offset: m.offset(), generation };
        for endpoint in endpoints {
            self.engine.enqueue(Job {
                envelope: Arc::clone(&envelope),
                endpoint,
                source: source.clone(),
                trace: cx.clone(),
                retry: None,
            });
        }
        trace::end(&cx, None);
    }
}
