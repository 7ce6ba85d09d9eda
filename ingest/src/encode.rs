//! How the envelope is written to Kafka: JSON, or Avro in the Confluent wire format (magic
//! byte, 4-byte schema id, Avro body) when a schema registry is configured. The Avro schema is
//! `schemas/avro/envelope.v1.avsc`, registered under the topic's `-value` subject.

use std::sync::Arc;

use apache_avro::types::Value;
use hookstream_core::envelope::{EventEnvelope, Priority};
use hookstream_core::schema::ENVELOPE_AVSC;
use schema_registry_converter::async_impl::avro::AvroEncoder;
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};

/// Why an envelope could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// JSON serialisation failed (a defect).
    #[error("cannot encode the envelope as JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The registry could not be reached or refused the schema.
    #[error("schema registry: {0}")]
    Registry(String),
}

/// The configured value encoding.
#[derive(Clone)]
pub enum Encoder {
    /// Plain JSON.
    Json,
    /// Avro through a Confluent-compatible schema registry.
    Avro(Arc<AvroEncoder>),
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encoder::Json => "Json",
            Encoder::Avro(_) => "Avro",
        })
    }
}

impl Encoder {
    /// JSON without a registry URL, Avro with one.
    pub fn new(registry_url: Option<&url::Url>) -> Result<Self, EncodeError> {
        let Some(url) = registry_url else { return Ok(Encoder::Json) };
        let settings = SrSettings::new_builder(url.as_str().trim_end_matches('/').to_owned())
            .no_proxy()
            .set_timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| EncodeError::Registry(e.to_string()))?;
        Ok(Encoder::Avro(Arc::new(AvroEncoder::new(settings))))
    }

    /// The bytes of `envelope` for `topic`.
    pub async fn encode(
        &self,
        topic: &str,
        envelope: &EventEnvelope,
    ) -> Result<Vec<u8>, EncodeError> {
        match self {
            Encoder::Json => Ok(serde_json::to_vec(envelope)?),
            Encoder::Avro(encoder) => {
                let strategy = SubjectNameStrategy::TopicNameStrategyWithSchema(
                    topic.to_owned(),
                    false,
                    SuppliedSchema::new(
                        Some("dev.hookstream.v1.EventEnvelope".to_owned()),
                        SchemaType::Avro,
                        ENVELOPE_AVSC.to_owned(),
                    ),
                );
                encoder
                    .encode(avro_fields(envelope)?, strategy)
                    .await
                    .map_err(|e| EncodeError::Registry(e.to_string()))
            }
        }
    }
}

/// The envelope as the fields of `envelope.v1.avsc`.
fn avro_fields(e: &EventEnvelope) -> Result<Vec<(&'static str, Value)>, EncodeError> {
    let priority = match e.priority {
        Priority::High => 0,
        Priority::Normal => 1,
        Priority::Low => 2,
    };
    Ok(vec![
        ("event_id", Value::String(e.event_id.to_string())),
        ("account_id", Value::Uuid(e.account_id.0)),
        ("event_type", Value::String(e.event_type.clone())),
        ("occurred_at", Value::TimestampMicros(e.occurred_at.timestamp_micros())),
        ("received_at", Value::TimestampMicros(e.received_at.timestamp_micros())),
        ("priority", Value::Enum(priority, e.priority.as_str().to_owned())),
        ("data", Value::String(serde_json::to_string(&e.data)?)),
        ("schema_version", Value::Int(i32::try_from(e.schema_version).unwrap_or(i32::MAX))),
    ])
}
