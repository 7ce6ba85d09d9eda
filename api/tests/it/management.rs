//! `/v1/endpoints`, `/v1/events/{id}/deliveries`, `/v1/audit`: round trips, validation, and
//! isolation between accounts, through HTTP against a real Postgres.

use hookstream_api::ApiSettings;
use hookstream_testkit as testkit;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::Api;

async fn call(
    api: &Api,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut r = api.http.request(method, format!("{}{path}", api.base)).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.expect("request");
    let status = r.status();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Api that accepts loopback http endpoints (as a test installation would).
async fn permissive() -> Api {
    Api::start_with(
        testkit::kafka_config(),
        ApiSettings {
            allow_http_endpoints: true,
            allow_private_endpoints: true,
            ..Default::default()
        },
    )
    .await
}

async fn audit_count(api: &Api, action: &str, target: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = $1 AND target_id = $2")
        .bind(action)
        .bind(target)
        .fetch_one(&api.db.pool)
        .await
        .expect("audit")
}

#[tokio::test]
async fn an_endpoint_goes_through_create_read_update_rotate_and_delete_each_audited_once() {
    let api = permissive().await;
    let t = api.token.clone();
    let (status, created) = call(
        &api,
        &t,
        Method::POST,
        "/v1/endpoints",
        Some(json!({
            "url": "http://127.0.0.1:9/hook",
            "description": "orders",
            "event_types": ["subscriber.*"],
            "rate_limit": {"per_second": 50}
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(created["secret"].as_str().is_some_and(|s| s.starts_with("whsec_")));
    assert_eq!(
        (created["rate_limit_per_sec"].as_i64(), created["rate_limit_burst"].as_i64()),
        (Some(50), Some(50))
    );

    let (status, shown) = call(&api, &t, Method::GET, &format!("/v1/endpoints/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["description"], "orders");
    assert!(shown.get("secret").is_none(), "the secret is shown only at creation");

    let (status, dup) = call(
        &api,
        &t,
        Method::POST,
        "/v1/endpoints",
        Some(json!({"url": "http://127.0.0.1:9/hook"})),
    )
    .await;
    assert_eq!((status, dup["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")));
    // The same URL spelled otherwise (case, default port) is the same URL.
    for spelling in ["HTTP://127.0.0.1:9/hook", "http://127.0.0.1:9/./hook"] {
        let (status, dup) =
            call(&api, &t, Method::POST, "/v1/endpoints", Some(json!({"url": spelling}))).await;
        assert_eq!(status, StatusCode::CONFLICT, "{spelling}: {dup}");
    }

    let (status, patched) = call(
        &api,
        &t,
        Method::PATCH,
        &format!("/v1/endpoints/{id}"),
        Some(json!({
            "event_types": ["subscriber.created"], "rate_limit": null, "enabled": false
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["event_types"], json!(["subscriber.created"]));
    assert!(patched["rate_limit_per_sec"].is_null());
    assert_eq!(patched["enabled"], false);
    assert_eq!(patched["description"], "orders", "absent fields stay");

    for i in 0..3 {
        call(
            &api,
            &t,
            Method::POST,
            "/v1/endpoints",
            Some(json!({"url": format!("http://127.0.0.1:9/p{i}")})),
        )
        .await;
    }
    let (_, page) = call(&api, &t, Method::GET, "/v1/endpoints?limit=2", None).await;
    assert_eq!(page["data"].as_array().map(Vec::len), Some(2));
    let cursor = page["next_cursor"].as_str().expect("cursor");
    let (_, rest) =
        call(&api, &t, Method::GET, &format!("/v1/endpoints?limit=2&cursor={cursor}"), None).await;
    assert_eq!(rest["data"].as_array().map(Vec::len), Some(2));
    assert!(rest["next_cursor"].is_null());

    let (status, rotated) =
        call(&api, &t, Method::POST, &format!("/v1/endpoints/{id}/rotate-secret"), None).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_ne!(rotated["secret"], created["secret"]);
    let (status, stats) =
        call(&api, &t, Method::GET, &format!("/v1/endpoints/{id}/stats?window=1h"), None).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["delivered"], 0);

    let (status, _) = call(&api, &t, Method::DELETE, &format!("/v1/endpoints/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&api, &t, Method::GET, &format!("/v1/endpoints/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    for action in
        ["endpoint.create", "endpoint.update", "endpoint.rotate_secret", "endpoint.delete"]
    {
        assert_eq!(audit_count(&api, action, &id).await, 1, "{action} audited once");
    }
    let (_, audit) = call(&api, &t, Method::GET, "/v1/audit?limit=1000", None).await;
    let mine: Vec<&Value> = audit["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|e| e["target_id"] == id.as_str())
        .collect();
    assert_eq!(mine.len(), 4, "the account reads its audit log");
    let update = mine.iter().find(|e| e["action"] == "endpoint.update").expect("update");
    assert_eq!(update["actor"], format!("key:{}", api.key_id));
    assert_eq!(update["before"]["enabled"], true);
    assert_eq!(update["after"]["enabled"], false);
    api.stop().await;
}

#[tokio::test]
async fn bad_endpoint_settings_are_refused_naming_the_field() {
    let api = Api::start().await; // defaults: https only, no private targets
    let t = api.token.clone();
    let long = "x".repeat(1001);
    let long_url = format!("https://93.184.216.34/{}", "a".repeat(2100));
    let cases: Vec<(Value, &str)> = vec![
        (json!({"url": "http://93.184.216.34/hook"}), "/url"),
        (json!({"url": "https://127.0.0.1/hook"}), "/url"),
        (json!({"url": "https://10.1.2.3/hook"}), "/url"),
        (json!({"url": "https://localhost/hook"}), "/url"),
        (json!({"url": "ftp://93.184.216.34/hook"}), "/url"),
        (json!({"url": "not a url"}), "/url"),
        (json!({"url": "https://user:pw@93.184.216.34/hook"}), "/url"),
        (json!({"url": long_url}), "/url"),
        (
            json!({"url": "https://93.184.216.34/hook", "event_types": ["order.exploded"]}),
            "/event_types/0",
        ),
        (
            json!({"url": "https://93.184.216.34/hook", "event_types": ["*", "nope.*"]}),
            "/event_types/1",
        ),
        (json!({"url": "https://93.184.216.34/hook", "event_types": []}), "/event_types"),
        (json!({"url": "https://93.184.216.34/hook", "description": long}), "/description"),
        (
            json!({"url": "https://93.184.216.34/hook", "rate_limit": {"per_second": 0}}),
            "/rate_limit/per_second",
        ),
        (json!({"url": "https://93.184.216.34/hook", "colour": "red"}), "/colour"),
        (json!({"description": "no url"}), "/url"),
    ];
    for (body, field) in cases {
        let (status, v) = call(&api, &t, Method::POST, "/v1/endpoints", Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_eq!(v["error"]["code"], "invalid_request", "{body}: {v}");
        assert_eq!(v["error"]["field"], field, "{body}: {v}");
    }
    // Addresses that carry or are special-purpose ones (IANA's registries): refused, and the
    // answer says what the user can do, not which operator setting is off.
    for url in [
        "https://[::ffff:0:127.0.0.1]/hook",
        "https://[::ffff:0:a9fe:a9fe]/hook",
        "https://[2001:2::1]/hook",
        "https://[2001:10::1]/hook",
        "https://[2001:20::1]/hook",
        "https://[3fff::1]/hook",
        "https://[5f00::1]/hook",
    ] {
        let (status, v) =
            call(&api, &t, Method::POST, "/v1/endpoints", Some(json!({"url": url}))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("public addresses only"), "{url}: {v}");
        assert!(!message.contains("allow_private"), "{url}: {v}");
    }
    let (status, ok) = call(
        &api,
        &t,
        Method::POST,
        "/v1/endpoints",
        Some(json!({"url": "https://93.184.216.34/hook"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "a public https URL is fine: {ok}");
    let (status, v) = call(&api, &t, Method::GET, "/v1/endpoints?limit=0", None).await;
    assert_eq!(
        (status, v["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("limit"))
    );
    let id = ok["id"].as_str().expect("id");
    let (status, v) =
        call(&api, &t, Method::GET, &format!("/v1/endpoints/{id}/stats?window=forever"), None)
            .await;
    assert_eq!(
        (status, v["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("window"))
    );
    let entries: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'endpoint.create'")
            .fetch_one(&api.db.pool)
            .await
            .expect("audit");
    assert_eq!(entries, 1, "refused requests change nothing");
    api.stop().await;
}

#[tokio::test]
async fn another_accounts_ids_are_404_on_every_route_and_nothing_changes() {
    let api = permissive().await;
    let (b, b_token) = api.another_account().await;
    let (_, made) = call(
        &api,
        &b_token,
        Method::POST,
        "/v1/endpoints",
        Some(json!({"url": "http://127.0.0.1:9/b"})),
    )
    .await;
    let b_ep = made["id"].as_str().expect("B's endpoint").to_owned();
    let b_event = hookstream_core::EventId::new().to_string();
    sqlx::query(
        "INSERT INTO deliveries (account_id, event_id, endpoint_id, event_type, state, received_at) \
         VALUES ($1, $2, $3, 'subscriber.created', 'delivered', now())",
    )
    .bind(b)
    .bind(&b_event)
    .bind(b_ep.parse::<uuid::Uuid>().expect("uuid"))
    .execute(&api.db.pool)
    .await
    .expect("delivery");
    let snapshot = || async {
        let e: Value =
            sqlx::query_scalar("SELECT to_jsonb(e) FROM endpoints e WHERE id = $1::uuid")
                .bind(&b_ep)
                .fetch_one(&api.db.pool)
                .await
                .expect("endpoint");
        let secrets: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM endpoint_secrets WHERE endpoint_id = $1::uuid",
        )
        .bind(&b_ep)
        .fetch_one(&api.db.pool)
        .await
        .expect("secrets");
        let audit: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE account_id = $1")
            .bind(b)
            .fetch_one(&api.db.pool)
            .await
            .expect("audit");
        (e, secrets, audit)
    };
    let before = snapshot().await;
    let a = api.token.clone();
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/v1/endpoints/{b_ep}"), None),
        (
            Method::PATCH,
            format!("/v1/endpoints/{b_ep}"),
            Some(json!({"enabled": false, "description": "pwned"})),
        ),
        (Method::DELETE, format!("/v1/endpoints/{b_ep}"), None),
        (Method::POST, format!("/v1/endpoints/{b_ep}/rotate-secret"), None),
        (Method::GET, format!("/v1/endpoints/{b_ep}/stats"), None),
        (Method::GET, format!("/v1/events/{b_event}/deliveries"), None),
        (Method::GET, format!("/v1/dlq/{}", uuid::Uuid::now_v7()), None),
    ];
    for (method, path, body) in routes {
        let (status, v) = call(&api, &a, method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path} with A's key: {v}");
        assert_eq!(v["error"]["code"], "not_found", "{method} {path}");
    }
    let (_, listed) = call(&api, &a, Method::GET, "/v1/endpoints", None).await;
    assert!(listed["data"].as_array().expect("data").is_empty(), "A lists none of B's endpoints");
    let (_, audit) = call(&api, &a, Method::GET, "/v1/audit", None).await;
    assert!(
        audit["data"]
            .as_array()
            .expect("data")
            .iter()
            .all(|e| e["account_id"] == api.account.to_string()),
        "A reads only its own audit log"
    );
    assert_eq!(snapshot().await, before, "B's endpoint, secrets and audit log are untouched");
    let (status, mine) =
        call(&api, &b_token, Method::GET, &format!("/v1/events/{b_event}/deliveries"), None).await;
    assert_eq!(status, StatusCode::OK, "B sees its own: {mine}");
    assert_eq!(mine["data"][0]["state"], "delivered");
    api.stop().await;
}
