//! Avro end to end: with a schema registry, ingest writes the event as Avro in the Confluent
//! wire format, the dispatcher reads it through the registry and delivers it, and
//! `hookstream replay` reads the same record; without the registry, replay stops at it with
//! an error naming the setting instead of skipping it.

use std::process::Output;
use std::time::Duration;

use chrono::Utc;
use hookstream_core::config::KafkaConfig;
use hookstream_core::envelope::Priority;
use hookstream_testkit::{
    self as testkit, eventually, Receiver, SchemaRegistry, Tenant, TestDatabase,
};
use rdkafka::Message;
use serde_json::{json, Value};

use crate::command::on_topics;
use crate::pipeline::Site;

async fn replay(db: &TestDatabase, prefix: &str, registry: Option<&str>, args: &[&str]) -> Output {
    let mut command = on_topics(db, prefix, args);
    if let Some(url) = registry {
        command.env("HOOKSTREAM_KAFKA__SCHEMA_REGISTRY_URL", url);
    }
    command.output().await.expect("run hookstream")
}

#[tokio::test]
async fn an_event_produced_through_the_registry_is_delivered_and_replayable() {
    let registry = SchemaRegistry::start().await;
    let topics = testkit::topics_config(1);
    testkit::create_topics(&topics.topics().all(), 1).await;
    let kafka = KafkaConfig {
        schema_registry_url: Some(registry.url.parse().expect("url")),
        ..testkit::kafka_config()
    };
    let db = TestDatabase::new().await;
    let tenant = Tenant::create(&db.pool, "avro").await;
    let receiver = Receiver::start().await;
    testkit::create_endpoint(&db.pool, tenant.account, receiver.url("/avro"), &["*"], None).await;
    let site = Site::new(&kafka, &topics, &db);
    let (ingest, base) = site.ingest();
    let dispatcher = site.dispatcher();
    let from = (Utc::now() - chrono::Duration::seconds(5)).to_rfc3339();
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/events");
    let event = json!({
        "event_type": "subscriber.created",
        "data": {"subscriber": {"id": "s-avro", "email": "avro@example.com"}}
    });
    let accepted: Value = eventually(Duration::from_secs(30), "ingest accepts", || async {
        let r = client.post(&url).bearer_auth(&tenant.token).json(&event).send().await.ok()?;
        (r.status() == reqwest::StatusCode::ACCEPTED).then_some(r.json().await.ok()?)
    })
    .await;
    let event_id = accepted["event_id"].as_str().expect("event id").to_owned();

    // On the topic: Avro in the Confluent wire format, not JSON.
    let topic = topics.topics().events(Priority::Normal);
    let records = testkit::consume_exactly(
        &kafka,
        std::slice::from_ref(&topic),
        1,
        Duration::from_secs(20),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(records[0].payload().and_then(|p| p.first()), Some(&0), "magic byte: Avro");

    // Delivered by a dispatcher that read it through the registry.
    let hit = eventually(Duration::from_secs(30), "the webhook", || async {
        receiver.hits_on("/avro").into_iter().next()
    })
    .await;
    assert_eq!(hit.headers["webhook-id"], event_id);
    let body: Value = serde_json::from_slice(&hit.body).expect("json body");
    assert_eq!(body["data"]["subscriber"]["id"], "s-avro", "{body}");
    assert_eq!(body["account_id"], tenant.account.to_string(), "{body}");

    // Replay reads it through the registry too; without one it stops there, naming why.
    let prefix = topics.prefix.clone();
    let window = ["replay", "--topic", "events.normal", "--from", &from, "--dry-run"];
    let dry = replay(&db, &prefix, Some(&registry.url), &window).await;
    let out = String::from_utf8_lossy(&dry.stdout);
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    assert!(out.contains("would replay 1 events as 1 delivery tasks"), "{out}");
    assert!(out.contains("0 undecodable"), "{out}");
    let blind = replay(&db, &prefix, None, &window).await;
    let err = String::from_utf8_lossy(&blind.stderr);
    assert_eq!(blind.status.code(), Some(1), "{err}");
    assert!(err.contains("kafka.schema_registry_url"), "{err}");

    tokio::join!(ingest.stop(), dispatcher.stop());
}
