//! The `api_keys` table. Only hashes are stored.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::api_key::{self, NewApiKey};
use crate::ids::{AccountId, ApiKeyId};
use crate::tier::{RateLimit, Tier};

use super::audit::{self, Change};
use super::DbError;

/// What a presented key resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOwner {
    /// The key's id (for the audit log).
    pub key_id: ApiKeyId,
    /// The account it acts for.
    pub account_id: AccountId,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// The account's intake limit (override or tier default).
    pub ingest_limit: RateLimit,
}

/// A key as listings show it (never the key itself).
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct ApiKeyInfo {
    /// Id.
    pub id: ApiKeyId,
    /// Label.
    pub name: String,
    /// The key's first characters.
    pub prefix: String,
    /// Issued at.
    pub created_at: DateTime<Utc>,
    /// Revoked at.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Issues a key for an account, audited as `actor`; the returned key is the only copy of it.
pub async fn issue(
    pool: &PgPool,
    account_id: AccountId,
    name: &str,
    actor: &str,
) -> Result<(ApiKeyId, NewApiKey), DbError> {
    let key = api_key::generate();
    let id = ApiKeyId::new();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO api_keys (id, account_id, name, prefix, key_hash) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(account_id)
    .bind(name)
    .bind(&key.display_prefix)
    .bind(&key.hash[..])
    .execute(&mut *tx)
    .await?;
    let change = Change {
        after: Some(serde_json::json!({"name": name, "prefix": key.display_prefix})),
        ..Change::of(account_id, actor, "api_key.issue", id)
    };
    audit::record(&mut tx, &change).await?;
    tx.commit().await?;
    Ok((id, key))
}

/// Revokes a key of `account_id`, audited; false when the account has no such live key.
pub async fn revoke(
    pool: &PgPool,
    account_id: AccountId,
    key_id: ApiKeyId,
    actor: &str,
) -> Result<bool, DbError> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND account_id = $2 AND revoked_at IS NULL",
    )
    .bind(key_id)
    .bind(account_id)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    let change = Change {
        before: Some(serde_json::json!({"revoked": false})),
        after: Some(serde_json::json!({"revoked": true})),
        ..Change::of(account_id, actor, "api_key.revoke", key_id)
    };
    audit::record(&mut tx, &change).await?;
    tx.commit().await?;
    Ok(true)
}

/// The account's keys, oldest first.
pub async fn list(pool: &PgPool, account_id: AccountId) -> Result<Vec<ApiKeyInfo>, DbError> {
    Ok(sqlx::query_as(
        "SELECT id, name, prefix, created_at, revoked_at FROM api_keys WHERE account_id = $1 ORDER BY id",
    )
    .bind(account_id)
    .fetch_all(pool)
    .await?)
}

/// key id, account id, revoked at, tier, ingest rate, ingest burst.
type OwnerRow = (ApiKeyId, AccountId, Option<DateTime<Utc>>, String, Option<i32>, Option<i32>);

const OWNER_COLUMNS: &str =
    "k.id, k.account_id, k.revoked_at, a.tier, a.ingest_rate_per_sec, a.ingest_burst";

/// Resolves a key's hash to its owner. This lookup is what establishes the account, so it is
/// the one query not filtered by an account id.
pub async fn find_by_hash(pool: &PgPool, hash: &[u8; 32]) -> Result<Option<KeyOwner>, DbError> {
    let row: Option<OwnerRow> = sqlx::query_as(&format!(
        "SELECT {OWNER_COLUMNS} FROM api_keys k JOIN accounts a ON a.id = k.account_id \
         WHERE k.key_hash = $1"
    ))
    .bind(&hash[..])
    .fetch_optional(pool)
    .await?;
    Ok(row.map(owner))
}

/// Every key that is not revoked, by hash, with its owner: what ingest authenticates from
/// without a query per request. Like [`find_by_hash`], not filtered by account: it is what
/// establishes the account.
pub async fn load_live(pool: &PgPool) -> Result<Vec<([u8; 32], KeyOwner)>, DbError> {
    let rows: Vec<LiveKey> = sqlx::query_as(&format!(
        "SELECT k.key_hash, {OWNER_COLUMNS} FROM api_keys k \
         JOIN accounts a ON a.id = k.account_id WHERE k.revoked_at IS NULL"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let hash: [u8; 32] = r.key_hash.try_into().ok()?;
            let row =
                (r.id, r.account_id, r.revoked_at, r.tier, r.ingest_rate_per_sec, r.ingest_burst);
            Some((hash, owner(row)))
        })
        .collect())
}

#[derive(sqlx::FromRow)]
struct LiveKey {
    key_hash: Vec<u8>,
    id: ApiKeyId,
    account_id: AccountId,
    revoked_at: Option<DateTime<Utc>>,
    tier: String,
    ingest_rate_per_sec: Option<i32>,
    ingest_burst: Option<i32>,
}

fn owner((key_id, account_id, revoked_at, tier, rate, burst): OwnerRow) -> KeyOwner {
    let default = Tier::parse(&tier).unwrap_or_default().default_ingest_limit();
    let per_second = rate.and_then(|r| u32::try_from(r).ok()).unwrap_or(default.per_second);
    let burst = burst.and_then(|b| u32::try_from(b).ok()).unwrap_or(default.burst.max(per_second));
    KeyOwner { key_id, account_id, revoked_at, ingest_limit: RateLimit { per_second, burst } }
}
