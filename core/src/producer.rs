//! The idempotent producer every service writes with, replacing itself after repeated
//! failures.
//!
//! An idempotent librdkafka producer can stay wedged after its broker restarted or lost state:
//! it reconnects and reads metadata but never produces again (a fatal idempotence error, or
//! a producer id the broker no longer knows), so every send times out. A fresh producer gets a
//! new producer id and works at once.
//! Failures are counted across all users of one `HealingProducer`; after
//! [`FAILURES_BEFORE_RESET`] in a row it is replaced, at most once per produce timeout.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use rdkafka::producer::FutureProducer;

use crate::config::KafkaConfig;
use crate::kafka::{self, KafkaClientError};

/// Consecutive failed sends after which the producer is replaced.
pub const FAILURES_BEFORE_RESET: u32 = 3;

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

    /// Records an acknowledged send.
    pub fn succeeded(&self) {
        self.inner.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// Records a failed send; after several in a row, replaces the producer.
    pub fn failed(&self) {
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
