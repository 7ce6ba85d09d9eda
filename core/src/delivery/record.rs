//! The delivery log, written in batches (up to `delivery.record_batch_size` rows or every
//! `delivery.record_flush_interval`), never one round trip per delivery.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::outcome::Outcome;
use crate::backoff::Backoff;
use crate::db::log_partitions;
use crate::db::text::{self, pg_text};
use crate::ids::{AccountId, EndpointId, EventId};
use crate::partitions::Tp;

/// One attempt, as the log keeps it.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// Account.
    pub account_id: AccountId,
    /// Event.
    pub event_id: EventId,
    /// Endpoint.
    pub endpoint_id: EndpointId,
    /// Event type.
    pub event_type: String,
    /// When ingest received the event.
    pub received_at: DateTime<Utc>,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Part of a replay.
    pub replay: bool,
    /// Classified outcome.
    pub outcome: Outcome,
    /// The (event, endpoint)'s state after this attempt.
    pub state: DeliveryState,
    /// HTTP status.
    pub http_status: Option<u16>,
    /// Latency.
    pub latency: Duration,
    /// Start of the response body.
    pub response_body: Option<String>,
    /// Error text.
    pub error: Option<String>,
    /// When the attempt was made.
    pub attempted_at: DateTime<Utc>,
    /// The event's place in its lane (topic partition, offset: the record a first attempt was
    /// read from, a task's `hs-origin`): the lane partition's progress mark is raised to it with
    /// this row ([`Redeliveries`](super::redelivery)). `None` for rows that are no delivery.
    pub source: Option<(Tp, i64)>,
}

/// The state of one (event, endpoint) delivery (DESIGN.md, "Delivery semantics").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Not attempted yet.
    Pending,
    /// A 2xx came back.
    Delivered,
    /// Waiting on a retry tier.
    Retrying,
    /// In the DLQ.
    Failed,
}

impl DeliveryState {
    /// The name stored in `deliveries.state`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Retrying => "retrying",
            DeliveryState::Failed => "failed",
        }
    }
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<AttemptRecord>,
}

impl Recorder {
    /// Starts the writer task; it drains what is queued when `shutdown` is cancelled and ends,
    /// within `drain_deadline` of the cancel even if the database is down then.
    pub fn spawn(
        pool: PgPool,
        batch_size: usize,
        flush_interval: Duration,
        shutdown: CancellationToken,
        drain_deadline: Duration,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        // Bounded: when Postgres is down the queue fills and deliveries slow down instead of
        // memory growing without limit.
        let (tx, rx) = mpsc::channel(batch_size * 100);
        let stop = Stop { token: shutdown, drain_deadline, give_up_at: OnceLock::new() };
        let task = tokio::spawn(write_loop(pool, rx, batch_size, flush_interval, stop));
        (Self { tx }, task)
    }

    /// Queues a record (waits when the queue is full).
    pub async fn record(&self, record: AttemptRecord) {
        if self.tx.send(record).await.is_err() {
            tracing::error!("delivery log writer has stopped; attempt not recorded");
        }
    }
}

/// An error that may heal if the same thing is tried again.
trait Transient: std::fmt::Display {
    fn transient(&self) -> bool;
}

impl Transient for sqlx::Error {
    fn transient(&self) -> bool {
        text::is_transient(self)
    }
}

impl Transient for crate::db::DbError {
    fn transient(&self) -> bool {
        self.is_transient()
    }
}

/// The writer's shutdown: once the token is cancelled, retries end at `drain_deadline`.
struct Stop {
    token: CancellationToken,
    drain_deadline: Duration,
    give_up_at: OnceLock<Instant>,
}

impl Stop {
    /// When retrying must end, once shutdown has begun.
    fn give_up_at(&self) -> Option<Instant> {
        self.token
            .is_cancelled()
            .then(|| *self.give_up_at.get_or_init(|| Instant::now() + self.drain_deadline))
    }

