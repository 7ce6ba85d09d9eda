//! Migrations against the real Postgres.

use hookstream_core::db::log_partitions;
use hookstream_testkit::TestDatabase;

#[tokio::test]
async fn migrating_twice_is_a_no_op_and_creates_every_table() {
    let db = TestDatabase::new().await;
    // TestDatabase::new migrated once already.
    let applied = hookstream_core::db::migrate(&db.pool).await.expect("second migrate");
    assert_eq!(applied, 0);

    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
         AND c.relname NOT LIKE '\\_sqlx%' ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .expect("tables");
    assert_eq!(
        tables,
        [
            "accounts",
            "api_keys",
            "audit_log",
            "dead_letters",
            "deliveries",
            "delivery_attempts",
            "endpoint_changes",
            "endpoint_secrets",
            "endpoints",
            "log_marks",
            "redrive_jobs"
        ]
    );
    // The log's days, today and the week ahead, exist from the start (there is no DEFAULT
    // partition to catch a row without one).
    let parts = log_partitions::list(&db.pool).await.expect("partitions");
    let today = chrono::Utc::now().date_naive();
    for table in log_partitions::TABLES {
        let days: Vec<_> = parts.iter().filter(|p| p.table == table).map(|p| p.day).collect();
        for ahead in 0..=log_partitions::DAYS_AHEAD {
            assert!(days.contains(&(today + chrono::Days::new(ahead))), "{table}: {days:?}");
        }
    }
}

#[tokio::test]
async fn api_keys_hold_only_a_hash() {
    let db = TestDatabase::new().await;
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns WHERE table_name = 'api_keys' ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .expect("columns");
    assert!(columns.contains(&"key_hash".to_owned()));
    assert!(!columns.iter().any(|c| c == "key" || c == "secret"), "{columns:?}");
}
