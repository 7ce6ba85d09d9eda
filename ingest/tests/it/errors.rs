//! Every refusal, with its status and JSON body.

use std::time::Duration;

use axum::http::{header, HeaderMap};
use hookstream_core::db::{accounts, api_keys};
use hookstream_core::testkit::{self, eventually};
use hookstream_core::tier::{RateLimit, Tier};
use hookstream_ingest::auth::KeyResolver;
use hookstream_ingest::error::ApiError;
use hookstream_ingest::IngestSettings;
use serde_json::{json, Value};

use crate::support::{created, Ingest};

async fn expect_error(r: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status().as_u16(), status, "expected {status} {code}");
    assert_eq!(
        r.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let v: Value = r.json().await.expect("json body");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    v
}

#[tokio::test]
async fn each_bad_request_gets_its_status_and_a_json_error() {
    let ingest = Ingest::start_with(
        testkit::kafka_config(),
        IngestSettings { max_body_bytes: 1024, ..Default::default() },
    )
    .await;
    let url = format!("{}/v1/events", ingest.base);
    let http = &ingest.http;

    let r = http.post(&url).json(&created("s")).send().await.expect("post");
    expect_error(r, 401, "unauthorized").await;
    let r = http
        .post(&url)
        .bearer_auth("hs_not-a-real-key")
        .json(&created("s"))
        .send()
        .await
        .expect("post");
    expect_error(r, 401, "unauthorized").await;
    let unknown = hookstream_core::api_key::generate().key;
    let r = http.post(&url).bearer_auth(unknown).json(&created("s")).send().await.expect("post");
    expect_error(r, 401, "unauthorized").await;

    let r = ingest.post("/v1/events").body("{\"event_type\": ").send().await.expect("post");
    expect_error(r, 400, "malformed_json").await;

    let r = http
        .post(&url)
        .bearer_auth(&ingest.token)
        .header("content-type", "text/plain")
        .body(created("s").to_string())
        .send()
        .await
        .expect("post");
    expect_error(r, 415, "unsupported_media_type").await;

    let mut big = created("s");
    big["data"]["subscriber"]["first_name"] = json!("x".repeat(2000));
    let r = ingest.post("/v1/events").json(&big).send().await.expect("post");
    expect_error(r, 413, "payload_too_large").await;

    let mut bad = created("s");
    bad["data"]["subscriber"]["email"] = json!("not an email");
    let r = ingest.post("/v1/events").json(&bad).send().await.expect("post");
    let v = expect_error(r, 422, "invalid_request").await;
    assert_eq!(v["error"]["field"], "/data/subscriber/email");

    let r = ingest
        .post("/v1/events")
        .json(&json!({"event_type": "subscriber.created"}))
        .send()
        .await
        .expect("post");
    let v = expect_error(r, 422, "invalid_request").await;
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("data"), "{v}");

    let r = ingest
        .post("/v1/events")
        .json(&json!({"event_type": "subscriber.created", "data": {}, "priority": "urgent"}))
        .send()
        .await
        .expect("post");
    let v = expect_error(r, 422, "invalid_request").await;
    assert_eq!(v["error"]["field"], "/priority");

    let r = ingest
        .post("/v1/events")
        .header("Idempotency-Key", "has space")
        .json(&created("s"))
        .send()
        .await
        .expect("post");
    expect_error(r, 422, "invalid_request").await;
}

#[tokio::test]
async fn an_account_over_its_intake_limit_gets_429_with_retry_after() {
    let ingest = Ingest::start().await;
    let patch = accounts::AccountPatch {
        ingest_limit: Some(Some(RateLimit { per_second: 1, burst: 2 })),
        ..Default::default()
    };
    accounts::update(&ingest.db.pool, ingest.account, &patch, "operator:test")
        .await
        .expect("limit");
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..4 {
        let r =
            ingest.post("/v1/events").json(&created(&format!("s{i}"))).send().await.expect("post");
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            retry_after =
                r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
            expect_error(r, 429, "rate_limited").await;
        }
    }
    assert_eq!(statuses, [202, 202, 429, 429]);
    let secs: u64 = retry_after.expect("Retry-After").parse().expect("seconds");
    assert!((1..=2).contains(&secs), "{secs}");
}

#[tokio::test]
async fn a_revoked_key_stops_working_within_the_cache_ttl() {
    let ingest = Ingest::start_with(
        testkit::kafka_config(),
        IngestSettings { key_cache_ttl: Duration::from_millis(300), ..Default::default() },
    )
    .await;
    let r = ingest.post("/v1/events").json(&created("s1")).send().await.expect("post");
    assert_eq!(r.status(), 202);
    assert!(api_keys::revoke(&ingest.db.pool, ingest.account, ingest.key_id, "operator:test")
        .await
        .expect("revoke"));
    let started = std::time::Instant::now();
    eventually(Duration::from_secs(5), "revoked key refused", || async {
        let r = ingest.post("/v1/events").json(&created("s2")).send().await.ok()?;
        (r.status() == 401).then_some(())
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    let r = ingest.post("/v1/events").json(&created("s3")).send().await.expect("post");
    expect_error(r, 401, "key_revoked").await;
}

#[tokio::test]
async fn known_keys_keep_working_while_the_database_is_unreachable() {
    let db = testkit::TestDatabase::new().await;
    let account = accounts::create(&db.pool, "a", Tier::Small, "operator:test").await.expect("a");
    let (_, known) = api_keys::issue(&db.pool, account.id, "k", "operator:test").await.expect("k");
    let (_, unseen) = api_keys::issue(&db.pool, account.id, "u", "operator:test").await.expect("u");
    // The resolver's own pool, closed below: every lookup after that fails as in an outage.
    let pool = sqlx::PgPool::connect(&db.config.url).await.expect("pool");
    let ttl = Duration::from_millis(100);
    let resolver = KeyResolver::new(pool.clone(), ttl, Duration::from_secs(60));
    let strict = KeyResolver::new(pool.clone(), ttl, Duration::ZERO);
    let bearer = |key: &str| {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, format!("Bearer {key}").parse().expect("header"));
        h
    };
    for r in [&resolver, &strict] {
        assert_eq!(
            r.authenticate(&bearer(&known.key)).await.expect("known").account_id,
            account.id
        );
    }

    pool.close().await;
    tokio::time::sleep(ttl * 3).await;
    let owner = resolver.authenticate(&bearer(&known.key)).await.expect("served its last answer");
    assert_eq!(owner.account_id, account.id);
    // A key never seen, or a resolver with the fallback off, gets 503, never 401.
    let unseen = resolver.authenticate(&bearer(&unseen.key)).await.expect_err("unseen");
    assert!(matches!(unseen, ApiError::Unavailable { .. }), "{unseen:?}");
    let off = strict.authenticate(&bearer(&known.key)).await.expect_err("fallback off");
    assert!(matches!(off, ApiError::Unavailable { .. }), "{off:?}");
}
