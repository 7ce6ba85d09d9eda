//! The dead-letter queue, for people: the `dlq` topic is indexed into Postgres (by the
//! retrier) so entries can be listed with filters, shown, and redriven onto the retry schedule
//! again. Every query takes the account when the caller acts for one.

use std::num::NonZeroU32;

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use opentelemetry::KeyValue;
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Postgres, QueryBuilder};
use tokio_util::sync::CancellationToken;

use crate::db::text::pg_text;
use crate::db::DbError;
use crate::delivery::handoff::{Handoff, HandoffError};
use crate::delivery::outcome::FailureReason;
use crate::envelope::{DeliveryTask, Origin};
use crate::ids::{AccountId, DeadLetterId, EndpointId};

/// Entries redriven per page: one query to read, one to mark.
const PAGE: i64 = 500;
/// Redrive produces awaited at once.
const IN_FLIGHT: usize = 64;

/// Why an entry is dead, coarsely: what the DLQ is filtered by (`other` when none fits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
pub enum ErrorClass {
    /// A final 4xx other than 408, 410 and 429.
    #[serde(rename = "http_4xx")]
    #[value(name = "http_4xx")]
    Http4xx,
    /// 5xx, 408 or 429 until the schedule ran out.
    #[serde(rename = "http_5xx")]
    #[value(name = "http_5xx")]
    Http5xx,
    /// 410: the receiver said the endpoint is gone.
    #[serde(rename = "gone")]
    #[value(name = "gone")]
    Gone,
    /// No answer in time.
    #[serde(rename = "timeout")]
    #[value(name = "timeout")]
    Timeout,
    /// No connection.
    #[serde(rename = "connection")]
    #[value(name = "connection")]
    Connection,
    /// The endpoint's circuit was open.
    #[serde(rename = "circuit_open")]
    #[value(name = "circuit_open")]
    CircuitOpen,
    /// The target is an internal address (the SSRF guard).
    #[serde(rename = "refused")]
    #[value(name = "refused")]
    Refused,
    /// The endpoint was disabled or deleted.
    #[serde(rename = "endpoint_unavailable")]
    #[value(name = "endpoint_unavailable")]
    EndpointUnavailable,
    /// None of the above.
    #[serde(rename = "other")]
    #[value(name = "other")]
    Other,
}

impl ErrorClass {
    /// Every class.
    pub const ALL: [ErrorClass; 9] = [
        ErrorClass::Http4xx,
        ErrorClass::Http5xx,
        ErrorClass::Gone,
        ErrorClass::Timeout,
        ErrorClass::Connection,
        ErrorClass::CircuitOpen,
        ErrorClass::Refused,
        ErrorClass::EndpointUnavailable,
        ErrorClass::Other,
    ];

    /// Its name, as stored and filtered by.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Http4xx => "http_4xx",
            ErrorClass::Http5xx => "http_5xx",
            ErrorClass::Gone => "gone",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Connection => "connection",
            ErrorClass::CircuitOpen => "circuit_open",
            ErrorClass::Refused => "refused",
            ErrorClass::EndpointUnavailable => "endpoint_unavailable",
            ErrorClass::Other => "other",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no [`ErrorClass`]; the message lists them.
#[derive(Debug, thiserror::Error)]
#[error("unknown error class {0:?}; expected one of {names}", names = ErrorClass::ALL.map(ErrorClass::as_str).join(", "))]
pub struct UnknownErrorClass(pub String);

impl std::str::FromStr for ErrorClass {
    type Err = UnknownErrorClass;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ErrorClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownErrorClass(s.to_owned()))
    }
}

/// The error class of a dead task: from its typed reason, or (a task written before reasons
/// travelled) from its last status alone.
pub fn error_class(task: &DeliveryTask) -> ErrorClass {
    match (task.last_reason, task.last_status) {
        (Some(reason), _) => ErrorClass::from(reason),
        (None, Some(status)) => ErrorClass::from(FailureReason::of_status(status)),
        (None, None) => ErrorClass::Other,
    }
}

