//! Accepted events: where they land and what they carry.

use std::collections::HashSet;
use std::time::Duration;

use hookstream_core::envelope::{EventEnvelope, Priority};
use hookstream_core::wire;
use hookstream_core::EventId;
use hookstream_testkit as testkit;
use rdkafka::Message;
use serde_json::{json, Value};

use crate::support::{created, Ingest};

const WAIT: Duration = Duration::from_secs(20);
const SETTLE: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn an_accepted_event_is_on_its_lane_keyed_by_account_with_the_callers_trace() {
    let ingest = Ingest::start().await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut body = created("s1");
    body["priority"] = json!("high");
    body["occurred_at"] = json!("2026-11-01T10:00:00Z");
    let r = ingest
        .post("/v1/events")
        .header("traceparent", incoming)
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 202);
    let accepted: Value = r.json().await.expect("json");
    let event_id = accepted["event_id"].as_str().expect("event_id").to_owned();
    assert_eq!(uuid::Uuid::parse_str(&event_id).expect("uuid").get_version_num(), 7);

    let topics = ingest.topics.topics();
    let all = topics.all_events();
    let msgs = testkit::consume_exactly(&ingest.kafka, &all, 1, WAIT, SETTLE).await;
    let m = &msgs[0];
    assert_eq!(m.topic(), topics.events(Priority::High));
    assert_eq!(m.key(), Some(ingest.account.to_string().as_bytes()));
    let envelope: EventEnvelope =
        serde_json::from_slice(m.payload().expect("payload")).expect("envelope");
    assert_eq!(envelope.event_id.as_str(), event_id);
    assert_eq!(envelope.account_id, ingest.account);
    assert_eq!(envelope.priority, Priority::High);
    assert_eq!(envelope.occurred_at.to_rfc3339(), "2026-11-01T10:00:00+00:00");
    assert_eq!(envelope.data["subscriber"]["id"], "s1");

    let tp = wire::headers::text(m, wire::headers::TRACEPARENT).expect("traceparent header");
    let [_, trace, span, _] = tp.split('-').collect::<Vec<_>>()[..] else {
        panic!("not a traceparent: {tp}")
    };
    assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736", "same trace as the caller");
    assert_ne!(span, "00f067aa0ba902b7", "a child span, not the caller's");

    let metrics =
        ingest.http.get(format!("{}/metrics", ingest.admin_base)).send().await.expect("metrics");
    let text = metrics.text().await.expect("text");
    for name in [
        "webhook_received_total{event_type=\"subscriber.created\",outcome=\"accepted\"}",
        "ingest_http_request_duration_seconds_bucket",
        "ingest_produce_duration_seconds_bucket",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}");
    }
    let ready =
        ingest.http.get(format!("{}/readyz", ingest.admin_base)).send().await.expect("readyz");
    assert_eq!(ready.status(), 200);
    // Not on the public port: no key guards it there.
    for path in ["/readyz", "/metrics"] {
        let public =
            ingest.http.get(format!("{}{path}", ingest.base)).send().await.expect("public");
        assert_eq!(public.status(), 404, "{path} must not be served on the public port");
    }
    ingest.stop().await;
}

#[tokio::test]
async fn one_accounts_events_always_share_a_partition() {
    let ingest = Ingest::start().await;
    for i in 0..12 {
        let r =
            ingest.post("/v1/events").json(&created(&format!("s{i}"))).send().await.expect("post");
        assert_eq!(r.status(), 202);
    }
    let normal = vec![ingest.topics.topics().events(Priority::Normal)];
    let msgs = testkit::consume_exactly(&ingest.kafka, &normal, 12, WAIT, SETTLE).await;
    let partitions: HashSet<i32> = msgs.iter().map(|m| m.partition()).collect();
    assert_eq!(partitions.len(), 1, "{partitions:?}");
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_first_id_and_produces_once() {
    let ingest = Ingest::start().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = ingest
            .post("/v1/events")
            .header("Idempotency-Key", "signup-42")
            .json(&created("s42"))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 202);
        let v: Value = r.json().await.expect("json");
        ids.push(v["event_id"].as_str().expect("id").to_owned());
    }
    let id = EventId::for_key(ingest.account, "signup-42").to_string();
    assert_eq!(ids, [id.as_str(), id.as_str(), id.as_str()]);
    // Another account's event under the same key is another event, with its own id (receivers
    // deduplicate on it as `webhook-id`).
    let (_, other_key) = ingest.another_account().await;
    let r = ingest
        .http
        .post(format!("{}/v1/events", ingest.base))
        .bearer_auth(&other_key)
        .header("Idempotency-Key", "signup-42")
        .json(&created("s42"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.expect("json");
    assert_ne!(v["event_id"].as_str(), Some(id.as_str()), "two accounts, one event id");
    // The same key with another event is a client bug, not a retry: 409 naming the key.
    let r = ingest
        .post("/v1/events")
        .header("Idempotency-Key", "signup-42")
        .json(&created("someone-else"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "conflict");
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("signup-42")), "{v}");
    let all = ingest.topics.topics().all_events();
    testkit::consume_exactly(&ingest.kafka, &all, 2, WAIT, SETTLE).await;
}

