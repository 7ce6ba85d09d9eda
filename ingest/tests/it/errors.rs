//! Every refusal, with its status and JSON body.

use std::num::NonZeroU32;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use axum::http::{header, HeaderMap};
use hookstream_core::db::{accounts, api_keys};
use hookstream_core::http::ApiError;
use hookstream_core::http::KeyResolver;
use hookstream_core::tier::{RateLimit, Tier};
use hookstream_ingest::IngestSettings;
use hookstream_testkit::{self as testkit, eventually};
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
    let reload = Duration::from_millis(200);
    let ingest = Ingest::start_with(
        testkit::kafka_config(),
        IngestSettings { key_cache_ttl: reload, ..Default::default() },
    )
    .await;
    let patch = accounts::AccountPatch {
        ingest_limit: Some(Some(RateLimit { per_second: 1, burst: 2 })),
        ..Default::default()
    };
    accounts::update(&ingest.db.pool, ingest.account, &patch, "operator:test")
        .await
        .expect("limit");
    // A limit change reaches ingest with the next reload of its key directory.
    tokio::time::sleep(reload * 3).await;
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

fn bearer(key: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, format!("Bearer {key}").parse().expect("header"));
    h
}

#[tokio::test]
async fn live_keys_keep_working_and_revoked_ones_stay_refused_while_the_database_is_unreachable() {
    let db = testkit::TestDatabase::new().await;
    let account = accounts::create(&db.pool, "a", Tier::Small, "operator:test").await.expect("a");
    let (_, known) = api_keys::issue(&db.pool, account.id, "k", "operator:test").await.expect("k");
    let (_, unused) = api_keys::issue(&db.pool, account.id, "u", "operator:test").await.expect("u");
    let (revoked_id, revoked) =
        api_keys::issue(&db.pool, account.id, "r", "operator:test").await.expect("r");
    // The resolver's own pool, closed below: every lookup after that fails as in an outage.
    let pool = sqlx::PgPool::connect(&db.config.url).await.expect("pool");
    let ttl = Duration::from_millis(100);
    let per_second = NonZeroU32::new(50).expect("nonzero");
    let stop = CancellationToken::new();
    let resolver = KeyResolver::new(pool.clone(), ttl, Duration::from_secs(60), per_second);
    let strict = KeyResolver::new(pool.clone(), ttl, Duration::ZERO, per_second);
    resolver.spawn_reload(stop.clone()).await;
    strict.spawn_reload(stop.clone()).await;
    for r in [&resolver, &strict] {
        assert_eq!(
            r.authenticate(&bearer(&known.key)).await.expect("known").account_id,
            account.id
        );
        assert!(r.authenticate(&bearer(&revoked.key)).await.is_ok(), "live until revoked");
    }
    // Revoked before the outage and not used since: the next reload drops it.
    assert!(api_keys::revoke(&db.pool, account.id, revoked_id, "operator:test")
        .await
        .expect("revoke"));
    tokio::time::sleep(ttl * 4).await;

    pool.close().await;
    tokio::time::sleep(ttl * 3).await;
    let owner =
        resolver.authenticate(&bearer(&known.key)).await.expect("served from the directory");
    assert_eq!(owner.account_id, account.id);
    // A live key never used before works too: the directory holds every live key.
    assert!(resolver.authenticate(&bearer(&unused.key)).await.is_ok(), "unused live key");
    // The key revoked before the outage is refused (503: it cannot be asked about), never accepted.
    let refused = resolver.authenticate(&bearer(&revoked.key)).await.expect_err("revoked");
    assert!(matches!(refused, ApiError::Unavailable { .. }), "{refused:?}");
    // With the fallback off, a directory older than one reload is not used.
    let off = strict.authenticate(&bearer(&known.key)).await.expect_err("fallback off");
    assert!(matches!(off, ApiError::Unavailable { .. }), "{off:?}");
    stop.cancel();
}

#[tokio::test]
async fn a_flood_of_unknown_keys_is_bounded_and_does_not_displace_real_keys() {
    let db = testkit::TestDatabase::new().await;
    let account = accounts::create(&db.pool, "a", Tier::Small, "operator:test").await.expect("a");
    let (_, known) = api_keys::issue(&db.pool, account.id, "k", "operator:test").await.expect("k");
    let pool = sqlx::PgPool::connect(&db.config.url).await.expect("pool");
    let stop = CancellationToken::new();
    let resolver = KeyResolver::new(
        pool.clone(),
        Duration::from_secs(60),
        Duration::from_secs(60),
        NonZeroU32::new(5).expect("nonzero"),
    );
    resolver.spawn_reload(stop.clone()).await;
    let (mut looked_up, mut refused_unasked) = (0, 0);
    for _ in 0..2_000 {
        let random = hookstream_core::api_key::generate().key;
        match resolver.authenticate(&bearer(&random)).await {
            Err(ApiError::Unauthorized) => looked_up += 1,
            Err(ApiError::Unavailable { .. }) => refused_unasked += 1,
            other => panic!("a random key must be refused: {other:?}"),
        }
    }
    // Governor's burst is the per-second quota: a few lookups, the rest refused unasked.
    assert!(looked_up <= 20, "{looked_up} lookups for 2,000 random keys");
    assert!(refused_unasked >= 1_980, "{refused_unasked}");
    // The real key is still served, from the directory, also with the database gone.
    pool.close().await;
    assert_eq!(
        resolver.authenticate(&bearer(&known.key)).await.expect("known").account_id,
        account.id
    );
    stop.cancel();
}
