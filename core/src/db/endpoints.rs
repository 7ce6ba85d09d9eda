//! The `endpoints` and `endpoint_secrets` tables.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::audit::{self, Change};
use super::endpoint_rules::Checked;
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
    /// The owner's tier (its weight in the in-flight shares).
    pub tier: Tier,
}

/// An endpoint's settings, as the API shows them.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Endpoint {
    /// Id.
    #[schema(value_type = String, format = Uuid)]
    pub id: EndpointId,
    /// Owner.
    #[schema(value_type = String, format = Uuid)]
    pub account_id: AccountId,
    /// Target URL.
    pub url: String,
    /// Free text.
    pub description: String,
    /// Exact types or wildcards (`subscriber.*`, `*`).
    pub event_types: Vec<String>,
    /// Deliveries per second to this endpoint, at most (none: only the account's limit).
    pub rate_limit_per_sec: Option<i32>,
    /// Burst of the endpoint's limit.
    pub rate_limit_burst: Option<i32>,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// Why it was disabled (by a person, or after a 410 Gone).
    pub disabled_reason: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, account_id, url, description, event_types, rate_limit_per_sec, \
     rate_limit_burst, enabled, disabled_reason, created_at, updated_at";

/// Changes to an endpoint; absent fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    /// New URL.
    pub url: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New event types.
    pub event_types: Option<Vec<String>>,
    /// New limit (`Some(None)` removes it).
    pub rate_limit: Option<Option<RateLimit>>,
    /// Enable or disable.
    pub enabled: Option<bool>,
}

fn json(e: &Endpoint) -> Option<serde_json::Value> {
    serde_json::to_value(e).ok()
}

/// Creates an endpoint with a fresh signing secret, audited as `actor`; returns it and the
/// secret (shown once).
pub async fn create(
    pool: &PgPool,
    account_id: AccountId,
    new: &Checked<NewEndpoint>,
    actor: &str,
) -> Result<(Endpoint, String), DbError> {
    let id = EndpointId::new();
    let secret = SigningSecret::generate();
    let mut tx = pool.begin().await?;
    let endpoint: Endpoint = sqlx::query_as(&format!(
        "INSERT INTO endpoints (id, account_id, url, description, event_types, rate_limit_per_sec, \
         rate_limit_burst) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(account_id)
    .bind(&new.url)
    .bind(&new.description)
    .bind(&new.event_types)
    .bind(new.rate_limit.map(|r| r.per_second as i32))
    .bind(new.rate_limit.map(|r| r.burst as i32))
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO endpoint_secrets (id, account_id, endpoint_id, secret) VALUES ($1, $2, $3, $4)")
        .bind(uuid::Uuid::now_v7())
        .bind(account_id)
        .bind(id)
        .bind(&secret)
        .execute(&mut *tx)
        .await?;
    let change =
        Change { after: json(&endpoint), ..Change::of(account_id, actor, "endpoint.create", id) };
    audit::record(&mut tx, &change).await?;
    tx.commit().await?;
    Ok((endpoint, secret))
}

/// One endpoint of the account.
pub async fn get(
    pool: &PgPool,
    account_id: AccountId,
    id: EndpointId,
) -> Result<Option<Endpoint>, DbError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM endpoints WHERE id = $1 AND account_id = $2"
    ))
    .bind(id)
    .bind(account_id)
    .fetch_optional(pool)
    .await?)
}

/// The account's endpoints, oldest first, after the `after` cursor.
pub async fn list(
    pool: &PgPool,
    account_id: AccountId,
    after: Option<EndpointId>,
    limit: i64,
) -> Result<Vec<Endpoint>, DbError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM endpoints WHERE account_id = $1 AND ($2::uuid IS NULL OR id > $2) \
         ORDER BY id LIMIT $3"
    ))
    .bind(account_id)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Applies `patch` to one endpoint of the account, audited with before and after; `None` when
