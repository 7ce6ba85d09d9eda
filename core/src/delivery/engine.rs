//! The delivery engine the dispatcher and the retrier share: one queue and one task per
//! endpoint, so an endpoint keeps its order while a slow or throttled endpoint waits in its own
//! queue and never holds up the others. Each job is rate-limited, checked against the delivery
//! log, sent (unless the endpoint's circuit is open), recorded, and on failure handed to the
//! next retry tier or the DLQ before its offset counts as finished.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::KeyValue;
use sqlx::PgPool;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::circuit::CircuitBreakers;
use super::endpoints::CachedEndpoint;
use super::handoff::{Handoff, HandoffError};
use super::outcome::{FailureReason, Outcome};
use super::park::{Parking, Place, Slot};
use super::recent::{self, RecentDeliveries};
use super::record::{self, AttemptRecord, DeliveryState, Recorder};
use super::redelivery::Redeliveries;
use super::send::{Attempt, Sender};
use super::shares::{InFlight, Permit};
use super::{DeliveryConfig, TierWeights};
use crate::backoff::Backoff;
use crate::db::endpoints;
use crate::envelope::{DeliveryTask, EventEnvelope, Origin, Priority};
use crate::partitions::{Partitions, Tp};
use crate::rate_limit::KeyedLimiters;
use crate::trace::{self, Context, Tracer};
use crate::{AccountId, EndpointId};

/// Where a job's message sits, so its offset can be finished.
#[derive(Debug, Clone)]
pub struct Source {
    /// Partition.
    pub tp: Tp,
    /// Offset.
    pub offset: i64,
    /// Assignment generation the message was read under.
    pub generation: u64,
}

/// A task on its way through the retry tiers.
#[derive(Debug, Clone)]
pub struct Retry {
    /// The tier it was read from (0 = the first delay).
    pub tier: usize,
    /// Attempts made before this one.
    pub attempts: u32,
    /// When the first attempt was made.
    pub first_attempt_at: DateTime<Utc>,
    /// When it was due (`hs-due-at`).
    pub due: DateTime<Utc>,
    /// The source event's position (`hs-origin`).
    pub origin: Origin,
    /// A replay: delivered even if delivered before.
    pub replay: bool,
    /// Of `attempts`, those that did not count against the schedule (`DeliveryTask::uncounted`).
    pub uncounted: u32,
    /// No request before this time (`DeliveryTask::not_before`).
    pub not_before: Option<DateTime<Utc>>,
}

/// One delivery of one event to one endpoint, tied to the message it came from.
pub struct Job {
    /// The event.
    pub envelope: Arc<EventEnvelope>,
    /// The endpoint.
    pub endpoint: Arc<CachedEndpoint>,
    /// The message the job came from.
    pub source: Source,
    /// The trace context of the `process` span of the message: each attempt is its child.
    pub trace: Context,
    /// `None` for the dispatcher's first attempt.
    pub retry: Option<Retry>,
}

impl Job {
    /// The event's place in its lane (the source of a first attempt, the `hs-origin` of a
    /// task): what the log's progress marks count (see `Engine::may_be_redelivery`).
    fn lane_position(&self) -> (Tp, i64) {
        match &self.retry {
            None => (self.source.tp.clone(), self.source.offset),
            Some(r) => ((r.origin.topic.clone(), r.origin.partition), r.origin.offset),
        }
    }

    fn replay(&self) -> bool {
        self.retry.as_ref().is_some_and(|r| r.replay)
    }

    /// This attempt's number (requests made, and tasks delayed without one, included).
    fn attempt(&self) -> u32 {
        self.retry.as_ref().map_or(1, |r| r.attempts + 1)
    }

    /// Failures before this attempt that counted against the schedule.
    fn counted(&self) -> u32 {
        self.retry.as_ref().map_or(0, |r| r.attempts.saturating_sub(r.uncounted))
    }

    fn uncounted(&self) -> u32 {
        self.retry.as_ref().map_or(0, |r| r.uncounted)
    }

    /// How long since its first attempt.
    fn age(&self) -> Duration {
        self.retry
            .as_ref()
            .and_then(|r| (Utc::now() - r.first_attempt_at).to_std().ok())
            .unwrap_or_default()
    }

    fn origin(&self) -> Origin {
        match &self.retry {
            Some(r) => r.origin.clone(),
            None => Origin {
                topic: self.source.tp.0.clone(),
                partition: self.source.tp.1,
                offset: self.source.offset,
            },
        }
    }
}

/// Where a task goes that is not delivered now.
enum Destination {
    Retry(usize),
    Dlq,
    /// The park topic, at the endpoint's slot.
    Park(Slot),
}

/// An endpoint's worker: its queue, and how fast it drains.
struct Worker {
    tx: mpsc::UnboundedSender<Job>,
    load: Arc<Load>,
}

