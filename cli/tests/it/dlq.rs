//! `hookstream dlq`: failed deliveries reach the DLQ through the real pipeline (dispatcher and
//! retrier with the short schedule); the command lists, shows and redrives a filtered set.

use std::process::Output;
use std::time::Duration;

use hookstream_core::db::accounts;

use hookstream_core::envelope::{EventEnvelope, Priority};
use hookstream_core::tier::Tier;
use hookstream_core::{dlq, kafka, AccountId};
use hookstream_testkit::{self as testkit, eventually, Receiver, TestDatabase};
use rdkafka::producer::FutureRecord;
use serde_json::{json, Value};

use crate::command::on_topics;
use crate::pipeline::Site;

const WAIT: Duration = Duration::from_secs(30);

async fn hookstream(db: &TestDatabase, prefix: &str, args: &[&str]) -> Output {
    on_topics(db, prefix, args).env("USER", "tester").output().await.expect("run hookstream")
}

async fn live(db: &TestDatabase, account: AccountId) -> i64 {
    let filter = dlq::Filter { account: Some(account), ..dlq::Filter::default() };
    dlq::count(&db.pool, &filter).await.expect("count")
}

#[tokio::test]
async fn a_filtered_redrive_delivers_once_the_endpoint_recovers_and_a_dry_run_changes_nothing() {
    let topics = testkit::topics_config(2);
    let kafka = testkit::kafka_config();
    testkit::create_topics(&topics.topics().all(), 2).await;
    let db = TestDatabase::new().await;
    let receiver = Receiver::start().await;
    receiver.respond("/ep", 503);
    let a =
        accounts::create(&db.pool, "a", Tier::Xlarge, "operator:test").await.expect("account").id;
    testkit::create_endpoint(&db.pool, a, receiver.url("/ep"), &["*"], None).await;

    // Fast commits; a circuit that never opens (the endpoint fails on purpose).
    let site = Site::new(&kafka, &topics, &db);
    let dispatcher = site.dispatcher_tuned(|c| {
        c.delivery.circuit_threshold = 1_000;
        c.dispatcher.commit_interval = Duration::from_millis(100);
    });
    let retrier = site.retrier_tuned(|c| {
        c.delivery.circuit_threshold = 1_000;
        c.retrier.commit_interval = Duration::from_millis(100);
    });

    // Three `order.paid` and two `subscriber.created` events, all failing into the DLQ.
    let producer = kafka::producer(&kafka, "cli-test").expect("producer");
    let mut paid = Vec::new();
    for event_type in
        ["order.paid", "subscriber.created", "order.paid", "subscriber.created", "order.paid"]
    {
        let envelope = EventEnvelope::new(a, event_type, json!({"n": 1}));
        if event_type == "order.paid" {
            paid.push(envelope.event_id.to_string());
        }
        let payload = serde_json::to_vec(&envelope).expect("json");
        let key = envelope.key();
        let topic = topics.topics().events(Priority::Normal);
        producer
            .send(FutureRecord::to(&topic).key(&key).payload(&payload), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("acked");
    }
    eventually(WAIT, "5 entries indexed", || async { (live(&db, a).await == 5).then_some(()) })
        .await;
    let prefix = topics.prefix.as_str();

    let out =
        hookstream(&db, prefix, &["dlq", "list", "--account", &a.to_string(), "--json"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(listed.len(), 5);
    assert!(listed.iter().all(|e| e["error_class"] == "http_5xx" && e["attempts"] == 4));
    let table = hookstream(&db, prefix, &["dlq", "list", "--event-type", "order.*"]).await;
    let text = String::from_utf8_lossy(&table.stdout);
    assert_eq!(text.lines().filter(|l| l.contains("order.paid")).count(), 3, "{text}");
    let id = listed[0]["id"].as_str().expect("id");
    let shown = hookstream(&db, prefix, &["dlq", "show", id]).await;
    let shown: Value = serde_json::from_slice(&shown.stdout).expect("show prints JSON");
    assert_eq!(shown["task"]["attempt"], 4);

    let hits_before = receiver.hits().len();
    let dry =
        hookstream(&db, prefix, &["dlq", "redrive", "--event-type", "order.paid", "--dry-run"])
            .await;
    assert!(dry.status.success());
    assert!(String::from_utf8_lossy(&dry.stdout).contains("3 entries would be redriven"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.hits().len(), hits_before, "a dry run sends nothing");
    assert_eq!(live(&db, a).await, 5, "a dry run marks nothing");

    receiver.respond("/ep", 200);
    let done =
        hookstream(&db, prefix, &["dlq", "redrive", "--event-type", "order.paid", "--rate", "100"])
            .await;
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert!(String::from_utf8_lossy(&done.stdout).contains("redrove 3 of 3"));
    let delivered = eventually(WAIT, "redriven events delivered", || async {
        let ok: Vec<String> =
            receiver.hits_on("/ep").into_iter().skip(hits_before).map(|h| h.webhook_id).collect();
        (ok.len() >= 3).then_some(ok)
    })
    .await;
    let mut delivered_sorted = delivered.clone();
    delivered_sorted.sort();
    paid.sort();
    assert_eq!(delivered_sorted, paid, "exactly the filtered set, each once, same webhook-id");
    let rows: Vec<(String, i32)> = eventually(WAIT, "delivery log", || async {
        let r: Vec<(String, i32)> = sqlx::query_as(
            "SELECT state, redrives FROM deliveries WHERE account_id = $1 AND event_type = 'order.paid'",
        )
        .bind(a)
        .fetch_all(&db.pool)
        .await
        .expect("deliveries");
        r.iter().all(|(s, _)| s == "delivered").then_some(r)
    })
    .await;
    assert!(rows.iter().all(|(_, n)| *n == 1), "marked as redriven: {rows:?}");
    assert_eq!(live(&db, a).await, 2, "the other type stays in the DLQ");

    let bad = hookstream(
        &db,
        prefix,
        &["dlq", "redrive", "--from", "2026-01-02T00:00:00Z", "--to", "2026-01-01T00:00:00Z"],
    )
    .await;
    assert_eq!(bad.status.code(), Some(2));
    let bad = hookstream(&db, prefix, &["dlq", "list", "--from", "yesterday"]).await;
    assert_eq!(bad.status.code(), Some(2));

    tokio::join!(dispatcher.stop(), retrier.stop());
}
