//! The poison suite, management side: hostile text in input (NUL, invalid UTF-8) is a 4xx
//! naming what is wrong, never a database error; every error is in the JSON format.

use hookstream_api::ApiSettings;
use hookstream_testkit as testkit;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::Api;

async fn management(
    api: &Api,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut r = api.http.request(method, format!("{}{path}", api.base)).bearer_auth(&api.token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.expect("send");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn nul_in_management_input_is_422_naming_the_field_never_503() {
    let settings = ApiSettings {
        allow_http_endpoints: true,
        allow_private_endpoints: true,
        ..ApiSettings::default()
    };
    let api = Api::start_with(testkit::kafka_config(), settings).await;
    use reqwest::Method;
    for (body, field) in [
        (json!({"url": "http://127.0.0.1:9/a\u{0}b"}), "/url"),
        (json!({"url": "http://127.0.0.1:9/a", "description": "x\u{0}y"}), "/description"),
        (
            json!({"url": "http://127.0.0.1:9/a", "event_types": ["subscriber.\u{0}"]}),
            "/event_types/0",
        ),
    ] {
        let (status, answer) = management(&api, Method::POST, "/v1/endpoints", Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
    for path in ["/v1/dlq?event_type=a%00b", "/v1/dlq?error_class=%00", "/v1/endpoints?cursor=%00"]
    {
        let (status, answer) = management(&api, Method::GET, path, None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {answer}");
    }
    // An id in a path that this service never makes names nothing: 404, never a database
    // error (Postgres refuses a NUL in text).
    for path in ["/v1/events/a%00b/deliveries", "/v1/endpoints/a%00b", "/v1/dlq/a%00b"] {
        let (status, answer) = management(&api, Method::GET, path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {answer}");
    }
    let (status, answer) =
        management(&api, Method::POST, "/v1/dlq/redrive", Some(json!({"event_type": "a\u{0}"})))
            .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    // Invalid UTF-8 in a body is malformed JSON: 400, in the JSON error format.
    for path in ["/v1/endpoints", "/v1/dlq/redrive"] {
        let r = api
            .post(path)
            .body(&b"{\"url\": \"https://a.example/\xff\xfe\"}"[..])
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["error"]["code"], "malformed_json", "{path}: {v}");
    }
    api.stop().await;
}

#[tokio::test]
async fn paths_that_are_not_text_are_400_in_the_json_format() {
    let api = Api::start().await;
    let base = &api.base;
    for path in ["/v1/endpoints/%FF%FE", "/v1/events/%FF/deliveries", "/v1/dlq/%FF"] {
        let r = api.http.get(format!("{base}{path}")).bearer_auth(&api.token).send().await;
        let r = r.expect("send");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
        let v: Value = r.json().await.expect("json body");
        assert_eq!(v["error"]["code"], "bad_request", "{path}: {v}");
    }
    api.stop().await;
}
