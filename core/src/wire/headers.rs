//! Kafka header names (DESIGN.md), reading them off a record, and the trace context carried
//! in them (through the W3C propagator, [`crate::trace::propagator`]).

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::Message;

use crate::trace::{self, Context};

/// Attempt number of the task (1 = the dispatcher's first attempt).
pub const ATTEMPT: &str = "hs-attempt";
/// Unix milliseconds at which the task is due.
pub const DUE_AT: &str = "hs-due-at";
/// Unix milliseconds from which a parked task may be sent before it is due, once its endpoint
/// has room (only on the park topic).
pub const READY_AT: &str = "hs-ready-at";
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

/// The trace context `m` carries (`traceparent`, `tracestate`); empty when none parses.
pub fn context<M: Message>(m: &M) -> Context {
    trace::propagator().extract(&Record(m))
}

/// Reads a record's headers for the propagator.
struct Record<'m, M>(&'m M);

impl<M: Message> Extractor for Record<'_, M> {
    fn get(&self, key: &str) -> Option<&str> {
        text(self.0, key)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.headers().map(|h| h.iter().map(|h| h.key).collect()).unwrap_or_default()
    }
}

/// `headers` with the trace context of `cx` added (nothing without a valid span).
fn with_trace(mut headers: OwnedHeaders, cx: &Context) -> OwnedHeaders {
    let mut fields = HashMap::new();
    trace::propagator().inject_context(cx, &mut fields);
    // In a fixed order, so a record's headers do not depend on a map's.
    for key in [TRACEPARENT, TRACESTATE] {
        if let Some(value) = fields.get(key) {
            headers = headers.insert(Header { key, value: Some(value.as_str()) });
        }
    }
    headers
}

/// The headers of a delivery task: attempt, due time, the time it may be sent early from (a
/// parked task), origin and the trace context of `cx` (the hand-off's `send` span).
pub fn task(
    attempt: u32,
    due_ms: i64,
    ready_ms: Option<i64>,
    origin: &str,
    cx: &Context,
) -> OwnedHeaders {
    let (attempt, due) = (attempt.to_string(), due_ms.to_string());
    let mut headers = OwnedHeaders::new()
        .insert(Header { key: ATTEMPT, value: Some(attempt.as_str()) })
        .insert(Header { key: DUE_AT, value: Some(due.as_str()) });
    if let Some(ready) = ready_ms.map(|ms| ms.to_string()) {
        headers = headers.insert(Header { key: READY_AT, value: Some(ready.as_str()) });
    }
    headers = headers.insert(Header { key: ORIGIN, value: Some(origin) });
    with_trace(headers, cx)
}

/// The headers of an event: the trace context of `cx` (ingest's `send` span).
pub fn event(cx: &Context) -> OwnedHeaders {
    with_trace(OwnedHeaders::new(), cx)
}

#[cfg(test)]
mod tests {
    use rdkafka::message::OwnedMessage;
    use rdkafka::Timestamp;

    use super::*;

    #[test]
    fn task_headers_read_back() {
        let tracing = crate::trace::Tracing::local("test");
        let cx = tracing.tracer().send(&Context::new(), "t");
        let tp = trace::traceparent(&cx).expect("a span");
        let m = OwnedMessage::new(
            None,
            None,
            "t".into(),
            Timestamp::NotAvailable,
            0,
            0,
            Some(task(3, 1_700_000_000_000, Some(1_699_999_999_000), "e/1/2", &cx)),
        );
        assert_eq!(text(&m, ATTEMPT), Some("3"));
        assert_eq!(text(&m, DUE_AT), Some("1700000000000"));
        assert_eq!(text(&m, READY_AT), Some("1699999999000"));
        assert_eq!(text(&m, ORIGIN), Some("e/1/2"));
        assert_eq!(text(&m, TRACEPARENT), Some(tp.as_str()));
        assert_eq!(trace::traceparent(&context(&m)), Some(tp));
        let bare = OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, 0, 0, None);
        assert_eq!(text(&bare, ORIGIN), None);
        assert_eq!(trace::traceparent(&context(&bare)), None, "no header: no context");
        let untraced = event(&Context::new());
        assert_eq!(untraced.count(), 0, "no span: no trace headers");
    }
}
