//! The delivery task on the retry tiers and the DLQ: JSON (`DeliveryTask`, the envelope
//! flattened into it) with the headers `hs-attempt`, `hs-due-at`, `hs-ready-at` (parked tasks),
//! `hs-origin`, `traceparent`.
//! Always JSON: hookstream writes and reads these topics itself.

use chrono::{DateTime, TimeZone, Utc};
use rdkafka::message::OwnedHeaders;
use rdkafka::Message;

use super::envelope::WireError;
use super::headers;
use crate::envelope::{DeliveryTask, Origin};
use crate::trace::Context;

/// A task's payload and headers, ready to produce: due at `due_ms`, or (a parked task) from
/// `ready_ms` on once its endpoint has room.
pub fn encode(
    task: &DeliveryTask,
    due_ms: i64,
    ready_ms: Option<i64>,
    origin: &Origin,
    cx: &Context,
) -> Result<(Vec<u8>, OwnedHeaders), WireError> {
    let payload = serde_json::to_vec(task)?;
    Ok((payload, headers::task(task.attempt, due_ms, ready_ms, &origin.to_string(), cx)))
}

/// A task record, read.
#[derive(Debug)]
pub struct TaskRecord {
    /// The task.
    pub task: DeliveryTask,
    /// `hs-due-at`; a record without one is due at once.
    pub due: DateTime<Utc>,
    /// `hs-ready-at` (a parked task): from then on it may be sent before `due`, once its
    /// endpoint has room.
    pub ready: Option<DateTime<Utc>>,
    /// `hs-origin`; this record's own position when absent.
    pub origin: Origin,
    /// `traceparent`, raw (kept with a dead letter).
    pub traceparent: Option<String>,
    /// The trace context the record carries (the hand-off's `send` span).
    pub context: Context,
    /// The record's timestamp (when it was produced).
    pub timestamp: DateTime<Utc>,
}

impl TaskRecord {
    /// Reads `m`.
    pub fn decode<M: Message>(m: &M) -> Result<Self, WireError> {
        let task: DeliveryTask = serde_json::from_slice(m.payload().ok_or(WireError::Empty)?)?;
        let now = Utc::now();
        let time = |name| {
            headers::text(m, name)
                .and_then(|v| v.parse::<i64>().ok())
                .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
        };
        let due = time(headers::DUE_AT).unwrap_or(now);
        let ready = time(headers::READY_AT).filter(|r| *r < due);
        let origin =
            headers::text(m, headers::ORIGIN).and_then(|o| o.parse().ok()).unwrap_or_else(|| {
                Origin { topic: m.topic().to_owned(), partition: m.partition(), offset: m.offset() }
            });
        let timestamp = m
            .timestamp()
            .to_millis()
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
            .unwrap_or(now);
        let traceparent = headers::text(m, headers::TRACEPARENT).map(str::to_owned);
        let context = headers::context(m);
        Ok(TaskRecord { task, due, ready, origin, traceparent, context, timestamp })
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::message::OwnedMessage;
    use rdkafka::Timestamp;

    use super::*;
    use serde_json::json;

    use crate::envelope::EventEnvelope;
    use crate::ids::{AccountId, EndpointId};

    #[test]
    fn a_task_round_trips_with_its_headers() {
        let now = Utc.timestamp_millis_opt(Utc::now().timestamp_millis()).single().expect("now");
        let envelope = EventEnvelope::new(AccountId::new(), "subscriber.created", json!({}));
        let task = DeliveryTask::new(envelope, EndpointId::new()).failed(2, 503);
        let origin: Origin = "hookstream.events.normal/3/42".parse().expect("origin");
        let tracing = crate::trace::Tracing::local("test");
        let cx = tracing.tracer().send(&Context::new(), "hookstream.retry.5s");
        let tp = crate::trace::traceparent(&cx).expect("a span");
        let due = now + chrono::Duration::seconds(5);
        let ready = now + chrono::Duration::seconds(1);
        let (due_ms, ready_ms) = (due.timestamp_millis(), Some(ready.timestamp_millis()));
        let (payload, hdrs) = encode(&task, due_ms, ready_ms, &origin, &cx).expect("encode");
        let m = OwnedMessage::new(
            Some(payload),
            None,
            "hookstream.retry.5s".into(),
            Timestamp::CreateTime(now.timestamp_millis()),
            0,
            9,
            Some(hdrs),
        );
        let back = TaskRecord::decode(&m).expect("decode");
        assert_eq!(back.traceparent.as_deref(), Some(tp.as_str()));
        assert_eq!(crate::trace::traceparent(&back.context), Some(tp));
        assert_eq!(back.task, task);
        assert_eq!((back.due, back.ready), (due, Some(ready)));
        assert_eq!((&back.origin, back.timestamp), (&origin, now));
        let (payload, hdrs) = encode(&task, due_ms, None, &origin, &cx).expect("encode");
        let m = OwnedMessage::new(
            Some(payload),
            None,
            "t".into(),
            Timestamp::NotAvailable,
            0,
            1,
            Some(hdrs),
        );
        assert_eq!(TaskRecord::decode(&m).expect("decode").ready, None, "only parked tasks");
    }

    #[test]
    fn a_record_without_headers_is_due_now_from_its_own_position() {
        let m = OwnedMessage::new(
            Some(b"{}".to_vec()),
            None,
            "t".into(),
            Timestamp::NotAvailable,
            1,
            2,
            None,
        );
        assert!(matches!(TaskRecord::decode(&m), Err(WireError::Json(_))), "not a task");
    }
}
