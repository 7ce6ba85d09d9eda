//! The `accounts` table.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::ids::AccountId;
use crate::tier::{RateLimit, Tier};

use super::audit::{self, Change};
use super::DbError;

/// An account row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Account {
    /// Id.
    pub id: AccountId,
    /// Display name.
    pub name: String,
    /// Tier.
    pub tier: Tier,
    /// Intake limit override (events/s), if any.
    pub ingest_rate_per_sec: Option<i32>,
    /// Intake burst override, if any.
    pub ingest_burst: Option<i32>,
    /// Delivery limit override (deliveries/s), if any.
    pub delivery_rate_per_sec: Option<i32>,
    /// Delivery burst override, if any.
    pub delivery_burst: Option<i32>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

type Row =
    (AccountId, String, String, Option<i32>, Option<i32>, Option<i32>, Option<i32>, DateTime<Utc>);

fn from_row(r: Row) -> Account {
    Account {
        id: r.0,
        name: r.1,
        tier: Tier::parse(&r.2).unwrap_or_default(),
        ingest_rate_per_sec: r.3,
        ingest_burst: r.4,
        delivery_rate_per_sec: r.5,
        delivery_burst: r.6,
        created_at: r.7,
    }
}

const COLUMNS: &str = "id, name, tier, ingest_rate_per_sec, ingest_burst, delivery_rate_per_sec, delivery_burst, created_at";

/// Creates an account, audited as `actor`.
pub async fn create(
    pool: &PgPool,
    name: &str,
    tier: Tier,
    actor: &str,
) -> Result<Account, DbError> {
    let mut tx = pool.begin().await?;
    let row: Row = sqlx::query_as(&format!(
        "INSERT INTO accounts (id, name, tier) VALUES ($1, $2, $3) RETURNING {COLUMNS}"
    ))
    .bind(AccountId::new())
    .bind(name)
    .bind(tier.as_str())
    .fetch_one(&mut *tx)
    .await?;
    let account = from_row(row);
    let change = Change {
        after: serde_json::to_value(&account).ok(),
        ..Change::of(account.id, actor, "account.create", account.id)
    };
    audit::record(&mut tx, &change).await?;
    tx.commit().await?;
    Ok(account)
}

/// One account by id.
pub async fn get(pool: &PgPool, id: AccountId) -> Result<Option<Account>, DbError> {
    let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM accounts WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(from_row))
}

/// Accounts, oldest id first, after the `after` cursor.
pub async fn list(
    pool: &PgPool,
    after: Option<AccountId>,
    limit: i64,
) -> Result<Vec<Account>, DbError> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM accounts WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// What an operator may change on an account; absent fields stay.
#[derive(Debug, Clone, Default)]
pub struct AccountPatch {
    /// New tier.
    pub tier: Option<Tier>,
    /// Intake limit override (`Some(None)`: back to the tier default).
    pub ingest_limit: Option<Option<RateLimit>>,
    /// Delivery limit override (`Some(None)`: back to the tier default).
    pub delivery_limit: Option<Option<RateLimit>>,
}

/// Changes an account, audited with before and after; `None` when there is no such account.
pub async fn update(
    pool: &PgPool,
    id: AccountId,
    patch: &AccountPatch,
    actor: &str,
) -> Result<Option<Account>, DbError> {
    let mut tx = pool.begin().await?;
    let before: Option<Row> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM accounts WHERE id = $1 FOR UPDATE"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(before) = before.map(from_row) else { return Ok(None) };
    let pair = |l: Option<RateLimit>| (l.map(|l| l.per_second as i32), l.map(|l| l.burst as i32));
    let (ingest_rate, ingest_burst) = match patch.ingest_limit {
        Some(l) => pair(l),
        None => (before.ingest_rate_per_sec, before.ingest_burst),
    };
    let (delivery_rate, delivery_burst) = match patch.delivery_limit {
        Some(l) => pair(l),
        None => (before.delivery_rate_per_sec, before.delivery_burst),
    };
    let row: Row = sqlx::query_as(&format!(
        "UPDATE accounts SET tier = $2, ingest_rate_per_sec = $3, ingest_burst = $4, \
         delivery_rate_per_sec = $5, delivery_burst = $6, updated_at = now() WHERE id = $1 \
         RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(patch.tier.unwrap_or(before.tier).as_str())
    .bind(ingest_rate)
    .bind(ingest_burst)
    .bind(delivery_rate)
    .bind(delivery_burst)
    .fetch_one(&mut *tx)
    .await?;
    let after = from_row(row);
    if after != before {
        let change = Change {
            before: serde_json::to_value(&before).ok(),
            after: serde_json::to_value(&after).ok(),
            ..Change::of(id, actor, "account.update", id)
        };
        audit::record(&mut tx, &change).await?;
    }
    tx.commit().await?;
    Ok(Some(after))
}
