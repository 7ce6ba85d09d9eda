//! `/v1/dlq`: an account sees, shows and redrives only its own dead letters.

use std::time::Duration;

use chrono::Utc;
use hookstream_core::dlq::{self, NewDeadLetter};
use hookstream_core::envelope::{DeliveryTask, EventEnvelope, Priority};
use hookstream_core::{AccountId, EndpointId, EventId};
use hookstream_testkit as testkit;
use rdkafka::Message;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::Api;

async fn endpoint(api: &Api, account: AccountId) -> EndpointId {
    let url = "https://example.com/hook".to_owned();
    testkit::create_endpoint(&api.db.pool, account, url, &["*"], None).await.0
}

/// Indexes `n` dead letters of `event_type` for (account, endpoint), as the retrier would.
async fn dead(api: &Api, account: AccountId, ep: EndpointId, event_type: &str, n: usize) {
    let rows: Vec<NewDeadLetter> = (0..n)
        .map(|_| {
            let now = Utc::now();
            let envelope =
                EventEnvelope::new(account, event_type, json!({"subscriber": {"id": "s1"}}));
            NewDeadLetter {
                topic: api.topics.topics().dlq(),
                partition: 0,
                offset: rand_offset(),
                task: DeliveryTask::new(envelope, ep).failed(4, 503),
                origin: Some(format!("{}/0/7", api.topics.topics().events(Priority::Normal))),
                traceparent: None,
                dead_at: now,
            }
        })
        .collect();
    assert_eq!(dlq::index(&api.db.pool, &rows).await.expect("index"), n as u64);
}

