//! The ingest's configuration.

use std::net::SocketAddr;

use hookstream_core::config::{
    AdminConfig, ConfigError, DatabaseConfig, KafkaConfig, ServiceConfig, TelemetryConfig,
    TopicsConfig,
};
use serde::{Deserialize, Serialize};

/// Everything the ingest reads at start (TOML file, then `HOOKSTREAM_*` variables).
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// `[kafka]`: the cluster.
    pub kafka: KafkaConfig,
    /// `[topics]`: topic names and the retry schedule.
    pub topics: TopicsConfig,
    /// `[database]`: Postgres.
    pub database: DatabaseConfig,
    /// `[telemetry]`: logs, traces.
    pub telemetry: TelemetryConfig,
    /// `[http]`: where the API (and `/healthz`, `/readyz`, `/metrics`) listens.
    pub http: AdminConfig,
    /// `[ingest]`: this service's own settings.
    pub ingest: IngestSettings,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            kafka: KafkaConfig::default(),
            topics: TopicsConfig::default(),
            database: DatabaseConfig::default(),
            telemetry: TelemetryConfig::default(),
            http: AdminConfig { listen: SocketAddr::from(([127, 0, 0, 1], 8080)) },
            ingest: IngestSettings::default(),
        }
    }
}

/// `[ingest]`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestSettings {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self { max_body_bytes: 256 * 1024 }
    }
}

impl ServiceConfig for IngestConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.kafka.validate()?;
        self.topics.validate()?;
        self.database.validate()?;
        self.telemetry.validate()?;
        if self.ingest.max_body_bytes == 0 {
            return Err(ConfigError::invalid("ingest.max_body_bytes", "must be greater than zero"));
        }
        Ok(())
    }

    fn telemetry(&self) -> TelemetryConfig {
        self.telemetry.clone()
    }
}
