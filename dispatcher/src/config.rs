//! The dispatcher's configuration.

use std::net::SocketAddr;

use hookstream_core::config::{
    AdminConfig, ConfigError, DatabaseConfig, KafkaConfig, ServiceConfig, TelemetryConfig,
    TopicsConfig,
};
use serde::{Deserialize, Serialize};

/// Everything the dispatcher reads at start (TOML file, then `HOOKSTREAM_*` variables).
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatcherConfig {
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
    /// `[dispatcher]`: this service's own settings.
    pub dispatcher: DispatcherSettings,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            kafka: KafkaConfig::default(),
            topics: TopicsConfig::default(),
            database: DatabaseConfig::default(),
            telemetry: TelemetryConfig::default(),
            admin: AdminConfig { listen: SocketAddr::from(([127, 0, 0, 1], 9091)) },
            dispatcher: DispatcherSettings::default(),
        }
    }
}

/// `[dispatcher]`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatcherSettings {
    /// Kafka consumer group.
    pub group_id: String,
}

impl Default for DispatcherSettings {
    fn default() -> Self {
        Self { group_id: "dispatcher".into() }
    }
}

impl ServiceConfig for DispatcherConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.kafka.validate()?;
        self.topics.validate()?;
        self.database.validate()?;
        self.telemetry.validate()?;
        if self.dispatcher.group_id.trim().is_empty() {
            return Err(ConfigError::invalid("dispatcher.group_id", "must not be empty"));
        }
        Ok(())
    }

    fn telemetry(&self) -> TelemetryConfig {
        self.telemetry.clone()
    }
}
