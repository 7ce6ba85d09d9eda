//! Delivery work: one queue and one task per endpoint, so an endpoint keeps its order while a
//! slow or throttled endpoint waits in its own queue and never holds up the others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use hookstream_core::db::endpoints;
use hookstream_core::delivery::circuit::CircuitBreakers;
use hookstream_core::delivery::handoff::Handoff;
use hookstream_core::delivery::outcome::Outcome;
use hookstream_core::delivery::record::{self, AttemptRecord, Recorder};
use hookstream_core::delivery::send::{Attempt, Sender};
use hookstream_core::envelope::{DeliveryTask, EventEnvelope, Origin, Priority};
use hookstream_core::rate_limit::KeyedLimiters;
use hookstream_core::trace_context::TraceParent;
use hookstream_core::{AccountId, EndpointId};
use rdkafka::consumer::Consumer;
use rdkafka::TopicPartitionList;
use sqlx::PgPool;
use tokio::sync::{mpsc, Semaphore};

use crate::endpoints::CachedEndpoint;
use crate::state::{Partitions, Tp};
use crate::DispatchConsumer;

/// One delivery of one event to one endpoint, tied to the message it came from.
pub struct Job {
    /// The event.
    pub envelope: Arc<EventEnvelope>,
    /// The endpoint.
    pub endpoint: Arc<CachedEndpoint>,
    /// Source partition.
    pub tp: Tp,
    /// Source offset.
    pub offset: i64,
    /// Assignment generation the message was read under.
    pub generation: u64,
    /// Trace context from the event's headers.
    pub trace: TraceParent,
}

/// What every worker shares.
pub struct Engine {
    pub(crate) sender: Sender,
    pub(crate) handoff: Handoff,
    pub(crate) recorder: Recorder,
    pub(crate) pool: PgPool,
    pub(crate) breakers: CircuitBreakers,
    pub(crate) endpoint_limits: KeyedLimiters<EndpointId>,
    pub(crate) account_limits: KeyedLimiters<AccountId>,
    pub(crate) lanes: HashMap<Priority, Arc<Semaphore>>,
    pub(crate) partitions: Arc<Partitions>,
    pub(crate) consumer: Arc<DispatchConsumer>,
    pub(crate) buffer_bound: usize,
    pub(crate) workers: Mutex<HashMap<EndpointId, mpsc::UnboundedSender<Job>>>,
}

impl Engine {
    /// Queues a job on its endpoint's worker, starting the worker if needed.
    pub fn enqueue(self: &Arc<Self>, job: Job) {
        let id = job.endpoint.target.id;
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let job = match workers.get(&id) {
            Some(tx) => match tx.send(job) {
                Ok(()) => return,
                Err(mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let _ = tx.send(job);
        workers.insert(id, tx);
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                engine.process(job).await;
            }
        });
    }

    async fn process(&self, job: Job) {
        if self.partitions.generation(&job.tp) != Some(job.generation) {
            return; // revoked: the partition's next owner delivers it
        }
        let ep = &job.endpoint;
        if let Some(limit) = ep.rate_limit {
            let limiter = self.endpoint_limits.get(&ep.target.id, limit);
            if limiter.1.check().is_err() {
                metrics::counter!("dispatcher_rate_limit_waits_total", "scope" => "endpoint")
                    .increment(1);
                limiter.1.until_ready().await;
            }
        }
        let limiter = self.account_limits.get(&ep.target.account_id, ep.account_limit);
        if limiter.1.check().is_err() {
            metrics::counter!("dispatcher_rate_limit_waits_total", "scope" => "account")
                .increment(1);
            limiter.1.until_ready().await;
        }
        // The lane permit is taken after the rate-limit waits: a throttled endpoint must not
        // hold a share of the in-flight bound while it sleeps.
        let lane = Arc::clone(&self.lanes[&job.envelope.priority]);
        let Ok(_permit) = lane.acquire_owned().await else { return };
        if self.delivered_before(&job).await {
            metrics::counter!("dispatcher_skipped_delivered_total").increment(1);
            self.finish(&job);
            return;
        }
        let traceparent = job.trace.child().to_string();
        let attempt = if self.breakers.allow(ep.target.id) {
            let a = self.sender.send(&ep.target, &job.envelope, &traceparent).await;
            self.breakers.record(ep.target.id, !matches!(a.outcome, Outcome::Retryable { .. }));
            a
        } else {
            circuit_open()
        };
        self.observe(&job, &attempt);
        self.record(&job, &attempt).await;
        self.settle(&job, &attempt, &traceparent).await;
        self.finish(&job);
    }

