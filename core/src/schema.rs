//! Validation of event payloads against the JSON Schemas in `schemas/`, which are compiled in.

use std::collections::BTreeMap;

use jsonschema::{Registry, Validator};
use serde_json::Value;

const SUBSCRIBER_ID: &str = "https://hookstream.dev/schemas/subscriber.v1.json";
const SUBSCRIBER: &str = include_str!("../../schemas/json/subscriber.v1.json");
const ENVELOPE: &str = include_str!("../../schemas/json/envelope.v1.json");

/// The event types hookstream knows, with their payload schemas.
const EVENT_SCHEMAS: [(&str, &str); 4] = [
    ("subscriber.created", include_str!("../../schemas/json/events/subscriber.created.v1.json")),
    ("subscriber.updated", include_str!("../../schemas/json/events/subscriber.updated.v1.json")),
    ("subscriber.deleted", include_str!("../../schemas/json/events/subscriber.deleted.v1.json")),
    (
        "subscriber.unsubscribed",
        include_str!("../../schemas/json/events/subscriber.unsubscribed.v1.json"),
    ),
];

/// The Avro schema of the envelope, for the schema registry encoding.
pub const ENVELOPE_AVSC: &str = include_str!("../../schemas/avro/envelope.v1.avsc");

/// A schema file that does not compile: a build defect, reported at start-up.
#[derive(Debug, thiserror::Error)]
#[error("schema {name} is invalid: {message}")]
pub struct SchemaLoadError {
    name: String,
    message: String,
}

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// No schema exists for the event type.
    #[error("unknown event type {0:?}")]
    UnknownEventType(String),
    /// The payload breaks the schema at `field` (a JSON pointer such as `/subscriber/email`).
    #[error("{field}: {message}")]
    Invalid {
        /// JSON pointer into the payload; empty for the whole payload.
        field: String,
        /// What is wrong there.
        message: String,
    },
}

/// The compiled schemas.
pub struct Schemas {
    envelope: Validator,
    events: BTreeMap<&'static str, Validator>,
}

impl std::fmt::Debug for Schemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schemas").field("event_types", &self.event_types()).finish()
    }
}

impl Schemas {
    /// Compiles every schema.
    pub fn load() -> Result<Self, SchemaLoadError> {
        let envelope = compile("envelope.v1.json", ENVELOPE)?;
        let mut events = BTreeMap::new();
        for (event_type, text) in EVENT_SCHEMAS {
            events.insert(event_type, compile(event_type, text)?);
        }
        Ok(Self { envelope, events })
    }

    /// The known event types, sorted.
    pub fn event_types(&self) -> Vec<&'static str> {
        self.events.keys().copied().collect()
    }

    /// Whether `event_type` has a schema.
    pub fn knows(&self, event_type: &str) -> bool {
        self.events.contains_key(event_type)
    }

    /// Validates an event's `data` against its type's schema; reports the first violation.
    pub fn validate_event(&self, event_type: &str, data: &Value) -> Result<(), Violation> {
        let validator = self
            .events
            .get(event_type)
            .ok_or_else(|| Violation::UnknownEventType(event_type.to_owned()))?;
        first_violation(validator, data)
    }

    /// Validates a whole serialised envelope.
    pub fn validate_envelope(&self, envelope: &Value) -> Result<(), Violation> {
        first_violation(&self.envelope, envelope)
    }
}

fn compile(name: &str, text: &str) -> Result<Validator, SchemaLoadError> {
    let err = |message: String| SchemaLoadError { name: name.to_owned(), message };
    let schema: Value = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
    let subscriber: Value = serde_json::from_str(SUBSCRIBER).map_err(|e| err(e.to_string()))?;
    let registry = Registry::new()
        .add(SUBSCRIBER_ID, subscriber)
        .and_then(|r| r.prepare())
        .map_err(|e| err(e.to_string()))?;
    jsonschema::options()
        .should_validate_formats(true)
        .with_registry(&registry)
        .build(&schema)
        .map_err(|e| err(e.to_string()))
}

fn first_violation(validator: &Validator, instance: &Value) -> Result<(), Violation> {
    match validator.iter_errors(instance).next() {
        None => Ok(()),
        Some(e) => {
            Err(Violation::Invalid { field: e.instance_path().to_string(), message: e.to_string() })
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schemas() -> Schemas {
        Schemas::load().expect("schemas compile")
    }

    #[test]
    fn every_schema_compiles_and_types_are_listed() {
        assert_eq!(
            schemas().event_types(),
            [
                "subscriber.created",
                "subscriber.deleted",
                "subscriber.unsubscribed",
                "subscriber.updated"
            ]
        );
    }

    #[test]
    fn a_valid_created_event_passes() {
        let data = json!({"subscriber": {"id": "s1", "email": "a@example.com", "tags": ["x"]}});
        schemas().validate_event("subscriber.created", &data).expect("valid");
    }

    #[test]
    fn a_bad_email_names_the_field() {
        let data = json!({"subscriber": {"id": "s1", "email": "not-an-email"}});
        let err = schemas().validate_event("subscriber.created", &data).expect_err("invalid");
        match err {
            Violation::Invalid { field, .. } => assert_eq!(field, "/subscriber/email"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn created_requires_an_email_but_updated_does_not() {
        let data = json!({"subscriber": {"id": "s1"}});
        assert!(schemas().validate_event("subscriber.created", &data).is_err());
        schemas().validate_event("subscriber.updated", &data).expect("valid update");
    }

    #[test]
    fn unknown_types_and_extra_fields_are_refused() {
        let s = schemas();
        assert_eq!(
            s.validate_event("order.created", &json!({})),
            Err(Violation::UnknownEventType("order.created".into()))
        );
        let extra = json!({"subscriber": {"id": "s1"}, "surprise": 1});
        assert!(s.validate_event("subscriber.deleted", &extra).is_err());
    }

    #[test]
    fn the_envelope_type_matches_its_schema() {
        let data = json!({"subscriber": {"id": "s1"}});
        let envelope = crate::envelope::EventEnvelope {
            priority: crate::envelope::Priority::Low,
            ..crate::envelope::EventEnvelope::new(
                crate::AccountId::new(),
                "subscriber.deleted",
                data,
            )
        };
        let value = serde_json::to_value(envelope).expect("json");
        schemas().validate_envelope(&value).expect("envelope matches its schema");
    }

    #[test]
    fn the_avro_schema_parses_as_json() {
        let v: Value = serde_json::from_str(ENVELOPE_AVSC).expect("avsc is json");
        assert_eq!(v["name"], "EventEnvelope");
    }
}
