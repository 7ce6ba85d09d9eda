//! Starting the management API in-process against a test database and topic prefix.

use hookstream_api::{ApiConfig, ApiSettings};
use hookstream_core::config::{AdminConfig, KafkaConfig, TopicsConfig};
use hookstream_core::{AccountId, ApiKeyId};
use hookstream_testkit::{self as testkit, InProcess, Tenant, TestDatabase};

/// A running API with one account and its key.
pub(crate) struct Api {
    pub(crate) base: String,
    pub(crate) account: AccountId,
    pub(crate) key_id: ApiKeyId,
    pub(crate) token: String,
    pub(crate) topics: TopicsConfig,
    pub(crate) kafka: KafkaConfig,
    pub(crate) db: TestDatabase,
    pub(crate) http: reqwest::Client,
    service: InProcess,
}

impl Api {
    /// The API on the shared test broker with default settings.
    pub(crate) async fn start() -> Self {
        Self::start_with(testkit::kafka_config(), ApiSettings::default()).await
    }

    /// The API on `kafka` with `settings`; its topics are created first.
    pub(crate) async fn start_with(kafka: KafkaConfig, settings: ApiSettings) -> Self {
        Self::start_tuned(kafka, settings, |_| {}).await
    }

    /// [`Self::start_with`], with the whole configuration tuned by `tune` last.
    pub(crate) async fn start_tuned(
        kafka: KafkaConfig,
        settings: ApiSettings,
        tune: impl FnOnce(&mut ApiConfig),
    ) -> Self {
        let topics = testkit::topics_config(4);
        let db = TestDatabase::new().await;
        let tenant = Tenant::create(&db.pool, "test account").await;
        let mut config = ApiConfig {
            kafka: kafka.clone(),
            topics: topics.clone(),
            database: db.config.clone(),
            api: settings,
            ..ApiConfig::default()
        };
        tune(&mut config);
        let service = InProcess::start("api", move |port, admin_port, shutdown| {
            config.http.listen = ([127, 0, 0, 1], port).into();
            config.admin = AdminConfig { listen: ([127, 0, 0, 1], admin_port).into() };
            hookstream_api::run(config, shutdown)
        })
        .await;
        Self {
            base: service.base.clone(),
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

    /// A new account with its own key on this API's database.
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

    /// Stops the API and waits for it to finish.
    pub(crate) async fn stop(mut self) {
        self.halt().await;
    }

    /// Shuts the service down and waits for it, keeping its database for inspection.
    pub(crate) async fn halt(&mut self) {
        self.service.halt().await;
    }
}
