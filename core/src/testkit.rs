//! Shared kit for integration tests: every test gets its own topic prefix and its own
//! database, so tests run in parallel against the one local broker and Postgres and leave
//! nothing behind. Enabled with the `testkit` feature (dev-dependencies only).
//!
//! `HOOKSTREAM_TEST_BROKERS` and `HOOKSTREAM_TEST_DATABASE_URL` point it at the services that
//! `scripts/dev-up.sh` started; the defaults match that script's defaults.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::future::Future;
use std::time::Duration;

use sqlx::{Connection, PgConnection, PgPool};

use crate::config::{DatabaseConfig, KafkaConfig, TopicsConfig};
use crate::kafka::{self, TopicSpec};

/// Bootstrap servers of the test broker.
pub fn brokers() -> String {
    std::env::var("HOOKSTREAM_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".into())
}

/// URL of the test Postgres' maintenance database (tests create their own databases there).
pub fn admin_database_url() -> String {
    std::env::var("HOOKSTREAM_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://hookstream@127.0.0.1:15432/postgres".into())
}

/// A short random token for unique names.
pub fn unique(tag: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{tag}{}", &id[..12])
}

/// Kafka settings for the test broker, with short timeouts.
pub fn kafka_config() -> KafkaConfig {
    KafkaConfig {
        brokers: brokers(),
        produce_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(10),
        ..KafkaConfig::default()
    }
}

/// Topic settings with a unique prefix and a short retry schedule.
pub fn topics_config(partitions: i32) -> TopicsConfig {
    TopicsConfig {
        prefix: format!("{}.", unique("t")),
        partitions,
        retry_schedule: vec![
            Duration::from_millis(200),
            Duration::from_millis(400),
            Duration::from_millis(800),
        ],
        ..TopicsConfig::default()
    }
}

/// Creates `names` with `partitions` partitions on the test broker.
pub async fn create_topics(names: &[String], partitions: i32) {
    let admin = kafka::admin(&kafka_config(), "hookstream-test").expect("admin client");
    let specs: Vec<TopicSpec> = names
        .iter()
        .map(|n| TopicSpec {
            name: n.clone(),
            partitions,
            replication_factor: 1,
            configs: vec![],
        })
        .collect();
    kafka::create_topics(&admin, &specs).await.expect("create topics");
}

/// A migrated database of its own, dropped when this value is dropped.
pub struct TestDatabase {
    /// Pool on the test's database.
    pub pool: PgPool,
    /// Settings pointing at it, for services started in-process.
    pub config: DatabaseConfig,
    name: String,
}

impl TestDatabase {
    /// Creates and migrates a fresh database.
    pub async fn new() -> Self {
        let name = unique("hs_test_");
        let admin_url = admin_database_url();
        let mut conn = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("test Postgres at {admin_url} unreachable (run scripts/dev-up.sh): {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create db");
        let _ = conn.close().await;
        let mut url = url::Url::parse(&admin_url).expect("admin url");
        url.set_path(&name);
        let config = DatabaseConfig {
            url: url.to_string(),
            max_connections: 5,
            connect_timeout: Duration::from_secs(5),
        };
        let pool = crate::db::connect(&config).await.expect("connect test db");
        crate::db::migrate(&pool).await.expect("migrate test db");
        Self { pool, config, name }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let pool = self.pool.clone();
        // Drop runs outside async context guarantees: use a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
            if let Ok(rt) = rt {
                rt.block_on(async move {
                    pool.close().await;
                    if let Ok(mut conn) = PgConnection::connect(&admin_database_url()).await {
                        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .execute(&mut conn)
                            .await;
                    }
                });
            }
        })
        .join();
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