fn rand_offset() -> i64 {
    static NEXT: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

async fn get(api: &Api, token: &str, path_and_query: &str) -> (StatusCode, Value) {
    let r = api
        .http
        .get(format!("{}{path_and_query}", api.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `POST /v1/dlq/redrive` with `body`.
async fn post_redrive(api: &Api, token: &str, body: &Value) -> reqwest::Response {
    api.http
        .post(format!("{}/v1/dlq/redrive", api.base))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("request")
}

/// Starts a redrive job: it must answer at once (202, the job running, its `Location`).
async fn start_job(api: &Api, token: &str, body: Value) -> String {
    let started = std::time::Instant::now();
    let r = post_redrive(api, token, &body).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().expect("location").to_owned();
    let job: Value = r.json().await.expect("job");
    assert_eq!(job["state"], "running", "{job}");
    assert_eq!(location, format!("/v1/dlq/redrive/{}", job["id"].as_str().expect("id")));
    assert!(started.elapsed() < Duration::from_secs(5), "the request waited for the job");
    location
}

/// Reads a job until it has ended; its last state.
async fn finished_job(api: &Api, token: &str, location: &str) -> Value {
    testkit::eventually(Duration::from_secs(60), "the redrive job ended", || async {
        let (status, job) = get(api, token, location).await;
        assert_eq!(status, StatusCode::OK, "{job}");
        (job["state"] != "running").then_some(job)
    })
    .await
}

/// A redrive job run to its end: the job as it ended.
async fn redrive(api: &Api, token: &str, body: Value) -> Value {
    let location = start_job(api, token, body).await;
    finished_job(api, token, &location).await
}

async fn dry_run(api: &Api, token: &str, body: Value) -> (StatusCode, Value) {
    let r = post_redrive(api, token, &body).await;
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn live(api: &Api, account: AccountId) -> i64 {
    let filter = dlq::Filter { account: Some(account), ..dlq::Filter::default() };
    dlq::count(&api.db.pool, &filter).await.expect("count")
}

#[tokio::test]
async fn an_account_lists_shows_and_redrives_only_its_own_dead_letters() {
    let api = Api::start().await;
    testkit::create_topics(&api.topics.topics().all_retries(), 4).await;
    let a = api.account;
    let (b, b_token) = api.another_account().await;
    let (ep_a, ep_b) = (endpoint(&api, a).await, endpoint(&api, b).await);
    dead(&api, a, ep_a, "subscriber.created", 2).await;
    dead(&api, a, ep_a, "subscriber.deleted", 1).await;
    dead(&api, b, ep_b, "subscriber.created", 2).await;
    let token = api.token.clone();

    // Listing: only A's, paged with a cursor.
    let (status, page) = get(&api, &token, "/v1/dlq?limit=2").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["data"].as_array().map(Vec::len), Some(2));
    let cursor = page["next_cursor"].as_str().expect("a next page").to_owned();
    let (_, rest) = get(&api, &token, &format!("/v1/dlq?limit=2&cursor={cursor}")).await;
    assert_eq!(rest["data"].as_array().map(Vec::len), Some(1));
    assert!(rest["next_cursor"].is_null());
    let (_, all) = get(&api, &token, "/v1/dlq").await;
    let entries = all["data"].as_array().expect("data");
    assert_eq!(entries.len(), 3);
    assert!(entries.iter().all(|e| e["account_id"] == a.to_string()));
    let (_, b_all) = get(&api, &b_token, "/v1/dlq").await;
    let b_id = b_all["data"][0]["id"].as_str().expect("B's entry").to_owned();

    // Show: own entry yes, another account's: 404 (not 403).
    let own = entries[0]["id"].as_str().expect("id");
    let (status, shown) = get(&api, &token, &format!("/v1/dlq/{own}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["task"]["endpoint_id"], ep_a.to_string());
    let (status, body) = get(&api, &token, &format!("/v1/dlq/{b_id}")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );

    // Bad filters name the parameter.
    for (query, field) in [
        ("error_class=bogus", "error_class"),
        ("limit=many", "limit"),
        ("limit=0", "limit"),
        ("from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "to"),
        ("from=yesterday", "from"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = get(&api, &token, &format!("/v1/dlq?{query}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }

    // A dry run changes nothing.
    let (status, report) =
        dry_run(&api, &token, json!({"event_type": "subscriber.created", "dry_run": true})).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!((report["matched"].as_u64(), report["redriven"].as_u64()), (Some(2), Some(0)));
    assert_eq!(live(&api, a).await, 3);

    // A's key naming B's endpoint matches nothing of B's.
    let report = redrive(&api, &token, json!({"endpoint_id": ep_b})).await;
    assert_eq!((report["matched"].as_u64(), report["redriven"].as_u64()), (Some(0), Some(0)));
    assert_eq!(live(&api, b).await, 2);

    // A real redrive: A's two created entries go to the first tier, B's stay.
    let report = redrive(&api, &token, json!({"event_type": "subscriber.created"})).await;
    assert_eq!(report["state"], "done", "{report}");
    assert_eq!((report["matched"].as_u64(), report["redriven"].as_u64()), (Some(2), Some(2)));
    assert_eq!((live(&api, a).await, live(&api, b).await), (1, 2));
    let topics = api.topics.topics();
    let first_tier = topics.retry(topics.retry_delays()[0]);
    let produced = testkit::consume_exactly(
        &api.kafka,
        &[first_tier],
        2,
        Duration::from_secs(20),
        Duration::from_secs(1),
    )
    .await;
    for m in &produced {
        let task: DeliveryTask =
            serde_json::from_slice(m.payload().expect("payload")).expect("task");
        assert_eq!((task.envelope.account_id, task.endpoint_id), (a, ep_a));
        assert_eq!(task.envelope.event_type, "subscriber.created");
    }
    let (_, listed) = get(&api, &token, "/v1/dlq?include_redriven=true").await;
    let redriven: Vec<&Value> = listed["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|e| !e["redriven_at"].is_null())
        .collect();
    assert_eq!(redriven.len(), 2);
    assert!(redriven.iter().all(|e| e["redriven_by"] == format!("key:{}", api.key_id)));
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE account_id = $1 AND action = 'dlq.redrive'",
    )
    .bind(a)
    .fetch_one(&api.db.pool)
    .await
    .expect("audit");
    assert_eq!(audited, 1, "the real redrive is audited; the dry run and the empty one are not");
    // Another account's job is 404, as is an id that is no job.
    let location = format!("/v1/dlq/redrive/{}", report["id"].as_str().expect("id"));
    assert_eq!(get(&api, &b_token, &location).await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&api, &token, "/v1/dlq/redrive/a%00b").await.0, StatusCode::NOT_FOUND);
    api.stop().await;
}

#[tokio::test]
async fn a_redrive_answers_at_once_and_parallel_jobs_of_one_account_share_its_pace() {
    const RATE: u32 = 20;
    let settings = hookstream_api::ApiSettings {
        redrive_rate: RATE,
        ..hookstream_api::ApiSettings::default()
    };
    let api = Api::start_with(testkit::kafka_config(), settings).await;
    testkit::create_topics(&api.topics.topics().all_retries(), 4).await;
    let a = api.account;
    let ep = endpoint(&api, a).await;
    dead(&api, a, ep, "subscriber.created", 100).await;
    dead(&api, a, ep, "subscriber.deleted", 100).await;
    let token = api.token.clone();
    let started = std::time::Instant::now();
    let created = start_job(&api, &token, json!({"event_type": "subscriber.created"})).await;
    let deleted = start_job(&api, &token, json!({"event_type": "subscriber.deleted"})).await;
    // Progress is readable while it runs.
    let partial = testkit::eventually(Duration::from_secs(20), "progress under way", || async {
        let (_, job) = get(&api, &token, &created).await;
        let n = job["redriven"].as_u64().unwrap_or(0);
        (job["state"] == "running" && n > 0 && n < 100).then_some(n)
    })
    .await;
    assert!(partial < 100);
    for location in [&created, &deleted] {
        let job = finished_job(&api, &token, location).await;
        assert_eq!(job["state"], "done", "{job}");
        assert_eq!(job["redriven"].as_u64(), Some(100), "{job}");
    }
    // 200 entries at one pace of 20/s (a burst of 20 at first) take at least 9 s; with a pace
    // each, the two jobs would have taken 4 s.
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(8), "two jobs of one account took {took:?}");
    assert_eq!(live(&api, a).await, 0);
    api.stop().await;
}

#[tokio::test]
async fn concurrent_redrives_of_one_filter_put_each_entry_back_once() {
    let api = Api::start().await;
    testkit::create_topics(&api.topics.topics().all_retries(), 4).await;
    let a = api.account;
    let ep = endpoint(&api, a).await;
    dead(&api, a, ep, "subscriber.created", 300).await;
    let token = api.token.clone();
    let body = json!({"event_type": "subscriber.*"});
    let (first, second, third) = tokio::join!(
        redrive(&api, &token, body.clone()),
        redrive(&api, &token, body.clone()),
        redrive(&api, &token, body.clone()),
    );
    let mut total = 0;
    for report in [first, second, third] {
        assert_eq!(report["state"], "done", "{report}");
        total += report["redriven"].as_u64().expect("redriven");
    }
    assert_eq!(total, 300, "together they put each entry back once");
    assert_eq!(live(&api, a).await, 0);
    let topics = api.topics.topics();
    let first_tier = topics.retry(topics.retry_delays()[0]);
    let produced = testkit::consume_exactly(
        &api.kafka,
        &[first_tier],
        300,
        Duration::from_secs(30),
        Duration::from_secs(2),
    )
    .await;
    let ids: std::collections::HashSet<String> = produced
        .iter()
        .map(|m| {
            let task: DeliveryTask =
                serde_json::from_slice(m.payload().expect("payload")).expect("task");
            task.envelope.event_id.to_string()
        })
        .collect();
    assert_eq!(ids.len(), 300, "no entry produced twice");
    api.stop().await;
}

#[tokio::test]
async fn a_job_stopped_by_shutdown_is_recorded_interrupted_and_leaves_nothing_claimed() {
    let settings =
        hookstream_api::ApiSettings { redrive_rate: 10, ..hookstream_api::ApiSettings::default() };
    let api = Api::start_with(testkit::kafka_config(), settings).await;
    testkit::create_topics(&api.topics.topics().all_retries(), 4).await;
    let a = api.account;
    let ep = endpoint(&api, a).await;
    dead(&api, a, ep, "subscriber.created", 100).await;
    let token = api.token.clone();
    let location = start_job(&api, &token, json!({"event_type": "subscriber.created"})).await;
    testkit::eventually(Duration::from_secs(10), "a first page sent", || async {
        let (_, job) = get(&api, &token, &location).await;
        (job["redriven"].as_u64().unwrap_or(0) > 0).then_some(())
    })
    .await;
    let mut api = api;
    api.halt().await;
    let pool = api.db.pool.clone();
    let id: uuid::Uuid = location.rsplit('/').next().expect("id").parse().expect("uuid");
    let (state, redriven): (String, i64) =
        sqlx::query_as("SELECT state, redriven FROM redrive_jobs WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .expect("job");
    assert_eq!(state, "interrupted");
    assert!((1..100).contains(&redriven), "{redriven}");
    let filter = dlq::Filter { account: Some(a), ..dlq::Filter::default() };
    assert_eq!(dlq::count(&pool, &filter).await.expect("count"), 100 - redriven, "the rest stay");
    let claimed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dead_letters WHERE redrive_claimed_until > now() AND redriven_at IS NULL",
    )
    .fetch_one(&pool)
    .await
    .expect("claimed");
    assert_eq!(claimed, 0, "nothing left claimed, so nothing is sent twice");
    drop(api);
}

#[tokio::test]
async fn a_redrive_starts_a_trace_of_its_own_linked_to_the_events() {
    const ORIGINAL: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let otlp = testkit::OtlpReceiver::start().await;
    let otlp_url = url::Url::parse(&otlp.endpoint).expect("url");
    let mut api = Api::start_tuned(testkit::kafka_config(), Default::default(), move |c| {
        c.telemetry.otlp_endpoint = Some(otlp_url);
    })
    .await;
    testkit::create_topics(&api.topics.topics().all(), 1).await;
    let account = api.account;
    let ep = endpoint(&api, account).await;
    dead(&api, account, ep, "subscriber.created", 1).await;
    sqlx::query("UPDATE dead_letters SET traceparent = $1 WHERE account_id = $2")
        .bind(ORIGINAL)
        .bind(account)
        .execute(&api.db.pool)
        .await
        .expect("traceparent");
    let token = api.token.clone();
    let report = redrive(&api, &token, json!({})).await;
    assert_eq!(report["redriven"].as_u64(), Some(1), "{report}");
    let topics = api.topics.topics();
    let first_tier = topics.retry(topics.retry_delays()[0]);
    let produced = testkit::consume_exactly(
        &api.kafka,
        std::slice::from_ref(&first_tier),
        1,
        Duration::from_secs(20),
        Duration::from_millis(500),
    )
    .await;
    let carried = hookstream_core::wire::headers::text(&produced[0], "traceparent")
        .expect("the redriven task carries a trace")
        .to_owned();
    api.halt().await; // flushes the spans

    let spans = testkit::eventually(Duration::from_secs(10), "spans exported", || {
        let spans = otlp.spans();
        async move { (spans.len() >= 2).then_some(spans) }
    })
    .await;
    let root = spans.iter().find(|s| s.name == "redrive").expect("a redrive span");
    assert_eq!(root.parent_span_id, "", "a trace of its own");
    assert_ne!(root.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        root.links,
        vec![("4bf92f3577b34da6a3ce929d0e0e4736".to_owned(), "00f067aa0ba902b7".to_owned())],
        "linked to the trace the event travelled in"
    );
    let send = spans.iter().find(|s| s.name == format!("send {first_tier}")).expect("send span");
    assert_eq!((send.parent_span_id.as_str(), send.kind), (root.span_id.as_str(), 4));
    assert_eq!(carried, format!("00-{}-{}-01", send.trace_id, send.span_id));
}

#[tokio::test]
async fn an_account_expunges_an_events_stored_data_and_only_its_own() {
    let api = Api::start().await;
    let a = api.account;
    let (_, token_b) = api.another_account().await;
    let ep = endpoint(&api, a).await;
    dead(&api, a, ep, "subscriber.created", 1).await;
    let event: String =
        sqlx::query_scalar("SELECT event_id FROM dead_letters WHERE account_id = $1")
            .bind(a)
            .fetch_one(&api.db.pool)
            .await
            .expect("the dead letter's event");
    // The delivery log of the same event: a state and an attempt with the receiver's answer.
    for row in [
        "INSERT INTO deliveries (account_id, event_id, endpoint_id, event_type, state, attempts, \
         last_status, received_at) VALUES ($1, $2, $3, 'subscriber.created', 'failed', 1, 503, now())",
        "INSERT INTO delivery_attempts (account_id, event_id, endpoint_id, attempt, outcome, \
         http_status, response_body) VALUES ($1, $2, $3, 1, 'permanent', 503, 'jane@example.com unknown')",
    ] {
        sqlx::query(row).bind(a).bind(&event).bind(ep).execute(&api.db.pool).await.expect(row);
    }
    let expunge = |token: String| {
        let url = format!("{}/v1/events/{event}", api.base);
        let http = api.http.clone();
        async move { http.delete(url).bearer_auth(token).send().await.expect("delete") }
    };
    let bodies = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM delivery_attempts WHERE event_id = $1 AND response_body IS NOT NULL",
        )
        .bind(&event)
        .fetch_one(&api.db.pool)
        .await
        .expect("count")
    };

    assert_eq!(expunge(token_b).await.status(), StatusCode::NOT_FOUND, "another account's event");
    assert_eq!((bodies().await, live(&api, a).await), (1, 1), "nothing changed");

    let r = expunge(api.token.clone()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body, json!({"event_id": event, "response_bodies": 1, "dead_letters": 1}));
    assert_eq!((bodies().await, live(&api, a).await), (0, 0), "bodies and DLQ entries gone");
    let (status, log) = get(&api, &api.token, &format!("/v1/events/{event}/deliveries")).await;
    assert_eq!(status, StatusCode::OK, "the delivery log's states stay");
    assert_eq!(log["data"][0]["state"], "failed");
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE account_id = $1 AND action = 'event.expunge' \
         AND target_id = $2",
    )
    .bind(a)
    .bind(&event)
    .fetch_one(&api.db.pool)
    .await
    .expect("audit");
    assert_eq!(audited, 1);
    let unknown = format!("{}/v1/events/{}", api.base, EventId::new());
    let r = api.http.delete(unknown).bearer_auth(&api.token).send().await.expect("delete");
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "an event the account never had");
    api.stop().await;
}
