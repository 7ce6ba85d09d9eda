//! Migrations against the real Postgres.

use hookstream_testkit::TestDatabase;

#[tokio::test]
async fn migrating_twice_is_a_no_op_and_creates_every_table() {
    let db = TestDatabase::new().await;
    // TestDatabase::new migrated once already.
    let applied = hookstream_core::db::migrate(&db.pool).await.expect("second migrate");
    assert_eq!(applied, 0);

    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx%' ORDER BY 1",
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
            "redrive_jobs"
        ]
    );
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