    /// Runs `op` until it succeeds or fails for good, retrying transient failures (database
    /// unreachable, a deadlock) with backoff, loudly, until they heal or the shutdown deadline
    /// passes. `Err(None)`: given up at the deadline; `Err(Some(e))`: the database refused.
    async fn retry<T, E, F, Fut>(&self, what: &str, mut op: F) -> Result<T, Option<E>>
    where
        E: Transient,
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let mut backoff = Backoff::default();
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.transient() => {
                    if self.give_up_at().is_some_and(|at| Instant::now() >= at) {
                        tracing::error!(error = %e, "{what}: shutdown deadline reached with the database unreachable");
                        return Err(None);
                    }
                    tracing::error!(error = %e, "{what} failed; retrying");
                    self.pause(backoff.next_delay()).await;
                }
                Err(e) => return Err(Some(e)),
            }
        }
    }

    /// Sleeps `backoff`, or less when shutdown begins or its deadline comes first.
    async fn pause(&self, backoff: Duration) {
        let until = match self.give_up_at() {
            Some(at) => at.min(Instant::now() + backoff),
            None => Instant::now() + backoff,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = self.token.cancelled(), if self.give_up_at.get().is_none() => {}
        }
    }
}

async fn write_loop(
    pool: PgPool,
    mut rx: mpsc::Receiver<AttemptRecord>,
    batch_size: usize,
    flush_interval: Duration,
    stop: Stop,
) {
    let mut w = Writer { pool, days: Days::default(), stop };
    let mut batch = Vec::with_capacity(batch_size);
    let mut tick = tokio::time::interval(flush_interval);
    loop {
        tokio::select! {
            received = rx.recv() => match received {
                Some(r) => {
                    batch.push(r);
                    if batch.len() >= batch_size {
                        w.flush(&mut batch).await;
                    }
                }
                None => break,
            },
            _ = tick.tick() => w.flush(&mut batch).await,
            _ = w.stop.token.cancelled() => {
                rx.close();
                while let Some(r) = rx.recv().await {
                    batch.push(r);
                    if batch.len() >= batch_size {
                        w.flush(&mut batch).await;
                    }
                }
                break;
            }
        }
    }
    w.flush(&mut batch).await;
}

/// The writer task's state.
struct Writer {
    pool: PgPool,
    days: Days,
    stop: Stop,
}

impl Writer {
    /// Writes the batch. A transient failure (database unreachable) is retried, loudly, so
    /// nothing queued is dropped, until the shutdown deadline. A batch the database rejects is
    /// split into single rows so that one poison row cannot hold back the rest (see
    /// [`quarantine`]).
    async fn flush(&mut self, batch: &mut Vec<AttemptRecord>) {
        if batch.is_empty() {
            return;
        }
        self.days.ensure(&self.pool, batch, &self.stop).await;
        let (pool, stop) = (&self.pool, &self.stop);
        match write_retrying(pool, batch, stop).await {
            Ok(()) => metrics::histogram!("webhook_batch_size").record(batch.len() as f64),
            Err(poison) => {
                tracing::warn!(error = %poison, rows = batch.len(), "the database rejected a delivery-log batch; writing its rows one by one");
                for record in batch.iter() {
                    quarantine(pool, record, stop).await;
                }
            }
        }
        batch.clear();
    }
}

/// The recent days whose log partitions are known to exist. The log has no DEFAULT partition:
/// a row of a day without one would be rejected, so a batch with a day not seen yet (an old
/// event replayed, a writer running past the days created ahead) creates it first. Only recent
/// days are remembered (the retention drops old ones), so the set stays small.
#[derive(Default)]
struct Days(std::collections::HashSet<chrono::NaiveDate>);

impl Days {
    async fn ensure(&mut self, pool: &PgPool, batch: &[AttemptRecord], stop: &Stop) {
        let recent = Utc::now().date_naive() - chrono::Days::new(1);
        let mut missing: Vec<chrono::NaiveDate> = batch
            .iter()
            .flat_map(|r| [r.received_at.date_naive(), r.attempted_at.date_naive()])
            .filter(|d| !self.0.contains(d))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        for day in missing {
            let what = format!("creating the delivery log's partition of {day}");
            match stop.retry(&what, || log_partitions::create(pool, day, day)).await {
                Ok(_) if day >= recent => {
                    self.0.insert(day);
                }
                Ok(_) | Err(None) => {}
                // The write that follows fails and says why; the next batch tries again.
                Err(Some(e)) => {
                    tracing::error!(error = %e, %day, "cannot create the delivery log's partition")
                }
            }
        }
        self.0.retain(|d| *d >= recent);
    }
}

