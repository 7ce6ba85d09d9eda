//! Reading the delivery log (`deliveries`, `delivery_attempts`) for producers: where an event
//! went, and how an endpoint is doing; and expunging what of an event's subscriber data the
//! database keeps. Every query carries the account.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::DbError;
use crate::ids::{AccountId, EndpointId};

/// One attempt.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AttemptLog {
    /// Attempt number (1 = the first).
    pub attempt: i32,
    /// `delivered`, `retryable`, `permanent` or `redriven`.
    pub outcome: String,
    /// HTTP status, when a response came back.
    pub http_status: Option<i32>,
    /// Time to the response, in ms.
    pub latency_ms: Option<i32>,
    /// Transport error or reason.
    pub error: Option<String>,
    /// When.
    pub attempted_at: DateTime<Utc>,
}

/// The delivery of one event to one endpoint.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Delivery {
    /// Endpoint.
    #[schema(value_type = String, format = Uuid)]
    pub endpoint_id: EndpointId,
    /// `pending`, `delivered`, `retrying` or `failed` (in the DLQ).
    pub state: String,
    /// Attempts made.
    pub attempts: i32,
    /// Last HTTP status.
    pub last_status: Option<i32>,
    /// Last error.
    pub last_error: Option<String>,
    /// Whether it was a replay.
    pub replay: bool,
    /// Times it was redriven from the DLQ.
    pub redrives: i32,
    /// First attempt.
    pub first_attempt_at: Option<DateTime<Utc>>,
    /// Last attempt.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// When a 2xx came back.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Every attempt, oldest first.
    #[sqlx(skip)]
    pub attempt_log: Vec<AttemptLog>,
}

/// Where one event of the account went: one entry per endpoint.
pub async fn for_event(
    pool: &PgPool,
    account_id: AccountId,
    event_id: &str,
) -> Result<Vec<Delivery>, DbError> {
    let mut deliveries: Vec<Delivery> = sqlx::query_as(
        "SELECT endpoint_id, state, attempts, last_status, last_error, replay, redrives, \
         first_attempt_at, last_attempt_at, delivered_at FROM deliveries \
         WHERE account_id = $1 AND event_id = $2 ORDER BY endpoint_id",
    )
    .bind(account_id)
    .bind(event_id)
    .fetch_all(pool)
    .await?;
    let attempts: Vec<(EndpointId, AttemptLog)> = sqlx::query_as::<_, AttemptRow>(
        "SELECT endpoint_id, attempt, outcome, http_status, latency_ms, error, attempted_at \
         FROM delivery_attempts WHERE account_id = $1 AND event_id = $2 ORDER BY id",
    )
    .bind(account_id)
    .bind(event_id)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| (r.endpoint_id, r.log))
    .collect();
    for d in &mut deliveries {
        d.attempt_log =
            attempts.iter().filter(|(e, _)| *e == d.endpoint_id).map(|(_, a)| a.clone()).collect();
    }
    Ok(deliveries)
}

/// What [`expunge`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Expunged {
    /// Receivers' response bodies removed from the delivery log.
    pub response_bodies: u64,
    /// DLQ entries removed (they held the event's payload).
    pub dead_letters: u64,
}

/// Deletes the subscriber data the database keeps of the account's event `event_id`: the
/// receivers' response bodies in the delivery log and the DLQ entries (whose stored task holds
/// the payload; without it there is nothing to redrive). The log's states, statuses and times
/// stay. Audited as `event.expunge` in the same transaction. `None` when the account has no
/// trace of the event. Records still on Kafka topics go with the topics' retention.
pub async fn expunge(
    pool: &PgPool,
    account_id: AccountId,
    event_id: &str,
    actor: &str,
) -> Result<Option<Expunged>, DbError> {
    let mut tx = pool.begin().await?;
    let known: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM deliveries WHERE account_id = $1 AND event_id = $2) \
         OR EXISTS (SELECT 1 FROM dead_letters WHERE account_id = $1 AND event_id = $2)",
    )
    .bind(account_id)
    .bind(event_id)
    .fetch_one(&mut *tx)
    .await?;
    if !known {
        return Ok(None);
    }
    let response_bodies = sqlx::query(
        "UPDATE delivery_attempts SET response_body = NULL \
         WHERE account_id = $1 AND event_id = $2 AND response_body IS NOT NULL",
    )
    .bind(account_id)
    .bind(event_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let dead_letters =
        sqlx::query("DELETE FROM dead_letters WHERE account_id = $1 AND event_id = $2")
            .bind(account_id)
            .bind(event_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    let expunged = Expunged { response_bodies, dead_letters };
    let mut change = super::audit::Change::of(account_id, actor, "event.expunge", event_id);
    change.after = serde_json::to_value(expunged).ok();
    super::audit::record(&mut tx, &change).await?;
    tx.commit().await?;
    Ok(Some(expunged))
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    endpoint_id: EndpointId,
    #[sqlx(flatten)]
    log: AttemptLog,
}

/// How an endpoint did over a window.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EndpointStats {
    /// Window start.
    pub since: DateTime<Utc>,
    /// Deliveries (event, endpoint) last changed in the window, by state.
    pub delivered: i64,
    /// In the DLQ.
    pub failed: i64,
    /// Waiting on a retry tier.
    pub retrying: i64,
    /// HTTP attempts in the window.
    pub attempts: i64,
    /// Median response time of those attempts, ms.
    pub latency_ms_p50: Option<f64>,
    /// 95th percentile, ms.
    pub latency_ms_p95: Option<f64>,
    /// 99th percentile, ms.
    pub latency_ms_p99: Option<f64>,
}

/// Counts and latency of one endpoint of the account since `since`.
pub async fn endpoint_stats(
    pool: &PgPool,
    account_id: AccountId,
    endpoint_id: EndpointId,
    since: DateTime<Utc>,
) -> Result<EndpointStats, DbError> {
    let (delivered, failed, retrying): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE state = 'delivered'), count(*) FILTER (WHERE state = 'failed'), \
         count(*) FILTER (WHERE state = 'retrying') FROM deliveries \
         WHERE account_id = $1 AND endpoint_id = $2 AND updated_at >= $3",
    )
    .bind(account_id)
    .bind(endpoint_id)
    .bind(since)
    .fetch_one(pool)
    .await?;
    let (attempts, p50, p95, p99): (i64, Option<f64>, Option<f64>, Option<f64>) = sqlx::query_as(
        "SELECT count(*), \
         percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms), \
         percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms), \
         percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) \
         FROM delivery_attempts WHERE account_id = $1 AND endpoint_id = $2 AND attempted_at >= $3 \
         AND http_status IS NOT NULL",
    )
    .bind(account_id)
    .bind(endpoint_id)
    .bind(since)
    .fetch_one(pool)
    .await?;
    Ok(EndpointStats {
        since,
        delivered,
        failed,
        retrying,
        attempts,
        latency_ms_p50: p50,
        latency_ms_p95: p95,
        latency_ms_p99: p99,
    })
}
