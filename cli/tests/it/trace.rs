//! One trace per event, end to end, as an OTLP receiver sees it: the three services export to
//! a local OTLP/HTTP receiver (`OTEL_EXPORTER_OTLP_ENDPOINT`), one event's first attempt fails
//! and its retry succeeds, and the exported spans form one tree — ingest's request, its
//! produce, the dispatcher's attempt (error) and hand-off, the retrier's attempt (ok) — whose
//! HTTP client spans are what the receiver got as `traceparent`.

use std::time::Duration;

use hookstream_core::db::{accounts, api_keys};
use hookstream_core::envelope::Priority;
use hookstream_core::tier::Tier;
use hookstream_testkit::{self as testkit, eventually, ExportedSpan, Receiver, TestDatabase};

use crate::pipeline::Site;

fn trace_id(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).unwrap_or_default()
}

#[tokio::test]
async fn one_exported_trace_follows_the_event_from_ingest_through_a_retry() {
    let otlp = testkit::OtlpReceiver::start().await;
    // nextest runs each test in a process of its own, so only this test's services see it.
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.endpoint);
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
    let site = Site::new(&kafka, &topics, &db);
    let (ingest, base) = site.ingest();
    let (dispatcher, retrier) = (site.dispatcher(), site.retrier());
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
    // Stopping flushes what each service still holds.
    tokio::join!(ingest.stop(), dispatcher.stop(), retrier.stop());
    let names = topics.topics();
    let (lane, tier) = (names.events(Priority::Normal), names.retry(names.retry_delays()[0]));
    let spans = eventually(Duration::from_secs(10), "the retrier's client span exported", || {
        let spans = otlp.spans();
        let done = spans.iter().filter(|s| s.name == "POST").count() >= 2;
        async move { done.then_some(spans) }
    })
    .await;
    println!("{}", render(&spans));
    let trace = trace_id(&started);
    assert!(spans.iter().all(|s| s.trace_id == trace), "one trace: {}", render(&spans));
    let one = |parent: &str, name: &str| -> ExportedSpan {
        let found: Vec<&ExportedSpan> =
            spans.iter().filter(|s| s.parent_span_id == parent && s.name == name).collect();
        assert_eq!(found.len(), 1, "one {name} under {parent:?}:\n{}", render(&spans));
        found[0].clone()
    };
    let root = one("", "POST /v1/events");
    assert_eq!((root.service.as_str(), root.kind), ("hookstream-ingest", 2));
    assert_eq!(root.attribute("http.response.status_code"), Some("202"));
    let produce = one(&root.span_id, &format!("send {lane}"));
    assert_eq!(produce.kind, 4, "producer");
    assert_eq!(produce.attribute("messaging.system"), Some("kafka"));
    assert!(produce.attribute("messaging.kafka.offset").is_some(), "the broker's ack");
    let consume = one(&produce.span_id, &format!("process {lane}"));
    assert_eq!((consume.service.as_str(), consume.kind), ("hookstream-dispatcher", 5));
    assert!(consume.attribute("messaging.consumer.group.name").is_some());
    let first = one(&consume.span_id, "deliver");
    assert_eq!(first.status, 2, "the first attempt failed");
    assert_eq!(first.attribute("hookstream.outcome"), Some("retry"));
    let first_http = one(&first.span_id, "POST");
    assert_eq!((first_http.kind, first_http.status), (3, 2));
    assert_eq!(first_http.attribute("http.response.status_code"), Some("503"));
    assert_eq!(span_id(&hits[0].headers["traceparent"]), first_http.span_id);
    let handoff = one(&first.span_id, &format!("send {tier}"));
    assert_eq!((handoff.service.as_str(), handoff.kind), ("hookstream-dispatcher", 4));
    let retry = one(&handoff.span_id, &format!("process {tier}"));
    assert_eq!((retry.service.as_str(), retry.kind), ("hookstream-retrier", 5));
    let second = one(&retry.span_id, "deliver");
    assert_eq!(second.status, 0, "the retry succeeded");
    assert_eq!(second.attribute("hookstream.outcome"), Some("delivered"));
    assert_eq!(second.attribute("hookstream.attempt"), Some("2"));
    let second_http = one(&second.span_id, "POST");
    assert_eq!(second_http.attribute("http.response.status_code"), Some("200"));
    assert_eq!(span_id(&hits[1].headers["traceparent"]), second_http.span_id);
}

fn span_id(traceparent: &str) -> &str {
    traceparent.split('-').nth(2).unwrap_or_default()
}

/// The spans as an indented tree: name, service, duration.
fn render(spans: &[ExportedSpan]) -> String {
    fn walk(spans: &[ExportedSpan], parent: &str, depth: usize, out: &mut String) {
        let mut children: Vec<&ExportedSpan> =
            spans.iter().filter(|s| s.parent_span_id == parent).collect();
        children.sort_by_key(|s| s.start_ns);
        for s in children {
            let status = if s.status == 2 { " ERROR" } else { "" };
            out.push_str(&format!(
                "{}{} [{}] {:.1} ms{status}\n",
                "  ".repeat(depth),
                s.name,
                s.service,
                s.millis()
            ));
            walk(spans, &s.span_id, depth + 1, out);
        }
    }
    let mut out = String::new();
    walk(spans, "", 0, &mut out);
    out
}
