//! Starting ingest in-process against a test database and topic prefix.

use hookstream_core::config::{AdminConfig, KafkaConfig, TopicsConfig};
use hookstream_core::{AccountId, ApiKeyId};
use hookstream_ingest::{IngestConfig, IngestSettings};
use hookstream_testkit::{self as testkit, InProcess, Tenant, TestDatabase};

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
    service: InProcess,
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
        let tenant = Tenant::create(&db.pool, "test account").await;
        let mut config = IngestConfig {
            kafka: kafka.clone(),
            topics: topics.clone(),
            database: db.config.clone(),
            ingest: settings,
            ..IngestConfig::default()
        };
        tune(&mut config);
        let service = InProcess::start("ingest", move |port, admin_port, shutdown| {
            config.http.listen = ([127, 0, 0, 1], port).into();
            config.admin = AdminConfig { listen: ([127, 0, 0, 1], admin_port).into() };
            hookstream_ingest::run(config, shutdown)
        })
        .await;
        Self {
            base: service.base.clone(),
            admin_base: service.admin_base.clone(),
            account: tenant.account,
            key_id: tenant.key_id,
            token: tenant.token,
            topics,
            kafka,
            db,
            http: service.http.clone(),
            service,
        }
    }

    /// A new account with its own key on this ingest's database.
    pub(crate) async fn another_account(&self) -> (AccountId, String) {
        let t = Tenant::create(&self.db.pool, "other").await;
        (t.account, t.token)
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
        self.service.halt().await;
    }
}

/// A valid `subscriber.created` event body.
pub(crate) fn created(id: &str) -> serde_json::Value {
    serde_json::json!({
        "event_type": "subscriber.created",
        "data": {"subscriber": {"id": id, "email": format!("{id}@example.com")}}
    })
}
