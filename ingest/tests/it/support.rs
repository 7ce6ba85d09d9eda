//! Starting ingest in-process against a test database and topic prefix.

use std::time::Duration;

use hookstream_core::config::{AdminConfig, HttpConfig, KafkaConfig, TopicsConfig};
use hookstream_core::db::{accounts, api_keys};
use hookstream_core::tier::Tier;
use hookstream_core::{AccountId, ApiKeyId};
use hookstream_ingest::{IngestConfig, IngestSettings};
use hookstream_testkit::{self as testkit, eventually, TestDatabase};
use tokio_util::sync::CancellationToken;

/// A running ingest with one account and its key.
pub(crate) struct Ingest {
    pub(crate) base: String,
    /// `/readyz` and `/metrics` (not on the public port).
    pub(crate) admin_base: String,
    pub(crate) account: AccountId,
    pub(crate) key_id: ApiKeyId,
    pub(crate) token: String,
    pub(crate) topics: TopicsConfig,
    pub(crate) kafka: KafkaConfig,
    pub(crate) db: TestDatabase,
    pub(crate) http: reqwest::Client,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Ingest {
    /// Ingest on the shared test broker with default settings.
    pub(crate) async fn start() -> Self {
        Self::start_with(testkit::kafka_config(), IngestSettings::default()).await
    }

    /// Ingest on `kafka` with `settings`; its topics are created first.
    pub(crate) async fn start_with(kafka: KafkaConfig, settings: IngestSettings) -> Self {
        Self::start_tuned(kafka, settings, |_| {}).await
    }

    /// [`Self::start_with`], with the whole configuration tuned by `tune` last.
    pub(crate) async fn start_tuned(
        kafka: KafkaConfig,
        settings: IngestSettings,
        tune: impl FnOnce(&mut IngestConfig),
    ) -> Self {
        let topics = testkit::topics_config(4);
        testkit::create_topics_on(&kafka, &topics.topics().all_events(), 4).await;
        let db = TestDatabase::new().await;
        let account = accounts::create(&db.pool, "test account", Tier::Small, "operator:test")
            .await
            .expect("account");
        let (key_id, key) =
            api_keys::issue(&db.pool, account.id, "test", "operator:test").await.expect("key");
        let port = testkit::free_port();
        let admin_port = testkit::free_port();
        let mut config = IngestConfig {
            kafka: kafka.clone(),
            topics: topics.clone(),
            database: db.config.clone(),
            http: HttpConfig::on(([127, 0, 0, 1], port).into()),
            admin: AdminConfig { listen: ([127, 0, 0, 1], admin_port).into() },
            ingest: settings,
            ..IngestConfig::default()
        };
        tune(&mut config);
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = hookstream_ingest::run(config, token).await {
                panic!("ingest failed: {e}");
            }
        });
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let health = format!("{base}/healthz");
        eventually(Duration::from_secs(20), "ingest listening", || {
            let (http, health) = (http.clone(), health.clone());
            async move { http.get(&health).send().await.ok().map(|_| ()) }
        })
        .await;
        Self {
            base,
            admin_base: format!("http://127.0.0.1:{admin_port}"),
            account: account.id,
            key_id,
            token: key.key,
            topics,
            kafka,
            db,
            http,
            shutdown,
            task: Some(task),
        }
    }

    /// A new account with its own key on this ingest's database.
    pub(crate) async fn another_account(&self) -> (AccountId, String) {
        let a = accounts::create(&self.db.pool, "other", Tier::Small, "operator:test")
            .await
            .expect("account");
        let (_, key) =
            api_keys::issue(&self.db.pool, a.id, "other", "operator:test").await.expect("key");
        (a.id, key.key)
    }

    /// `POST {path}` with JSON and this account's key.
    pub(crate) fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
    }

    /// Stops ingest and waits for it to finish.
    pub(crate) async fn stop(mut self) {
        self.halt().await;
    }

    /// Shuts the service down and waits for it, keeping its database for inspection.
    pub(crate) async fn halt(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("ingest task");
        }
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A valid `subscriber.created` event body.
pub(crate) fn created(id: &str) -> serde_json::Value {
    serde_json::json!({
        "event_type": "subscriber.created",
        "data": {"subscriber": {"id": id, "email": format!("{id}@example.com")}}
    })
}