impl From<FailureReason> for ErrorClass {
    fn from(reason: FailureReason) -> Self {
        match reason {
            FailureReason::ClientError => ErrorClass::Http4xx,
            FailureReason::ServerError
            | FailureReason::RequestTimeout
            | FailureReason::TooManyRequests => ErrorClass::Http5xx,
            FailureReason::Gone => ErrorClass::Gone,
            FailureReason::Timeout => ErrorClass::Timeout,
            FailureReason::Connection => ErrorClass::Connection,
            FailureReason::CircuitOpen => ErrorClass::CircuitOpen,
            FailureReason::Refused => ErrorClass::Refused,
            FailureReason::EndpointUnavailable => ErrorClass::EndpointUnavailable,
            FailureReason::Unexpected => ErrorClass::Other,
        }
    }
}

/// A DLQ record as read from the topic, ready to index.
#[derive(Debug, Clone)]
pub struct NewDeadLetter {
    /// Topic it sits in.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// The failed task, with its final status and error.
    pub task: DeliveryTask,
    /// `hs-origin`.
    pub origin: Option<String>,
    /// `traceparent`.
    pub traceparent: Option<String>,
    /// When it was dead-lettered (the record's timestamp).
    pub dead_at: DateTime<Utc>,
}

/// One DLQ entry, as listed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, sqlx::FromRow, utoipa::ToSchema)]
pub struct DeadLetter {
    /// Entry id.
    #[schema(value_type = String, format = Uuid)]
    pub id: DeadLetterId,
    /// Account.
    #[schema(value_type = String, format = Uuid)]
    pub account_id: AccountId,
    /// Endpoint the delivery was for.
    #[schema(value_type = String, format = Uuid)]
    pub endpoint_id: EndpointId,
    /// The event (`webhook-id`).
    pub event_id: String,
    /// Event type.
    pub event_type: String,
    /// Coarse reason (an [`ErrorClass`]).
    pub error_class: String,
    /// Last HTTP status, when a response came back.
    pub last_status: Option<i32>,
    /// Last error.
    pub last_error: Option<String>,
    /// Attempts made.
    pub attempts: i32,
    /// When it was dead-lettered.
    pub dead_at: DateTime<Utc>,
    /// When it was redriven, if it was.
    pub redriven_at: Option<DateTime<Utc>>,
    /// Who redrove it.
    pub redriven_by: Option<String>,
}

/// One entry with its whole task.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterDetail {
    /// The listed fields.
    #[serde(flatten)]
    pub entry: DeadLetter,
    /// The task as it would be redriven.
    pub task: DeliveryTask,
    /// `topic/partition/offset` of the source event.
    pub origin: Option<String>,
    /// Where the record sits in the dlq topic.
    pub position: String,
    /// Trace context.
    pub traceparent: Option<String>,
}

/// Which entries a list or redrive covers. Empty fields match everything.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Filter {
    /// Only this account (always set when the caller acts for an account).
    pub account: Option<AccountId>,
    /// Only this endpoint.
    pub endpoint: Option<EndpointId>,
    /// Only this event type, or a `prefix.*` wildcard.
    pub event_type: Option<String>,
    /// Dead-lettered at or after.
    pub from: Option<DateTime<Utc>>,
    /// Dead-lettered before.
    pub to: Option<DateTime<Utc>>,
    /// Only this error class.
    pub error_class: Option<ErrorClass>,
    /// Also entries redriven before (lists only; a redrive never takes them).
    pub include_redriven: bool,
}

impl Filter {
    fn push_where(&self, q: &mut QueryBuilder<'_, Postgres>) {
        q.push(" WHERE true");
        if let Some(a) = self.account {
            q.push(" AND account_id = ").push_bind(a);
        }
        if let Some(e) = self.endpoint {
            q.push(" AND endpoint_id = ").push_bind(e);
        }
        if let Some(t) = &self.event_type {
            match t.strip_suffix('*') {
                Some(prefix) => {
                    let escaped =
                        prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
                    q.push(" AND event_type LIKE ").push_bind(format!("{escaped}%"));
                }
                None => {
                    q.push(" AND event_type = ").push_bind(t.clone());
                }
            }
        }
        if let Some(from) = self.from {
            q.push(" AND dead_at >= ").push_bind(from);
        }
        if let Some(to) = self.to {
            q.push(" AND dead_at < ").push_bind(to);
        }
        if let Some(c) = &self.error_class {
            q.push(" AND error_class = ").push_bind(c.as_str());
        }
        if !self.include_redriven {
            q.push(" AND redriven_at IS NULL");
        }
    }
}

