//! The dispatcher's configuration.

use std::net::SocketAddr;
use std::time::Duration;

use hookstream_core::delivery::DeliveryConfig;

use hookstream_core::config::{
    at_least_one, not_blank, AdminConfig, ConfigError, DatabaseConfig, KafkaConfig, ServiceConfig,
    TelemetryConfig, TopicsConfig,
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
    /// `[delivery]`: how webhooks are sent.
    pub delivery: DeliveryConfig,
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
            delivery: DeliveryConfig::default(),
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
    /// Webhook requests in flight at once, over all lanes.
    pub in_flight: usize,
    /// Each lane's weight in the shares of `in_flight` (`high`, `normal`, `low`): what a lane
    /// gets when lanes compete; idle capacity is lent to whoever wants it.
    pub lane_weights: LaneWeights,
    /// Delivery tasks buffered per partition before that partition is paused.
    pub max_buffered_per_partition: usize,
    /// How often finished offsets are committed.
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// How often the endpoint cache is reloaded from Postgres (new and disabled endpoints are
    /// seen within this time).
    #[serde(with = "humantime_serde")]
    pub endpoint_refresh: Duration,
    /// The longest a shutdown takes, from SIGTERM to exit, whatever is down: in-flight
    /// deliveries get all of it but the last 5 s (kept for the final commit and the
    /// delivery-log flush); past it the process exits with code 1.
    #[serde(with = "humantime_serde")]
    pub shutdown_deadline: Duration,
}

/// Lane weights.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaneWeights {
    /// `events.high`.
    pub high: u32,
    /// `events.normal`.
    pub normal: u32,
    /// `events.low`.
    pub low: u32,
}

impl Default for DispatcherSettings {
    fn default() -> Self {
        Self {
            group_id: "dispatcher".into(),
            in_flight: 512,
            lane_weights: LaneWeights { high: 6, normal: 3, low: 1 },
            max_buffered_per_partition: 20_000,
            commit_interval: Duration::from_secs(1),
            endpoint_refresh: Duration::from_secs(2),
            shutdown_deadline: Duration::from_secs(20),
        }
    }
}

impl ServiceConfig for DispatcherConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.kafka.validate()?;
        self.topics.validate()?;
        self.database.validate()?;
        self.telemetry.validate()?;
        self.delivery.validate()?;
        let d = &self.dispatcher;
        not_blank("dispatcher.group_id", &d.group_id)?;
        if d.in_flight < 3 {
            return Err(ConfigError::invalid("dispatcher.in_flight", "must be at least 3"));
        }
        let w = d.lane_weights;
        if w.high == 0 || w.normal == 0 || w.low == 0 {
            return Err(ConfigError::invalid(
                "dispatcher.lane_weights",
                "every lane needs a weight of at least 1",
            ));
        }
        at_least_one("dispatcher.max_buffered_per_partition", d.max_buffered_per_partition)?;
        Ok(())
    }

    fn telemetry(&self) -> TelemetryConfig {
        self.telemetry.clone()
    }

    fn shutdown_deadline(&self) -> Duration {
        self.dispatcher.shutdown_deadline
    }
}
