//! Per-partition bookkeeping shared by a consumer loop, its rebalance callbacks and the
//! delivery workers: commit offsets, assignment generations, buffered work and pauses. Used by
//! the dispatcher and the retrier alike.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::StreamConsumer;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::admin::ReadinessCheck;
use crate::offsets::OffsetTracker;

/// How long offset commits may keep failing before `/readyz` says so: longer than a broker
/// restart or a coordinator move takes (seconds), short enough to be told long before a crash
/// would redeliver much.
pub const COMMITS_FAILING_UNREADY: Duration = Duration::from_secs(30);

/// A partition: (topic, partition).
pub type Tp = (String, i32);

/// A consumer whose rebalances keep [`Partitions`] up to date.
pub type TrackedConsumer = StreamConsumer<PartitionContext>;

/// What a change in a partition's state asks of the consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Nothing to do.
    Keep,
    /// Stop fetching the partition.
    Pause,
    /// Fetch the partition again.
    Resume,
}

/// Everything keyed by partition, behind one lock so the pieces never disagree.
///
/// A partition is paused while its buffered work is over the bound, or while it holds a
/// message that is not yet due (the retrier); it resumes when neither is true.
#[derive(Default)]
pub struct Partitions {
    inner: Mutex<Inner>,
    next_generation: AtomicU64,
    /// Signalled when work finishes: the consumer loop then applies what is [`Self::deferred`],
    /// and a shutdown waiting for in-flight work looks again.
    changed: tokio::sync::Notify,
}

#[derive(Default)]
struct Inner {
    tracker: OffsetTracker,
    generation: HashMap<Tp, u64>,
    buffered: HashMap<Tp, usize>,
    waiting: HashMap<Tp, usize>,
    over_bound: HashSet<Tp>,
    stalled: HashSet<Tp>,
    paused: HashSet<Tp>,
    /// Flow changes decided by workers, for the consumer loop to apply.
    deferred: Vec<(Tp, Flow)>,
    commits: CommitHealth,
}

/// Whether the consumer's offset commits get through.
#[derive(Default)]
struct CommitHealth {
    /// When the current run of failures began (none: the last commit succeeded).
    failing_since: Option<Instant>,
    in_a_row: u64,
    last_error: String,
}

impl Inner {
    /// Pauses or resumes `tp` as its state now asks.
    fn flow(&mut self, tp: &Tp) -> Flow {
        let want = self.over_bound.contains(tp)
            || self.stalled.contains(tp)
            || self.waiting.get(tp).is_some_and(|&n| n > 0);
        match (want, self.paused.contains(tp)) {
            (true, false) => {
                self.paused.insert(tp.clone());
                Flow::Pause
            }
            (false, true) => {
                self.paused.remove(tp);
                Flow::Resume
            }
            _ => Flow::Keep,
        }
    }
}

