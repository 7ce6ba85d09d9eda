//! The event envelope that travels on the event topics, and the delivery task that travels on
//! the retry topics and the DLQ (DESIGN.md, "Kafka").

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{AccountId, EndpointId, EventId};

/// The envelope schema version this build writes.
pub const SCHEMA_VERSION: u32 = 1;

/// A priority lane. Each lane is its own topic, served by weight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Served first by weight; for latency-sensitive events.
    High,
    /// The default lane.
    #[default]
    Normal,
    /// Bulk traffic (imports, backfills).
    Low,
}

impl Priority {
    /// All lanes, highest first.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    /// The lane's name as used in topic names and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A priority name that is not `high`, `normal` or `low`.
#[derive(Debug, thiserror::Error)]
#[error("unknown priority {0:?}: expected high, normal or low")]
pub struct UnknownPriority(String);

impl FromStr for Priority {
    type Err = UnknownPriority;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "high" => Ok(Priority::High),
            "normal" => Ok(Priority::Normal),
            "low" => Ok(Priority::Low),
            other => Err(UnknownPriority(other.to_owned())),
        }
    }
}

/// An accepted subscriber event, as ingest writes it to `events.<priority>` keyed by account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventEnvelope {
    /// UUIDv7, or the client's `Idempotency-Key`; the `webhook-id` receivers see.
    pub event_id: EventId,
    /// The producing account; also the Kafka key.
    pub account_id: AccountId,
    /// For example `subscriber.created`.
    pub event_type: String,
    /// When the event happened, as the producer says (defaults to `received_at`).
    pub occurred_at: DateTime<Utc>,
    /// When ingest accepted it.
    pub received_at: DateTime<Utc>,
    /// The lane it travels in.
    pub priority: Priority,
    /// The subscriber payload, validated against the event type's schema.
    pub data: serde_json::Value,
    /// Version of the envelope schema.
    pub schema_version: u32,
}

impl EventEnvelope {
    /// An event of `account_id` as ingest accepts it now: a new id, occurred and received
    /// now, in the normal lane, at the current schema version.
    pub fn new(
        account_id: AccountId,
        event_type: impl Into<String>,
        data: serde_json::Value,
    ) -> Self {
        let now = Utc::now();
        Self {
            event_id: EventId::new(),
            account_id,
            event_type: event_type.into(),
            occurred_at: now,
            received_at: now,
            priority: Priority::Normal,
            data,
            schema_version: SCHEMA_VERSION,
        }
    }

    /// The Kafka message key: the account id, so an account's events share a partition.
    pub fn key(&self) -> String {
        self.account_id.to_string()
    }
}

/// One delivery of one event to one endpoint, as it travels through retry topics and the DLQ.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryTask {
    /// The event being delivered.
    #[serde(flatten)]
    pub envelope: EventEnvelope,
    /// The endpoint it is delivered to.
    pub endpoint_id: EndpointId,
    /// Attempts made so far (the attempt that produced this task included).
    pub attempt: u32,
    /// When the first attempt was made.
    pub first_attempt_at: DateTime<Utc>,
    /// HTTP status of the last attempt, if a response came back.
    pub last_status: Option<u16>,
    /// Error of the last attempt (transport error or refusal, for people).
    pub last_error: Option<String>,
    /// Why the last attempt failed, typed: what the DLQ's error class derives from. Absent in
    /// tasks written before it existed (their class then follows `last_status` alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reason: Option<crate::delivery::outcome::FailureReason>,
    /// A replay (`hookstream replay`): delivered even if the log shows it delivered before,
    /// and marked as a replay there.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
    /// Of `attempt`, those that did not count against the retry schedule: the receiver
    /// answered 429, or the endpoint's circuit was open or it was throttled (no request). The
    /// task was delayed, not failed; `delivery.max_task_age` bounds how long. Absent: 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub uncounted: u32,
    /// No request to the endpoint before this time: what its 429 asked for (`Retry-After`,
    /// up to an hour). A task that comes due earlier is delayed again without a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
}

impl DeliveryTask {
    /// The delivery of `envelope` to `endpoint_id` before its first attempt.
    pub fn new(envelope: EventEnvelope, endpoint_id: EndpointId) -> Self {
        Self {
            envelope,
            endpoint_id,
            attempt: 0,
            first_attempt_at: Utc::now(),
            last_status: None,
            last_error: None,
            last_reason: None,
            replay: false,
            uncounted: 0,
            not_before: None,
        }
    }

    /// This task after `attempts` attempts, the last answered with `status`.
    pub fn failed(self, attempts: u32, status: u16) -> Self {
        use crate::delivery::outcome::FailureReason;
        Self {
            attempt: attempts,
            last_status: Some(status),
            last_error: Some(format!("http {status}")),
            last_reason: Some(FailureReason::of_status(status)),
            ..self
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Where a delivery task came from: `topic/partition/offset` of the source event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.topic, self.partition, self.offset)
    }
}

/// An `hs-origin` header value that is not `topic/partition/offset`.
#[derive(Debug, thiserror::Error)]
#[error("malformed origin {0:?}: expected topic/partition/offset")]
pub struct MalformedOrigin(String);

impl FromStr for Origin {
    type Err = MalformedOrigin;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || MalformedOrigin(s.to_owned());
        let mut parts = s.rsplitn(3, '/');
        let offset = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let partition = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let topic = parts.next().filter(|t| !t.is_empty()).ok_or_else(bad)?;
        Ok(Origin { topic: topic.to_owned(), partition, offset })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> EventEnvelope {
        let data = serde_json::json!({"id": "sub_1", "email": "a@example.com"});
        EventEnvelope {
            priority: Priority::High,
            ..EventEnvelope::new(AccountId::new(), "subscriber.created", data)
        }
    }

    #[test]
    fn envelope_serialises_with_the_design_field_names() {
        let value = serde_json::to_value(envelope()).expect("json");
        let mut keys: Vec<_> = value.as_object().expect("object").keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "account_id",
                "data",
                "event_id",
                "event_type",
                "occurred_at",
                "priority",
                "received_at",
                "schema_version"
            ]
        );
        assert_eq!(value["priority"], "high");
    }

    #[test]
    fn delivery_task_flattens_the_envelope_and_round_trips() {
        let task = DeliveryTask::new(envelope(), EndpointId::new()).failed(2, 503);
        let json = serde_json::to_value(&task).expect("json");
        assert_eq!(json["attempt"], 2);
        assert!(json.get("replay").is_none(), "absent unless a replay");
        assert_eq!(json["event_type"], "subscriber.created");
        let back: DeliveryTask = serde_json::from_value(json).expect("parse");
        assert_eq!(back, task);
    }

    #[test]
    fn origin_parses_topics_containing_slashes_and_dots() {
        let o: Origin = "hookstream.events.high/3/42".parse().expect("parse");
        assert_eq!(o.topic, "hookstream.events.high");
        assert_eq!((o.partition, o.offset), (3, 42));
        assert_eq!(o.to_string(), "hookstream.events.high/3/42");
        assert!("nope".parse::<Origin>().is_err());
        assert!("/1/2".parse::<Origin>().is_err());
    }

    #[test]
    fn priority_parses_only_known_lanes() {
        assert_eq!("low".parse::<Priority>().expect("low"), Priority::Low);
        assert!("urgent".parse::<Priority>().is_err());
    }
}
