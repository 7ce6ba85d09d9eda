//! The event envelope on the event topics: JSON, or Avro in the Confluent wire format (magic
//! byte 0, 4-byte schema id, Avro body) when a schema registry is configured. The Avro schema
//! is `schemas/avro/envelope.v1.avsc`, registered under the topic's `-value` subject. Readers
//! take both, whatever they are configured to write: a topic may hold either across a switch.

use std::sync::Arc;

use apache_avro::types::Value as Avro;
use chrono::{DateTime, TimeZone, Utc};
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};

use crate::envelope::{EventEnvelope, Priority};
use crate::ids::{AccountId, EventId};
use crate::schema::ENVELOPE_AVSC;

/// The Avro record's full name.
const AVRO_NAME: &str = "dev.hookstream.v1.EventEnvelope";

/// Why an envelope could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The record has no payload.
    #[error("record has no payload")]
    Empty,
    /// Not a JSON envelope this build reads.
    #[error("not an event envelope: {0}")]
    Json(#[from] serde_json::Error),
    /// Avro-framed, but no schema registry is configured to read it with.
    #[error("Avro-encoded (Confluent wire format), but kafka.schema_registry_url is not set")]
    NoRegistry,
    /// The registry could not be reached or refused: `retriable` when it may answer later.
    #[error("schema registry: {message}")]
    Registry {
        /// What the registry client said.
        message: String,
        /// Whether asking again may succeed (the registry was unreachable or busy).
        retriable: bool,
    },
    /// Avro that does not hold an envelope.
    #[error("Avro record is not an event envelope: {0}")]
    Shape(String),
}

impl WireError {
    /// Whether the same bytes may read later, asked again (the registry was unreachable):
    /// such a record must be kept, never skipped. ([`WireError::NoRegistry`] is kept too, but
    /// only a configuration change mends it.)
    pub fn is_retriable(&self) -> bool {
        matches!(self, WireError::Registry { retriable: true, .. })
    }
}

/// Writes and reads envelopes; clones share the registry's schema caches.
#[derive(Clone)]
pub struct EnvelopeCodec {
    registry: Option<Arc<(AvroEncoder, AvroDecoder)>>,
}

impl std::fmt::Debug for EnvelopeCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.registry.is_some() {
            "EnvelopeCodec(Avro)"
        } else {
            "EnvelopeCodec(JSON)"
        })
    }
}

impl EnvelopeCodec {
    /// JSON without a registry URL, Avro with one (reading both either way).
    pub fn new(registry_url: Option<&url::Url>) -> Result<Self, WireError> {
        let Some(url) = registry_url else { return Ok(Self { registry: None }) };
        let settings = SrSettings::new_builder(url.as_str().trim_end_matches('/').to_owned())
            .no_proxy()
            .set_timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(registry_error)?;
        Ok(Self {
            registry: Some(Arc::new((
                AvroEncoder::new(settings.clone()),
                AvroDecoder::new(settings),
            ))),
        })
    }

    /// The bytes of `envelope` for `topic`.
    pub async fn encode(
        &self,
        topic: &str,
        envelope: &EventEnvelope,
    ) -> Result<Vec<u8>, WireError> {
        let Some(registry) = &self.registry else { return Ok(serde_json::to_vec(envelope)?) };
        let strategy = SubjectNameStrategy::TopicNameStrategyWithSchema(
            topic.to_owned(),
            false,
            SuppliedSchema::new(
                Some(AVRO_NAME.to_owned()),
                SchemaType::Avro,
                ENVELOPE_AVSC.to_owned(),
            ),
        );
        registry.0.encode(avro_fields(envelope)?, strategy).await.map_err(registry_error)
    }

    /// The envelope in `payload`, JSON or Confluent-framed Avro.
    pub async fn decode(&self, payload: Option<&[u8]>) -> Result<EventEnvelope, WireError> {
        let bytes = payload.ok_or(WireError::Empty)?;
        if bytes.first() != Some(&0) {
            return Ok(serde_json::from_slice(bytes)?);
        }
        let registry = self.registry.as_ref().ok_or(WireError::NoRegistry)?;
        let decoded = registry.1.decode(Some(bytes)).await.map_err(registry_error)?;
        from_avro(decoded.value)
    }
}

fn registry_error(e: schema_registry_converter::error::SRCError) -> WireError {
    WireError::Registry { retriable: e.retriable, message: e.to_string() }
}

/// The envelope as the fields of `envelope.v1.avsc`.
fn avro_fields(e: &EventEnvelope) -> Result<Vec<(&'static str, Avro)>, WireError> {
    let priority = match e.priority {
        Priority::High => 0,
        Priority::Normal => 1,
        Priority::Low => 2,
    };
    Ok(vec![
        ("event_id", Avro::String(e.event_id.to_string())),
        ("account_id", Avro::Uuid(e.account_id.0)),
        ("event_type", Avro::String(e.event_type.clone())),
        ("occurred_at", Avro::TimestampMicros(e.occurred_at.timestamp_micros())),
        ("received_at", Avro::TimestampMicros(e.received_at.timestamp_micros())),
        ("priority", Avro::Enum(priority, e.priority.as_str().to_owned())),
        ("data", Avro::String(serde_json::to_string(&e.data)?)),
        ("schema_version", Avro::Int(i32::try_from(e.schema_version).unwrap_or(i32::MAX))),
    ])
}