impl Partitions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// [`Self::finish`] for the delivery workers, which hold no consumer: the flow change it
    /// asks for waits in [`Self::deferred`], and the consumer loop is woken to apply it.
    pub fn finish_deferred(&self, tp: &Tp, generation: u64, offset: i64, bound: usize) {
        let flow = self.finish(tp, generation, offset, bound);
        if flow != Flow::Keep {
            self.lock().deferred.push((tp.clone(), flow));
        }
        self.changed.notify_one();
    }

    /// Wakes whoever waits in [`Self::changed`] (work ended without finishing its message).
    pub fn wake(&self) {
        self.changed.notify_one();
    }

    /// Until work finished somewhere (a wake-up is kept if nobody was waiting).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// The flow changes the workers asked for since the last call, oldest first.
    pub fn deferred(&self) -> Vec<(Tp, Flow)> {
        std::mem::take(&mut self.lock().deferred)
    }

    /// Waits until `done` holds, looking again each time work finishes, or until `deadline`;
    /// whether it held.
    pub async fn settle(&self, deadline: tokio::time::Instant, done: impl Fn() -> bool) -> bool {
        let wait = async {
            while !done() {
                self.changed().await;
            }
        };
        tokio::time::timeout_at(deadline, wait).await.is_ok()
    }

    /// A partition was assigned: work read from it from now on carries a new generation.
    pub fn assign(&self, tp: Tp) {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed) + 1;
        let mut inner = self.lock();
        inner.generation.insert(tp.clone(), generation);
        inner.buffered.insert(tp.clone(), 0);
        inner.waiting.remove(&tp);
        inner.over_bound.remove(&tp);
        inner.stalled.remove(&tp);
        inner.paused.remove(&tp);
    }

    /// A partition was revoked: returns its committable offset and forgets it, so work still
    /// queued for it is dropped by the workers (its next owner redoes it).
    pub fn revoke(&self, tp: &Tp) -> Option<i64> {
        let mut inner = self.lock();
        inner.generation.remove(tp);
        inner.buffered.remove(tp);
        inner.waiting.remove(tp);
        inner.over_bound.remove(tp);
        inner.stalled.remove(tp);
        inner.paused.remove(tp);
        inner.tracker.remove(&tp.0, tp.1).and_then(|o| o.committable())
    }

    /// The current generation of an assigned partition.
    pub fn generation(&self, tp: &Tp) -> Option<u64> {
        self.lock().generation.get(tp).copied()
    }

    /// Records a message with `tasks` deliveries; asks for a pause when the partition's
    /// buffered work goes over `bound`.
    pub fn begin(&self, tp: &Tp, offset: i64, tasks: usize, bound: usize) -> Flow {
        let mut inner = self.lock();
        inner.tracker.partition(&tp.0, tp.1).begin(offset, tasks as u32);
        let buffered = inner.buffered.entry(tp.clone()).or_default();
        *buffered += tasks;
        if *buffered > bound {
            inner.over_bound.insert(tp.clone());
        }
        inner.flow(tp)
    }

    /// One delivery of the message at `offset` finished; asks for a resume when the partition
    /// drained below half its bound and waits for nothing. Work of a revoked (or re-assigned)
    /// partition is ignored.
    pub fn finish(&self, tp: &Tp, generation: u64, offset: i64, bound: usize) -> Flow {
        let mut inner = self.lock();
        if inner.generation.get(tp) != Some(&generation) {
            return Flow::Keep;
        }
        inner.tracker.partition(&tp.0, tp.1).finish(offset);
        let buffered = inner.buffered.entry(tp.clone()).or_default();
        *buffered = buffered.saturating_sub(1);
        if *buffered <= bound / 2 {
            inner.over_bound.remove(tp);
        }
        inner.flow(tp)
    }

    /// The partition holds a message that is not due yet: pause it until [`Self::due`].
    pub fn hold(&self, tp: &Tp, generation: u64) -> Flow {
        let mut inner = self.lock();
        if inner.generation.get(tp) != Some(&generation) {
            return Flow::Keep;
        }
        *inner.waiting.entry(tp.clone()).or_default() += 1;
        inner.flow(tp)
    }

    /// A held message became due.
    pub fn due(&self, tp: &Tp, generation: u64) -> Flow {
        let mut inner = self.lock();
        if inner.generation.get(tp) != Some(&generation) {
            return Flow::Keep;
        }
        if let Some(n) = inner.waiting.get_mut(tp) {
            *n = n.saturating_sub(1);
        }
        inner.flow(tp)
    }

    /// Records a message that must not be committed past and stops the partition for as long
    /// as this assignment lasts (a record this build cannot process without losing it).
    pub fn stall(&self, tp: &Tp, offset: i64) -> Flow {
        let mut inner = self.lock();
        inner.tracker.partition(&tp.0, tp.1).begin(offset, 1);
        inner.stalled.insert(tp.clone());
        inner.flow(tp)
    }

    /// Offsets that moved since the last commit.
    pub fn take_commits(&self) -> Vec<(String, i32, i64)> {
        self.lock().tracker.take_commits()
    }

    /// Every partition's committable offset.
    pub fn all_committable(&self) -> Vec<(String, i32, i64)> {
        self.lock().tracker.all_committable()
    }

    /// Buffered deliveries over all partitions, and paused partitions.
    /// A commit got through.
    pub fn commit_succeeded(&self) {
        let mut inner = self.lock();
        inner.commits = CommitHealth::default();
        metrics::gauge!("kafka_commit_failures_in_a_row").set(0.0);
    }

    /// A commit of `offsets` failed: each is committed again at the next commit (unless its
    /// partition moved on or was revoked), and the run of failures is counted.
    pub fn commit_failed(&self, offsets: &[(String, i32, i64)], error: &str) {
        let mut inner = self.lock();
        for (topic, partition, offset) in offsets {
            inner.tracker.commit_failed(topic, *partition, *offset);
        }
        let health = &mut inner.commits;
        health.failing_since.get_or_insert_with(Instant::now);
        health.in_a_row += 1;
        health.last_error = error.to_owned();
        metrics::counter!("kafka_commit_failures_total").increment(1);
        metrics::gauge!("kafka_commit_failures_in_a_row").set(health.in_a_row as f64);
    }

    /// Why the service should count as unready at `now`: commits failing for longer than
    /// [`COMMITS_FAILING_UNREADY`].
    pub fn commit_problem(&self, now: Instant) -> Option<String> {
        let inner = self.lock();
        let health = &inner.commits;
        let since = health.failing_since?;
        let failing = now.saturating_duration_since(since);
        (failing > COMMITS_FAILING_UNREADY).then(|| {
            format!(
                "offset commits failing for {} s ({} in a row; last: {})",
                failing.as_secs(),
                health.in_a_row,
                health.last_error
            )
        })
    }

    pub fn totals(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.buffered.values().sum(), inner.paused.len())
    }

    /// Paused partitions per topic.
    pub fn paused_by_topic(&self) -> HashMap<String, usize> {
        let inner = self.lock();
        let mut by_topic: HashMap<String, usize> =
            inner.generation.keys().map(|tp| (tp.0.clone(), 0)).collect();
        for tp in &inner.paused {
            *by_topic.entry(tp.0.clone()).or_default() += 1;
        }
        by_topic
    }
}

