//! One trace per event, end to end: the `traceparent` a webhook receiver gets — on the first
//! attempt and on a retry — belongs to the trace ingest started for the request.

use std::time::Duration;

use hookstream_core::config::{AdminConfig, HttpConfig};
use hookstream_core::db::{accounts, api_keys};
use hookstream_core::delivery::DeliveryConfig;
use hookstream_core::tier::Tier;
use hookstream_dispatcher::{DispatcherConfig, DispatcherSettings};
use hookstream_ingest::{IngestConfig, IngestSettings};
use hookstream_retrier::{RetrierConfig, RetrierSettings};
use hookstream_testkit::{self as testkit, eventually, Receiver, TestDatabase};
use tokio_util::sync::CancellationToken;

fn trace_id(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).unwrap_or_default()
}

#[tokio::test]
async fn the_receiver_gets_the_trace_ingest_started_on_every_attempt() {
    let topics = testkit::topics_config(1);
    let kafka = testkit::kafka_config();
    testkit::create_topics(&topics.topics().all(), 1).await;
    let db = TestDatabase::new().await;
    let receiver = Receiver::start().await;
    receiver.script("/ep", &[503]); // the first attempt fails, the retry succeeds
    let a =
        accounts::create(&db.pool, "a", Tier::Xlarge, "operator:test").await.expect("account").id;
    let (_, key) = api_keys::issue(&db.pool, a, "t", "operator:test").await.expect("key");
    testkit::create_endpoint(&db.pool, a, receiver.url("/ep"), &["*"], None).await;
    let delivery = DeliveryConfig {
        allow_private_targets: true,
        record_flush_interval: Duration::from_millis(100),
        ..DeliveryConfig::default()
    };
    let admin = || AdminConfig { listen: ([127, 0, 0, 1], testkit::free_port()).into() };
    let stop = CancellationToken::new();
    let http = HttpConfig::on(admin().listen);
    let services = [
        tokio::spawn(hookstream_ingest::run(
            IngestConfig {
                kafka: kafka.clone(),
                topics: topics.clone(),
                database: db.config.clone(),
                http: http.clone(),
                admin: admin(),
                ingest: IngestSettings::default(),
                ..IngestConfig::default()
            },
            stop.clone(),
        )),
        tokio::spawn(hookstream_dispatcher::run(
            DispatcherConfig {
                kafka: kafka.clone(),
                topics: topics.clone(),
                database: db.config.clone(),
                admin: admin(),
                delivery: delivery.clone(),
                dispatcher: DispatcherSettings {
                    group_id: testkit::unique("dispatcher-"),
                    ..DispatcherSettings::default()
                },
                ..DispatcherConfig::default()
            },
            stop.clone(),
        )),
        tokio::spawn(hookstream_retrier::run(
            RetrierConfig {
                kafka: kafka.clone(),
                topics: topics.clone(),
                database: db.config.clone(),
                admin: admin(),
                delivery,
                retrier: RetrierSettings {
                    group_id: testkit::unique("retrier-"),
                    dlq_group_id: testkit::unique("retrier-dlq-"),
                    ..RetrierSettings::default()
                },
                ..RetrierConfig::default()
            },
            stop.clone(),
        )),
    ];
    let base = format!("http://{}", http.listen);
    let client = reqwest::Client::new();
    let response = eventually(Duration::from_secs(20), "ingest accepts", || async {
        let r = client
            .post(format!("{base}/v1/events"))
            .bearer_auth(&key.key)
            .json(&serde_json::json!({
                "event_type": "subscriber.created",
                "data": {"subscriber": {"id": "s1", "email": "s1@example.com"}}
            }))
            .send()
            .await
            .ok()?;
        (r.status() == reqwest::StatusCode::ACCEPTED).then_some(r)
    })
    .await;
    let started = response.headers()["traceparent"].to_str().expect("ascii").to_owned();
    let hits = eventually(Duration::from_secs(30), "first attempt and retry", || async {
        let h = receiver.hits_on("/ep");
        (h.len() >= 2).then_some(h)
    })
    .await;
    for (i, hit) in hits.iter().enumerate() {
        let got = &hit.headers["traceparent"];
        assert_eq!(
            trace_id(got),
            trace_id(&started),
            "attempt {}: {got} is not in trace {started}",
            i + 1
        );
        assert_ne!(got, &started, "each attempt is its own span");
    }
    stop.cancel();
    for s in services {
        s.await.expect("task").expect("service");
    }
}