const COLUMNS: &str = "id, account_id, endpoint_id, event_id, event_type, error_class, \
     last_status, last_error, attempts, dead_at, redriven_at, redriven_by";

/// Indexes DLQ records; a record indexed before is skipped. Returns how many were new.
pub async fn index(pool: &PgPool, rows: &[NewDeadLetter]) -> Result<u64, DbError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut q = QueryBuilder::<Postgres>::new(
        "INSERT INTO dead_letters (id, account_id, topic, partition, kafka_offset, event_id, \
         endpoint_id, event_type, error_class, last_status, last_error, attempts, task, origin, \
         traceparent, dead_at) ",
    );
    let mut encoded = Vec::with_capacity(rows.len());
    for r in rows {
        let task = serde_json::to_value(&r.task).map_err(|e| sqlx::Error::Encode(e.into()))?;
        // jsonb rejects \u0000: an event's data may carry it, and must not stop the index.
        let clean = crate::db::text::pg_json(&task);
        if matches!(clean, std::borrow::Cow::Owned(_)) {
            metrics::counter!("dlq_index_sanitized_total").increment(1);
        }
        encoded.push(clean.into_owned());
    }
    q.push_values(rows.iter().zip(encoded), |mut b, (r, task)| {
        let t = &r.task;
        b.push_bind(DeadLetterId::new())
            .push_bind(t.envelope.account_id)
            .push_bind(r.topic.clone())
            .push_bind(r.partition)
            .push_bind(r.offset)
            .push_bind(pg_text(t.envelope.event_id.as_str()).into_owned())
            .push_bind(t.endpoint_id)
            .push_bind(pg_text(&t.envelope.event_type).into_owned())
            .push_bind(error_class(t).as_str())
            .push_bind(t.last_status.map(i32::from))
            .push_bind(t.last_error.as_deref().map(|e| pg_text(e).into_owned()))
            .push_bind(t.attempt as i32)
            .push_bind(task)
            .push_bind(r.origin.as_deref().map(|o| pg_text(o).into_owned()))
            .push_bind(r.traceparent.as_deref().map(|o| pg_text(o).into_owned()))
            .push_bind(r.dead_at);
    });
    q.push(" ON CONFLICT (topic, partition, kafka_offset) DO NOTHING");
    Ok(q.build().execute(pool).await?.rows_affected())
}

/// Entries matching `filter`, oldest first, after the `after` cursor.
pub async fn list(
    pool: &PgPool,
    filter: &Filter,
    after: Option<DeadLetterId>,
    limit: i64,
) -> Result<Vec<DeadLetter>, DbError> {
    let mut q = QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM dead_letters"));
    filter.push_where(&mut q);
    if let Some(after) = after {
        q.push(" AND id > ").push_bind(after);
    }
    q.push(" ORDER BY id LIMIT ").push_bind(limit);
    Ok(q.build_query_as::<DeadLetter>().fetch_all(pool).await?)
}

/// Number of entries matching `filter`.
pub async fn count(pool: &PgPool, filter: &Filter) -> Result<i64, DbError> {
    let mut q = QueryBuilder::<Postgres>::new("SELECT count(*) FROM dead_letters");
    filter.push_where(&mut q);
    Ok(q.build_query_scalar::<i64>().fetch_one(pool).await?)
}

#[derive(sqlx::FromRow)]
struct DetailRow {
    #[sqlx(flatten)]
    entry: DeadLetter,
    task: sqlx::types::Json<DeliveryTask>,
    origin: Option<String>,
    traceparent: Option<String>,
    topic: String,
    partition: i32,
    kafka_offset: i64,
}

/// One entry with its task; `account` scopes the lookup when the caller acts for one.
pub async fn get(
    pool: &PgPool,
    account: Option<AccountId>,
    id: DeadLetterId,
) -> Result<Option<DeadLetterDetail>, DbError> {
    let mut q = QueryBuilder::<Postgres>::new(format!(
        "SELECT {COLUMNS}, task, origin, traceparent, topic, partition, kafka_offset \
         FROM dead_letters WHERE id = "
    ));
    q.push_bind(id);
    if let Some(a) = account {
        q.push(" AND account_id = ").push_bind(a);
    }
    let row: Option<DetailRow> = q.build_query_as().fetch_optional(pool).await?;
    Ok(row.map(|r| DeadLetterDetail {
        position: format!("{}/{}/{}", r.topic, r.partition, r.kafka_offset),
        entry: r.entry,
        task: r.task.0,
        origin: r.origin,
        traceparent: r.traceparent,
    }))
}