#[derive(Default)]
struct Load {
    /// Jobs queued or in hand.
    queued: AtomicUsize,
    /// Smoothed time the endpoint's receiver takes to answer, in microseconds; 0 before the
    /// first request. Only the request: waits that are not the endpoint's (a permit, the
    /// delivery log while Postgres is away) must not make it look slow, or its parked work
    /// would be spread over slots far apart.
    service_us: AtomicU64,
    /// Nothing is sent before this (Unix ms; 0: no hold): the endpoint has just left parking
    /// and its last parked tasks may still be on their way back ([`Place::MemoryAfter`]).
    hold_until_ms: AtomicI64,
}

impl Load {
    /// Holds the endpoint's queue until `until` (a later hold wins).
    fn hold(&self, until: DateTime<Utc>) {
        self.hold_until_ms.fetch_max(until.timestamp_millis(), Ordering::Relaxed);
    }

    /// Waits out the hold, if any.
    async fn held(&self) {
        let until = self.hold_until_ms.load(Ordering::Relaxed);
        let wait = until - Utc::now().timestamp_millis();
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
    }

    /// Jobs a second the endpoint drains: its rate `limit`, or fewer when its receiver takes
    /// longer to answer (its worker sends one request at a time).
    fn drain(&self, limit: f64) -> f64 {
        match self.service_us.load(Ordering::Relaxed) {
            0 => limit,
            us => limit.min(1e6 / us as f64),
        }
    }

    fn served(&self, took: Duration) {
        let took = took.as_micros().clamp(1, u128::from(u32::MAX)) as u64;
        let old = self.service_us.load(Ordering::Relaxed);
        self.service_us.store(smoothed(old, took), Ordering::Relaxed);
    }
}

/// The service time estimate after an answer that took `took_us`, from `old_us` (0: none yet).
/// One answer at most doubles it: a receiver that stalls once (a pause of its own, or of this
/// host) must not look slow, or the endpoint's next tasks would be parked in slots seconds
/// apart, far ahead, and its steady stream parked behind them for minutes. A receiver that
/// stays slow still brings the estimate to its pace within a dozen answers.
fn smoothed(old_us: u64, took_us: u64) -> u64 {
    if old_us == 0 {
        return took_us;
    }
    (old_us * 4 + took_us.min(old_us.saturating_mul(6))) / 5
}

/// The in-flight bound: one pool of permits shared fairly ([`super::shares`]) by lane and by
/// account within a lane, each weighted; a lane or an account alone may use what nobody else
/// wants.
pub struct Lanes {
    pool: Arc<InFlight<(Priority, AccountId)>>,
    weights: HashMap<Priority, u32>,
}

impl Lanes {
    /// `in_flight` permits, shared by the lanes by `weights` (a lane not named weighs 1).
    pub fn weighted(in_flight: usize, weights: &[(Priority, u32)]) -> Self {
        Self { pool: InFlight::new(in_flight), weights: weights.iter().copied().collect() }
    }

    /// `in_flight` permits, every lane weighing the same (the retrier).
    pub fn shared(in_flight: usize) -> Self {
        Self::weighted(in_flight, &[])
    }

    /// A permit for one request of `account` (of weight `account_weight`) in `priority`'s lane.
    async fn acquire(
        &self,
        priority: Priority,
        account: AccountId,
        account_weight: u32,
    ) -> Permit<(Priority, AccountId)> {
        let lane = self.weights.get(&priority).copied().unwrap_or(1);
        self.pool.acquire((priority, account), lane.saturating_mul(account_weight)).await
    }

    fn in_flight(&self) -> usize {
        self.pool.in_use()
    }
}

