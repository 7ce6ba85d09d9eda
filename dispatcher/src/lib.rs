//! The dispatcher: consumes the event lanes and delivers each event to every subscribed
//! endpoint of its account (DESIGN.md, "Delivery semantics" and "Fairness").
//!
//! Offsets are committed manually and only up to the lowest message with unfinished work, so
//! a crash redelivers at most what was in flight, and nothing is lost.

mod config;
pub mod endpoints;
pub mod state;
pub mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use config::{DispatcherConfig, DispatcherSettings, LaneWeights};
use hookstream_core::delivery::circuit::CircuitBreakers;
use hookstream_core::delivery::handoff::Handoff;
use hookstream_core::delivery::record::Recorder;
use hookstream_core::delivery::send::Sender;
use hookstream_core::envelope::{headers, EventEnvelope, Priority};
use hookstream_core::kafka::{self, KafkaClientError};
use hookstream_core::service::{self, ServiceError};
use hookstream_core::trace_context::TraceParent;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::endpoints::EndpointCache;
use crate::state::Partitions;
use crate::worker::{Engine, Job};

/// The dispatcher's consumer type.
pub type DispatchConsumer = StreamConsumer<RebalanceContext>;

/// Commits what is finished of revoked partitions and records assignments.
pub struct RebalanceContext {
    partitions: Arc<Partitions>,
}

impl ClientContext for RebalanceContext {
    /// Consumer lag per partition from librdkafka's statistics (`statistics.interval.ms`).
    fn stats(&self, statistics: rdkafka::Statistics) {
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                if partition < 0 || p.consumer_lag < 0 {
                    continue; // internal partition, or not consumed by this member
                }
                metrics::gauge!(
                    "webhook_queue_depth",
                    "topic" => topic.clone(),
                    "partition" => partition.to_string()
                )
                .set(p.consumer_lag as f64);
            }
        }
    }
}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut commit = TopicPartitionList::new();
            for e in tpl.elements() {
                let tp = (e.topic().to_owned(), e.partition());
                if let Some(offset) = self.partitions.revoke(&tp) {
                    let _ = commit.add_partition_offset(&tp.0, tp.1, Offset::Offset(offset));
                }
            }
            if commit.count() > 0 {
                if let Err(e) = consumer.commit(&commit, CommitMode::Sync) {
                    tracing::warn!(error = %e, "commit on revoke failed");
                }
            }
            tracing::info!(partitions = tpl.count(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            for e in tpl.elements() {
                self.partitions.assign((e.topic().to_owned(), e.partition()));
            }
            tracing::info!(partitions = tpl.count(), "partitions assigned");
        }
    }
}

/// Runs the dispatcher until `shutdown`: stops fetching, lets in-flight work finish within
/// `dispatcher.shutdown_deadline`, commits, and leaves the group.
pub async fn run(
    config: DispatcherConfig,
    shutdown: CancellationToken,
) -> Result<(), ServiceError> {
    let backends = service::connect(&config.kafka, &config.database).await?;
    let settings = &config.dispatcher;
    let topics = config.topics.topics();
    let partitions = Arc::new(Partitions::default());
    let mut kafka_config = config.kafka.clone();
    kafka_config.properties.entry("statistics.interval.ms".into()).or_insert_with(|| "5000".into());
    let consumer: Arc<DispatchConsumer> = Arc::new(kafka::consumer(
        &kafka_config,
        "hookstream-dispatcher",
        &settings.group_id,
        RebalanceContext { partitions: Arc::clone(&partitions) },
    )?);
    let lanes = topics.all_events();
    let names: Vec<&str> = lanes.iter().map(String::as_str).collect();
    consumer.subscribe(&names).map_err(KafkaClientError::Admin)?;

    let cache = EndpointCache::default();
    cache.reload(&backends.database).await?;
    let background = CancellationToken::new();
    cache.spawn_refresh(backends.database.clone(), settings.endpoint_refresh, background.clone());
    let (recorder, recorder_task) = Recorder::spawn(
        backends.database.clone(),
        config.delivery.record_batch_size,
        config.delivery.record_flush_interval,
        background.clone(),
    );
    let producer = kafka::producer(&config.kafka, "hookstream-dispatcher")?;
    let engine = Arc::new(Engine {
        sender: Sender::new(&config.delivery).map_err(|e| ServiceError::Startup(e.to_string()))?,
        handoff: Handoff::new(producer, topics.clone(), config.kafka.produce_timeout),
        recorder,
        pool: backends.database.clone(),
        breakers: CircuitBreakers::new(
            config.delivery.circuit_threshold,
            config.delivery.circuit_cooldown,
        ),
        endpoint_limits: Default::default(),
        account_limits: Default::default(),
        lanes: lane_semaphores(settings),
        partitions: Arc::clone(&partitions),
        consumer: Arc::clone(&consumer),
        buffer_bound: settings.max_buffered_per_partition,
        workers: Mutex::new(HashMap::new()),
    });

    let admin = tokio::spawn({
        let (admin, backends, stop) = (config.admin.clone(), backends.clone(), background.clone());
        async move { service::serve_admin(&admin, &backends, stop).await }
    });
    tracing::info!(group = %settings.group_id, "dispatching");
    let mut commit_tick = tokio::time::interval(settings.commit_interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = commit_tick.tick() => {
                commit(&consumer, partitions.take_commits(), CommitMode::Async);
                let (buffered, paused) = partitions.totals();
                metrics::gauge!("dispatcher_buffered_tasks").set(buffered as f64);
                metrics::gauge!("dispatcher_paused_partitions").set(paused as f64);
                let in_flight: usize = lane_sizes(settings)
                    .iter()
                    .map(|(lane, size)| size.saturating_sub(engine.lanes[lane].available_permits()))
                    .sum();
                metrics::gauge!("dispatcher_in_flight").set(in_flight as f64);
            }
            received = consumer.recv() => match received {
                Ok(m) => dispatch(&engine, &cache, &partitions, &consumer, &m, settings.max_buffered_per_partition),
                Err(e) => tracing::warn!(error = %e, "consume error"),
            },
        }
    }

    tracing::info!("stopping: finishing in-flight deliveries");
    let deadline = tokio::time::Instant::now() + settings.shutdown_deadline;
    while partitions.totals().0 > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    commit(&consumer, partitions.all_committable(), CommitMode::Sync);
    background.cancel();
    let _ = recorder_task.await;
    if let Ok(Err(e)) = admin.await {
        tracing::warn!(error = %e, "admin server stopped with an error");
    }
    Ok(())
}

