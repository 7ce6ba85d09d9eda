//! The delivery engine shared by the dispatcher and the retrier: sign, send, classify,
//! circuit-break, record.

pub mod circuit;
pub mod endpoints;
pub mod engine;
pub mod guard;
pub mod handoff;
pub mod outcome;
pub mod park;
pub mod recent;
pub mod record;
pub mod redelivery;
pub mod runtime;
pub mod send;
pub mod shares;
pub mod sign;

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::config::{at_least, at_least_one, positive, ConfigError};

/// `[delivery]`: how webhooks are sent.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Whole-request timeout.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// TCP/TLS connect timeout.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Deliver to private, loopback and link-local addresses (tests and on-premises only).
    pub allow_private_targets: bool,
    /// An HTTP(S) proxy for every delivery (`http://host:port`). Unset: no proxy, whatever
    /// `HTTP_PROXY`/`HTTPS_PROXY` say, because a proxy resolves the target past the SSRF guard.
    pub proxy: Option<url::Url>,
    /// Consecutive failures that open an endpoint's circuit. 10: a receiver that fails a fifth
    /// of its requests at random has 10 in a row once in about 12 million requests (5 in a row
    /// came once in about 4,000, every half minute at 120 requests/s), while an endpoint that
    /// is down reaches 10 within its first second of traffic.
    pub circuit_threshold: u32,
    /// How long an open circuit waits before it is probed (see [`circuit`]).
    #[serde(with = "humantime_serde")]
    pub circuit_cooldown: Duration,
    /// Bytes of a response body read and kept in the delivery log; the rest is never read (the
    /// connection is closed).
    pub max_response_body: usize,
    /// Attempt records written per database round trip, at most.
    pub record_batch_size: usize,
    /// Longest wait before a partial batch of attempt records is written.
    #[serde(with = "humantime_serde")]
    pub record_flush_interval: Duration,
    /// How long an endpoint's worker waits for work before it exits (it is started again by
    /// the endpoint's next delivery), so workers do not pile up for every endpoint ever seen.
    #[serde(with = "humantime_serde")]
    pub worker_idle: Duration,
    /// How long after its first attempt a task may still be delayed by a receiver's 429s
    /// and open circuits (which do not count against the retry schedule) before it goes to
    /// the DLQ, so a receiver that throttles forever still ends there.
    #[serde(with = "humantime_serde")]
    pub max_task_age: Duration,
    /// Each account tier's weight in the in-flight shares: of the requests in flight in a
    /// lane, an account gets its weight's share among the accounts with work (and more while
    /// nobody else wants it).
    pub tier_weights: TierWeights,
    /// An endpoint queues in memory what it drains in this long (at its rate limit, or its
    /// receiver's pace when slower); its work beyond that is parked on the park topic until
    /// its slot ([`park`]).
    #[serde(with = "humantime_serde")]
    pub park_after: Duration,
    /// How long the delivery log keeps a day: its day partitions (of `deliveries` by the
    /// event's receipt, of `delivery_attempts` by the attempt) are dropped whole once the
    /// retention has passed over all of the day. At least a day.
    #[serde(with = "humantime_serde")]
    pub log_retention: Duration,
}

/// `[delivery.tier_weights]`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TierWeights {
    /// `small`.
    pub small: u32,
    /// `medium`.
    pub medium: u32,
    /// `large`.
    pub large: u32,
    /// `xlarge`.
    pub xlarge: u32,
}

impl Default for TierWeights {
    fn default() -> Self {
        Self { small: 1, medium: 2, large: 4, xlarge: 8 }
    }
}

impl TierWeights {
    /// The weight of `tier`.
    pub fn of(&self, tier: crate::tier::Tier) -> u32 {
        use crate::tier::Tier;
        match tier {
            Tier::Small => self.small,
            Tier::Medium => self.medium,
            Tier::Large => self.large,
            Tier::Xlarge => self.xlarge,
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            allow_private_targets: false,
            proxy: None,
            circuit_threshold: 10,
            circuit_cooldown: Duration::from_secs(30),
            max_response_body: 1024,
            record_batch_size: 100,
            record_flush_interval: Duration::from_secs(1),
            worker_idle: Duration::from_secs(60),
            max_task_age: Duration::from_secs(24 * 3600),
            tier_weights: TierWeights::default(),
            park_after: Duration::from_secs(2),
            log_retention: Duration::from_secs(30 * 86_400),
        }
    }
}

impl DeliveryConfig {
    /// Checks the section; keys are reported under `delivery.`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("delivery.timeout", self.timeout)?;
        positive("delivery.connect_timeout", self.connect_timeout)?;
        at_least_one("delivery.record_batch_size", self.record_batch_size)?;
        positive("delivery.worker_idle", self.worker_idle)?;
        let w = self.tier_weights;
        for (key, weight) in
            [("small", w.small), ("medium", w.medium), ("large", w.large), ("xlarge", w.xlarge)]
        {
            at_least_one(&format!("delivery.tier_weights.{key}"), weight)?;
        }
        positive("delivery.park_after", self.park_after)?;
        // The log is dropped a whole day at a time.
        at_least("delivery.log_retention", self.log_retention, Duration::from_secs(86_400))?;
        positive("delivery.max_task_age", self.max_task_age)?;
        Ok(())
    }
}
