//! With a schema registry configured, events are Avro in the Confluent wire format, registered
//! in a real Confluent-compatible registry (Apicurio Registry's `/apis/ccompat/v7`, started by
//! the test kit).

use std::time::Duration;

use apache_avro::types::Value as Avro;
use hookstream_core::config::KafkaConfig;
use hookstream_core::schema::ENVELOPE_AVSC;
use hookstream_ingest::IngestSettings;
use hookstream_testkit as testkit;
use rdkafka::Message;
use serde_json::Value;

use crate::support::{created, Ingest};

#[tokio::test]
async fn events_are_avro_in_the_confluent_wire_format_when_a_registry_is_configured() {
    let registry = testkit::SchemaRegistry::start().await;
    let kafka = KafkaConfig {
        schema_registry_url: Some(registry.url.parse().expect("url")),
        ..testkit::kafka_config()
    };
    let ingest = Ingest::start_with(kafka, IngestSettings::default()).await;
    let r = ingest.post("/v1/events").json(&created("s1")).send().await.expect("post");
    assert_eq!(r.status(), 202);
    let event_id =
        r.json::<Value>().await.expect("json")["event_id"].as_str().expect("id").to_owned();

    // Registered under the topic's value subject, as Avro.
    let topic = ingest.topics.topics().events(hookstream_core::envelope::Priority::Normal);
    let subject = format!("{topic}-value");
    let subjects: Vec<String> = reqwest::get(format!("{}subjects", registry.url))
        .await
        .expect("subjects")
        .json()
        .await
        .expect("json");
    assert_eq!(subjects, vec![subject.clone()]);
    let latest: Value = reqwest::get(format!("{}subjects/{subject}/versions/latest", registry.url))
        .await
        .expect("latest")
        .json()
        .await
        .expect("json");
    let id = latest["id"].as_u64().expect("schema id") as u32;
    let registered = apache_avro::Schema::parse_str(latest["schema"].as_str().expect("schema"))
        .expect("registered schema parses");
    let ours = apache_avro::Schema::parse_str(ENVELOPE_AVSC).expect("avsc");
    assert_eq!(registered.canonical_form(), ours.canonical_form());

    let msgs = testkit::consume_exactly(
        &ingest.kafka,
        std::slice::from_ref(&topic),
        1,
        Duration::from_secs(20),
        Duration::from_millis(1000),
    )
    .await;
    let payload = msgs[0].payload().expect("payload");
    assert_eq!(payload[0], 0, "magic byte");
    assert_eq!(&payload[1..5], &id.to_be_bytes(), "the registry's schema id");
    let decoded = apache_avro::reader::datum::GenericDatumReader::builder(&ours)
        .build()
        .expect("reader")
        .read_value(&mut &payload[5..])
        .expect("avro body");
    let Avro::Record(fields) = decoded else { panic!("not a record: {decoded:?}") };
    let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    assert_eq!(field("event_id"), Some(Avro::String(event_id)));
    assert_eq!(field("account_id"), Some(Avro::Uuid(ingest.account.0)));
    assert_eq!(field("priority"), Some(Avro::Enum(1, "normal".into())));
    let Some(Avro::String(data)) = field("data") else { panic!("data") };
    let data: Value = serde_json::from_str(&data).expect("data json");
    assert_eq!(data["subscriber"]["id"], "s1");
}

#[tokio::test]
async fn an_unreachable_registry_gives_503_and_nothing_is_produced() {
    let port = testkit::free_port();
    let kafka = KafkaConfig {
        schema_registry_url: Some(format!("http://127.0.0.1:{port}/").parse().expect("url")),
        ..testkit::kafka_config()
    };
    let ingest = Ingest::start_with(kafka, IngestSettings::default()).await;
    let r = ingest.post("/v1/events").json(&created("s1")).send().await.expect("post");
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.expect("json");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("schema registry"), "{v}");
}
