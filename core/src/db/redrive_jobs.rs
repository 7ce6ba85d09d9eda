//! The `redrive_jobs` table: DLQ redrives started through the API, with their progress.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::DbError;
use crate::ids::{AccountId, RedriveJobId};

/// A running job not updated for this long has lost its runner (a restart): it is reported
/// `interrupted`. Runners write progress every second.
pub const STALE_AFTER_SECS: i64 = 30;

/// A redrive job as an account sees it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct RedriveJob {
    /// Job id.
    #[schema(value_type = String, format = Uuid)]
    pub id: RedriveJobId,
    /// `running`, `done`, `failed` (the broker or database stopped it; what was not sent
    /// stays in the DLQ) or `interrupted` (the process running it stopped).
    pub state: String,
    /// The filter it was started with.
    #[schema(value_type = Object)]
    pub filter: sqlx::types::Json<serde_json::Value>,
    /// Live entries that matched when it started.
    pub matched: i64,
    /// Entries put back on the retry schedule so far.
    pub redriven: i64,
    /// Why it failed.
    pub error: Option<String>,
    /// Who started it.
    pub actor: String,
    /// When it was started.
    pub created_at: DateTime<Utc>,
    /// When it last made progress.
    pub updated_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
}

/// Records a new running job.
pub async fn create(
    pool: &PgPool,
    account: AccountId,
    actor: &str,
    filter: &serde_json::Value,
) -> Result<RedriveJob, DbError> {
    Ok(sqlx::query_as(
        "INSERT INTO redrive_jobs (id, account_id, actor, filter, state) \
         VALUES ($1, $2, $3, $4, 'running') \
         RETURNING id, state, filter, matched, redriven, error, actor, created_at, updated_at, \
                   finished_at",
    )
    .bind(RedriveJobId::new())
    .bind(account)
    .bind(actor)
    .bind(sqlx::types::Json(filter))
    .fetch_one(pool)
    .await?)
}

/// Writes a running job's progress (also what tells readers it is still alive).
pub async fn progress(
    pool: &PgPool,
    id: RedriveJobId,
    matched: u64,
    redriven: u64,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE redrive_jobs SET matched = $2, redriven = $3, updated_at = now() \
         WHERE id = $1 AND state = 'running'",
    )
    .bind(id)
    .bind(matched as i64)
    .bind(redriven as i64)
    .execute(pool)
    .await?;
    Ok(())
}

/// Ends a job as `state` (`done`, `failed` or `interrupted`).
pub async fn finish(
    pool: &PgPool,
    id: RedriveJobId,
    state: &str,
    matched: u64,
    redriven: u64,
    error: Option<&str>,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE redrive_jobs SET state = $2, matched = $3, redriven = $4, error = $5, \
         updated_at = now(), finished_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(state)
    .bind(matched as i64)
    .bind(redriven as i64)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// One of the account's jobs; a running one its runner stopped updating reads `interrupted`.
pub async fn get(
    pool: &PgPool,
    account: AccountId,
    id: RedriveJobId,
) -> Result<Option<RedriveJob>, DbError> {
    Ok(sqlx::query_as(
        "SELECT id, CASE WHEN state = 'running' AND updated_at < now() - make_interval(secs => $3) \
                THEN 'interrupted' ELSE state END AS state, \
                filter, matched, redriven, error, actor, created_at, updated_at, finished_at \
         FROM redrive_jobs WHERE account_id = $1 AND id = $2",
    )
    .bind(account)
    .bind(id)
    .bind(STALE_AFTER_SECS as f64)
    .fetch_optional(pool)
    .await?)
}
