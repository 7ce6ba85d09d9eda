//! Producing accepted events to their lane, keyed by account, answering only once the broker
//! acknowledged the write (`acks=all`, idempotent producer).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hookstream_core::config::KafkaConfig;
use hookstream_core::envelope::EventEnvelope;
use hookstream_core::kafka::KafkaClientError;
use hookstream_core::producer::{HealingProducer, ProduceError};
use hookstream_core::topics::Topics;
use hookstream_core::trace::{self, Context, Tracer};
use hookstream_core::wire::{self, EnvelopeCodec, WireError};
use rdkafka::producer::FutureRecord;

const CLIENT_ID: &str = "hookstream-ingest";

/// Why an event could not be made durable.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The envelope could not be encoded (registry unreachable, or a defect).
    #[error(transparent)]
    Encode(#[from] WireError),
    /// The broker refused the write or did not acknowledge it in time.
    #[error(transparent)]
    Broker(#[from] ProduceError),
}

/// Where an acknowledged event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// The producer side of ingest.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    producer: HealingProducer,
    codec: EnvelopeCodec,
    kafka: KafkaConfig,
    topics: Topics,
    tracer: Tracer,
}

impl Publisher {
    /// A publisher writing to `topics`, with acknowledgements awaited up to
    /// `kafka.produce_timeout`; each produce is a `send` span of `tracer`.
    pub fn new(
        kafka: &KafkaConfig,
        topics: Topics,
        codec: EnvelopeCodec,
        tracer: Tracer,
    ) -> Result<Self, KafkaClientError> {
        let producer = HealingProducer::new(kafka, CLIENT_ID)?;
        let kafka = kafka.clone();
        Ok(Self { inner: Arc::new(Inner { producer, codec, kafka, topics, tracer }) })
    }

    /// Produces `envelope` to `events.<priority>` with key = account id, in a `send` span
    /// that is a child of `parent` and whose context the record's headers carry; returns once
    /// the broker acknowledged.
    pub async fn publish(
        &self,
        envelope: &EventEnvelope,
        parent: &Context,
    ) -> Result<Acked, PublishError> {
        let key = envelope.key();
        let topic = self.inner.topics.events(envelope.priority);
        let payload = self.inner.codec.encode(&topic, envelope).await?;
        let timeout = self.inner.kafka.produce_timeout;
        let cx = self.inner.tracer.send(parent, &topic);
        let record =
            FutureRecord::to(&topic).key(&key).payload(&payload).headers(wire::headers::event(&cx));
        let started = Instant::now();
        // The producer's own message timeout equals `kafka.produce_timeout`.
        let result = self.inner.producer.send(record, timeout).await;
        metrics::histogram!("ingest_produce_duration_seconds").record(started.elapsed());
        match result {
            Ok(delivery) => {
                trace::sent(&cx, delivery.partition, delivery.offset);
                trace::end(&cx, None);
                Ok(Acked { partition: delivery.partition, offset: delivery.offset })
            }
            Err(e) => {
                metrics::counter!("ingest_produce_errors_total").increment(1);
                tracing::warn!(reason = %e, "produce failed");
                trace::end(&cx, Some(("produce", &e.to_string())));
                Err(e.into())
            }
        }
    }

    /// Waits for queued messages to be acknowledged (at shutdown).
    pub async fn flush(&self, timeout: Duration) {
        self.inner.producer.flush(timeout).await;
    }
}
