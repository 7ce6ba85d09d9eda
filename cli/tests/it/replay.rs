//! `hookstream replay`: a time window of one account is delivered again, exactly those events,
//! with their webhook-ids, marked as replays; bad input exits 2.
//!
//! The window is made by producing in three phases a moment apart; replay decides it by the
//! records' own timestamps, whatever the broker's time index answers.

use std::process::Output;
use std::time::Duration;

use chrono::Utc;
use hookstream_core::db::accounts;
use hookstream_core::envelope::{EventEnvelope, Priority};
use hookstream_core::tier::Tier;
use hookstream_core::{kafka, AccountId};
use hookstream_testkit::{self as testkit, eventually, Receiver, TestDatabase};
use rdkafka::producer::FutureRecord;
use serde_json::json;

use crate::command::on_topics;
use crate::pipeline::Site;

/// Where the command exports its spans (a receiver of this test process).
static OTLP: std::sync::OnceLock<String> = std::sync::OnceLock::new();

async fn hookstream(db: &TestDatabase, prefix: &str, args: &[&str]) -> Output {
    on_topics(db, prefix, args)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", OTLP.get().map_or("", String::as_str))
        .output()
        .await
        .expect("run hookstream")
}

#[tokio::test]
async fn a_time_window_of_one_account_is_delivered_again_and_marked_as_replay() {
    let otlp = testkit::OtlpReceiver::start().await;
    OTLP.set(otlp.endpoint.clone()).expect("one receiver");
    let topics = testkit::topics_config(2);
    testkit::create_topics(&topics.topics().all(), 2).await;
    let kafka_cfg = testkit::kafka_config();
    let db = TestDatabase::new().await;
    let receiver = Receiver::start().await;
    let new_account = || async {
        accounts::create(&db.pool, "x", Tier::Xlarge, "operator:test").await.expect("account").id
    };
    let (a, b) = (new_account().await, new_account().await);
    let endpoint = |account: AccountId, path: &str, types: &'static [&'static str]| {
        let (pool, url) = (db.pool.clone(), receiver.url(path));
        async move { testkit::create_endpoint(&pool, account, url, types, None).await.0 }
    };
    let a_all = endpoint(a, "/a-all", &["*"]).await;
    endpoint(a, "/a-deleted", &["subscriber.deleted"]).await; // subscribed to another type
    endpoint(b, "/b", &["*"]).await;

    // Three phases a moment apart; the window is the middle one.
    let producer = kafka::producer(&kafka_cfg, "replay-test").expect("producer");
    let topic = topics.topics().events(Priority::Normal);
    let mut in_window = Vec::new();
    let mut window_traces = Vec::new();
    let mut marks = Vec::new();
    for phase in [vec![(a, 2)], vec![(a, 3), (b, 2)], vec![(a, 2)]] {
        if !in_window.is_empty() || !marks.is_empty() {
            tokio::time::sleep(Duration::from_millis(1200)).await;
        }
        marks.push(Utc::now());
        tokio::time::sleep(Duration::from_millis(1200)).await;
        for (account, n) in phase {
            for _ in 0..n {
                let at = Utc::now();
                let envelope = EventEnvelope::new(
                    account,
                    "subscriber.created",
                    json!({"subscriber": {"id": "s"}}),
                );
                // Each event in a trace of its own, as ingest would write it.
                let trace = testkit::new_trace();
                if account == a && marks.len() == 2 {
                    in_window.push(envelope.event_id.to_string());
                    let tp = hookstream_core::trace::traceparent(&trace).expect("a span");
                    window_traces.push(tp.split('-').nth(1).unwrap_or_default().to_owned());
                }
                // Delivered before: the replay must deliver again anyway.
                sqlx::query(
                    "INSERT INTO deliveries (account_id, event_id, endpoint_id, event_type, state, received_at, delivered_at) \
                     VALUES ($1, $2, $3, 'subscriber.created', 'delivered', $4, $4)",
                )
                .bind(account)
                .bind(envelope.event_id.as_str())
                .bind(a_all)
                .bind(at)
                .execute(&db.pool)
                .await
                .expect("delivered row");
                let payload = serde_json::to_vec(&envelope).expect("json");
                let key = envelope.key();
                producer
                    .send(
                        FutureRecord::to(&topic)
                            .key(&key)
                            .payload(&payload)
                            .headers(hookstream_core::wire::headers::event(&trace)),
                        Duration::from_secs(10),
                    )
                    .await
                    .map_err(|(e, _)| e)
                    .expect("acked");
            }
        }
    }
    let prefix = topics.prefix.clone();
    let from = marks[1].to_rfc3339();
    let to = marks[2].to_rfc3339();
    let window = ["replay", "--topic", "events.normal", "--from", &from, "--to", &to, "--account"];

    let dry =
        hookstream(&db, &prefix, &[&window[..], &[&a.to_string(), "--dry-run"]].concat()).await;
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    assert!(
        String::from_utf8_lossy(&dry.stdout).contains("would replay 3 events as 3 delivery tasks"),
        "{}",
        String::from_utf8_lossy(&dry.stdout)
    );

    let retrier = Site::new(&kafka_cfg, &topics, &db).retrier();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(receiver.hits().is_empty(), "the dry run sent nothing");

    let out = hookstream(&db, &prefix, &[&window[..], &[&a.to_string()]].concat()).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut got: Vec<String> =
        eventually(Duration::from_secs(30), "the window delivered again", || async {
            let h = receiver.hits_on("/a-all");
            (h.len() >= 3).then(|| h.into_iter().map(|h| h.webhook_id).collect())
        })
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    got.sort();
    in_window.sort();
    assert_eq!(got, in_window, "exactly the account's events of the window, same webhook-ids");
    assert_eq!(receiver.hits().len(), 3, "nothing to other endpoints or accounts");
    let replayed: i64 = eventually(Duration::from_secs(10), "marked as replays", || async {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE replay AND account_id = $1")
                .bind(a)
                .fetch_one(&db.pool)
                .await
                .expect("count");
        (n == 3).then_some(n)
    })
    .await;
    assert_eq!(replayed, 3);
    // Each replayed event starts a trace of its own, linked to the one it travelled in.
    let mut linked: Vec<String> = otlp
        .spans()
        .iter()
        .filter(|s| s.name == "replay" && s.parent_span_id.is_empty())
        .flat_map(|s| s.links.iter().map(|(trace, _)| trace.clone()))
        .collect();
    linked.sort();
    window_traces.sort();
    assert_eq!(linked, window_traces, "one replay root per event, linked to its trace");

    // `--to` after the newest record: the window still ends by the records' own timestamps
    // (the local broker's index answers offset 0 for such a time; it must not matter).
    let later = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let tail = hookstream(
        &db,
        &prefix,
        &[
            "replay",
            "--topic",
            "events.normal",
            "--from",
            &to,
            "--to",
            &later,
            "--account",
            &a.to_string(),
            "--dry-run",
        ],
    )
    .await;
    assert!(tail.status.success(), "{}", String::from_utf8_lossy(&tail.stderr));
    assert!(
        String::from_utf8_lossy(&tail.stdout).contains("would replay 2 events as 2 delivery tasks"),
        "{}",
        String::from_utf8_lossy(&tail.stdout)
    );
    // A window after every record reads nothing, and says so instead of succeeding silently.
    let later_still = (Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let empty = hookstream(
        &db,
        &prefix,
        &["replay", "--topic", "events.normal", "--from", &later, "--to", &later_still],
    )
    .await;
    assert_eq!(empty.status.code(), Some(1), "{}", String::from_utf8_lossy(&empty.stdout));
    assert!(
        String::from_utf8_lossy(&empty.stderr).contains("nothing to replay"),
        "{}",
        String::from_utf8_lossy(&empty.stderr)
    );

    for bad in [
        vec!["replay", "--topic", "events.normal", "--from", &to, "--to", &from],
        vec!["replay", "--topic", "no.such.topic", "--from", &from],
        vec!["replay", "--topic", "events.normal", "--from", "last tuesday"],
    ] {
        let o = hookstream(&db, &prefix, &bad).await;
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            String::from_utf8_lossy(&o.stderr).trim().lines().count(),
            1,
            "{bad:?}: one line"
        );
    }
    retrier.stop().await;
}
