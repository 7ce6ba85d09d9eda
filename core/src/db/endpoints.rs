//! The `endpoints` and `endpoint_secrets` tables.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::DbError;
use crate::delivery::sign::SigningSecret;
use crate::ids::{AccountId, EndpointId};
use crate::tier::{RateLimit, Tier};

/// A new endpoint's settings.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    /// Target URL.
    pub url: String,
    /// Free text.
    pub description: String,
    /// Exact types or wildcards (`subscriber.*`, `*`).
    pub event_types: Vec<String>,
    /// Per-endpoint delivery limit.
    pub rate_limit: Option<RateLimit>,
}

/// An endpoint as the delivery cache holds it.
#[derive(Debug, Clone)]
pub struct DeliveryEndpoint {
    /// Id.
    pub id: EndpointId,
    /// Owner.
    pub account_id: AccountId,
    /// Target URL.
    pub url: String,
    /// Subscribed types.
    pub event_types: Vec<String>,
    /// Per-endpoint limit, if set.
    pub rate_limit: Option<RateLimit>,
    /// Active secrets, newest first.
    pub secrets: Vec<String>,
    /// The owner's delivery limit (override or tier default).
    pub account_limit: RateLimit,
}

/// Creates an endpoint with a fresh signing secret; returns its id and the secret.
pub async fn create(
    pool: &PgPool,
    account_id: AccountId,
    new: &NewEndpoint,
) -> Result<(EndpointId, String), DbError> {
    let id = EndpointId::new();
    let secret = SigningSecret::generate();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO endpoints (id, account_id, url, description, event_types, rate_limit_per_sec, \
         rate_limit_burst) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(account_id)
    .bind(&new.url)
    .bind(&new.description)
    .bind(&new.event_types)
    .bind(new.rate_limit.map(|r| r.per_second as i32))
    .bind(new.rate_limit.map(|r| r.burst as i32))
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO endpoint_secrets (id, account_id, endpoint_id, secret) VALUES ($1, $2, $3, $4)")
        .bind(uuid::Uuid::now_v7())
        .bind(account_id)
        .bind(id)
        .bind(&secret)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((id, secret))
}

/// Disables an endpoint of `account_id` with a reason; false if it has no such endpoint.
pub async fn disable(
    pool: &PgPool,
    account_id: AccountId,
    endpoint_id: EndpointId,
    reason: &str,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE endpoints SET enabled = false, disabled_reason = $3, disabled_at = now(), \
         updated_at = now() WHERE id = $1 AND account_id = $2 AND enabled",
    )
    .bind(endpoint_id)
    .bind(account_id)
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether an endpoint is enabled, and why not if it is not.
pub async fn status(
    pool: &PgPool,
    account_id: AccountId,
    endpoint_id: EndpointId,
) -> Result<Option<(bool, Option<String>)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT enabled, disabled_reason FROM endpoints WHERE id = $1 AND account_id = $2",
    )
    .bind(endpoint_id)
    .bind(account_id)
    .fetch_optional(pool)
    .await?)
}

type Row = (
    EndpointId,
    AccountId,
    String,
    Vec<String>,
    Option<i32>,
    Option<i32>,
    Vec<String>,
    String,
    Option<i32>,
    Option<i32>,
);

/// Every enabled endpoint of every account with its active secrets: what a dispatcher serves.
/// (The dispatcher works for all accounts; each row keeps its account id.)
pub async fn load_enabled(
    pool: &PgPool,
    now: DateTime<Utc>,
) -> Result<Vec<DeliveryEndpoint>, DbError> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT e.id, e.account_id, e.url, e.event_types, e.rate_limit_per_sec, e.rate_limit_burst, \
           COALESCE(array_agg(s.secret ORDER BY s.created_at DESC) FILTER (WHERE s.secret IS NOT NULL), '{}'), \
           a.tier, a.delivery_rate_per_sec, a.delivery_burst \
         FROM endpoints e JOIN accounts a ON a.id = e.account_id \
         LEFT JOIN endpoint_secrets s ON s.endpoint_id = e.id AND s.account_id = e.account_id \
           AND (s.expires_at IS NULL OR s.expires_at > $1) \
         WHERE e.enabled GROUP BY e.id, a.id",
    )
    .bind(now)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let default = Tier::parse(&r.7).unwrap_or_default().default_delivery_limit();
            let account_limit = match (r.8, r.9) {
                (Some(rate), burst) => RateLimit {
                    per_second: rate.max(1) as u32,
                    burst: burst.unwrap_or(rate).max(1) as u32,
                },
                (None, _) => default,
            };
            DeliveryEndpoint {
                id: r.0,
                account_id: r.1,
                url: r.2,
                event_types: r.3,
                rate_limit: r.4.map(|rate| RateLimit {
                    per_second: rate.max(1) as u32,
                    burst: r.5.unwrap_or(rate).max(1) as u32,
                }),
                secrets: r.6,
                account_limit,
            }
        })
        .collect())
}

/// Sets an account's delivery limit override.
pub async fn set_account_delivery_limit(
    pool: &PgPool,
    account_id: AccountId,
    limit: Option<RateLimit>,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE accounts SET delivery_rate_per_sec = $2, delivery_burst = $3 WHERE id = $1",
    )
    .bind(account_id)
    .bind(limit.map(|l| l.per_second as i32))
    .bind(limit.map(|l| l.burst as i32))
    .execute(pool)
    .await?;
    Ok(())
}
