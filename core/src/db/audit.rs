//! The `audit_log` table: who changed what, when, with the settings before and after. Changes
//! write their entry in the same transaction as the change, so each appears exactly once.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};

use super::DbError;
use crate::ids::AccountId;

/// One change to record.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    /// The account it concerns (`None` for installation-wide operator actions).
    pub account_id: Option<AccountId>,
    /// `key:<api key id>` or `operator:<name>`.
    pub actor: &'a str,
    /// What was done, e.g. `endpoint.update`.
    pub action: &'a str,
    /// What kind of thing, e.g. `endpoint`.
    pub target_type: &'a str,
    /// Its id.
    pub target_id: String,
    /// Settings before (none for a creation).
    pub before: Option<serde_json::Value>,
    /// Settings after (none for a deletion).
    pub after: Option<serde_json::Value>,
}

impl<'a> Change<'a> {
    /// A change `actor` made to `target` of `account`; the target's kind is the action's first
    /// word (`endpoint.update`: `endpoint`). Settings before and after are set as needed.
    pub fn of(account: AccountId, actor: &'a str, action: &'a str, target: impl ToString) -> Self {
        Self {
            account_id: Some(account),
            actor,
            action,
            target_type: action.split('.').next().unwrap_or(action),
            target_id: target.to_string(),
            before: None,
            after: None,
        }
    }
}

/// An audit log entry.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Entry {
    /// Entry id, increasing.
    pub id: i64,
    /// Account.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub account_id: Option<AccountId>,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// Kind of target.
    pub target_type: String,
    /// Target id.
    pub target_id: String,
    /// Settings before.
    pub before: Option<serde_json::Value>,
    /// Settings after.
    pub after: Option<serde_json::Value>,
    /// When.
    pub at: DateTime<Utc>,
}

/// Records `change` inside the transaction that makes it.
pub async fn record(
    tx: &mut Transaction<'_, Postgres>,
    change: &Change<'_>,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO audit_log (account_id, actor, action, target_type, target_id, before, after) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(change.account_id)
    .bind(change.actor)
    .bind(change.action)
    .bind(change.target_type)
    .bind(&change.target_id)
    .bind(&change.before)
    .bind(&change.after)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Entries, oldest first after the `after` cursor; `account` scopes them when the caller acts
/// for one account.
pub async fn list(
    pool: &PgPool,
    account: Option<AccountId>,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<Entry>, DbError> {
    Ok(sqlx::query_as(
        "SELECT id, account_id, actor, action, target_type, target_id, before, after, at \
         FROM audit_log WHERE ($1::uuid IS NULL OR account_id = $1) AND id > $2 \
         ORDER BY id LIMIT $3",
    )
    .bind(account)
    .bind(after.unwrap_or(0))
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
