//! Reading a record of a retry tier or the DLQ: the delivery task and its headers.

use chrono::{DateTime, TimeZone, Utc};
use hookstream_core::envelope::{headers, DeliveryTask, Origin};
use hookstream_core::trace_context::TraceParent;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message;

/// A decoded record.
#[derive(Debug)]
pub struct TaskRecord {
    /// The task.
    pub task: DeliveryTask,
    /// `hs-due-at`; a record without one is due at once.
    pub due: DateTime<Utc>,
    /// `hs-origin`; this record's own position when absent.
    pub origin: Origin,
    /// `traceparent`, raw.
    pub traceparent: Option<String>,
    /// The record's timestamp (when it was produced).
    pub timestamp: DateTime<Utc>,
}

impl TaskRecord {
    /// The trace to continue (a new root when the record carries none).
    pub fn trace(&self) -> TraceParent {
        self.traceparent
            .as_deref()
            .and_then(TraceParent::parse)
            .unwrap_or_else(TraceParent::new_root)
    }
}

/// Why a record cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// No payload.
    #[error("record has no payload")]
    Empty,
    /// Not a delivery task.
    #[error("payload is not a delivery task: {0}")]
    Json(#[from] serde_json::Error),
}

/// Decodes `m`.
pub fn decode(m: &BorrowedMessage<'_>) -> Result<TaskRecord, DecodeError> {
    let task: DeliveryTask = serde_json::from_slice(m.payload().ok_or(DecodeError::Empty)?)?;
    let header = |name: &str| -> Option<String> {
        m.headers()?
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned)
    };
    let now = Utc::now();
    let due = header(headers::DUE_AT)
        .and_then(|v| v.parse::<i64>().ok())
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
        .unwrap_or(now);
    let origin = header(headers::ORIGIN).and_then(|o| o.parse().ok()).unwrap_or_else(|| Origin {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
    });
    let timestamp = m
        .timestamp()
        .to_millis()
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
        .unwrap_or(now);
    Ok(TaskRecord { task, due, origin, traceparent: header(headers::TRACEPARENT), timestamp })
}
