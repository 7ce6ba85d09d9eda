//! Starting ingest in-process against a test database and topic prefix.

use std::ops::{Deref, DerefMut};

use hookstream_core::config::KafkaConfig;
use hookstream_ingest::{IngestConfig, IngestSettings};
use hookstream_testkit::{self as testkit, Harness};

/// A running ingest with one account and its key.
pub(crate) struct Ingest(Harness);

impl Ingest {
    /// On the shared test broker with default settings.
    pub(crate) async fn start() -> Self {
        Self::start_with(testkit::kafka_config(), IngestSettings::default()).await
    }

    /// On `kafka` with `settings`.
    pub(crate) async fn start_with(kafka: KafkaConfig, settings: IngestSettings) -> Self {
        Self::start_tuned(kafka, settings, |_| {}).await
    }

    /// [`Self::start_with`], with the whole configuration tuned by `tune` last.
    pub(crate) async fn start_tuned(
        kafka: KafkaConfig,
        settings: IngestSettings,
        tune: impl FnOnce(&mut IngestConfig),
    ) -> Self {
        Self(
            Harness::start("ingest", kafka, true, move |w, shutdown| {
                let mut config = IngestConfig {
                    kafka: w.kafka,
                    topics: w.topics,
                    database: w.database,
                    http: w.http,
                    admin: w.admin,
                    ingest: settings,
                    ..IngestConfig::default()
                };
                tune(&mut config);
                hookstream_ingest::run(config, shutdown)
            })
            .await,
        )
    }

    /// Stops it and waits for it to finish.
    pub(crate) async fn stop(self) {
        self.0.stop().await;
    }
}

impl Deref for Ingest {
    type Target = Harness;
    fn deref(&self) -> &Harness {
        &self.0
    }
}

impl DerefMut for Ingest {
    fn deref_mut(&mut self) -> &mut Harness {
        &mut self.0
    }
}

/// A valid `subscriber.created` event body.
pub(crate) fn created(id: &str) -> serde_json::Value {
    serde_json::json!({
        "event_type": "subscriber.created",
        "data": {"subscriber": {"id": id, "email": format!("{id}@example.com")}}
    })
}