/// What every endpoint worker shares.
pub struct Engine {
    sender: Sender,
    tracer: Tracer,
    handoff: Handoff,
    recorder: Recorder,
    pool: PgPool,
    /// Which records may have been attempted before (only those are looked up in the log).
    redeliveries: Redeliveries,
    /// What this process delivered lately: a second copy of an event is skipped at once.
    recent: Mutex<RecentDeliveries>,
    breakers: CircuitBreakers,
    endpoint_limits: KeyedLimiters<EndpointId>,
    account_limits: KeyedLimiters<AccountId>,
    lanes: Lanes,
    partitions: Arc<Partitions>,
    buffer_bound: usize,
    workers: Mutex<HashMap<EndpointId, Worker>>,
    /// Woken each time a worker finishes a job: an endpoint may have room again ([`Self::room`]).
    freed: Notify,
    /// Which endpoints park their work, and their next free slots.
    parking: Mutex<Parking>,
    /// Accounts whose gauges were set at the last [`Engine::observe_load`], so a gauge is set
    /// to zero once when its account has nothing left.
    reported: Mutex<HashSet<(&'static str, AccountId)>>,
    /// Every worker task, so shutdown can end them and wait for them.
    tracker: TaskTracker,
    /// How long a worker waits for work before it exits.
    worker_idle: Duration,
    /// Cancelled at shutdown: workers take no further job.
    stop: CancellationToken,
    /// Endpoints that answered 429: no request to them before the time they asked for.
    throttles: Mutex<HashMap<EndpointId, DateTime<Utc>>>,
    /// How long a task may be delayed by 429s and open circuits before it goes to the DLQ.
    max_task_age: Duration,
    /// Each tier's weight in the in-flight shares.
    tier_weights: TierWeights,
}

/// The longest a receiver's `Retry-After` holds its endpoint back: a hostile or broken
/// receiver cannot park its tasks for days (`delivery.max_task_age` ends them anyway).
pub const MAX_HOLD: Duration = Duration::from_secs(3600);

/// What an [`Engine`] is built from.
pub struct EngineParts {
    /// `[delivery]`.
    pub delivery: DeliveryConfig,
    /// Hand-off to the retry tiers and the DLQ.
    pub handoff: Handoff,
    /// The delivery log writer.
    pub recorder: Recorder,
    /// Postgres.
    pub pool: PgPool,
    /// In-flight bounds.
    pub lanes: Lanes,
    /// The consumer's partition state: finished work is reported there, and the consumer
    /// loop applies the pauses and resumes it asks for.
    pub partitions: Arc<Partitions>,
    /// Buffered deliveries per partition before it is paused.
    pub buffer_bound: usize,
    /// The furthest ahead a task may be parked ([`Parking::new`]).
    pub park_horizon: Duration,
    /// Makes the `deliver` and HTTP client spans.
    pub tracer: Tracer,
}

impl Engine {
    /// Builds the engine (the HTTP client may fail to build, e.g. without TLS roots).
    pub fn new(parts: EngineParts) -> Result<Self, reqwest::Error> {
        Ok(Self {
            sender: Sender::new(&parts.delivery)?,
            tracer: parts.tracer,
            handoff: parts.handoff,
            recorder: parts.recorder,
            // A previous owner of a partition may still finish a request (up to the timeout)
            // and write its attempt (within a flush) after the partition moved here.
            redeliveries: Redeliveries::new(
                parts.pool.clone(),
                parts.delivery.timeout + parts.delivery.record_flush_interval * 2,
            ),
            recent: Mutex::new(RecentDeliveries::new(recent::CAPACITY)),
            pool: parts.pool,
            breakers: CircuitBreakers::new(
                parts.delivery.circuit_threshold,
                parts.delivery.circuit_cooldown,
            ),
            endpoint_limits: KeyedLimiters::default(),
            account_limits: KeyedLimiters::default(),
            lanes: parts.lanes,
            partitions: parts.partitions,
            buffer_bound: parts.buffer_bound,
            workers: Mutex::new(HashMap::new()),
            freed: Notify::new(),
            // One endpoint alone can never fill its partition's buffer.
            parking: Mutex::new(Parking::new(
                parts.delivery.park_after,
                parts.buffer_bound / 2,
                parts.park_horizon,
            )),
            reported: Mutex::new(HashSet::new()),
            tracker: TaskTracker::new(),
            worker_idle: parts.delivery.worker_idle,
            stop: CancellationToken::new(),
            throttles: Mutex::new(HashMap::new()),
            max_task_age: parts.delivery.max_task_age,
            tier_weights: parts.delivery.tier_weights,
        })
    }

    /// Ends the workers: each finishes the job in hand and takes no other (what stays queued
    /// is not committed, so it is read again). Waits up to `within` for them.
    pub async fn stop(&self, within: Duration) {
        self.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(within, self.tracker.wait()).await.is_err() {
            tracing::warn!(
                workers = self.tracker.len(),
                "delivery workers still busy at shutdown; abandoned"
            );
        }
    }

    /// Deliveries in flight over all lanes.
    pub fn in_flight(&self) -> usize {
        self.lanes.in_flight()
    }

