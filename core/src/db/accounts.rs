//! The `accounts` table.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::ids::AccountId;
use crate::tier::Tier;

use super::DbError;

/// An account row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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

/// Creates an account.
pub async fn create(pool: &PgPool, name: &str, tier: Tier) -> Result<Account, DbError> {
    let row: Row = sqlx::query_as(&format!(
        "INSERT INTO accounts (id, name, tier) VALUES ($1, $2, $3) RETURNING {COLUMNS}"
    ))
    .bind(AccountId::new())
    .bind(name)
    .bind(tier.as_str())
    .fetch_one(pool)
    .await?;
    Ok(from_row(row))
}

/// One account by id.
pub async fn get(pool: &PgPool, id: AccountId) -> Result<Option<Account>, DbError> {
    let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM accounts WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(from_row))
}

/// Sets the intake limit override of an account (`None` returns it to the tier default).
pub async fn set_ingest_limit(
    pool: &PgPool,
    id: AccountId,
    per_sec: Option<i32>,
    burst: Option<i32>,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE accounts SET ingest_rate_per_sec = $2, ingest_burst = $3, updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(per_sec)
    .bind(burst)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