/// the account has no such endpoint.
pub async fn update(
    pool: &PgPool,
    account_id: AccountId,
    id: EndpointId,
    patch: &Checked<EndpointPatch>,
    actor: &str,
) -> Result<Option<Endpoint>, DbError> {
    let mut tx = pool.begin().await?;
    let before: Option<Endpoint> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM endpoints WHERE id = $1 AND account_id = $2 FOR UPDATE"
    ))
    .bind(id)
    .bind(account_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(before) = before else { return Ok(None) };
    let limit = match patch.rate_limit {
        Some(l) => l,
        None => before.rate_limit_per_sec.map(|r| RateLimit {
            per_second: r.max(1) as u32,
            burst: before.rate_limit_burst.unwrap_or(r).max(1) as u32,
        }),
    };
    let enabled = patch.enabled.unwrap_or(before.enabled);
    let after: Endpoint = sqlx::query_as(&format!(
        "UPDATE endpoints SET url = $3, description = $4, event_types = $5, \
           rate_limit_per_sec = $6, rate_limit_burst = $7, enabled = $8, \
           disabled_reason = CASE WHEN $8 THEN NULL WHEN enabled THEN 'disabled through the API' ELSE disabled_reason END, \
           disabled_at = CASE WHEN $8 THEN NULL WHEN enabled THEN now() ELSE disabled_at END, \
           updated_at = now() \
         WHERE id = $1 AND account_id = $2 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(account_id)
    .bind(patch.url.as_ref().unwrap_or(&before.url))
    .bind(patch.description.as_ref().unwrap_or(&before.description))
    .bind(patch.event_types.as_ref().unwrap_or(&before.event_types))
    .bind(limit.map(|l| l.per_second as i32))
    .bind(limit.map(|l| l.burst as i32))
    .bind(enabled)
    .fetch_one(&mut *tx)
    .await?;
    if after != before {
        let change = Change {
            before: json(&before),
            after: json(&after),
            ..Change::of(account_id, actor, "endpoint.update", id)
        };
        audit::record(&mut tx, &change).await?;
    }
    tx.commit().await?;
    Ok(Some(after))
}

/// Deletes one endpoint of the account (its secrets with it), audited; false when there is no
/// such endpoint.
pub async fn delete(
    pool: &PgPool,
    account_id: AccountId,
    id: EndpointId,
    actor: &str,
) -> Result<bool, DbError> {
    let mut tx = pool.begin().await?;
    let before: Option<Endpoint> = sqlx::query_as(&format!(
        "DELETE FROM endpoints WHERE id = $1 AND account_id = $2 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(account_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(before) = before else { return Ok(false) };
    let change =
        Change { before: json(&before), ..Change::of(account_id, actor, "endpoint.delete", id) };
    audit::record(&mut tx, &change).await?;
    tx.commit().await?;
    Ok(true)
}

/// Gives one endpoint of the account a new signing secret. The current secrets stay valid
/// for `overlap` more (both signatures are sent meanwhile). Returns the new secret, or `None`
/// when there is no such endpoint. Audited without the secrets.
pub async fn rotate_secret(
    pool: &PgPool,
    account_id: AccountId,
    id: EndpointId,
    overlap: std::time::Duration,
    actor: &str,
) -> Result<Option<(String, DateTime<Utc>)>, DbError> {
    let mut tx = pool.begin().await?;
    let exists: Option<EndpointId> =
        sqlx::query_scalar("SELECT id FROM endpoints WHERE id = $1 AND account_id = $2 FOR UPDATE")
            .bind(id)
            .bind(account_id)
            .fetch_optional(&mut *tx)
            .await?;
    if exists.is_none() {
        return Ok(None);
    }
    let old_until = Utc::now()
        + chrono::Duration::from_std(overlap).unwrap_or_else(|_| chrono::Duration::days(7));
    sqlx::query(
        "UPDATE endpoint_secrets SET expires_at = LEAST(COALESCE(expires_at, $3), $3) \
         WHERE endpoint_id = $1 AND account_id = $2",
    )
    .bind(id)
    .bind(account_id)
    .bind(old_until)
    .execute(&mut *tx)
    .await?;
    let secret = SigningSecret::generate();
    sqlx::query("INSERT INTO endpoint_secrets (id, account_id, endpoint_id, secret) VALUES ($1, $2, $3, $4)")
        .bind(uuid::Uuid::now_v7())
        .bind(account_id)
        .bind(id)
        .bind(&secret)
        .execute(&mut *tx)
        .await?;
    let change = Change {
        after: Some(serde_json::json!({"previous_secrets_valid_until": old_until})),
        ..Change::of(account_id, actor, "endpoint.rotate_secret", id)
    };
    audit::record(&mut tx, &change).await?;
    tx.commit().await?;
    Ok(Some((secret, old_until)))
}

/// Disables an endpoint of `account_id` with a reason, audited as `actor`; false if it has no
/// such enabled endpoint.
pub async fn disable(
    pool: &PgPool,
    account_id: AccountId,
    endpoint_id: EndpointId,
    reason: &str,
    actor: &str,
) -> Result<bool, DbError> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query(
        "UPDATE endpoints SET enabled = false, disabled_reason = $3, disabled_at = now(), \
         updated_at = now() WHERE id = $1 AND account_id = $2 AND enabled",
    )
    .bind(endpoint_id)
    .bind(account_id)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    let change = Change {
        before: Some(serde_json::json!({"enabled": true})),
        after: Some(serde_json::json!({"enabled": false, "disabled_reason": reason})),
        ..Change::of(account_id, actor, "endpoint.disable", endpoint_id)
    };
    audit::record(&mut tx, &change).await?;
    tx.commit().await?;
    Ok(true)
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

/// The version every change to `endpoints` bumps (table `endpoint_changes`, one row).
pub async fn change_version<'c, E: sqlx::PgExecutor<'c>>(db: E) -> Result<i64, DbError> {
    let version: i64 =
        sqlx::query_scalar("SELECT version FROM endpoint_changes").fetch_one(db).await?;
    Ok(version)
}

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
            let tier = Tier::parse(&r.7).unwrap_or_default();
            let default = tier.default_delivery_limit();
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
                tier,
            }
        })
        .collect())
}
