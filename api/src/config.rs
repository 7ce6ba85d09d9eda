//! The management API's configuration.

use std::net::SocketAddr;
use std::time::Duration;

use hookstream_core::config::{
    at_least, at_least_one, positive, AdminConfig, ConfigError, DatabaseConfig, HttpConfig,
    KafkaConfig, ServiceConfig, TelemetryConfig, TopicsConfig,
};
use serde::{Deserialize, Serialize};

/// Everything the API reads at start (TOML file, then `HOOKSTREAM_*` variables).
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// `[kafka]`: the cluster (DLQ redrives hand entries back to the retry tiers).
    pub kafka: KafkaConfig,
    /// `[topics]`: topic names and the retry schedule.
    pub topics: TopicsConfig,
    /// `[database]`: Postgres (a pool of its own, apart from ingest's key lookups).
    pub database: DatabaseConfig,
    /// `[telemetry]`: logs, traces.
    pub telemetry: TelemetryConfig,
    /// `[http]`: where the API listens, and its limits on clients.
    pub http: HttpConfig,
    /// `[admin]`: where `/healthz`, `/readyz` and `/metrics` are served (not on the public port).
    pub admin: AdminConfig,
    /// `[api]`: this service's own settings.
    pub api: ApiSettings,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            kafka: KafkaConfig::default(),
            topics: TopicsConfig::default(),
            database: DatabaseConfig::default(),
            telemetry: TelemetryConfig::default(),
            http: HttpConfig::on(SocketAddr::from(([127, 0, 0, 1], 8081))),
            admin: AdminConfig { listen: SocketAddr::from(([127, 0, 0, 1], 9093)) },
            api: ApiSettings::default(),
        }
    }
}

/// `[api]`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    /// Largest request body accepted, in bytes (413 above it).
    pub max_body_bytes: usize,
    /// How often the directory of live API keys is reloaded: a revoked key stops working
    /// within this time.
    #[serde(with = "humantime_serde")]
    pub key_cache_ttl: Duration,
    /// How long past a missed reload the last directory still authenticates while Postgres is
    /// unreachable (0: not at all).
    #[serde(with = "humantime_serde")]
    pub key_stale_ttl: Duration,
    /// Lookups per second, at most, of keys not in the directory; more are answered 503.
    pub unknown_key_lookups_per_second: u32,
    /// DLQ entries `POST /v1/dlq/redrive` puts back per second per account, at most.
    pub redrive_rate: u32,
    /// DLQ entries one `POST /v1/dlq/redrive` puts back, at most (call again for more).
    pub redrive_max: u64,
    /// Accept `http://` endpoint URLs (otherwise https only).
    pub allow_http_endpoints: bool,
    /// Accept endpoint URLs on private, loopback or link-local addresses (tests, on-premises).
    /// The dispatcher's `delivery.allow_private_targets` must agree for deliveries to go out.
    pub allow_private_endpoints: bool,
    /// How long the previous signing secret stays valid after a rotation (both signatures are
    /// sent meanwhile).
    #[serde(with = "humantime_serde")]
    pub secret_rotation_overlap: Duration,
    /// The longest a shutdown takes, from SIGTERM to exit: open requests and redrive jobs get
    /// all of it but the last 5 s; past it the process exits with code 1.
    #[serde(with = "humantime_serde")]
    pub shutdown_deadline: Duration,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            key_cache_ttl: Duration::from_secs(30),
            key_stale_ttl: Duration::from_secs(3600),
            unknown_key_lookups_per_second: 50,
            redrive_rate: 500,
            redrive_max: 10_000,
            allow_http_endpoints: false,
            allow_private_endpoints: false,
            secret_rotation_overlap: Duration::from_secs(24 * 3600),
            shutdown_deadline: Duration::from_secs(15),
        }
    }
}

impl ServiceConfig for ApiConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.kafka.validate()?;
        self.topics.validate()?;
        self.database.validate()?;
        self.telemetry.validate()?;
        self.http.validate()?;
        let api = &self.api;
        at_least("api.shutdown_deadline", api.shutdown_deadline, Duration::from_secs(6))?;
        at_least_one("api.max_body_bytes", api.max_body_bytes)?;
        positive("api.key_cache_ttl", api.key_cache_ttl)?;
        at_least_one("api.unknown_key_lookups_per_second", api.unknown_key_lookups_per_second)?;
        at_least_one("api.redrive_rate", api.redrive_rate)?;
        at_least_one("api.redrive_max", api.redrive_max)?;
        Ok(())
    }

    fn telemetry(&self) -> TelemetryConfig {
        self.telemetry.clone()
    }

    fn shutdown_deadline(&self) -> Duration {
        self.api.shutdown_deadline
    }
}