    /// Queues a job on its endpoint's worker, starting the worker if needed, or parks it when
    /// the endpoint's queue is full or its work is parked ([`super::park`]). A job read from
    /// the park topic is never parked again.
    pub fn enqueue(self: &Arc<Self>, job: Job) {
        let id = job.endpoint.target.id;
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let mut hold = None;
        if self.was_parked(&job) {
            let account = job.envelope.account_id.to_string();
            metrics::counter!("webhook_unparked_total", "account" => account).increment(1);
        } else {
            let (queued, drain) = load_of(&workers, &job.endpoint);
            let mut parking = self.parking.lock().unwrap_or_else(|p| p.into_inner());
            let key = (job.envelope.account_id, id);
            match parking.decide(key, queued, drain, Utc::now()) {
                // Queued on the topic while the lock is held: parks keep the order decided.
                Place::Park(slot) => return self.park(job, slot),
                Place::MemoryAfter(until) => hold = Some(until),
                Place::Memory => {}
            }
        }
        let job = match workers.get(&id) {
            Some(w) => {
                if let Some(until) = hold {
                    w.load.hold(until);
                }
                w.load.queued.fetch_add(1, Ordering::Relaxed);
                match w.tx.send(job) {
                    Ok(()) => return,
                    Err(mpsc::error::SendError(job)) => {
                        w.load.queued.fetch_sub(1, Ordering::Relaxed);
                        job
                    }
                }
            }
            None => job,
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let load = Arc::new(Load::default());
        load.queued.store(1, Ordering::Relaxed);
        if let Some(until) = hold {
            load.hold(until);
        }
        let _ = tx.send(job);
        workers.insert(id, Worker { tx, load: Arc::clone(&load) });
        metrics::gauge!("delivery_workers").set(workers.len() as f64);
        let engine = Arc::clone(self);
        self.tracker.spawn(async move {
            loop {
                let job = tokio::select! {
                    biased;
                    _ = engine.stop.cancelled() => break,
                    job = rx.recv() => job,
                    _ = tokio::time::sleep(engine.worker_idle) => {
                        if engine.retire(id, &mut rx) {
                            break;
                        }
                        continue;
                    }
                };
                let Some(job) = job else { break };
                // Unfinished at shutdown like the jobs behind it: read again by the next owner.
                tokio::select! {
                    biased;
                    _ = engine.stop.cancelled() => break,
                    _ = load.held() => {}
                }
                engine.process(job, &load).await;
                load.queued.fetch_sub(1, Ordering::Relaxed);
                engine.freed.notify_waiters();
            }
        });
    }

    /// Returns once `endpoint` has room in its queue here: fewer tasks than it drains in
    /// `park_after` at its pace now (its rate limit, or its receiver's pace when slower). A
    /// parked task may go before its slot then ([`super::park`]), so an endpoint whose receiver
    /// was slow when its work was parked catches up at the pace it has now.
    pub async fn room(&self, endpoint: &CachedEndpoint) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a job finished in between still wakes it.
            freed.as_mut().enable();
            if self.has_room(endpoint) {
                return;
            }
            freed.await;
        }
    }

    fn has_room(&self, endpoint: &CachedEndpoint) -> bool {
        let (queued, drain) =
            load_of(&self.workers.lock().unwrap_or_else(|p| p.into_inner()), endpoint);
        queued < self.parking.lock().unwrap_or_else(|p| p.into_inner()).bound(drain)
    }

    /// Whether `job` was read from the park topic.
    fn was_parked(&self, job: &Job) -> bool {
        job.retry.as_ref().is_some_and(|r| r.tier == self.handoff.park_tier())
    }

    /// Parks `job` on the park topic at `slot`: queued on the topic now (so parks keep their
    /// order), and its message finished once the broker acknowledged it. A park is not an
    /// attempt: the task's attempts and schedule do not change.
    fn park(self: &Arc<Self>, job: Job, slot: Slot) {
        if self.partitions.generation(&job.source.tp) != Some(job.source.generation) {
            return; // revoked: the partition's next owner delivers it
        }
        metrics::counter!("webhook_parked_total", "account" => job.envelope.account_id.to_string())
            .increment(1);
        let ahead = (slot.due - Utc::now()).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::histogram!("webhook_park_wait_seconds").record(ahead);
        let task = self.parked_task(&job);
        let origin = job.origin();
        let queued = self.handoff.park(&task, slot, &origin, &job.trace);
        let engine = Arc::clone(self);
        self.tracker.spawn(async move {
            let acked = async { queued?.await }.await;
            if let Err(e) = acked {
                // Produced again until the broker takes it; a task parked after it may then
                // come back before it (only when the broker failed to take it in time).
                tracing::warn!(error = %e, "park not acknowledged; producing it again");
                let to = Destination::Park(slot);
                if !engine.hand_off(&to, &task, &origin, &job.trace, &job.source).await {
                    engine.partitions.wake();
                    return;
                }
            }
            engine.finish(&job.source);
        });
    }

    /// The task a parked job becomes: as it was, no attempt added.
    fn parked_task(&self, job: &Job) -> DeliveryTask {
        DeliveryTask {
            envelope: (*job.envelope).clone(),
            endpoint_id: job.endpoint.target.id,
            attempt: job.attempt() - 1,
            first_attempt_at: job.retry.as_ref().map_or_else(Utc::now, |r| r.first_attempt_at),
            last_status: None,
            last_error: None,
            last_reason: None,
            replay: job.replay(),
            uncounted: job.uncounted(),
            not_before: job.retry.as_ref().and_then(|r| r.not_before),
        }
    }