    async fn delivered_before(&self, job: &Job) -> bool {
        let e = &job.envelope;
        record::already_delivered(&self.pool, e.account_id, &e.event_id, job.endpoint.target.id)
            .await
            .unwrap_or_else(|err| {
                tracing::warn!(error = %err, "delivery log lookup failed; delivering anyway");
                false
            })
    }

    /// Hands a failed delivery on; retries the hand-off until the broker takes it, since the
    /// source offset must not be committed before.
    async fn settle(&self, job: &Job, attempt: &Attempt, traceparent: &str) {
        let disable = match attempt.outcome {
            Outcome::Delivered => return,
            Outcome::Permanent { disable_endpoint } => disable_endpoint,
            Outcome::Retryable { .. } => false,
        };
        let task = DeliveryTask {
            envelope: (*job.envelope).clone(),
            endpoint_id: job.endpoint.target.id,
            attempt: 1,
            first_attempt_at: Utc::now(),
            last_status: attempt.status,
            last_error: attempt
                .error
                .clone()
                .or_else(|| attempt.status.map(|s| format!("http {s}"))),
        };
        let origin = Origin { topic: job.tp.0.clone(), partition: job.tp.1, offset: job.offset };
        let mut backoff = Duration::from_millis(100);
        loop {
            let result = match &attempt.outcome {
                Outcome::Retryable { retry_after } => {
                    let tier = self.handoff.tier_for(0, *retry_after);
                    self.handoff.to_retry(&task, tier, &origin, traceparent).await
                }
                _ => self.handoff.to_dlq(&task, &origin, traceparent).await,
            };
            match result {
                Ok(()) => break,
                Err(e) if self.partitions.generation(&job.tp) == Some(job.generation) => {
                    tracing::error!(error = %e, "hand-off failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(_) => return, // revoked meanwhile: the next owner redoes it
            }
        }
        if disable {
            let ep = &job.endpoint.target;
            match endpoints::disable(&self.pool, ep.account_id, ep.id, "410 Gone from the endpoint")
                .await
            {
                Ok(_) => tracing::warn!(endpoint = %ep.id, "endpoint answered 410; disabled"),
                Err(e) => tracing::error!(endpoint = %ep.id, error = %e, "cannot disable endpoint"),
            }
        }
    }

    async fn record(&self, job: &Job, attempt: &Attempt) {
        let e = &job.envelope;
        self.recorder
            .record(AttemptRecord {
                account_id: e.account_id,
                event_id: e.event_id.clone(),
                endpoint_id: job.endpoint.target.id,
                event_type: e.event_type.clone(),
                received_at: e.received_at,
                attempt: 1,
                outcome: attempt.outcome.clone(),
                http_status: attempt.status,
                latency: attempt.latency,
                response_body: attempt.response_body.clone(),
                error: attempt.error.clone(),
                attempted_at: Utc::now(),
            })
            .await;
    }

    fn observe(&self, job: &Job, attempt: &Attempt) {
        let outcome = attempt.outcome.label();
        metrics::counter!("webhook_deliveries_total", "outcome" => outcome).increment(1);
        metrics::histogram!("webhook_request_duration_seconds").record(attempt.latency);
        if attempt.outcome == Outcome::Delivered {
            metrics::counter!("webhook_request_success_total").increment(1);
            let since = Utc::now() - job.envelope.received_at;
            let seconds = since.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
            metrics::histogram!("webhook_event_processing_seconds").record(seconds.max(0.0));
        } else {
            metrics::counter!("webhook_request_failure_total").increment(1);
        }
    }

    fn finish(&self, job: &Job) {
        if self.partitions.finish(&job.tp, job.generation, job.offset, self.buffer_bound) {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&job.tp.0, job.tp.1);
            match self.consumer.resume(&tpl) {
                Ok(()) => {
                    tracing::debug!(topic = %job.tp.0, partition = job.tp.1, "partition resumed")
                }
                Err(e) => tracing::warn!(error = %e, "cannot resume partition"),
            }
        }
    }
}

fn circuit_open() -> Attempt {
    Attempt {
        outcome: Outcome::Retryable { retry_after: None },
        status: None,
        latency: Duration::ZERO,
        response_body: None,
        error: Some("circuit open: endpoint failing, not attempted".into()),
    }
}
