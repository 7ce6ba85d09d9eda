//! Starting the management API in-process against a test database and topic prefix.

use std::ops::{Deref, DerefMut};

use hookstream_api::{ApiConfig, ApiSettings};
use hookstream_core::config::KafkaConfig;
use hookstream_testkit::{self as testkit, Harness};

/// A running the management API with one account and its key.
pub(crate) struct Api(Harness);

impl Api {
    /// On the shared test broker with default settings.
    pub(crate) async fn start() -> Self {
        Self::start_with(testkit::kafka_config(), ApiSettings::default()).await
    }

    /// On `kafka` with `settings`.
    pub(crate) async fn start_with(kafka: KafkaConfig, settings: ApiSettings) -> Self {
        Self::start_tuned(kafka, settings, |_| {}).await
    }

    /// [`Self::start_with`], with the whole configuration tuned by `tune` last.
    pub(crate) async fn start_tuned(
        kafka: KafkaConfig,
        settings: ApiSettings,
        tune: impl FnOnce(&mut ApiConfig),
    ) -> Self {
        Self(
            Harness::start("api", kafka, false, move |w, shutdown| {
                let mut config = ApiConfig {
                    kafka: w.kafka,
                    topics: w.topics,
                    database: w.database,
                    http: w.http,
                    admin: w.admin,
                    api: settings,
                    ..ApiConfig::default()
                };
                tune(&mut config);
                hookstream_api::run(config, shutdown)
            })
            .await,
        )
    }

    /// Stops it and waits for it to finish.
    pub(crate) async fn stop(self) {
        self.0.stop().await;
    }
}

impl Deref for Api {
    type Target = Harness;
    fn deref(&self) -> &Harness {
        &self.0
    }
}

impl DerefMut for Api {
    fn deref_mut(&mut self) -> &mut Harness {
        &mut self.0
    }
}
