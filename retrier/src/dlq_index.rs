//! Indexes the DLQ topic into Postgres (`dead_letters`) so `hookstream dlq` and `/v1/dlq` can
//! list, filter and redrive without scanning Kafka. Offsets are committed only after the rows
//! are written; a record indexed twice is a no-op.

use std::collections::HashMap;
use std::time::Duration;

use hookstream_core::backoff::Backoff;
use hookstream_core::config::KafkaConfig;
use hookstream_core::dlq::{self, NewDeadLetter};
use hookstream_core::kafka::{self, KafkaClientError};
use rdkafka::consumer::{CommitMode, Consumer, DefaultConsumerContext, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use hookstream_core::wire::TaskRecord;

/// Records written per round trip, at most.
const BATCH: usize = 200;
/// Longest wait before a partial batch is written.
const FLUSH: Duration = Duration::from_millis(200);

/// Indexes `topic` until `shutdown`.
pub async fn run(
    kafka_config: &KafkaConfig,
    group_id: &str,
    topic: &str,
    pool: PgPool,
    size_interval: Duration,
    shutdown: CancellationToken,
) -> Result<(), KafkaClientError> {
    let consumer: StreamConsumer =
        kafka::consumer(kafka_config, "hookstream-retrier-dlq", group_id, DefaultConsumerContext)?;
    consumer.subscribe(&[topic]).map_err(KafkaClientError::Admin)?;
    let mut size_tick = tokio::time::interval(size_interval);
    let mut flush_tick = tokio::time::interval(FLUSH);
    let mut batch: Vec<NewDeadLetter> = Vec::new();
    let mut positions: HashMap<(String, i32), i64> = HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = flush_tick.tick() => flush(&consumer, &pool, &mut batch, &mut positions, &shutdown).await,
            _ = size_tick.tick() => match dlq::live_size(&pool).await {
                Ok(n) => metrics::gauge!("webhook_dlq_size").set(n as f64),
                Err(e) => tracing::warn!(error = %e, "cannot read the DLQ size"),
            },
            received = consumer.recv() => {
                let m = match received {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "DLQ consume error");
                        continue;
                    }
                };
                positions.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
                match TaskRecord::decode(&m) {
                    Ok(r) => batch.push(NewDeadLetter {
                        topic: m.topic().to_owned(),
                        partition: m.partition(),
                        offset: m.offset(),
                        dead_at: r.timestamp,
                        origin: Some(r.origin.to_string()),
                        traceparent: r.traceparent,
                        task: r.task,
                    }),
                    Err(e) => {
                        metrics::counter!("retrier_undecodable_total", "topic" => "dlq").increment(1);
                        tracing::error!(partition = m.partition(), offset = m.offset(), error = %e, "undecodable DLQ record not indexed");
                    }
                }
                if batch.len() >= BATCH {
                    flush(&consumer, &pool, &mut batch, &mut positions, &shutdown).await;
                }
            }
        }
    }
    flush(&consumer, &pool, &mut batch, &mut positions, &shutdown).await;
    Ok(())
}

/// Writes the batch, then commits the positions it came from.
async fn flush(
    consumer: &StreamConsumer,
    pool: &PgPool,
    batch: &mut Vec<NewDeadLetter>,
    positions: &mut HashMap<(String, i32), i64>,
    shutdown: &CancellationToken,
) {
    if positions.is_empty() || !write(pool, batch, shutdown).await {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in positions.drain() {
        let _ = tpl.add_partition_offset(&topic, partition, Offset::Offset(offset));
    }
    let mode = if shutdown.is_cancelled() { CommitMode::Sync } else { CommitMode::Async };
    if let Err(e) = consumer.commit(&tpl, mode) {
        tracing::warn!(error = %e, "DLQ index commit failed; it is retried with the next batch");
    }
}

/// Writes the batch, retrying while the database is down (loudly), so nothing is skipped.
/// A batch the database rejects is written row by row, and a row it rejects alone is
/// quarantined: counted (`dlq_index_quarantined_total`), logged with its position so it can be
/// read from the topic, and passed over, so one record cannot stop the index for every account.
/// False when shutdown came first.
async fn write(
    pool: &PgPool,
    batch: &mut Vec<NewDeadLetter>,
    shutdown: &CancellationToken,
) -> bool {
    if batch.is_empty() {
        return true;
    }
    match write_retrying(pool, batch, shutdown).await {
        Written::Yes => {}
        Written::Stopped => return false,
        Written::Rejected(e) => {
            tracing::warn!(error = %e, rows = batch.len(), "the database rejected a DLQ index batch; writing its rows one by one");
            for row in batch.iter() {
                match write_retrying(pool, std::slice::from_ref(row), shutdown).await {
                    Written::Yes => {}
                    Written::Stopped => return false,
                    Written::Rejected(e) => {
                        metrics::counter!("dlq_index_quarantined_total").increment(1);
                        tracing::error!(
                            account = %row.task.envelope.account_id, topic = %row.topic,
                            partition = row.partition, offset = row.offset, error = %e,
                            "DLQ record quarantined: the database rejects it; not indexed (still in the topic)"
                        );
                    }
                }
            }
        }
    }
    batch.clear();
    true
}

enum Written {
    Yes,
    Stopped,
    Rejected(hookstream_core::db::DbError),
}

async fn write_retrying(
    pool: &PgPool,
    rows: &[NewDeadLetter],
    shutdown: &CancellationToken,
) -> Written {
    let mut backoff = Backoff::default();
    loop {
        match dlq::index(pool, rows).await {
            Ok(new) => {
                metrics::counter!("webhook_dlq_entries_total").increment(new);
                return Written::Yes;
            }
            Err(e) if !e.is_transient() => return Written::Rejected(e),
            Err(e) if !shutdown.is_cancelled() => {
                tracing::error!(error = %e, rows = rows.len(), "indexing the DLQ failed; retrying");
                backoff.wait_or(shutdown).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "DLQ index not written at shutdown; it is read again at start");
                return Written::Stopped;
            }
        }
    }
}
