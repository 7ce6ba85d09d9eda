//! Reading the delivery log (`deliveries`, `delivery_attempts`) for producers: where an event
//! went, and how an endpoint is doing. Every query carries the account.

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