/// The envelope from a decoded `envelope.v1.avsc` record.
fn from_avro(value: Avro) -> Result<EventEnvelope, WireError> {
    let Avro::Record(fields) = value else {
        return Err(WireError::Shape(format!("not a record: {value:?}")));
    };
    let mut fields: std::collections::HashMap<String, Avro> = fields.into_iter().collect();
    let mut take = |name: &str| {
        fields.remove(name).ok_or_else(|| WireError::Shape(format!("no field {name}")))
    };
    let text = |v: Avro, name: &str| match v {
        Avro::String(s) => Ok(s),
        other => Err(WireError::Shape(format!("{name} is not a string: {other:?}"))),
    };
    let time = |v: Avro, name: &str| -> Result<DateTime<Utc>, WireError> {
        match v {
            Avro::TimestampMicros(us) | Avro::Long(us) => Utc
                .timestamp_micros(us)
                .single()
                .ok_or_else(|| WireError::Shape(format!("{name} out of range: {us}"))),
            other => Err(WireError::Shape(format!("{name} is not a timestamp: {other:?}"))),
        }
    };
    let event_id: EventId = text(take("event_id")?, "event_id")?
        .parse()
        .map_err(|e| WireError::Shape(format!("event_id: {e}")))?;
    let account_id = match take("account_id")? {
        Avro::Uuid(u) => AccountId(u),
        Avro::String(s) => s.parse().map_err(|e| WireError::Shape(format!("account_id: {e}")))?,
        other => return Err(WireError::Shape(format!("account_id is not a uuid: {other:?}"))),
    };
    let priority = match take("priority")? {
        Avro::Enum(_, symbol) => {
            symbol.parse().map_err(|e| WireError::Shape(format!("priority: {e}")))?
        }
        other => return Err(WireError::Shape(format!("priority is not an enum: {other:?}"))),
    };
    let schema_version = match take("schema_version")? {
        Avro::Int(v) => {
            u32::try_from(v).map_err(|_| WireError::Shape(format!("schema_version {v}")))?
        }
        other => return Err(WireError::Shape(format!("schema_version is not an int: {other:?}"))),
    };
    Ok(EventEnvelope {
        event_id,
        account_id,
        event_type: text(take("event_type")?, "event_type")?,
        occurred_at: time(take("occurred_at")?, "occurred_at")?,
        received_at: time(take("received_at")?, "received_at")?,
        priority,
        data: serde_json::from_str(&text(take("data")?, "data")?)?,
        schema_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> EventEnvelope {
        // Avro keeps microseconds.
        let now = Utc.timestamp_micros(Utc::now().timestamp_micros()).single().expect("now");
        let data = serde_json::json!({"subscriber": {"id": "s1", "tags": ["a", "ü"]}});
        EventEnvelope {
            occurred_at: now - chrono::Duration::seconds(3),
            received_at: now,
            priority: Priority::Low,
            ..EventEnvelope::new(AccountId::new(), "subscriber.created", data)
        }
    }

    #[tokio::test]
    async fn json_round_trips() {
        let codec = EnvelopeCodec::new(None).expect("codec");
        let e = envelope();
        let bytes = codec.encode("t", &e).await.expect("encode");
        assert_eq!(codec.decode(Some(&bytes)).await.expect("decode"), e);
    }

    #[test]
    fn avro_fields_round_trip_through_the_schema() {
        let schema = apache_avro::Schema::parse_str(ENVELOPE_AVSC).expect("avsc");
        let e = envelope();
        let record = Avro::Record(
            avro_fields(&e).expect("fields").into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        );
        let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema).build();
        let bytes =
            writer.expect("writer").write_value_to_vec(record).expect("valid for the schema");
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema).build();
        let back = reader.expect("reader").read_value(&mut &bytes[..]).expect("read");
        assert_eq!(from_avro(back).expect("envelope"), e);
    }

    #[tokio::test]
    async fn avro_without_a_registry_is_kept_not_skipped() {
        let codec = EnvelopeCodec::new(None).expect("codec");
        let err = codec.decode(Some(&[0, 0, 0, 0, 1, 2])).await.expect_err("no registry");
        assert!(matches!(err, WireError::NoRegistry) && !err.is_retriable());
        let err = codec.decode(Some(b"{nope")).await.expect_err("bad json");
        assert!(!err.is_retriable(), "bad JSON is skipped, never retried");
        assert!(matches!(codec.decode(None).await, Err(WireError::Empty)));
    }

    #[test]
    fn a_record_of_another_shape_is_refused() {
        let err = from_avro(Avro::Record(vec![("beat".into(), Avro::Long(3))])).expect_err("shape");
        assert!(err.to_string().contains("no field"), "{err}");
    }
}
