//! The idempotent producer every service writes with, replacing itself after repeated
//! failures.
//!
//! An idempotent librdkafka producer can stay wedged after its broker restarted or lost state:
//! it reconnects and reads metadata but never produces again (a fatal idempotence error, or
//! a producer id the broker no longer knows), so every send times out. A fresh producer gets a
//! new producer id and works at once.
//! Failures are counted across all users of one `HealingProducer`; after
//! [`FAILURES_BEFORE_RESET`] in a row it is replaced, at most once per produce timeout.
//!
//! A send succeeds only with an offset. librdkafka reports a record "delivered" without one
//! when a later batch of the same partition succeeded while the record's own batch had failed
//! (it assumes the broker keeps a producer's batches in order). A broker that does not know
//! the producer yet (a partition just created or just moved, a new producer id) accepts the
//! later batch as the producer's first, so the earlier record was never written (on Kafka 4.1
//! right after `topics create`: 1–4 of the 300 events of the first 3 s, in 2 of 4 fresh
//! starts). Such a send is an error here; the caller retries it (a duplicate at worst, never a
//! loss).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::message::ToBytes;
use rdkafka::producer::future_producer::Delivery;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use crate::config::KafkaConfig;
use crate::kafka::{self, KafkaClientError};

/// Consecutive failed sends after which the producer is replaced.
pub const FAILURES_BEFORE_RESET: u32 = 3;

/// Why a record is not known to be on the broker.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// The broker refused the record, or librdkafka gave up on it.
    #[error("broker did not acknowledge: {0}")]
    Broker(#[source] KafkaError),
    /// No answer within the produce timeout.
    #[error("no acknowledgement within {0:?}")]
    TimedOut(Duration),
    /// "Delivered" without an offset: implied by a later batch, not acknowledged itself.
    #[error(
        "acknowledged without an offset (implied by a later batch), so not known to be stored"
    )]
    Unconfirmed,
}

/// A shared producer that replaces itself when it stops working. Clones share one producer.
#[derive(Clone)]
pub struct HealingProducer {
    inner: Arc<Inner>,
}

struct Inner {
    producer: RwLock<FutureProducer>,
    kafka: KafkaConfig,
    client_id: String,
    consecutive_failures: AtomicU32,
    last_reset: Mutex<Instant>,
}

impl HealingProducer {
    /// Builds the producer for `client_id` (it connects lazily).
    pub fn new(kafka: &KafkaConfig, client_id: &str) -> Result<Self, KafkaClientError> {
        let producer = kafka::producer(kafka, client_id)?;
        Ok(Self {
            inner: Arc::new(Inner {
                producer: RwLock::new(producer),
                kafka: kafka.clone(),
                client_id: client_id.to_owned(),
                consecutive_failures: AtomicU32::new(0),
                last_reset: Mutex::new(Instant::now()),
            }),
        })
    }

    /// The producer to send with now (a cheap handle; keep it for one send).
    pub fn current(&self) -> FutureProducer {
        self.inner.producer.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits up to `timeout` for queued records to be acknowledged (at shutdown).
    pub async fn flush(&self, timeout: Duration) {
        let producer = self.current();
        let flushed = tokio::task::spawn_blocking(move || producer.flush(Timeout::After(timeout)));
        match flushed.await {
            Ok(Ok(())) => tracing::info!(client = %self.inner.client_id, "producer flushed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "producer flush incomplete"),
            Err(e) => tracing::warn!(error = %e, "producer flush task failed"),
        }
    }

    /// Produces `record` and waits for the broker's acknowledgement with an offset, up to
    /// `timeout` (librdkafka's own message timeout should be the same; this one guards against
    /// a send that never resolves).
    pub async fn send<K, P>(
        &self,
        record: FutureRecord<'_, K, P>,
        timeout: Duration,
    ) -> Result<Delivery, ProduceError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let producer = self.current();
        let send = producer.send(record, Timeout::After(timeout));
        let answer = match tokio::time::timeout(timeout + Duration::from_millis(500), send).await {
            Ok(result) => Some(result.map_err(|(e, _)| e)),
            Err(_) => None,
        };
        self.judge(answer, timeout)
    }

    /// Queues `record` in the producer now and returns the wait for its acknowledgement,
    /// judged as [`Self::send`] judges it. Records queued one after another reach their
    /// partition in that order (the producer is idempotent), whenever their acknowledgements
    /// are awaited. A full local queue is an error at once.
    pub fn enqueue<K, P>(
        &self,
        record: FutureRecord<'_, K, P>,
        timeout: Duration,
    ) -> Result<
        impl std::future::Future<Output = Result<Delivery, ProduceError>> + Send + 'static,
        ProduceError,
    >
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let ack = self.current().send_result(record).map_err(|(e, _)| ProduceError::Broker(e))?;
        let this = self.clone();
        Ok(async move {
            let answer = match tokio::time::timeout(timeout + Duration::from_millis(500), ack).await
            {
                Ok(Ok(result)) => Some(result.map_err(|(e, _)| e)),
                // The producer was dropped (replaced) before it answered: not known to be stored.
                Ok(Err(_)) | Err(_) => None,
            };
            this.judge(answer, timeout)
        })
    }

    /// What a send's answer means (`None`: no answer in time).
    fn judge(
        &self,
        answer: Option<Result<Delivery, KafkaError>>,
        timeout: Duration,
    ) -> Result<Delivery, ProduceError> {
        match answer {
            Some(Ok(delivery)) if delivery.offset >= 0 => {
                self.succeeded();
                Ok(delivery)
            }
            // Not the producer's fault: counting it could replace the producer, and a new
            // producer id is what makes the next partition move lose records this way.
            Some(Ok(_)) => {
                metrics::counter!("kafka_produce_unconfirmed_total", "client" => self.inner.client_id.clone())
                    .increment(1);
                Err(ProduceError::Unconfirmed)
            }
            Some(Err(e)) => {
                self.failed();
                Err(ProduceError::Broker(e))
            }
            None => {
                self.failed();
                Err(ProduceError::TimedOut(timeout))
            }
        }
    }

    /// Records an acknowledged send.
    fn succeeded(&self) {
        self.inner.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// Records a failed send; after several in a row, replaces the producer.
    fn failed(&self) {
        let failures = self.inner.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= FAILURES_BEFORE_RESET {
            self.reset();
        }
    }

    fn reset(&self) {
        let mut last = self.inner.last_reset.lock().unwrap_or_else(|p| p.into_inner());
        // At most one replacement per produce timeout, however many sends fail at once: the
        // sends still queued on the old producer fail within that time.
        if last.elapsed() < self.inner.kafka.produce_timeout {
            return;
        }
        match kafka::producer(&self.inner.kafka, &self.inner.client_id) {
            Ok(fresh) => {
                *self.inner.producer.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                self.inner.consecutive_failures.store(0, Ordering::Relaxed);
                *last = Instant::now();
                metrics::counter!("kafka_producer_resets_total", "client" => self.inner.client_id.clone())
                    .increment(1);
                tracing::warn!(client = %self.inner.client_id, "replaced the producer after repeated failures");
            }
            Err(e) => tracing::error!(error = %e, "cannot build a new producer"),
        }
    }
}
