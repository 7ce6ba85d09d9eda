//! The ingest's configuration.

use std::net::SocketAddr;
use std::time::Duration;

use hookstream_core::config::{
    at_least, at_least_one, positive, AdminConfig, ConfigError, DatabaseConfig, HttpConfig,
    KafkaConfig, ServiceConfig, TelemetryConfig, TopicsConfig,
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
    /// `[http]`: where the API (and `/healthz`) listens, and its limits on clients.
    pub http: HttpConfig,
    /// `[admin]`: where `/healthz`, `/readyz` and `/metrics` are served (not on the public port).
    pub admin: AdminConfig,
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
            http: HttpConfig::on(SocketAddr::from(([127, 0, 0, 1], 8080))),
            admin: AdminConfig { listen: SocketAddr::from(([127, 0, 0, 1], 9090)) },
            ingest: IngestSettings::default(),
        }
    }
}

/// `[ingest]`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestSettings {
    /// Largest request body accepted, in bytes (413 above it).
    pub max_body_bytes: usize,
    /// Most events in one `POST /v1/events/batch`.
    pub max_batch_events: usize,
    /// How long an `Idempotency-Key` is remembered per account.
    #[serde(with = "humantime_serde")]
    pub idempotency_window: Duration,
    /// Most idempotency keys remembered at once (oldest evicted first).
    pub idempotency_capacity: u64,
    /// How often the directory of live API keys is reloaded: a revoked key stops working
    /// within this time.
    #[serde(with = "humantime_serde")]
    pub key_cache_ttl: Duration,
    /// How long past a missed reload the last directory still authenticates while Postgres is
    /// unreachable, so ingest keeps accepting events through a database outage (0: not at all;
    /// a key revoked during the outage works until the database is back, one revoked before
    /// it does not).
    #[serde(with = "humantime_serde")]
    pub key_stale_ttl: Duration,
    /// Lookups per second, at most, of keys not in the directory (issued since its last load,
    /// or not keys at all); more are answered 503 with `Retry-After`, so a flood of random keys
    /// cannot load the database.
    pub unknown_key_lookups_per_second: u32,
    /// `Retry-After` seconds sent with a 503 when the broker is unavailable.
    pub unavailable_retry_after_secs: u32,
    /// The longest a shutdown takes, from SIGTERM to exit: open requests get all of it but the
    /// last 5 s (kept for the producer's flush); past it the process exits with code 1.
    #[serde(with = "humantime_serde")]
    pub shutdown_deadline: Duration,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            max_batch_events: 500,
            idempotency_window: Duration::from_secs(60),
            idempotency_capacity: 1_000_000,
            key_cache_ttl: Duration::from_secs(30),
            key_stale_ttl: Duration::from_secs(3600),
            unknown_key_lookups_per_second: 50,
            unavailable_retry_after_secs: 5,
            shutdown_deadline: Duration::from_secs(15),
        }
    }
}

impl ServiceConfig for IngestConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.kafka.validate()?;
        self.topics.validate()?;
        self.database.validate()?;
        self.telemetry.validate()?;
        self.http.validate()?;
        if self.http.request_timeout <= self.kafka.produce_timeout {
            return Err(ConfigError::invalid(
                "http.request_timeout",
                "must exceed kafka.produce_timeout, or a request would be cut off while its event is being produced",
            ));
        }
        let ingest = &self.ingest;
        at_least("ingest.shutdown_deadline", ingest.shutdown_deadline, Duration::from_secs(6))?;
        at_least_one("ingest.max_body_bytes", ingest.max_body_bytes)?;
        at_least_one("ingest.max_batch_events", ingest.max_batch_events)?;
        positive("ingest.idempotency_window", ingest.idempotency_window)?;
        positive("ingest.key_cache_ttl", ingest.key_cache_ttl)?;
        at_least_one(
            "ingest.unknown_key_lookups_per_second",
            ingest.unknown_key_lookups_per_second,
        )?;
        Ok(())
    }

    fn telemetry(&self) -> TelemetryConfig {
        self.telemetry.clone()
    }

    fn shutdown_deadline(&self) -> Duration {
        self.ingest.shutdown_deadline
    }
}