/// Each lane's share of `in_flight`, by weight (at least 1).
fn lane_sizes(settings: &DispatcherSettings) -> [(Priority, usize); 3] {
    let w = settings.lane_weights;
    let total = (w.high + w.normal + w.low) as usize;
    let share = |weight: u32| (settings.in_flight * weight as usize / total).max(1);
    [
        (Priority::High, share(w.high)),
        (Priority::Normal, share(w.normal)),
        (Priority::Low, share(w.low)),
    ]
}

fn lane_semaphores(settings: &DispatcherSettings) -> HashMap<Priority, Arc<Semaphore>> {
    lane_sizes(settings)
        .into_iter()
        .map(|(lane, size)| (lane, Arc::new(Semaphore::new(size))))
        .collect()
}

fn dispatch(
    engine: &Arc<Engine>,
    cache: &EndpointCache,
    partitions: &Partitions,
    consumer: &DispatchConsumer,
    m: &BorrowedMessage<'_>,
    bound: usize,
) {
    let tp = (m.topic().to_owned(), m.partition());
    let Some(generation) = partitions.generation(&tp) else { return };
    if m.payload().and_then(|p| p.first()) == Some(&0) {
        // Confluent-framed Avro (ingest with a schema registry): this dispatcher reads JSON
        // only. Never commit past such a record, which would lose it: stop the partition and
        // say why, loudly, until a dispatcher that decodes Avro takes over.
        metrics::counter!("dispatcher_undecodable_total").increment(1);
        tracing::error!(topic = %tp.0, partition = tp.1, offset = m.offset(), "Avro-encoded event: this dispatcher reads JSON only; partition paused, nothing committed past it");
        pause(consumer, &tp);
        partitions.begin(&tp, m.offset(), 1, usize::MAX);
        return;
    }
    let envelope: EventEnvelope = match m.payload().map(serde_json::from_slice) {
        Some(Ok(e)) => e,
        other => {
            // Not an envelope this build reads: counted, logged, and committed past, so one bad
            // record cannot stall its partition.
            metrics::counter!("dispatcher_undecodable_total").increment(1);
            tracing::error!(topic = %tp.0, partition = tp.1, offset = m.offset(), error = ?other.and_then(|r| r.err()), "undecodable event skipped");
            partitions.begin(&tp, m.offset(), 0, bound);
            return;
        }
    };
    let age = (chrono::Utc::now() - envelope.received_at).num_milliseconds().max(0) as f64 / 1000.0;
    metrics::gauge!("webhook_processing_lag_seconds", "lane" => envelope.priority.as_str())
        .set(age);
    let endpoints = cache.matching(envelope.account_id, &envelope.event_type);
    let trace = m
        .headers()
        .and_then(|h| h.iter().find(|h| h.key == headers::TRACEPARENT).and_then(|h| h.value))
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(TraceParent::parse)
        .unwrap_or_else(TraceParent::new_root);
    if partitions.begin(&tp, m.offset(), endpoints.len(), bound) {
        pause(consumer, &tp);
    }
    let envelope = Arc::new(envelope);
    for endpoint in endpoints {
        engine.enqueue(Job {
            envelope: Arc::clone(&envelope),
            endpoint,
            tp: tp.clone(),
            offset: m.offset(),
            generation,
            trace,
        });
    }
}

/// Stops fetching one partition (the consumer keeps serving the others).
fn pause(consumer: &DispatchConsumer, tp: &state::Tp) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&tp.0, tp.1);
    if let Err(e) = consumer.pause(&tpl) {
        tracing::warn!(error = %e, topic = %tp.0, partition = tp.1, "cannot pause partition");
    }
}

fn commit(consumer: &DispatchConsumer, offsets: Vec<(String, i32, i64)>, mode: CommitMode) {
    if offsets.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, offset) in &offsets {
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
    }
    if let Err(e) = consumer.commit(&tpl, mode) {
        tracing::warn!(error = %e, "offset commit failed; will retry");
    }
}
