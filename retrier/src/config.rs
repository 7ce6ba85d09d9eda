//! The retrier's configuration.

use std::net::SocketAddr;

use hookstream_core::config::{
    AdminConfig, ConfigError, DatabaseConfig, KafkaConfig, ServiceConfig, TelemetryConfig,
    TopicsConfig,
};
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
            retrier: RetrierSettings::default(),
        }
    }
}

/// `[retrier]`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrierSettings {
    /// Kafka consumer group.
    pub group_id: String,
}

impl Default for RetrierSettings {
    fn default() -> Self {
        Self { group_id: "retrier".into() }
    }
}

impl ServiceConfig for RetrierConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.kafka.validate()?;
        self.topics.validate()?;
        self.database.validate()?;
        self.telemetry.validate()?;
        if self.retrier.group_id.trim().is_empty() {
            return Err(ConfigError::invalid("retrier.group_id", "must not be empty"));
        }
        Ok(())
    }

    fn telemetry(&self) -> TelemetryConfig {
        self.telemetry.clone()
    }
}
