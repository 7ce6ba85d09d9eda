//! Kafka header names (DESIGN.md) and reading them off a record.

use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::Message;

use crate::trace_context::TraceParent;

/// Attempt number of the task (1 = the dispatcher's first attempt).
pub const ATTEMPT: &str = "hs-attempt";
/// Unix milliseconds at which the task is due.
pub const DUE_AT: &str = "hs-due-at";
/// `topic/partition/offset` of the source event.
pub const ORIGIN: &str = "hs-origin";
/// W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
/// W3C trace state, when present.
pub const TRACESTATE: &str = "tracestate";

/// The text value of header `name` on `m` (the first one; none if absent or not UTF-8).
pub fn text<'m, M: Message>(m: &'m M, name: &str) -> Option<&'m str> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// The trace `m` carries in `traceparent`, or a new root when it carries none that parses.
pub fn trace<M: Message>(m: &M) -> TraceParent {
    text(m, TRACEPARENT).and_then(TraceParent::parse).unwrap_or_else(TraceParent::new_root)
}

/// The headers of a delivery task: attempt, due time, origin and trace.
pub fn task(attempt: u32, due_ms: i64, origin: &str, traceparent: &str) -> OwnedHeaders {
    let (attempt, due) = (attempt.to_string(), due_ms.to_string());
    OwnedHeaders::new()
        .insert(Header { key: ATTEMPT, value: Some(attempt.as_str()) })
        .insert(Header { key: DUE_AT, value: Some(due.as_str()) })
        .insert(Header { key: ORIGIN, value: Some(origin) })
        .insert(Header { key: TRACEPARENT, value: Some(traceparent) })
}

/// The headers of an event: its trace.
pub fn event(traceparent: &str) -> OwnedHeaders {
    OwnedHeaders::new().insert(Header { key: TRACEPARENT, value: Some(traceparent) })
}

#[cfg(test)]
mod tests {
    use rdkafka::message::OwnedMessage;
    use rdkafka::Timestamp;

    use super::*;

    #[test]
    fn task_headers_read_back() {
        let tp = TraceParent::new_root().to_string();
        let m = OwnedMessage::new(
            None,
            None,
            "t".into(),
            Timestamp::NotAvailable,
            0,
            0,
            Some(task(3, 1_700_000_000_000, "e/1/2", &tp)),
        );
        assert_eq!(text(&m, ATTEMPT), Some("3"));
        assert_eq!(text(&m, DUE_AT), Some("1700000000000"));
        assert_eq!(text(&m, ORIGIN), Some("e/1/2"));
        assert_eq!(trace(&m).to_string(), tp);
        let bare = OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, 0, 0, None);
        assert_eq!(text(&bare, ORIGIN), None);
        assert_ne!(trace(&bare).to_string(), tp, "no header: a new root");
    }
}
