//! The retrier's configuration.

use std::net::SocketAddr;
use std::time::Duration;

use hookstream_core::config::{
    at_least_one, not_blank, AdminConfig, ConfigError, DatabaseConfig, KafkaConfig, ServiceConfig,
    TelemetryConfig, TopicsConfig,
};
use hookstream_core::delivery::DeliveryConfig;
use serde::{Deserialize, Serialize};

/// Everything the retrier reads at start (TOML file, then `HOOKSTREAM_*` variables).
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrierConfig {
    /// `[kafka]`: the cluster.
    pub kafka: KafkaConfig,
    /// `[topics]`: topic names and the retry schedule.
    pub topics: TopicsConfig,
    /// `[database]`: Postgres.
    pub database: DatabaseConfig,
    /// `[telemetry]`: logs, traces.
    pub telemetry: TelemetryConfig,
    /// `[admin]`: `/healthz`, `/readyz`, `/metrics`.
    pub admin: AdminConfig,
    /// `[delivery]`: how webhooks are sent (the same engine as the dispatcher's).
    pub delivery: DeliveryConfig,
    /// `[retrier]`: this service's own settings.
    pub retrier: RetrierSettings,
}

impl Default for RetrierConfig {
    fn default() -> Self {
        Self {
            kafka: KafkaConfig::default(),
            topics: TopicsConfig::default(),
            database: DatabaseConfig::default(),
            telemetry: TelemetryConfig::default(),
            admin: AdminConfig { listen: SocketAddr::from(([127, 0, 0, 1], 9092)) },
            delivery: DeliveryConfig::default(),
            retrier: RetrierSettings::default(),
        }
    }
}

/// `[retrier]`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrierSettings {
    /// Kafka consumer group of the retry tiers.
    pub group_id: String,
    /// Kafka consumer group that indexes the DLQ into Postgres for `hookstream dlq`.
    pub dlq_group_id: String,
    /// Retry requests in flight at once.
    pub in_flight: usize,
    /// Due tasks buffered per partition before that partition is paused.
    pub max_buffered_per_partition: usize,
    /// How often finished offsets are committed.
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// A partition is paused only for a head due later than this, and resumed this long before
    /// the head is due, so the next tasks are fetched by the time they are due (a resume costs
    /// a fetch round trip). Tasks due within it are buffered: about rate × lookahead of them.
    #[serde(with = "humantime_serde")]
    pub lookahead: Duration,
    /// How often the endpoint cache is reloaded from Postgres.
    #[serde(with = "humantime_serde")]
    pub endpoint_refresh: Duration,
    /// How often the DLQ size gauge is read from the index.
    #[serde(with = "humantime_serde")]
    pub dlq_size_interval: Duration,
    /// The longest a shutdown takes, from SIGTERM to exit, whatever is down: in-flight
    /// retries get all of it but the last 5 s (kept for the final commit and the delivery-log
    /// flush); past it the process exits with code 1.
    #[serde(with = "humantime_serde")]
    pub shutdown_deadline: Duration,
}

impl Default for RetrierSettings {
    fn default() -> Self {
        Self {
            group_id: "retrier".into(),
            dlq_group_id: "retrier-dlq".into(),
            in_flight: 256,
            max_buffered_per_partition: 5_000,
            commit_interval: Duration::from_secs(1),
            lookahead: Duration::from_millis(200),
            endpoint_refresh: Duration::from_secs(2),
            dlq_size_interval: Duration::from_secs(10),
            shutdown_deadline: Duration::from_secs(20),
        }
    }
}

impl ServiceConfig for RetrierConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.kafka.validate()?;
        self.topics.validate()?;
        self.database.validate()?;
        self.telemetry.validate()?;
        self.delivery.validate()?;
        let r = &self.retrier;
        not_blank("retrier.group_id", &r.group_id)?;
        if r.dlq_group_id.trim().is_empty() || r.dlq_group_id == r.group_id {
            return Err(ConfigError::invalid(
                "retrier.dlq_group_id",
                "must not be empty nor equal to retrier.group_id",
            ));
        }
        at_least_one("retrier.in_flight", r.in_flight)?;
        at_least_one("retrier.max_buffered_per_partition", r.max_buffered_per_partition)?;
        Ok(())
    }

    fn telemetry(&self) -> TelemetryConfig {
        self.telemetry.clone()
    }

    fn shutdown_deadline(&self) -> Duration {
        self.retrier.shutdown_deadline
    }
}
