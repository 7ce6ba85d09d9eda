//! The services a command works beside, in-process: ingest, a dispatcher and a retrier on one
//! broker, database and topic prefix, each on free ports and with consumer groups of its own.

use std::time::Duration;

use hookstream_core::config::{AdminConfig, DatabaseConfig, HttpConfig, KafkaConfig, TopicsConfig};
use hookstream_core::delivery::DeliveryConfig;
use hookstream_dispatcher::{DispatcherConfig, DispatcherSettings};
use hookstream_ingest::IngestConfig;
use hookstream_retrier::{RetrierConfig, RetrierSettings};
use hookstream_testkit::{self as testkit, Running, TestDatabase};

/// Where the services run; deliveries may go to loopback receivers, and the delivery log is
/// flushed every 100 ms.
pub(crate) struct Site {
    kafka: KafkaConfig,
    topics: TopicsConfig,
    database: DatabaseConfig,
    delivery: DeliveryConfig,
}

impl Site {
    /// On `kafka`, `topics` and `db`.
    pub(crate) fn new(kafka: &KafkaConfig, topics: &TopicsConfig, db: &TestDatabase) -> Self {
        Self {
            kafka: kafka.clone(),
            topics: topics.clone(),
            database: db.config.clone(),
            delivery: DeliveryConfig {
                allow_private_targets: true,
                record_flush_interval: Duration::from_millis(100),
                ..DeliveryConfig::default()
            },
        }
    }

    /// Starts ingest; returns it with its base URL.
    pub(crate) fn ingest(&self) -> (Running, String) {
        let http = HttpConfig::on(admin().listen);
        let base = format!("http://{}", http.listen);
        let config = IngestConfig {
            kafka: self.kafka.clone(),
            topics: self.topics.clone(),
            database: self.database.clone(),
            http,
            admin: admin(),
            ..IngestConfig::default()
        };
        (Running::start(config, hookstream_ingest::run), base)
    }

    /// Starts a dispatcher.
    pub(crate) fn dispatcher(&self) -> Running {
        self.dispatcher_tuned(|_| {})
    }

    /// Starts a dispatcher, its configuration tuned by `tune` last.
    pub(crate) fn dispatcher_tuned(&self, tune: impl FnOnce(&mut DispatcherConfig)) -> Running {
        let mut config = DispatcherConfig {
            kafka: self.kafka.clone(),
            topics: self.topics.clone(),
            database: self.database.clone(),
            admin: admin(),
            delivery: self.delivery.clone(),
            dispatcher: DispatcherSettings {
                group_id: testkit::unique("dispatcher-"),
                ..DispatcherSettings::default()
            },
            ..DispatcherConfig::default()
        };
        tune(&mut config);
        Running::start(config, hookstream_dispatcher::run)
    }

    /// Starts a retrier.
    pub(crate) fn retrier(&self) -> Running {
        self.retrier_tuned(|_| {})
    }

    /// Starts a retrier, its configuration tuned by `tune` last.
    pub(crate) fn retrier_tuned(&self, tune: impl FnOnce(&mut RetrierConfig)) -> Running {
        let mut config = RetrierConfig {
            kafka: self.kafka.clone(),
            topics: self.topics.clone(),
            database: self.database.clone(),
            admin: admin(),
            delivery: self.delivery.clone(),
            retrier: RetrierSettings {
                group_id: testkit::unique("retrier-"),
                dlq_group_id: testkit::unique("retrier-dlq-"),
                ..RetrierSettings::default()
            },
            ..RetrierConfig::default()
        };
        tune(&mut config);
        Running::start(config, hookstream_retrier::run)
    }
}

/// A listener on a free loopback port.
fn admin() -> AdminConfig {
    AdminConfig { listen: ([127, 0, 0, 1], testkit::free_port()).into() }
}
