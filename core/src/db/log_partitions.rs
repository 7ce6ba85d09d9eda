//! The delivery log's day partitions (`deliveries` by the event's `received_at`,
//! `delivery_attempts` by `attempted_at`; see the migration that made them): created a week
//! ahead, and dropped whole once the retention has passed over their day, with
//! `DETACH … CONCURRENTLY` (no lock that stops the writers) and then `DROP`.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::DbError;

/// The partitioned log tables.
pub const TABLES: [&str; 2] = ["deliveries", "delivery_attempts"];

/// Days created ahead of today.
pub const DAYS_AHEAD: u64 = 7;

/// One day partition of a log table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPartition {
    /// The partitioned table (`deliveries` or `delivery_attempts`).
    pub table: String,
    /// The partition's own table (`deliveries_p20261206`).
    pub name: String,
    /// The day (UTC) it holds.
    pub day: NaiveDate,
    /// An earlier detach was interrupted; it must be finalized.
    pub detach_pending: bool,
}

/// Creates the partitions of both tables for each day from `first` to `last` that has none
/// (safe from several processes at once); returns how many were created.
pub async fn create(pool: &PgPool, first: NaiveDate, last: NaiveDate) -> Result<i32, DbError> {
    Ok(sqlx::query_scalar("SELECT hookstream_log_partitions($1, $2)")
        .bind(first)
        .bind(last)
        .fetch_one(pool)
        .await?)
}

/// Every day partition of the log tables, oldest first.
pub async fn list(pool: &PgPool) -> Result<Vec<LogPartition>, DbError> {
    let rows: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT parent.relname::text, child.relname::text, i.inhdetachpending \
         FROM pg_inherits i JOIN pg_class child ON child.oid = i.inhrelid \
         JOIN pg_class parent ON parent.oid = i.inhparent \
         WHERE parent.relname = ANY($1) AND parent.relnamespace = current_schema()::regnamespace",
    )
    .bind(&TABLES[..])
    .fetch_all(pool)
    .await?;
    let mut parts: Vec<LogPartition> = rows
        .into_iter()
        .filter_map(|(table, name, detach_pending)| {
            let day = day_of(&table, &name)?;
            Some(LogPartition { table, name, day, detach_pending })
        })
        .collect();
    parts.sort_by(|a, b| (a.day, &a.table).cmp(&(b.day, &b.table)));
    Ok(parts)
}

/// The day of partition `name` of `table`, when it is named as
/// `hookstream_log_partitions` names them (`<table>_pYYYYMMDD`); other tables are left alone.
fn day_of(table: &str, name: &str) -> Option<NaiveDate> {
    let digits = name.strip_prefix(table)?.strip_prefix("_p")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDate::parse_from_str(digits, "%Y%m%d").ok()
}

/// The last day whose partitions are past `retention` at `now`: every row of it (a day ends
/// at the next midnight UTC) is older than the retention.
pub fn last_expired_day(now: DateTime<Utc>, retention: Duration) -> Option<NaiveDate> {
    let cutoff = now - chrono::Duration::from_std(retention).ok()?;
    cutoff.date_naive().pred_opt()
}

/// Detaches (concurrently) and drops the partitions whose day is past `retention` at `now`;
/// returns their names. One process at a time does it (a session advisory lock); another that
/// finds it taken returns nothing.
pub async fn expire(
    pool: &PgPool,
    retention: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<String>, DbError> {
    let Some(last) = last_expired_day(now, retention) else {
        return Ok(Vec::new());
    };
    let mut conn = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
        .bind(LOCK)
        .fetch_one(&mut *conn)
        .await?;
    if !locked {
        return Ok(Vec::new());
    }
    let result = drop_through(&mut conn, pool, last).await;
    let _ =
        sqlx::query("SELECT pg_advisory_unlock(hashtext($1))").bind(LOCK).execute(&mut *conn).await;
    result
}

const LOCK: &str = "hookstream_log_retention";

async fn drop_through(
    conn: &mut sqlx::PgConnection,
    pool: &PgPool,
    last: NaiveDate,
) -> Result<Vec<String>, DbError> {
    let mut dropped = Vec::new();
    for part in list(pool).await?.into_iter().filter(|p| p.day <= last) {
        // Names come from the catalog and matched `<table>_pYYYYMMDD` (`day_of`): safe to
        // splice. DETACH CONCURRENTLY cannot run in a transaction block: each its own
        // statement. An interrupted one leaves the partition "detach pending": finalize it.
        let how = if part.detach_pending { "FINALIZE" } else { "CONCURRENTLY" };
        let detach = format!("ALTER TABLE {} DETACH PARTITION {} {how}", part.table, part.name);
        sqlx::query(&detach).persistent(false).execute(&mut *conn).await?;
        let drop = format!("DROP TABLE {}", part.name);
        sqlx::query(&drop).persistent(false).execute(&mut *conn).await?;
        tracing::info!(partition = %part.name, day = %part.day, "delivery log partition dropped (retention)");
        metrics::counter!("delivery_log_partitions_dropped_total").increment(1);
        dropped.push(part.name);
    }
    Ok(dropped)
}

/// Today's partitions and the week ahead, then the expired ones dropped: what
/// [`spawn_maintenance`] does each round.
pub async fn maintain(pool: &PgPool, retention: Duration) -> Result<(), DbError> {
    let today = Utc::now().date_naive();
    let ahead = today + chrono::Days::new(DAYS_AHEAD);
    let made = create(pool, today, ahead).await?;
    if made > 0 {
        tracing::info!(made, through = %ahead, "delivery log partitions created ahead");
    }
    expire(pool, retention, Utc::now()).await?;
    metrics::gauge!("delivery_log_partitions").set(list(pool).await?.len() as f64);
    Ok(())
}

/// Runs [`maintain`] now and every `every` until `shutdown`; a failure (database down) is
/// logged and tried again at the next round.
pub fn spawn_maintenance(
    pool: PgPool,
    retention: Duration,
    every: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            if let Err(e) = maintain(&pool, retention).await {
                tracing::error!(error = %e, "delivery log partition maintenance failed; trying again next round");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_partitions_named_by_day_are_recognised() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 6);
        assert_eq!(day_of("deliveries", "deliveries_p20261206"), day);
        assert_eq!(day_of("delivery_attempts", "delivery_attempts_p20261206"), day);
        assert_eq!(day_of("deliveries", "deliveries_old"), None);
        assert_eq!(day_of("deliveries", "deliveries_p2026120"), None);
        assert_eq!(day_of("deliveries", "deliveries_p20261306"), None);
        assert_eq!(day_of("deliveries", "delivery_attempts_p20261206"), None);
    }

    #[test]
    fn a_day_expires_once_all_of_it_is_older_than_the_retention() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().expect("time");
        let day = |d| NaiveDate::from_ymd_opt(2026, 11, d);
        let month = Duration::from_secs(30 * 86_400);
        // 30 days before 2026-12-06 12:00 is 2026-11-06 12:00: the 5th is wholly older.
        assert_eq!(last_expired_day(at("2026-12-06T12:00:00Z"), month), day(5));
        assert_eq!(last_expired_day(at("2026-12-06T00:00:00Z"), month), day(5));
        assert_eq!(last_expired_day(at("2026-12-05T23:59:59Z"), month), day(4));
    }
}