/// Commits what is finished of revoked partitions, records assignments, and reports consumer
/// lag from librdkafka's statistics.
pub struct PartitionContext {
    partitions: Arc<Partitions>,
}

impl PartitionContext {
    /// A context that keeps `partitions` up to date.
    pub fn new(partitions: Arc<Partitions>) -> Self {
        Self { partitions }
    }
}

/// The consumer of a delivery service (client id `client`, group `group`) subscribed to
/// `topics`, with the partition state its context keeps; librdkafka's statistics (the lag
/// gauges) every 5 s unless `kafka.properties` says otherwise.
pub fn subscribe(
    kafka: &crate::config::KafkaConfig,
    client: &str,
    group: &str,
    topics: &[String],
) -> Result<(Arc<TrackedConsumer>, Arc<Partitions>), crate::kafka::KafkaClientError> {
    let partitions = Arc::new(Partitions::default());
    let mut kafka = kafka.clone();
    kafka.properties.entry("statistics.interval.ms".into()).or_insert_with(|| "5000".into());
    let context = PartitionContext::new(Arc::clone(&partitions));
    let consumer: Arc<TrackedConsumer> =
        Arc::new(crate::kafka::consumer(&kafka, client, group, context)?);
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).map_err(crate::kafka::KafkaClientError::Admin)?;
    Ok((consumer, partitions))
}

impl ClientContext for PartitionContext {
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

impl ReadinessCheck for Partitions {
    fn problem(&self) -> Option<String> {
        self.commit_problem(Instant::now())
    }
}

impl ConsumerContext for PartitionContext {
    /// Every commit's outcome (the periodic ones are asynchronous: their errors arrive here).
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => self.partitions.commit_succeeded(),
            // Nothing was stored since the last commit: not a failure.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                let failed: Vec<(String, i32, i64)> = offsets
                    .elements()
                    .iter()
                    .filter_map(|e| match e.offset() {
                        Offset::Offset(o) => Some((e.topic().to_owned(), e.partition(), o)),
                        _ => None,
                    })
                    .collect();
                tracing::warn!(error = %e, partitions = failed.len(), "offset commit failed; retrying at the next commit");
                self.partitions.commit_failed(&failed, &e.to_string());
            }
        }
    }

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

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            for e in tpl.elements() {
                self.partitions.assign((e.topic().to_owned(), e.partition()));
            }
            // librdkafka keeps a partition paused across revoke and re-assign, while a new
            // assignment starts unpaused here: a partition paused when the group rebalanced
            // (a broker outage ends the session) would otherwise never be fetched again.
            if let Err(e) = consumer.resume(tpl) {
                tracing::error!(error = %e, "cannot resume newly assigned partitions");
            }
            tracing::info!(partitions = tpl.count(), "partitions assigned");
        }
    }
}

/// Applies the flow changes the workers left in `partitions` (see
/// [`Partitions::finish_deferred`]).
pub fn apply_deferred(consumer: &TrackedConsumer, partitions: &Partitions) {
    for (tp, flow) in partitions.deferred() {
        apply(consumer, &tp, flow);
    }
}

/// Applies a [`Flow`] to one partition (the consumer keeps serving the others).
pub fn apply(consumer: &TrackedConsumer, tp: &Tp, flow: Flow) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&tp.0, tp.1);
    let result = match flow {
        Flow::Keep => return,
        Flow::Pause => consumer.pause(&tpl),
        Flow::Resume => consumer.resume(&tpl),
    };
    match result {
        Ok(()) => tracing::debug!(topic = %tp.0, partition = tp.1, ?flow, "partition flow"),
        Err(e) => {
            tracing::warn!(error = %e, topic = %tp.0, partition = tp.1, ?flow, "cannot change partition flow")
        }
    }
}

