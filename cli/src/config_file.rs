//! The CLI's configuration: the same sections the services read.

use hookstream_core::config::{
    ConfigError, DatabaseConfig, KafkaConfig, ServiceConfig, TopicsConfig,
};
use serde::{Deserialize, Serialize};

/// Everything the `hookstream` command may need.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct CliConfig {
    /// `[kafka]`.
    pub(crate) kafka: KafkaConfig,
    /// `[topics]`.
    pub(crate) topics: TopicsConfig,
    /// `[database]`.
    pub(crate) database: DatabaseConfig,
}

impl ServiceConfig for CliConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.kafka.validate()?;
        self.topics.validate()?;
        self.database.validate()
    }
}