/// Why a redrive stopped.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    /// Reading or marking entries failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The broker did not take a task; entries redriven before it are marked, the rest not.
    #[error("redrive stopped after {redriven} entries: {source}")]
    Handoff {
        /// Entries redriven and marked before the failure.
        redriven: u64,
        /// The failure.
        #[source]
        source: HandoffError,
    },
}

/// What a redrive did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RedriveReport {
    /// Entries the filter matched (not redriven before).
    pub matched: u64,
    /// Entries put back on the retry schedule (0 for a dry run).
    pub redriven: u64,
    /// Ended early by [`RedriveOptions::stop`]; the rest stay in the DLQ.
    pub stopped: bool,
}

/// How a redrive runs.
pub struct RedriveOptions<'a> {
    /// Produces to the first retry tier; `None` makes it a dry run that changes nothing.
    pub handoff: Option<&'a Handoff>,
    /// Who asks (`operator:<name>` or `key:<id>`), kept on the entries and in the audit log.
    pub actor: &'a str,
    /// Paces the entries (shared by every redrive it should bound together, such as one
    /// account's parallel jobs); none: as fast as the broker takes them.
    pub pace: Option<&'a DefaultDirectRateLimiter>,
    /// Entries redriven per call, at most (oldest first); the rest stay for the next call.
    pub limit: Option<u64>,
    /// Stops between pages when cancelled (the report says so); nothing is left claimed.
    pub stop: Option<&'a CancellationToken>,
    /// Entries claimed, sent and marked at a time (`progress` and `stop` are seen between
    /// pages); none: 500.
    pub page: Option<NonZeroU32>,
}

/// A pace of `per_second` entries, for [`RedriveOptions::pace`].
pub fn pace(per_second: NonZeroU32) -> DefaultDirectRateLimiter {
    RateLimiter::direct(Quota::per_second(per_second))
}