/// Commits `offsets` (next offsets to read).
pub fn commit(consumer: &TrackedConsumer, offsets: Vec<(String, i32, i64)>, mode: CommitMode) {
    if offsets.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, offset) in &offsets {
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
    }
    // An asynchronous commit's outcome arrives in `commit_callback`; this is only the
    // request not being queued (or a synchronous commit's answer, reported there too).
    if let Err(e) = consumer.commit(&tpl, mode) {
        tracing::warn!(error = %e, "offset commit not sent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> Tp {
        ("t".into(), 0)
    }

    #[test]
    fn over_the_bound_pauses_and_half_resumes() {
        let p = Partitions::default();
        p.assign(tp());
        let g = p.generation(&tp()).unwrap_or_default();
        assert_eq!(p.begin(&tp(), 0, 3, 4), Flow::Keep);
        assert_eq!(p.begin(&tp(), 1, 2, 4), Flow::Pause);
        assert_eq!(p.begin(&tp(), 2, 1, 4), Flow::Keep);
        for _ in 0..3 {
            assert_eq!(p.finish(&tp(), g, 0, 4), Flow::Keep);
        }
        assert_eq!(p.finish(&tp(), g, 1, 4), Flow::Resume);
    }

    #[test]
    fn a_held_message_pauses_until_due_unless_also_over_the_bound() {
        let p = Partitions::default();
        p.assign(tp());
        let g = p.generation(&tp()).unwrap_or_default();
        assert_eq!(p.begin(&tp(), 0, 1, 1), Flow::Keep);
        assert_eq!(p.hold(&tp(), g), Flow::Pause);
        assert_eq!(p.due(&tp(), g), Flow::Resume);
        assert_eq!(p.begin(&tp(), 1, 1, 1), Flow::Pause);
        assert_eq!(p.hold(&tp(), g), Flow::Keep);
        assert_eq!(p.due(&tp(), g), Flow::Keep, "still over the bound");
        assert_eq!(p.finish(&tp(), g, 0, 1), Flow::Keep);
        assert_eq!(p.finish(&tp(), g, 1, 1), Flow::Resume);
    }

    #[test]
    fn commits_failing_past_the_limit_make_the_service_unready_until_one_succeeds() {
        let p = Partitions::default();
        p.assign(tp());
        p.begin(&tp(), 0, 0, 10);
        assert_eq!(p.take_commits(), vec![("t".to_owned(), 0, 1)]);
        let start = Instant::now();
        p.commit_failed(&[("t".to_owned(), 0, 1)], "coordinator unavailable");
        assert_eq!(p.take_commits(), vec![("t".to_owned(), 0, 1)], "the failed commit is retried");
        assert_eq!(p.commit_problem(start + Duration::from_secs(5)), None, "a short run is normal");
        p.commit_failed(&[("t".to_owned(), 0, 1)], "coordinator unavailable");
        let problem = p.commit_problem(start + COMMITS_FAILING_UNREADY + Duration::from_secs(1));
        let problem = problem.expect("unready after the limit");
        assert!(problem.contains("2 in a row") && problem.contains("coordinator"), "{problem}");
        p.commit_succeeded();
        assert_eq!(p.commit_problem(start + Duration::from_secs(3600)), None);
    }

    #[test]
    fn a_commit_the_broker_refused_is_made_again_and_counted() {
        // What librdkafka reports for an asynchronous commit the coordinator refused (a
        // rebalance under way, a member it no longer knows): before, the offset was taken
        // and, with no newer one, never committed until the next rebalance or shutdown.
        let partitions = Arc::new(Partitions::default());
        let context = PartitionContext::new(Arc::clone(&partitions));
        partitions.assign(tp());
        partitions.begin(&tp(), 41, 0, 10);
        assert_eq!(partitions.take_commits(), vec![("t".to_owned(), 0, 42)]);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("t", 0, Offset::Offset(42)).expect("tpl");
        let refused = KafkaError::ConsumerCommit(RDKafkaErrorCode::RebalanceInProgress);
        context.commit_callback(Err(refused), &tpl);
        assert_eq!(partitions.take_commits(), vec![("t".to_owned(), 0, 42)], "made again");
        let later = Instant::now() + COMMITS_FAILING_UNREADY + Duration::from_secs(1);
        assert!(partitions.commit_problem(later).is_some_and(|p| p.contains("1 in a row")));
        // "Nothing to commit" is no failure; a commit that got through ends the run.
        context.commit_callback(Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)), &tpl);
        assert!(partitions.commit_problem(later).is_some_and(|p| p.contains("1 in a row")));
        context.commit_callback(Ok(()), &tpl);
        assert_eq!(partitions.commit_problem(later), None);
    }

    #[test]
    fn work_of_an_old_generation_is_ignored() {
        let p = Partitions::default();
        p.assign(tp());
        let old = p.generation(&tp()).unwrap_or_default();
        p.begin(&tp(), 0, 1, 10);
        p.revoke(&tp());
        p.assign(tp());
        assert_eq!(p.hold(&tp(), old), Flow::Keep);
        assert_eq!(p.finish(&tp(), old, 0, 10), Flow::Keep);
        assert_eq!(p.totals(), (0, 0));
    }
}