/// Writes one row alone; if the database rejects it, writes it again without the text that
/// came from outside (response body, error), with the reason in `error`; if even that is
/// rejected, drops it. Each case is counted in `delivery_log_quarantined_total` and logged.
async fn quarantine(pool: &PgPool, record: &AttemptRecord, stop: &Stop) {
    let Err(reason) = write_retrying(pool, std::slice::from_ref(record), stop).await else {
        return;
    };
    let stripped = AttemptRecord {
        response_body: None,
        error: Some(format!("attempt details not stored: {reason}")),
        ..record.clone()
    };
    let how = match write_retrying(pool, std::slice::from_ref(&stripped), stop).await {
        Ok(()) => "stored_without_details",
        Err(_) => "dropped",
    };
    metrics::counter!("delivery_log_quarantined_total", "how" => how).increment(1);
    tracing::error!(
        account = %record.account_id, event = %record.event_id, endpoint = %record.endpoint_id,
        attempt = record.attempt, error = %reason, how,
        "delivery-log row quarantined: the database rejects it"
    );
}

/// `write`, retrying transient failures with backoff until they heal or the shutdown deadline
/// passes (then the rows are given up, counted and logged: the deliveries themselves are done,
/// only their log entry is lost). Returns the error the database rejected the rows with.
async fn write_retrying(
    pool: &PgPool,
    rows: &[AttemptRecord],
    stop: &Stop,
) -> Result<(), sqlx::Error> {
    match stop.retry("writing the delivery log", || write(pool, rows)).await {
        Ok(()) => Ok(()),
        Err(None) => {
            metrics::counter!("delivery_log_unwritten_total").increment(rows.len() as u64);
            tracing::error!(rows = rows.len(), "attempt records not written");
            Ok(())
        }
        Err(Some(e)) => Err(e),
    }
}

/// Inserts the attempts and upserts each (event, endpoint)'s state in one transaction.
pub async fn write(pool: &PgPool, batch: &[AttemptRecord]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO delivery_attempts (account_id, event_id, endpoint_id, attempt, outcome, \
         http_status, latency_ms, response_body, error, attempted_at) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::int[], $5::text[], \
         $6::int[], $7::int[], $8::text[], $9::text[], $10::timestamptz[])",
    )
    .bind(batch.iter().map(|r| r.account_id.0).collect::<Vec<_>>())
    .bind(batch.iter().map(|r| r.event_id.0.clone()).collect::<Vec<_>>())
    .bind(batch.iter().map(|r| r.endpoint_id.0).collect::<Vec<_>>())
    .bind(batch.iter().map(|r| r.attempt as i32).collect::<Vec<_>>())
    .bind(batch.iter().map(|r| r.outcome.label()).collect::<Vec<_>>())
    .bind(batch.iter().map(|r| r.http_status.map(i32::from)).collect::<Vec<_>>())
    .bind(
        batch
            .iter()
            .map(|r| r.latency.as_millis().min(i32::MAX as u128) as i32)
            .collect::<Vec<_>>(),
    )
    .bind(
        batch
            .iter()
            .map(|r| r.response_body.as_deref().map(|t| pg_text(t).into_owned()))
            .collect::<Vec<_>>(),
    )
    .bind(
        batch
            .iter()
            .map(|r| r.error.as_deref().map(|t| pg_text(t).into_owned()))
            .collect::<Vec<_>>(),
    )
    .bind(batch.iter().map(|r| r.attempted_at).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;

    // One row per (event, endpoint) in the upsert: the latest attempt of the batch wins.
    let mut latest: HashMap<(AccountId, &str, EndpointId), &AttemptRecord> = HashMap::new();
    for r in batch {
        let key = (r.account_id, r.event_id.as_str(), r.endpoint_id);
        match latest.get(&key) {
            Some(prev) if prev.attempt > r.attempt => {}
            _ => {
                latest.insert(key, r);
            }
        }
    }
    let rows: Vec<&AttemptRecord> = latest.into_values().collect();
    sqlx::query(
        "INSERT INTO deliveries AS d (account_id, event_id, endpoint_id, event_type, state, attempts, \
         last_status, last_error, received_at, first_attempt_at, last_attempt_at, delivered_at, replay) \
         SELECT a, e, p, t, s, n, st, er, rc, at, at, CASE WHEN s = 'delivered' THEN at END, rp \
         FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::int[], \
         $7::int[], $8::text[], $9::timestamptz[], $10::timestamptz[], $11::bool[]) \
           AS u(a, e, p, t, s, n, st, er, rc, at, rp) \
         ON CONFLICT (account_id, event_id, endpoint_id, received_at) DO UPDATE SET \
           replay = d.replay OR EXCLUDED.replay, \
           state = CASE WHEN d.state = 'delivered' THEN 'delivered' ELSE EXCLUDED.state END, \
           attempts = GREATEST(d.attempts, EXCLUDED.attempts), \
           last_status = EXCLUDED.last_status, last_error = EXCLUDED.last_error, \
           last_attempt_at = EXCLUDED.last_attempt_at, \
           delivered_at = COALESCE(d.delivered_at, EXCLUDED.delivered_at), updated_at = now()",
    )
    .bind(rows.iter().map(|r| r.account_id.0).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.event_id.0.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.endpoint_id.0).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| pg_text(&r.event_type).into_owned()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.state.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.attempt as i32).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.http_status.map(i32::from)).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.error.as_deref().map(|t| pg_text(t).into_owned())).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.received_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.attempted_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.replay).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    write_marks(&mut tx, batch).await?;
    tx.commit().await
}

