//! Due gates: one per assigned partition of a retry tier. A tier has one fixed delay, so a
//! partition's head is always its next task due. While the head is not due the consumer pauses
//! that partition (never the whole consumer); the gate waits for the head's due time, hands it
//! to the delivery engine, and the partition resumes. A parked task may go from its ready time
//! on, as soon as its endpoint has room ([`hookstream_core::delivery::park`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hookstream_core::delivery::endpoints::{CachedEndpoint, EndpointCache};
use hookstream_core::delivery::engine::{Engine, Job, Retry, Source};
use hookstream_core::partitions::{self, Partitions, Tp, TrackedConsumer};
use hookstream_core::trace::{self, Consumed, Tracer};
use tokio::sync::mpsc;

use hookstream_core::wire::TaskRecord;

/// A task read from a tier, waiting at its partition's gate.
pub struct Waiting {
    /// The decoded record.
    pub record: TaskRecord,
    /// Where it was read.
    pub source: Source,
    /// The tier it was read from.
    pub tier: usize,
    /// Whether it could go only after the lookahead when read (at its due time, or a parked
    /// task at its ready time): the partition was paused for it.
    pub held: bool,
}

/// The gates of every assigned partition.
pub struct Gates {
    engine: Arc<Engine>,
    cache: EndpointCache,
    partitions: Arc<Partitions>,
    consumer: Arc<TrackedConsumer>,
    lookahead: chrono::Duration,
    open: Mutex<HashMap<Tp, (u64, mpsc::UnboundedSender<Waiting>)>>,
    tracer: Tracer,
    group: String,
}

impl Gates {
    /// Gates that hand due tasks to `engine`, each in a `process` span of `tracer` for the
    /// consumer group `group`.
    pub fn new(
        engine: Arc<Engine>,
        cache: EndpointCache,
        partitions: Arc<Partitions>,
        consumer: Arc<TrackedConsumer>,
        lookahead: Duration,
        tracer: Tracer,
        group: String,
    ) -> Arc<Self> {
        Arc::new(Self {
            engine,
            cache,
            partitions,
            consumer,
            lookahead: chrono::Duration::from_std(lookahead).unwrap_or_default(),
            open: Mutex::new(HashMap::new()),
            tracer,
            group,
        })
    }

    /// Queues a task at its partition's gate, opening the gate for a new assignment. Tasks of
    /// one partition pass in the order they were read.
    pub fn send(self: &Arc<Self>, waiting: Waiting) {
        let tp = waiting.source.tp.clone();
        let generation = waiting.source.generation;
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((g, tx)) = open.get(&tp) {
            if *g == generation {
                match tx.send(waiting) {
                    Ok(()) => return,
                    Err(mpsc::error::SendError(w)) => return self.start(&mut open, tp, w),
                }
            }
        }
        self.start(&mut open, tp, waiting);
    }

    fn start(
        self: &Arc<Self>,
        open: &mut HashMap<Tp, (u64, mpsc::UnboundedSender<Waiting>)>,
        tp: Tp,
        first: Waiting,
    ) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let generation = first.source.generation;
        let _ = tx.send(first);
        // Replacing the sender of an older assignment ends that gate after its current task.
        open.insert(tp, (generation, tx));
        let gates = Arc::clone(self);
        tokio::spawn(async move {
            while let Some(w) = rx.recv().await {
                gates.pass(w).await;
            }
        });
    }

    async fn pass(&self, w: Waiting) {
        let source = w.source;
        let (due, ready) = (w.record.due, w.record.ready);
        let earliest = ready.unwrap_or(due);
        let endpoint = self.cache.get(w.record.task.envelope.account_id, w.record.task.endpoint_id);
        let released = self.released(due, ready, endpoint);
        tokio::pin!(released);
        if w.held {
            // Resume a little early: the tasks behind the head are fetched by their due time.
            let early = tokio::select! {
                _ = &mut released => true,
                _ = sleep_until(earliest - self.lookahead) => false,
            };
            let flow = self.partitions.due(&source.tp, source.generation);
            partitions::apply(&self.consumer, &source.tp, flow);
            if !early {
                released.await;
            }
        } else {
            released.await;
        }
        if self.partitions.generation(&source.tp) != Some(source.generation) {
            return; // revoked while waiting: the next owner reads it again
        }
        let r = w.record;
        let cx = self.tracer.process(
            &r.context,
            &Consumed {
                topic: &source.tp.0,
                partition: source.tp.1,
                offset: source.offset,
                group: &self.group,
            },
        );
        let e = &r.task.envelope;
        match self.cache.get(e.account_id, r.task.endpoint_id) {
            Some(endpoint) => self.engine.enqueue(Job {
                envelope: Arc::new(r.task.envelope.clone()),
                endpoint,
                source,
                trace: cx.clone(),
                retry: Some(Retry {
                    tier: w.tier,
                    attempts: r.task.attempt,
                    first_attempt_at: r.task.first_attempt_at,
                    due: r.due,
                    origin: r.origin.clone(),
                    replay: r.task.replay,
                    uncounted: r.task.uncounted,
                    not_before: r.task.not_before,
                }),
            }),
            None => {
                self.engine
                    .dead_letter(r.task, &r.origin, &cx, &source, "endpoint disabled or deleted")
                    .await
            }
        }
        trace::end(&cx, None);
    }

    /// Returns when a task may go: when it is `due`, or, a parked task, from its `ready` time
    /// on as soon as its endpoint has room here (the slots were spaced at the endpoint's pace
    /// when it was parked; a receiver that has become fast again drains them at its own).
    async fn released(
        &self,
        due: DateTime<Utc>,
        ready: Option<DateTime<Utc>>,
        endpoint: Option<Arc<CachedEndpoint>>,
    ) {
        let (Some(ready), Some(endpoint)) = (ready, endpoint) else {
            return sleep_until(due).await;
        };
        sleep_until(ready).await;
        tokio::select! {
            _ = sleep_until(due) => {}
            _ = self.engine.room(&endpoint) => {}
        }
    }
}

async fn sleep_until(at: DateTime<Utc>) {
    let wait = (at - Utc::now()).to_std().unwrap_or_default();
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}
