//! With a schema registry configured, events are Avro in the Confluent wire format.
//!
//! No Confluent-compatible registry installs on these machines from the reachable registries
//! without a JVM Kafka stack, so the registry here is a local HTTP server speaking the
//! registry's REST API (`POST /subjects/{subject}/versions` → `{"id": …}`), as recorded from
//! Confluent's documentation.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use apache_avro::types::Value as Avro;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use hookstream_core::schema::ENVELOPE_AVSC;
use hookstream_core::testkit;
use hookstream_ingest::IngestSettings;
use rdkafka::Message;
use serde_json::{json, Value};

use crate::support::{created, Ingest};

type Registered = Arc<Mutex<Vec<(String, Value)>>>;

async fn register(
    State(seen): State<Registered>,
    Path(subject): Path<String>,
    Json(body): Json<Value>,
) -> Json<Value> {
    seen.lock().expect("lock").push((subject, body));
    Json(json!({"id": 7}))
}

#[tokio::test]
async fn events_are_avro_in_the_confluent_wire_format_when_a_registry_is_configured() {
    let seen: Registered = Arc::default();
    let app = Router::new()
        .route("/subjects/{subject}/versions", post(register))
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let settings = IngestSettings {
        schema_registry_url: Some(url.parse().expect("url")),
        ..IngestSettings::default()
    };
    let ingest = Ingest::start_with(testkit::kafka_config(), settings).await;
    let r = ingest.post("/v1/events").json(&created("s1")).send().await.expect("post");
    assert_eq!(r.status(), 202);
    let event_id =
        r.json::<Value>().await.expect("json")["event_id"].as_str().expect("id").to_owned();

    let topic = ingest.topics.topics().events(hookstream_core::envelope::Priority::Normal);
    {
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), 1, "registered once");
        assert_eq!(seen[0].0, format!("{topic}-value"));
        assert_eq!(seen[0].1["schemaType"], "AVRO");
    }
    let msgs = testkit::consume_exactly(
        &ingest.kafka,
        std::slice::from_ref(&topic),
        1,
        Duration::from_secs(20),
        Duration::from_millis(1000),
    )
    .await;
    let payload = msgs[0].payload().expect("payload");
    assert_eq!(&payload[..5], &[0, 0, 0, 0, 7], "magic byte and schema id 7");
    let schema = apache_avro::Schema::parse_str(ENVELOPE_AVSC).expect("avsc");
    let decoded = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
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
    let settings = IngestSettings {
        schema_registry_url: Some(format!("http://127.0.0.1:{port}/").parse().expect("url")),
        ..IngestSettings::default()
    };
    let ingest = Ingest::start_with(testkit::kafka_config(), settings).await;
    let r = ingest.post("/v1/events").json(&created("s1")).send().await.expect("post");
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.expect("json");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("schema registry"), "{v}");
}