#[tokio::test]
async fn a_key_publishes_only_as_its_own_account() {
    let ingest = Ingest::start().await;
    let (other, other_key) = ingest.another_account().await;
    // Naming another account in the body is not a way in: the field does not exist.
    let mut body = created("s1");
    body["account_id"] = json!(other.to_string());
    let r = ingest.post("/v1/events").json(&body).send().await.expect("post");
    assert_eq!(r.status(), 422);

    let r = ingest.post("/v1/events").json(&created("mine")).send().await.expect("post");
    assert_eq!(r.status(), 202);
    let r = ingest
        .http
        .post(format!("{}/v1/events", ingest.base))
        .bearer_auth(&other_key)
        .json(&created("theirs"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 202);
    let all = ingest.topics.topics().all_events();
    let msgs = testkit::consume_exactly(&ingest.kafka, &all, 2, WAIT, SETTLE).await;
    for m in msgs {
        let e: EventEnvelope =
            serde_json::from_slice(m.payload().expect("payload")).expect("envelope");
        let owner = if e.data["subscriber"]["id"] == "mine" { ingest.account } else { other };
        assert_eq!(e.account_id, owner);
        assert_eq!(m.key(), Some(owner.to_string().as_bytes()));
    }
}

#[tokio::test]
async fn a_batch_reports_each_event_and_produces_only_the_accepted() {
    let ingest = Ingest::start().await;
    let body = json!({"events": [
        {"event_type": "subscriber.created", "data": {"subscriber": {"id": "a", "email": "a@example.com"}}},
        {"event_type": "subscriber.created", "data": {"subscriber": {"id": "b", "email": "nope"}}},
        {"event_type": "order.created", "data": {}},
        {"event_type": "subscriber.deleted", "data": {"subscriber": {"id": "c"}}, "priority": "low", "idempotency_key": "del-c"},
        {"surprise": true}
    ]});
    let r = ingest.post("/v1/events/batch").json(&body).send().await.expect("post");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["accepted"], 2);
    assert_eq!(v["rejected"], 3);
    let results = v["results"].as_array().expect("results");
    let statuses: Vec<&str> = results.iter().map(|r| r["status"].as_str().unwrap_or("")).collect();
    assert_eq!(statuses, ["accepted", "rejected", "rejected", "accepted", "rejected"]);
    assert_eq!(results[1]["error"]["field"], "/events/1/data/subscriber/email");
    assert_eq!(results[2]["error"]["field"], "/events/2/event_type");
    assert_eq!(results[3]["event_id"], EventId::for_key(ingest.account, "del-c").to_string());
    assert_eq!(results[4]["error"]["code"], "invalid_request");

    let all = ingest.topics.topics().all_events();
    testkit::consume_exactly(&ingest.kafka, &all, 2, WAIT, SETTLE).await;
}

#[tokio::test]
async fn a_batch_over_the_limit_is_refused_whole() {
    let ingest = Ingest::start_with(
        testkit::kafka_config(),
        hookstream_ingest::IngestSettings { max_batch_events: 3, ..Default::default() },
    )
    .await;
    let events: Vec<Value> = (0..4).map(|i| created(&format!("s{i}"))).collect();
    let r = ingest
        .post("/v1/events/batch")
        .json(&json!({"events": events}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["field"], "/events");
}