    /// Sets the per-account gauges an SRE watches: requests in flight and waiting for a
    /// permit by lane and account, and how far ahead each account's parked work is scheduled.
    pub fn observe_load(&self) {
        let mut now_reported = HashSet::new();
        let mut in_flight: HashMap<AccountId, (usize, usize)> = HashMap::new();
        for ((_, account), held, waiting) in self.lanes.pool.classes() {
            let entry = in_flight.entry(account).or_default();
            entry.0 += held;
            entry.1 += waiting;
        }
        for (account, (held, waiting)) in in_flight {
            let a = account.to_string();
            metrics::gauge!("webhook_account_in_flight", "account" => a.clone()).set(held as f64);
            metrics::gauge!("webhook_account_waiting", "account" => a).set(waiting as f64);
            now_reported.insert(("in_flight", account));
        }
        let now = Utc::now();
        for (account, ahead) in self.parking.lock().unwrap_or_else(|p| p.into_inner()).backlog(now)
        {
            metrics::gauge!("webhook_park_backlog_seconds", "account" => account.to_string())
                .set(ahead.as_secs_f64());
            now_reported.insert(("park", account));
        }
        let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        for (kind, account) in reported.difference(&now_reported) {
            let a = account.to_string();
            if *kind == "park" {
                metrics::gauge!("webhook_park_backlog_seconds", "account" => a).set(0.0);
            } else {
                metrics::gauge!("webhook_account_in_flight", "account" => a.clone()).set(0.0);
                metrics::gauge!("webhook_account_waiting", "account" => a).set(0.0);
            }
        }
        *reported = now_reported;
    }

    /// An idle worker leaves the map, unless a job arrived meanwhile (checked under the map's
    /// lock, which every enqueue holds while it sends, so no job is left behind in its queue).
    fn retire(&self, id: EndpointId, rx: &mut mpsc::UnboundedReceiver<Job>) -> bool {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        if !rx.is_empty() {
            return false;
        }
        workers.remove(&id);
        metrics::gauge!("delivery_workers").set(workers.len() as f64);
        true
    }

    async fn process(&self, job: Job, load: &Load) {
        if self.partitions.generation(&job.source.tp) != Some(job.source.generation) {
            return; // revoked: the partition's next owner delivers it
        }
        let e = &job.envelope;
        let cx = self.tracer.internal(
            &job.trace,
            "deliver",
            vec![
                KeyValue::new("hookstream.account.id", e.account_id.to_string()),
                KeyValue::new("hookstream.event.id", e.event_id.to_string()),
                KeyValue::new("hookstream.event.type", e.event_type.clone()),
                KeyValue::new("hookstream.endpoint.id", job.endpoint.target.id.to_string()),
                KeyValue::new("hookstream.attempt", i64::from(job.attempt())),
            ],
        );
        let log = trace::log_span(&cx);
        tracing::Instrument::instrument(self.deliver(job, &cx, load), log).await;
    }

    /// One attempt of `job` in the `deliver` span `cx` (ended here; dropped, it ends too); a
    /// request's time goes into its endpoint's `load`.
    async fn deliver(&self, job: Job, cx: &Context, load: &Load) {
        let ep = &job.endpoint;
        // A held task makes no request: it waits neither for the rate limits nor for a lane.
        let held = self.held_until(&job);
        let permit = match held {
            Some(_) => None,
            None => {
                self.wait_for_rate_limits(ep).await;
                // The lane permit is taken after the rate-limit waits: a throttled endpoint
                // must not hold a share of the in-flight bound while it sleeps.
                let weight = self.tier_weights.of(ep.tier);
                let account = ep.target.account_id;
                let permit = self.lanes.acquire(job.envelope.priority, account, weight).await;
                if !job.replay()
                    && (self.delivered_lately(&job)
                        || (self.may_be_redelivery(&job).await
                            && self.delivered_before(&job).await))
                {
                    metrics::counter!("webhook_skipped_delivered_total").increment(1);
                    cx.span().set_attribute(KeyValue::new("hookstream.outcome", "skipped"));
                    trace::end(cx, None);
                    drop(permit);
                    self.finish(&job.source);
                    return;
                }
                Some(permit)
            }
        };
        if let Some(retry) = &job.retry {
            let late = (Utc::now() - retry.due).num_microseconds().unwrap_or(0) as f64 / 1e6;
            metrics::histogram!("webhook_retry_lateness_seconds", "tier" => self.handoff.tier_label(retry.tier))
                .record(late);
        }
        let attempt = match held {
            Some(until) => held_back(until),
            None if self.breakers.allow(ep.target.id) => {
                let client = self.tracer.client_post(cx, &ep.target.url);
                let a = self.sender.send(&ep.target, &job.envelope, &client).await;
                load.served(a.latency);
                if let Some(status) = a.status {
                    client.span().set_attribute(KeyValue::new(
                        "http.response.status_code",
                        i64::from(status),
                    ));
                }
                end_span(&client, &a);
                // A 429 says the receiver is up: its hold, not the circuit, keeps requests off.
                let failed = matches!(a.outcome, Outcome::Retryable { .. }) && a.counts();
                self.breakers.record(ep.target.id, !failed);
                if let (Some(429), Outcome::Retryable { retry_after }) = (a.status, &a.outcome) {
                    self.throttle(&job, *retry_after);
                }
                a
            }
            None => circuit_open(self.breakers.reopens_in(ep.target.id)),
        };
        let destination = self.destination(&job, &attempt);
        if !attempt.counts() && destination.is_some() {
            let reason = attempt.reason.map_or("other", |r| r.label());
            metrics::counter!("webhook_deferred_total", "reason" => reason).increment(1);
        }
        self.observe(&job, &attempt, destination.as_ref());
        cx.span().set_attribute(KeyValue::new(
            "hookstream.outcome",
            match destination {
                None => "delivered",
                Some(Destination::Retry(_) | Destination::Park(_)) => "retry",
                Some(Destination::Dlq) => "dead_letter",
            },
        ));
        self.record(&job, &attempt, destination.as_ref()).await;
        if let Some(destination) = destination {
            let task = self.task(&job, &attempt);
            if !self.hand_off(&destination, &task, &job.origin(), cx, &job.source).await {
                trace::end(cx, Some(("revoked", "the partition was revoked before the hand-off")));
                drop(permit);
                self.partitions.wake();
                return; // revoked meanwhile: the next owner redoes it
            }
            if attempt.outcome == (Outcome::Permanent { disable_endpoint: true }) {
                self.disable(&job.endpoint).await;
            }
        }
        end_span(cx, &attempt);
        // Out of flight before the finish is reported, so a shutdown waiting for in-flight
        // work to end sees it ended.
        drop(permit);
        self.finish(&job.source);
    }