/// Raises each source partition's progress mark to the highest offset in the batch, in the
/// log's own transaction: a record above its partition's mark has no attempt in the log.
async fn write_marks(
    tx: &mut sqlx::PgConnection,
    batch: &[AttemptRecord],
) -> Result<(), sqlx::Error> {
    let mut highest: HashMap<&Tp, i64> = HashMap::new();
    for (tp, offset) in batch.iter().filter_map(|r| r.source.as_ref()) {
        let o = highest.entry(tp).or_insert(*offset);
        *o = (*o).max(*offset);
    }
    if highest.is_empty() {
        return Ok(());
    }
    // Sorted, so two writers raising the same marks lock their rows in one order.
    let mut marks: Vec<(&Tp, i64)> = highest.into_iter().collect();
    marks.sort_unstable();
    sqlx::query(
        "INSERT INTO log_marks AS m (topic, partition, last_offset) \
         SELECT * FROM UNNEST($1::text[], $2::int[], $3::bigint[]) \
         ON CONFLICT (topic, partition) DO UPDATE SET \
           last_offset = GREATEST(m.last_offset, EXCLUDED.last_offset), updated_at = now()",
    )
    .bind(marks.iter().map(|(tp, _)| tp.0.as_str()).collect::<Vec<_>>())
    .bind(marks.iter().map(|(tp, _)| tp.1).collect::<Vec<_>>())
    .bind(marks.iter().map(|(_, o)| *o).collect::<Vec<_>>())
    .execute(tx)
    .await?;
    Ok(())
}

/// The progress mark of a source partition: the highest offset of it whose attempt is in the
/// log (`None`: none is).
pub async fn log_mark(pool: &PgPool, tp: &Tp) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT last_offset FROM log_marks WHERE topic = $1 AND partition = $2")
        .bind(&tp.0)
        .bind(tp.1)
        .fetch_optional(pool)
        .await
}

/// Whether the log shows (event, endpoint) delivered. The event's `received_at` is the log's
/// partition key: the lookup reads one day's partition.
pub async fn already_delivered(
    pool: &PgPool,
    account_id: AccountId,
    event_id: &EventId,
    endpoint_id: EndpointId,
    received_at: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let found: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM deliveries WHERE account_id = $1 AND event_id = $2 AND endpoint_id = $3 \
         AND received_at = $4 AND state = 'delivered'",
    )
    .bind(account_id)
    .bind(event_id)
    .bind(endpoint_id)
    .bind(received_at)
    .fetch_optional(pool)
    .await?;
    Ok(found.is_some())
}
