//! The retrier: consumes every retry tier in one consumer group, waits until each task is due
//! (pausing only that partition), attempts it again with the dispatcher's delivery engine, and
//! passes failures to the next tier or the DLQ (DESIGN.md, "The flow"). It also indexes the
//! DLQ into Postgres for `hookstream dlq`.
//!
//! Offsets are committed manually, only up to the lowest task not yet finished (delivered, or
//! acknowledged by the broker on its next tier), so a crash loses nothing and a task read
//! again keeps its `hs-due-at`.

mod config;
pub mod dlq_index;
pub mod gate;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
pub use config::{RetrierConfig, RetrierSettings};
use hookstream_core::admin::ReadinessCheck;
use hookstream_core::delivery::engine::{Lanes, Source};
use hookstream_core::delivery::runtime::{DeliveryRuntime, RuntimeParts};
use hookstream_core::partitions::{self, Partitions, TrackedConsumer};
use hookstream_core::service::{self, AdminServer, ServiceError};
use hookstream_core::trace::Tracing;
use hookstream_core::wire::TaskRecord;
use rdkafka::consumer::CommitMode;
use rdkafka::message::BorrowedMessage;
use rdkafka::Message;
use tokio_util::sync::CancellationToken;

use crate::gate::{Gates, Waiting};

/// Runs the retrier until `shutdown`: stops fetching, lets in-flight retries finish within
/// `retrier.shutdown_deadline`, commits, and leaves the group. Tasks still waiting for their
/// due time are read again by the next owner.
pub async fn run(config: RetrierConfig, shutdown: CancellationToken) -> Result<(), ServiceError> {
    let backends = service::connect(&config.kafka, &config.database).await?;
    let traces = Tracing::start(&config.telemetry, "hookstream-retrier")?;
    let settings = &config.retrier;
    let topics = config.topics.topics();
    // The tiers, then the park topic: its index is one past the last tier's (`park_tier`).
    let names = topics.delayed();
    let tiers: HashMap<String, usize> =
        names.iter().cloned().enumerate().map(|(i, t)| (t, i)).collect();
    let (consumer, partitions) =
        partitions::subscribe(&config.kafka, "hookstream-retrier", &settings.group_id, &names)?;

    // One in-flight bound for every priority: retries are already late, and few.
    let runtime = DeliveryRuntime::start(RuntimeParts {
        client: "hookstream-retrier",
        kafka: &config.kafka,
        topics: &config.topics,
        delivery: &config.delivery,
        pool: &backends.database,
        lanes: Lanes::shared(settings.in_flight),
        partitions: Arc::clone(&partitions),
        buffer_bound: settings.max_buffered_per_partition,
        endpoint_refresh: settings.endpoint_refresh,
        tracer: traces.tracer(),
    })
    .await?;
    let (engine, handoff, background) = (&runtime.engine, &runtime.handoff, runtime.background());
    let gates = Gates::new(
        Arc::clone(engine),
        runtime.cache.clone(),
        Arc::clone(&partitions),
        Arc::clone(&consumer),
        settings.lookahead,
        traces.tracer(),
        settings.group_id.clone(),
    );

    let checks: Vec<Arc<dyn ReadinessCheck>> = vec![Arc::clone(&partitions) as _];
    let admin = AdminServer::spawn(&config.admin, &backends, checks, background.clone());
    let indexer = tokio::spawn({
        let (kafka_config, group, topic) =
            (config.kafka.clone(), settings.dlq_group_id.clone(), topics.dlq());
        let (pool, every, stop) =
            (backends.database.clone(), settings.dlq_size_interval, background.clone());
        async move { dlq_index::run(&kafka_config, &group, &topic, pool, every, stop).await }
    });
    tracing::info!(group = %settings.group_id, tiers = tiers.len(), "retrying");
    let mut commit_tick = tokio::time::interval(settings.commit_interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = partitions.changed() => partitions::apply_deferred(&consumer, &partitions),
            _ = commit_tick.tick() => {
                partitions::commit(&consumer, partitions.take_commits(), CommitMode::Async);
                for (topic, paused) in partitions.paused_by_topic() {
                    let tier = tiers.get(&topic).map_or_else(|| topic.clone(), |&t| handoff.tier_label(t));
                    metrics::gauge!("retrier_paused_partitions", "tier" => tier).set(paused as f64);
                }
                metrics::gauge!("retrier_buffered_tasks").set(partitions.totals().0 as f64);
                metrics::gauge!("retrier_in_flight").set(engine.in_flight() as f64);
                engine.observe_load();
            }
            received = consumer.recv() => match received {
                Ok(m) => receive(&gates, &partitions, &consumer, &tiers, &m, settings),
                Err(e) => tracing::warn!(error = %e, "consume error"),
            },
        }
    }

    tracing::info!("stopping: finishing in-flight retries");
    let deadline = tokio::time::Instant::now() + service::drain_budget(settings.shutdown_deadline);
    if !partitions.settle(deadline, || engine.in_flight() == 0).await {
        tracing::warn!(
            in_flight = engine.in_flight(),
            "shutdown: retries still in flight at the drain deadline; they are read again"
        );
    }
    runtime
        .stop(|| partitions::commit(&consumer, partitions.all_committable(), CommitMode::Sync))
        .await;
    match indexer.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "DLQ indexer stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "DLQ indexer panicked"),
        Ok(Ok(())) => {}
    }
    admin.finish().await;
    traces.shutdown();
    Ok(())
}

fn receive(
    gates: &Arc<Gates>,
    partitions: &Partitions,
    consumer: &TrackedConsumer,
    tiers: &HashMap<String, usize>,
    m: &BorrowedMessage<'_>,
    settings: &RetrierSettings,
) {
    let bound = settings.max_buffered_per_partition;
    let tp = (m.topic().to_owned(), m.partition());
    let Some(generation) = partitions.generation(&tp) else { return };
    let Some(&tier) = tiers.get(&tp.0) else { return };
    let record = match TaskRecord::decode(m) {
        Ok(r) => r,
        Err(e) => {
            // Not a task this build reads: counted, logged, and committed past, so one bad
            // record cannot stall its tier.
            metrics::counter!("retrier_undecodable_total", "topic" => "retry").increment(1);
            tracing::error!(topic = %tp.0, partition = tp.1, offset = m.offset(), error = %e, "undecodable retry task skipped");
            partitions.begin(&tp, m.offset(), 0, bound);
            return;
        }
    };
    partitions::apply(consumer, &tp, partitions.begin(&tp, m.offset(), 1, bound));
    let behind = (Utc::now() - record.due).num_milliseconds().max(0) as f64 / 1000.0;
    let tier_label = m.topic().rsplit('.').next().unwrap_or_default().to_owned();
    metrics::gauge!("webhook_processing_lag_seconds", "tier" => tier_label).set(behind);
    let lookahead = chrono::Duration::from_std(settings.lookahead).unwrap_or_default();
    // A parked task may go from its `ready` time on, its endpoint permitting: the partition is
    // held only until then. Read on meanwhile, tasks wait at the gate, up to the buffer bound.
    let held = record.ready.unwrap_or(record.due) > Utc::now() + lookahead;
    if held {
        partitions::apply(consumer, &tp, partitions.hold(&tp, generation));
    }
    gates.send(Waiting {
        record,
        source: Source { tp, offset: m.offset(), generation },
        tier,
        held,
    });
}