    /// Waits for the endpoint's and the account's rate limits (a wait, never a failure).
    async fn wait_for_rate_limits(&self, ep: &CachedEndpoint) {
        if let Some(limit) = ep.rate_limit {
            let limiter = self.endpoint_limits.get(&ep.target.id, limit);
            if limiter.1.check().is_err() {
                metrics::counter!("webhook_rate_limit_waits_total", "scope" => "endpoint")
                    .increment(1);
                limiter.1.until_ready().await;
            }
        }
        let limiter = self.account_limits.get(&ep.target.account_id, ep.account_limit);
        if limiter.1.check().is_err() {
            metrics::counter!("webhook_rate_limit_waits_total", "scope" => "account").increment(1);
            limiter.1.until_ready().await;
        }
    }

    /// Where a retryable or permanent failure goes. A counted failure moves one step along
    /// the schedule (the DLQ after the last tier); one that does not count (429, open
    /// circuit, held back) waits in a tier that grows with each such delay
    /// ([`Self::waiting_tier`]), until `max_task_age`.
    fn destination(&self, job: &Job, attempt: &Attempt) -> Option<Destination> {
        let retry_after = match attempt.outcome {
            Outcome::Delivered => return None,
            Outcome::Permanent { .. } => return Some(Destination::Dlq),
            Outcome::Retryable { retry_after } => retry_after,
        };
        let step = job.counted() as usize;
        Some(if !attempt.counts() {
            if job.age() >= self.max_task_age {
                Destination::Dlq
            } else {
                Destination::Retry(self.handoff.tier_for(self.waiting_tier(job), retry_after))
            }
        } else if step >= self.handoff.tiers() {
            Destination::Dlq
        } else {
            Destination::Retry(self.handoff.tier_for(step, retry_after))
        })
    }

    /// The tier a delayed (not failed) task waits in: the tier of its schedule step, or later
    /// by one for each delay before this one, so a task whose receiver keeps throttling waits
    /// 1 s, 5 s, 25 s, … up to the last tier rather than cycling through the first every
    /// second until `max_task_age` (each pass a produce, a fetch and a delivery-log row).
    fn waiting_tier(&self, job: &Job) -> usize {
        (job.counted() as usize).saturating_sub(1).max(job.uncounted() as usize)
    }

    /// Holds the endpoint back after its 429: for its `Retry-After` (up to [`MAX_HOLD`]),
    /// else for the delay of the tier the task waits in.
    fn throttle(&self, job: &Job, retry_after: Option<Duration>) {
        let tier = self.handoff.tier_for(self.waiting_tier(job), None);
        let wait = retry_after.unwrap_or_else(|| self.handoff.delay(tier)).min(MAX_HOLD);
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(wait).unwrap_or_default();
        // In whole milliseconds, as due times are (`hs-due-at`): a task handed off in the same
        // millisecond with the same delay is then never due before the hold ends.
        let until = until.duration_trunc(chrono::TimeDelta::milliseconds(1)).unwrap_or(until);
        let mut throttles = self.throttles.lock().unwrap_or_else(|p| p.into_inner());
        // Expired holds go as new ones come, so the map follows the endpoints throttled now.
        throttles.retain(|_, u| *u > now);
        throttles.insert(job.endpoint.target.id, until);
    }

