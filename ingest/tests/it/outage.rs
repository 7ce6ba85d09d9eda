//! The broker goes away: 503 with Retry-After within the produce timeout, never a 202 for an
//! event that is not on the broker, and recovery on its own when the broker returns.

use std::time::{Duration, Instant};

use hookstream_core::config::KafkaConfig;
use hookstream_ingest::IngestSettings;
use hookstream_testkit::{self as testkit, eventually, OwnBroker};

use crate::support::{created, Ingest};

#[tokio::test]
async fn a_dead_broker_gives_503_within_the_produce_timeout_and_ingest_recovers() {
    let mut broker = OwnBroker::start().await;
    let kafka = KafkaConfig { produce_timeout: Duration::from_secs(2), ..broker.kafka_config() };
    let ingest = Ingest::start_with(kafka.clone(), IngestSettings::default()).await;
    let r = ingest.post("/v1/events").json(&created("before")).send().await.expect("post");
    assert_eq!(r.status(), 202);

    broker.stop();
    for i in 0..3 {
        let started = Instant::now();
        let r = ingest
            .post("/v1/events")
            .json(&created(&format!("during{i}")))
            .send()
            .await
            .expect("post");
        let took = started.elapsed();
        assert_eq!(r.status(), 503, "no 202 while the broker is down");
        assert!(r.headers().contains_key("retry-after"));
        assert!(took < Duration::from_secs(4), "answered after {took:?}");
    }

    broker.restart().await;
    eventually(Duration::from_secs(30), "ingest accepting again", || async {
        let r = ingest.post("/v1/events").json(&created("after")).send().await.ok()?;
        (r.status() == 202).then_some(())
    })
    .await;
    // What was acknowledged is on the broker, across its SIGKILL and restart: "before" and
    // "after", and nothing the outage answered 503 for.
    let msgs = testkit::consume_exactly(
        &kafka,
        &ingest.topics.topics().all_events(),
        2,
        Duration::from_secs(20),
        Duration::from_millis(1500),
    )
    .await;
    let bodies: Vec<String> = msgs
        .iter()
        .map(|m| String::from_utf8_lossy(rdkafka::Message::payload(m).unwrap_or_default()).into())
        .collect();
    assert!(bodies.iter().any(|b| b.contains("\"before\"")), "{bodies:?}");
    assert!(bodies.iter().any(|b| b.contains("\"after\"")), "{bodies:?}");
}
