//! W3C trace context (`traceparent`), carried from the ingest request through Kafka headers to
//! the webhook request, so one event is one trace end to end.

use std::fmt;

use rand::RngCore;

/// A parsed `traceparent`: `00-<trace id>-<parent span id>-<flags>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// 16-byte trace id, never all zero.
    pub trace_id: [u8; 16],
    /// 8-byte id of the span that is the parent of the next hop, never all zero.
    pub span_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceParent {
    /// A new trace with a random trace id, sampled.
    pub fn new_root() -> Self {
        let mut trace_id = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut trace_id);
        trace_id[0] |= 1; // never all zero
        Self { trace_id, span_id: random_span_id(), flags: 1 }
    }

    /// A span of the same trace whose parent is `self`.
    pub fn child(&self) -> Self {
        Self { trace_id: self.trace_id, span_id: random_span_id(), flags: self.flags }
    }

    /// Parses a header value; `None` for anything not a valid version-00 value.
    pub fn parse(value: &str) -> Option<Self> {
        let parts: Vec<&str> = value.trim().split('-').collect();
        let [version, trace, span, flags] = parts.as_slice() else { return None };
        if *version != "00" || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        hex::decode_to_slice(trace, &mut trace_id).ok()?;
        hex::decode_to_slice(span, &mut span_id).ok()?;
        let mut flag = [0u8; 1];
        hex::decode_to_slice(flags, &mut flag).ok()?;
        if trace_id == [0; 16] || span_id == [0; 8] || trace.bytes().any(|b| b.is_ascii_uppercase())
        {
            return None;
        }
        Some(Self { trace_id, span_id, flags: flag[0] })
    }

    /// The trace id as 32 lowercase hex characters.
    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(self.span_id),
            self.flags
        )
    }
}

fn random_span_id() -> [u8; 8] {
    let mut id = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut id);
    id[7] |= 1;
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_the_spec_example() {
        let tp = TraceParent::parse(SAMPLE).expect("valid");
        assert_eq!(tp.to_string(), SAMPLE);
        assert_eq!(tp.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn a_child_keeps_the_trace_and_gets_a_new_span() {
        let tp = TraceParent::parse(SAMPLE).expect("valid");
        let child = tp.child();
        assert_eq!(child.trace_id, tp.trace_id);
        assert_ne!(child.span_id, tp.span_id);
        assert_eq!(TraceParent::parse(&child.to_string()), Some(child));
    }

    #[test]
    fn invalid_values_are_ignored() {
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }
}
