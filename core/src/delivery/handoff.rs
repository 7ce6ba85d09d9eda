//! Handing a failed delivery on: to a retry tier (with its due time) or to the DLQ. A hand-off
//! returns only once the broker acknowledged, so the source offset may then be committed.

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use rdkafka::producer::{FutureRecord, Producer};

use super::park::Slot;
use crate::envelope::{DeliveryTask, Origin};
use crate::producer::{HealingProducer, ProduceError};
use crate::topics::Topics;
use crate::trace::{self, Context, Tracer};

/// Why a hand-off failed (the task stays unfinished and its offset uncommitted).
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// Encoding failed (a defect).
    #[error("cannot encode the task: {0}")]
    Encode(#[from] crate::wire::WireError),
    /// The broker did not acknowledge.
    #[error("hand-off to {topic} failed: {source}")]
    Broker {
        /// Target topic.
        topic: String,
        /// Why.
        #[source]
        source: ProduceError,
    },
}

/// Produces tasks to the retry tiers and the DLQ.
#[derive(Clone)]
pub struct Handoff {
    producer: HealingProducer,
    topics: Topics,
    timeout: Duration,
    tracer: Tracer,
}

impl Handoff {
    /// A hand-off over `producer` (shared with other writers, so a wedged one is replaced
    /// for all of them); each produce is a `send` span of `tracer`.
    pub fn new(
        producer: HealingProducer,
        topics: Topics,
        timeout: Duration,
        tracer: Tracer,
    ) -> Self {
        Self { producer, topics, timeout, tracer }
    }

    /// The tracer its spans are made with.
    pub fn tracer(&self) -> &Tracer {
        &self.tracer
    }

    /// The tier for a retry wanted no earlier than `at_least` from now: the first whose delay
    /// is at least that long, from tier `from` on (the last tier when none is).
    pub fn tier_for(&self, from: usize, at_least: Option<Duration>) -> usize {
        let delays = self.topics.retry_delays();
        let last = delays.len().saturating_sub(1);
        let from = from.min(last);
        match at_least {
            None => from,
            Some(min) => (from..delays.len()).find(|&i| delays[i] >= min).unwrap_or(last),
        }
    }

    /// Loads the metadata of every retry tier and the DLQ into the producer, so the first
    /// hand-off does not wait for a topic lookup (hundreds of ms) and arrive late for its due
    /// time. Failure is only logged: a hand-off looks the topic up itself.
    pub async fn warm_up(&self) {
        let producer = self.producer.current();
        let mut names = self.topics.delayed();
        names.push(self.topics.dlq());
        let timeout = self.timeout;
        let result = tokio::task::spawn_blocking(move || {
            names
                .iter()
                .try_for_each(|t| producer.client().fetch_metadata(Some(t), timeout).map(|_| ()))
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot load retry topic metadata"),
            Err(e) => tracing::warn!(error = %e, "metadata task failed"),
        }
    }

    /// A tier's delay as it appears in its topic name and in metrics (`1s`, `200ms`), and
    /// `park` for [`Self::park_tier`].
    pub fn tier_label(&self, tier: usize) -> String {
        if tier == self.park_tier() {
            return "park".to_owned();
        }
        self.topics
            .retry_delays()
            .get(tier)
            .map_or_else(|| "none".to_owned(), |d| crate::topics::delay_label(*d))
    }

    /// The index the park topic has among the topics the retrier reads
    /// ([`Topics::delayed`]): one past the last tier.
    pub fn park_tier(&self) -> usize {
        self.tiers()
    }

    /// The topics this hand-off writes to.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// The delay of tier `tier` (the last tier's beyond it).
    pub fn delay(&self, tier: usize) -> Duration {
        let delays = self.topics.retry_delays();
        delays.get(tier).or(delays.last()).copied().unwrap_or_default()
    }

    /// Number of retry tiers.
    pub fn tiers(&self) -> usize {
        self.topics.retry_delays().len()
    }

    /// Sends `task` to retry tier `tier`, due after that tier's delay, in a `send` span that
    /// is a child of `parent`.
    pub async fn to_retry(
        &self,
        task: &DeliveryTask,
        tier: usize,
        origin: &Origin,
        parent: &Context,
    ) -> Result<(), HandoffError> {
        let delay = self.delay(tier);
        let due = Utc::now().timestamp_millis() + delay.as_millis() as i64;
        self.queue(self.topics.retry(delay), task, due, None, origin, parent)?.await
    }

    /// Sends a replayed `task` to the first tier, due at once.
    pub async fn replay(
        &self,
        task: &DeliveryTask,
        origin: &Origin,
        parent: &Context,
    ) -> Result<(), HandoffError> {
        let first = self.topics.retry(self.topics.retry_delays()[0]);
        self.queue(first, task, Utc::now().timestamp_millis(), None, origin, parent)?.await
    }

    /// Sends `task` to the DLQ.
    pub async fn to_dlq(
        &self,
        task: &DeliveryTask,
        origin: &Origin,
        parent: &Context,
    ) -> Result<(), HandoffError> {
        self.queue(self.topics.dlq(), task, Utc::now().timestamp_millis(), None, origin, parent)?
            .await
    }

    /// Queues `task` on the park topic at `slot`, in a `send` span that is a child of
    /// `parent`. The record is queued before this returns, so tasks parked one after another
    /// keep their order on the topic; the returned future waits for the broker's
    /// acknowledgement.
    pub fn park(
        &self,
        task: &DeliveryTask,
        slot: Slot,
        origin: &Origin,
        parent: &Context,
    ) -> Result<impl Future<Output = Result<(), HandoffError>> + Send + 'static, HandoffError> {
        let (due, ready) = (slot.due.timestamp_millis(), slot.ready.timestamp_millis());
        self.queue(self.topics.park(), task, due, Some(ready), origin, parent)
    }

    /// [`Self::park`], waiting for the acknowledgement (a park produced again after a
    /// failure).
    pub async fn to_park(
        &self,
        task: &DeliveryTask,
        slot: Slot,
        origin: &Origin,
        parent: &Context,
    ) -> Result<(), HandoffError> {
        self.park(task, slot, origin, parent)?.await
    }

    /// Queues `task` on `topic` now; the future resolves with the broker's answer.
    fn queue(
        &self,
        topic: String,
        task: &DeliveryTask,
        due_ms: i64,
        ready_ms: Option<i64>,
        origin: &Origin,
        parent: &Context,
    ) -> Result<impl Future<Output = Result<(), HandoffError>> + Send + 'static, HandoffError> {
        let cx = self.tracer.send(parent, &topic);
        let failed = |cx: &Context, topic: String, source: ProduceError| {
            trace::end(cx, Some(("produce", &source.to_string())));
            HandoffError::Broker { topic, source }
        };
        let (payload, headers) = crate::wire::task::encode(task, due_ms, ready_ms, origin, &cx)?;
        let key = task.envelope.key();
        let record = FutureRecord::to(&topic).key(&key).payload(&payload).headers(headers);
        let ack = match self.producer.enqueue(record, self.timeout) {
            Ok(ack) => ack,
            Err(source) => return Err(failed(&cx, topic, source)),
        };
        Ok(async move {
            match ack.await {
                Ok(stored) => {
                    trace::sent(&cx, stored.partition, stored.offset);
                    trace::end(&cx, None);
                    Ok(())
                }
                Err(source) => Err(failed(&cx, topic, source)),
            }
        })
    }
}
