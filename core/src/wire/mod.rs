//! Everything that travels through Kafka, written and read here and nowhere else: the event
//! envelope on the event topics (JSON, or Avro in the Confluent wire format through a schema
//! registry, [`envelope`]), the delivery task on the retry tiers and the DLQ ([`task`]), and
//! the headers both carry ([`headers`]). The types themselves are [`crate::envelope`]'s.

pub mod envelope;
pub mod headers;
pub mod task;

pub use envelope::{EnvelopeCodec, WireError};
pub use task::TaskRecord;