/// Puts every live entry matching `filter` back on the retry schedule: each task is produced to
/// the first tier (the broker's ack awaited) and only then marked redriven, here and in the
/// delivery log. `progress` is told (done, total) as it goes.
pub async fn redrive(
    pool: &PgPool,
    filter: &Filter,
    options: RedriveOptions<'_>,
    mut progress: impl FnMut(u64, u64),
) -> Result<RedriveReport, RedriveError> {
    let mut filter = filter.clone();
    filter.include_redriven = false;
    let matching = count(pool, &filter).await?.max(0) as u64;
    let total = options.limit.map_or(matching, |l| l.min(matching));
    let Some(handoff) = options.handoff else {
        progress(total, total);
        return Ok(RedriveReport { matched: matching, redriven: 0, stopped: false });
    };
    let limiter = options.pace;
    let mut report = RedriveReport { matched: matching, redriven: 0, stopped: false };
    let mut after = None;
    while report.redriven < total {
        if options.stop.is_some_and(CancellationToken::is_cancelled) {
            report.stopped = true;
            break;
        }
        let page = options.page.map_or(PAGE, |p| i64::from(p.get()));
        let page_size = page.min((total - report.redriven) as i64);
        let ids = claim(pool, &filter, after, page_size).await?;
        let Some(&last) = ids.last() else { break };
        after = Some(last);
        let details = details(pool, &ids).await?;
        let results: Vec<(DeadLetterId, Result<(), HandoffError>)> = stream::iter(details)
            .map(|d| async move {
                if let Some(l) = limiter {
                    l.until_ready().await;
                }
                let origin =
                    d.origin.as_deref().and_then(|o| o.parse::<Origin>().ok()).unwrap_or_else(
                        || Origin {
                            topic: d.topic.clone(),
                            partition: d.partition,
                            offset: d.kafka_offset,
                        },
                    );
                // A new trace, linked to the one the event travelled in.
                let original = crate::trace::from_traceparent(d.traceparent.as_deref());
                let cx = handoff.tracer().linked_root(
                    "redrive",
                    &original,
                    vec![
                        KeyValue::new("hookstream.dead_letter.id", d.id.to_string()),
                        KeyValue::new(
                            "hookstream.event.id",
                            d.task.0.envelope.event_id.to_string(),
                        ),
                    ],
                );
                let result = handoff.to_retry(&d.task.0, 0, &origin, &cx).await;
                let failed = result.as_ref().err().map(|e| e.to_string());
                crate::trace::end(&cx, failed.as_deref().map(|e| ("produce", e)));
                (d.id, result)
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        let mut done = Vec::with_capacity(results.len());
        let mut failure = None;
        for (id, result) in results {
            match result {
                Ok(()) => done.push(id),
                Err(e) => failure = Some(e),
            }
        }
        mark_redriven(pool, &done, options.actor).await?;
        let failed: Vec<DeadLetterId> =
            ids.iter().filter(|id| !done.contains(id)).copied().collect();
        release(pool, &failed).await?;
        report.redriven += done.len() as u64;
        metrics::counter!("webhook_dlq_redriven_total").increment(done.len() as u64);
        progress(report.redriven, total);
        if let Some(source) = failure {
            return Err(RedriveError::Handoff { redriven: report.redriven, source });
        }
    }
    if report.redriven > 0 {
        audit(pool, &filter, options.actor, &report).await?;
    }
    Ok(report)
}

#[derive(sqlx::FromRow)]
struct RedriveRow {
    id: DeadLetterId,
    task: sqlx::types::Json<DeliveryTask>,
    origin: Option<String>,
    traceparent: Option<String>,
    topic: String,
    partition: i32,
    kafka_offset: i64,
}

async fn details(pool: &PgPool, ids: &[DeadLetterId]) -> Result<Vec<RedriveRow>, DbError> {
    let ids: Vec<uuid::Uuid> = ids.iter().map(|i| i.0).collect();
    Ok(sqlx::query_as(
        "SELECT id, task, origin, traceparent, topic, partition, kafka_offset \
         FROM dead_letters WHERE id = ANY($1) ORDER BY id",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?)
}

/// Marks entries redriven, and their deliveries `retrying` with one more redrive and an
/// attempt-log row saying who redrove them.
/// How long a redrive's claim on an entry lasts: longer than producing a page takes.
const CLAIM_FOR_SECS: i32 = 120;

/// Claims up to `limit` live, unclaimed entries matching `filter` after `after`, oldest first:
/// a concurrent redrive skips them (`SKIP LOCKED`, then the claim), so no entry is sent twice.
async fn claim(
    pool: &PgPool,
    filter: &Filter,
    after: Option<DeadLetterId>,
    limit: i64,
) -> Result<Vec<DeadLetterId>, DbError> {
    let mut q = QueryBuilder::<Postgres>::new(
        "UPDATE dead_letters SET redrive_claimed_until = now() + make_interval(secs => ",
    );
    q.push_bind(CLAIM_FOR_SECS).push(") WHERE id IN (SELECT id FROM dead_letters");
    filter.push_where(&mut q);
    q.push(" AND (redrive_claimed_until IS NULL OR redrive_claimed_until < now())");
    if let Some(after) = after {
        q.push(" AND id > ").push_bind(after);
    }
    q.push(" ORDER BY id LIMIT ").push_bind(limit).push(" FOR UPDATE SKIP LOCKED) RETURNING id");
    let mut ids: Vec<DeadLetterId> = q.build_query_scalar().fetch_all(pool).await?;
    ids.sort();
    Ok(ids)
}

/// Gives back claims on entries that were not put back (the broker refused them).
async fn release(pool: &PgPool, ids: &[DeadLetterId]) -> Result<(), DbError> {
    if ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<uuid::Uuid> = ids.iter().map(|i| i.0).collect();
    sqlx::query("UPDATE dead_letters SET redrive_claimed_until = NULL WHERE id = ANY($1)")
        .bind(ids)
        .execute(pool)
        .await?;
    Ok(())
}

async fn mark_redriven(pool: &PgPool, ids: &[DeadLetterId], actor: &str) -> Result<(), DbError> {
    if ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<uuid::Uuid> = ids.iter().map(|i| i.0).collect();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "WITH marked AS ( \
           UPDATE dead_letters SET redriven_at = now(), redriven_by = $2 \
           WHERE id = ANY($1) AND redriven_at IS NULL \
           RETURNING account_id, event_id, endpoint_id, attempts), \
         logged AS ( \
           INSERT INTO delivery_attempts (account_id, event_id, endpoint_id, attempt, outcome, error) \
           SELECT account_id, event_id, endpoint_id, attempts, 'redriven', 'redriven by ' || $2 FROM marked) \
         UPDATE deliveries d SET state = CASE WHEN d.state = 'delivered' THEN d.state ELSE 'retrying' END, \
           redrives = d.redrives + 1, last_redriven_at = now(), updated_at = now() \
         FROM marked m WHERE d.account_id = m.account_id AND d.event_id = m.event_id \
           AND d.endpoint_id = m.endpoint_id",
    )
    .bind(ids)
    .bind(actor)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn audit(
    pool: &PgPool,
    filter: &Filter,
    actor: &str,
    report: &RedriveReport,
) -> Result<(), DbError> {
    let after = serde_json::json!({
        "endpoint": filter.endpoint,
        "event_type": filter.event_type,
        "from": filter.from,
        "to": filter.to,
        "error_class": filter.error_class,
        "matched": report.matched,
        "redriven": report.redriven,
    });
    sqlx::query(
        "INSERT INTO audit_log (account_id, actor, action, target_type, target_id, after) \
         VALUES ($1, $2, 'dlq.redrive', 'dlq', $3, $4)",
    )
    .bind(filter.account)
    .bind(actor)
    .bind(filter.account.map_or_else(|| "*".to_owned(), |a| a.to_string()))
    .bind(after)
    .execute(pool)
    .await?;
    Ok(())
}

/// Live (not redriven) entries in the whole index, for the DLQ size gauge.
pub async fn live_size(pool: &PgPool) -> Result<i64, DbError> {
    count(pool, &Filter::default()).await
}

/// Event, endpoint and account of every live (not redriven) entry in the whole index, for
/// accounting after a load or fault run (`hookstream-testbed reconcile`).
pub async fn live_keys(pool: &PgPool) -> Result<Vec<(String, EndpointId, AccountId)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT event_id, endpoint_id, account_id FROM dead_letters WHERE redriven_at IS NULL",
    )
    .fetch_all(pool)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_class_follows_the_reason_whatever_the_text_says() {
        let classes: Vec<(FailureReason, &str)> = vec![
            (FailureReason::ClientError, "http_4xx"),
            (FailureReason::ServerError, "http_5xx"),
            (FailureReason::RequestTimeout, "http_5xx"),
            (FailureReason::TooManyRequests, "http_5xx"),
            (FailureReason::Gone, "gone"),
            (FailureReason::Timeout, "timeout"),
            (FailureReason::Connection, "connection"),
            (FailureReason::CircuitOpen, "circuit_open"),
            (FailureReason::Refused, "refused"),
            (FailureReason::EndpointUnavailable, "endpoint_unavailable"),
            (FailureReason::Unexpected, "other"),
        ];
        for (reason, class) in classes {
            assert_eq!(ErrorClass::from(reason).as_str(), class, "{reason:?}");
        }
    }

    #[test]
    fn a_task_without_a_reason_is_classed_by_its_status_alone() {
        let json = serde_json::json!({
            "event_id": "e", "account_id": crate::AccountId::new(), "event_type": "t",
            "occurred_at": "2026-01-01T00:00:00Z", "received_at": "2026-01-01T00:00:00Z",
            "priority": "normal", "data": {}, "schema_version": 1,
            "endpoint_id": EndpointId::new(), "attempt": 3,
            "first_attempt_at": "2026-01-01T00:00:00Z",
            "last_status": 410, "last_error": "circuit open (text is not read)"
        });
        let mut task: DeliveryTask = serde_json::from_value(json).expect("an older task");
        assert_eq!(error_class(&task), ErrorClass::Gone);
        task.last_status = None;
        assert_eq!(error_class(&task), ErrorClass::Other);
        task.last_reason = Some(FailureReason::Refused);
        assert_eq!(error_class(&task), ErrorClass::Refused);
    }
}