    /// Until when no request may go to the job's endpoint: its task's `not_before` or the
    /// endpoint's hold, whichever is later (`None` when both are past).
    fn held_until(&self, job: &Job) -> Option<DateTime<Utc>> {
        let now = Utc::now();
        let hold = self
            .throttles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&job.endpoint.target.id)
            .copied();
        let asked = job.retry.as_ref().and_then(|r| r.not_before);
        hold.max(asked).filter(|until| *until > now)
    }

    /// Sends a task whose endpoint is gone or disabled to the DLQ, records it as failed, and
    /// finishes its message.
    pub async fn dead_letter(
        &self,
        mut task: DeliveryTask,
        origin: &Origin,
        parent: &Context,
        source: &Source,
        reason: &str,
    ) {
        task.last_status = None;
        task.last_error = Some(reason.to_owned());
        task.last_reason = Some(FailureReason::EndpointUnavailable);
        let e = &task.envelope;
        self.recorder
            .record(AttemptRecord {
                account_id: e.account_id,
                event_id: e.event_id.clone(),
                endpoint_id: task.endpoint_id,
                event_type: e.event_type.clone(),
                received_at: e.received_at,
                attempt: task.attempt + 1,
                replay: task.replay,
                outcome: Outcome::Permanent { disable_endpoint: false },
                state: DeliveryState::Failed,
                http_status: None,
                latency: Duration::ZERO,
                response_body: None,
                error: Some(reason.to_owned()),
                attempted_at: Utc::now(),
                // Not a delivery: the mark only spares lookups of delivered events.
                source: None,
            })
            .await;
        metrics::counter!("webhook_dlq_handoffs_total", "reason" => "endpoint_unavailable")
            .increment(1);
        if self.hand_off(&Destination::Dlq, &task, origin, parent, source).await {
            self.finish(source);
        }
    }

    /// Whether `job` may have been attempted before, so the log must be asked. An event read
    /// from its lane: only when it sits at or below its lane partition's progress mark (raised
    /// by every attempt of the event, its retries' and parked deliveries' too). A task read
    /// from a tier or the park topic: always, since an event read twice (after a crash) hands
    /// the same task off twice.
    async fn may_be_redelivery(&self, job: &Job) -> bool {
        job.retry.is_some() || self.redeliveries.possible(&job.source).await
    }

    fn delivered_lately(&self, job: &Job) -> bool {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.contains(&job.envelope.event_id, job.endpoint.target.id)
    }

    async fn delivered_before(&self, job: &Job) -> bool {
        metrics::counter!("delivery_log_lookups_total").increment(1);
        let e = &job.envelope;
        record::already_delivered(
            &self.pool,
            e.account_id,
            &e.event_id,
            job.endpoint.target.id,
            e.received_at,
        )
        .await
        .unwrap_or_else(|err| {
            tracing::warn!(error = %err, "delivery log lookup failed; delivering anyway");
            false
        })
    }

    fn task(&self, job: &Job, attempt: &Attempt) -> DeliveryTask {
        DeliveryTask {
            envelope: (*job.envelope).clone(),
            endpoint_id: job.endpoint.target.id,
            attempt: job.attempt(),
            first_attempt_at: job.retry.as_ref().map_or_else(Utc::now, |r| r.first_attempt_at),
            last_status: attempt.status,
            last_error: attempt
                .error
                .clone()
                .or_else(|| attempt.status.map(|s| format!("http {s}"))),
            last_reason: attempt.reason,
            replay: job.replay(),
            uncounted: job.uncounted() + u32::from(!attempt.counts()),
            // The endpoint's hold travels with the task: the next service to read it (the
            // retrier) makes no request before it either.
            not_before: self.held_until(job),
        }
    }

    /// Produces the task to its destination, retrying until the broker takes it, since the
    /// source offset must not be committed before. Returns false when the partition was
    /// revoked meanwhile.
    async fn hand_off(
        &self,
        destination: &Destination,
        task: &DeliveryTask,
        origin: &Origin,
        parent: &Context,
        source: &Source,
    ) -> bool {
        let mut backoff = Backoff::default();
        loop {
            let result: Result<(), HandoffError> = match destination {
                Destination::Retry(tier) => {
                    self.handoff.to_retry(task, *tier, origin, parent).await
                }
                Destination::Dlq => self.handoff.to_dlq(task, origin, parent).await,
                Destination::Park(slot) => self.handoff.to_park(task, *slot, origin, parent).await,
            };
            match result {
                Ok(()) => return true,
                Err(e) if self.partitions.generation(&source.tp) == Some(source.generation) => {
                    tracing::error!(error = %e, "hand-off failed; retrying");
                    backoff.wait().await;
                }
                Err(_) => return false,
            }
        }
    }

    async fn disable(&self, endpoint: &CachedEndpoint) {
        let ep = &endpoint.target;
        match endpoints::disable(
            &self.pool,
            ep.account_id,
            ep.id,
            "410 Gone from the endpoint",
            "system:delivery",
        )
        .await
        {
            Ok(_) => tracing::warn!(endpoint = %ep.id, "endpoint answered 410; disabled"),
            Err(e) => tracing::error!(endpoint = %ep.id, error = %e, "cannot disable endpoint"),
        }
    }

    async fn record(&self, job: &Job, attempt: &Attempt, destination: Option<&Destination>) {
        let e = &job.envelope;
        if destination.is_none() {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            recent.insert(e.event_id.clone(), job.endpoint.target.id);
        }
        self.recorder
            .record(AttemptRecord {
                account_id: e.account_id,
                event_id: e.event_id.clone(),
                endpoint_id: job.endpoint.target.id,
                event_type: e.event_type.clone(),
                received_at: e.received_at,
                attempt: job.attempt(),
                replay: job.replay(),
                outcome: attempt.outcome.clone(),
                state: match destination {
                    None => DeliveryState::Delivered,
                    Some(Destination::Retry(_) | Destination::Park(_)) => DeliveryState::Retrying,
                    Some(Destination::Dlq) => DeliveryState::Failed,
                },
                http_status: attempt.status,
                latency: attempt.latency,
                response_body: attempt.response_body.clone(),
                error: attempt.error.clone(),
                attempted_at: Utc::now(),
                source: Some(job.lane_position()),
            })
            .await;
    }

    fn observe(&self, job: &Job, attempt: &Attempt, destination: Option<&Destination>) {
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
        if let Some(retry) = &job.retry {
            metrics::counter!(
                "webhook_retry_tasks_total",
                "tier" => self.handoff.tier_label(retry.tier),
                "outcome" => outcome
            )
            .increment(1);
        }
        if let Some(Destination::Dlq) = destination {
            metrics::counter!("webhook_dlq_handoffs_total", "reason" => outcome).increment(1);
        }
    }

    fn finish(&self, source: &Source) {
        let (tp, generation, offset) = (&source.tp, source.generation, source.offset);
        self.partitions.finish_deferred(tp, generation, offset, self.buffer_bound);
    }
}

/// `endpoint`'s queued tasks here and how many a second it drains (its rate limit before its
/// worker has started).
fn load_of(workers: &HashMap<EndpointId, Worker>, endpoint: &CachedEndpoint) -> (usize, f64) {
    let limit = rate(endpoint);
    workers
        .get(&endpoint.target.id)
        .map_or((0, limit), |w| (w.load.queued.load(Ordering::Relaxed), w.load.drain(limit)))
}

/// The rate an endpoint is limited to, per second: its own limit or its account's, whichever
/// is lower.
fn rate(ep: &CachedEndpoint) -> f64 {
    let account = f64::from(ep.account_limit.per_second);
    ep.rate_limit.map_or(account, |l| account.min(f64::from(l.per_second)))
}

/// Ends the span `cx` of attempt `a`: in error with the attempt's failure reason as
/// `error.type` and its error (or status) as description when it failed.
fn end_span(cx: &Context, a: &Attempt) {
    let Some(reason) = a.reason else { return trace::end(cx, None) };
    let description = a
        .error
        .clone()
        .or_else(|| a.status.map(|s| format!("http {s}")))
        .unwrap_or_else(|| reason.label().to_owned());
    trace::end(cx, Some((reason.label(), &description)));
}

/// A task not attempted because its endpoint is held back until `until` (its 429).
fn held_back(until: DateTime<Utc>) -> Attempt {
    let wait = (until - Utc::now()).to_std().unwrap_or_default();
    Attempt {
        outcome: Outcome::Retryable { retry_after: Some(wait) },
        status: None,
        latency: Duration::ZERO,
        response_body: None,
        error: Some(format!(
            "throttled: the endpoint asked for no request before {}; not attempted",
            until.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        )),
        reason: Some(FailureReason::TooManyRequests),
    }
}

/// A task not attempted because the endpoint's circuit is open (for `reopens_in` more).
fn circuit_open(reopens_in: Option<Duration>) -> Attempt {
    Attempt {
        outcome: Outcome::Retryable { retry_after: reopens_in },
        status: None,
        latency: Duration::ZERO,
        response_body: None,
        error: Some("circuit open: endpoint failing, not attempted".into()),
        reason: Some(FailureReason::CircuitOpen),
    }
}

#[cfg(test)]
mod tests {
    use super::smoothed;

    #[test]
    fn one_slow_answer_at_most_doubles_the_service_time_and_a_lasting_slowness_is_learned() {
        // 1 ms answers, then one of 3 s: twice as slow at most, not 600 ms.
        let mut us = 1_000;
        for _ in 0..10 {
            us = smoothed(us, 1_000);
        }
        assert_eq!(smoothed(us, 3_000_000), 2_000);
        // From 1 ms to answers of 3 s each: near 3 s within fifteen answers.
        let answers = std::iter::repeat_n(3_000_000, 15);
        let learned = answers.fold(us, smoothed);
        assert!(learned > 2_000_000, "{learned} us");
        // The first answer sets it whole.
        assert_eq!(smoothed(0, 3_000_000), 3_000_000);
    }
}
