//! `POST /v1/events` and `POST /v1/events/batch`.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use hookstream_core::db::api_keys::KeyOwner;
use hookstream_core::envelope::{EventEnvelope, Priority};
use hookstream_core::schema::{Schemas, Violation};
use hookstream_core::trace::{self, Context};
use hookstream_core::{AccountId, EventId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::idempotency::{self, Acceptance};
use crate::publish::PublishError;
use crate::state::AppState;
use hookstream_core::http::extract::{from_value, parse_json, read_limited, require_json};
use hookstream_core::http::{ApiError, Caller, ErrorBody, ErrorDetail, JsonErrors};

/// One event, as a producer sends it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventRequest {
    /// Event type, e.g. `subscriber.created`.
    #[schema(example = "subscriber.created")]
    pub event_type: String,
    /// The payload, validated against the event type's schema in `schemas/`.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// When it happened (RFC 3339); defaults to the time ingest received it.
    pub occurred_at: Option<DateTime<Utc>>,
    /// Lane: `high`, `normal` (default) or `low`.
    #[schema(value_type = Option<String>, example = "normal")]
    pub priority: Option<Priority>,
}

/// One event of a batch: an event plus its own optional idempotency key.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchEventRequest {
    /// As for `POST /v1/events`.
    pub event_type: String,
    /// As for `POST /v1/events`.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// As for `POST /v1/events`.
    pub occurred_at: Option<DateTime<Utc>>,
    /// As for `POST /v1/events`.
    #[schema(value_type = Option<String>)]
    pub priority: Option<Priority>,
    /// Plays the role of the `Idempotency-Key` header for this event.
    pub idempotency_key: Option<String>,
}

/// `POST /v1/events/batch` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// Up to `ingest.max_batch_events` (default 500) events.
    #[schema(value_type = Vec<BatchEventRequest>)]
    pub events: Vec<serde_json::Value>,
}

/// An accepted event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    /// The event's id: the `webhook-id` receivers will see.
    #[schema(value_type = String)]
    pub event_id: EventId,
}

/// The outcome of one event of a batch.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchResult {
    /// Position in the request.
    pub index: usize,
    /// `accepted` or `rejected`.
    pub status: &'static str,
    /// Set when accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub event_id: Option<EventId>,
    /// Set when rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// `POST /v1/events/batch` answer: one result per event, in order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchResponse {
    /// Events the broker acknowledged (or earlier acknowledged, for a repeated key).
    pub accepted: usize,
    /// Events refused; none of them was produced.
    pub rejected: usize,
    /// Per event.
    pub results: Vec<BatchResult>,
}

/// Accept one event.
#[utoipa::path(
    post,
    path = "/v1/events",
    request_body = EventRequest,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Same key, same account, within 60 s: the original event id is returned and nothing new is produced; the same key with a different event is 409."),
        ("traceparent" = Option<String>, Header, description = "W3C trace context to continue."),
    ),
    responses(
        (status = 202, description = "Durably written to the broker", body = Accepted,
            headers(("traceparent" = String, description = "The W3C trace the event travels in: its deliveries (and retries) are spans of it"))),
        (status = 409, description = "The Idempotency-Key was used for a different event within the window", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Schema violation, naming the field", body = ErrorBody),
        (status = 429, description = "Account over its intake limit (Retry-After)", body = ErrorBody),
        (status = 503, description = "Broker or database unavailable; nothing accepted (Retry-After)", body = ErrorBody),
        JsonErrors,
    ),
    tag = "events"
)]
pub async fn post_event(
    State(state): State<AppState>,
    Caller(owner): Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, [(&'static str, String); 1], Json<Accepted>), ApiError> {
    let cx = server_span(&state, &headers, "/v1/events");
    let result = accept_request(&state, &owner, &headers, body, &cx).await;
    let status = result.as_ref().map_or_else(ApiError::status, |_| StatusCode::ACCEPTED);
    trace::end_server(&cx, status.as_u16());
    let event_id = result?;
    // The trace the event travels in, so the caller can find its delivery spans.
    let traceparent = trace::traceparent(&cx).unwrap_or_default();
    Ok((StatusCode::ACCEPTED, [("traceparent", traceparent)], Json(Accepted { event_id })))
}

/// Reads, checks and accepts the one event of a `POST /v1/events` in the server span `cx`.
async fn accept_request(
    state: &AppState,
    owner: &KeyOwner,
    headers: &HeaderMap,
    body: Body,
    cx: &Context,
) -> Result<EventId, ApiError> {
    require_json(headers)?;
    let bytes = read_limited(headers, body, state.settings.max_body_bytes).await?;
    let request: EventRequest = parse_json(&bytes)?;
    let idempotency_key = headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| ApiError::invalid("Idempotency-Key", "must be visible ASCII"))
        })
        .transpose()?;
    let event_type = request.event_type.clone();
    let result = accept(state, owner, request.into(), idempotency_key, "", cx).await;
    record(&event_type, state, &result);
    result
}

/// Accept up to `ingest.max_batch_events` events, each accepted or rejected on its own.
#[utoipa::path(
    post,
    path = "/v1/events/batch",
    request_body = BatchRequest,
    params(("traceparent" = Option<String>, Header, description = "W3C trace context to continue.")),
    responses(
        (status = 200, description = "One result per event; only acknowledged events are reported accepted", body = BatchResponse),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Not a batch, or too many events", body = ErrorBody),
        JsonErrors,
    ),
    tag = "events"
)]
pub async fn post_batch(
    State(state): State<AppState>,
    Caller(owner): Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<BatchResponse>, ApiError> {
    let cx = server_span(&state, &headers, "/v1/events/batch");
    let result = accept_batch(&state, &owner, &headers, body, &cx).await;
    let status = result.as_ref().map_or_else(ApiError::status, |_| StatusCode::OK);
    trace::end_server(&cx, status.as_u16());
    result.map(Json)
}

/// Reads and checks a batch and accepts each of its events on its own, in the server span
/// `cx` (each produce is a child of it).
async fn accept_batch(
    state: &AppState,
    owner: &KeyOwner,
    headers: &HeaderMap,
    body: Body,
    cx: &Context,
) -> Result<BatchResponse, ApiError> {
    require_json(headers)?;
    let bytes = read_limited(headers, body, state.settings.max_body_bytes).await?;
    let batch: BatchRequest = parse_json(&bytes)?;
    let max = state.settings.max_batch_events;
    if batch.events.len() > max {
        return Err(ApiError::invalid("/events", format!("at most {max} events per batch")));
    }
    let tasks = batch.events.into_iter().enumerate().map(|(index, value)| {
        let (state, owner, trace) = (state, owner, cx);
        async move {
            let prefix = format!("/events/{index}");
            let result = match from_value::<BatchEventRequest>(value, &prefix) {
                Ok(event) => {
                    let event_type = event.event_type.clone();
                    let key = event.idempotency_key.clone();
                    let r = accept(state, owner, event.into(), key, &prefix, trace).await;
                    record(&event_type, state, &r);
                    r
                }
                Err(e) => {
                    record("", state, &Err(e.clone()));
                    Err(e)
                }
            };
            match result {
                Ok(id) => {
                    BatchResult { index, status: "accepted", event_id: Some(id), error: None }
                }
                Err(e) => {
                    BatchResult { index, status: "rejected", event_id: None, error: Some(e.body()) }
                }
            }
        }
    });
    let results: Vec<BatchResult> = futures::future::join_all(tasks).await;
    let accepted = results.iter().filter(|r| r.event_id.is_some()).count();
    Ok(BatchResponse { accepted, rejected: results.len() - accepted, results })
}

/// The fields of an event that do not depend on how it arrived.
pub struct NewEvent {
    event_type: String,
    data: serde_json::Value,
    occurred_at: Option<DateTime<Utc>>,
    priority: Option<Priority>,
}

impl NewEvent {
    /// What the client sent, hashed: type, data, occurred at, priority.
    fn fingerprint(&self) -> idempotency::Fingerprint {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.event_type.as_bytes());
        h.update([0]);
        // serde_json's maps are ordered by key, so equal data hashes equal.
        h.update(self.data.to_string().as_bytes());
        h.update([0]);
        h.update(self.occurred_at.map(|t| t.to_rfc3339()).unwrap_or_default().as_bytes());
        h.update([0]);
        h.update(self.priority.map(|p| p.as_str()).unwrap_or_default().as_bytes());
        h.finalize().into()
    }
}

impl From<EventRequest> for NewEvent {
    fn from(r: EventRequest) -> Self {
        Self {
            event_type: r.event_type,
            data: r.data,
            occurred_at: r.occurred_at,
            priority: r.priority,
        }
    }
}

impl From<BatchEventRequest> for NewEvent {
    fn from(r: BatchEventRequest) -> Self {
        Self {
            event_type: r.event_type,
            data: r.data,
            occurred_at: r.occurred_at,
            priority: r.priority,
        }
    }
}

/// Validates, rate-limits and produces one event; returns its id once it is durable.
async fn accept(
    state: &AppState,
    owner: &KeyOwner,
    event: NewEvent,
    idempotency_key: Option<String>,
    field_prefix: &str,
    trace: &Context,
) -> Result<EventId, ApiError> {
    if let Some(key) = &idempotency_key {
        idempotency::validate_key(key).map_err(|e| prefixed(e, field_prefix))?;
    }
    let fingerprint = event.fingerprint();
    let envelope = envelope(state, owner.account_id, event, idempotency_key.as_deref())
        .map_err(|e| prefixed(e, field_prefix))?;
    let produce = async {
        state.limits.check(owner.account_id, owner.ingest_limit)?;
        state.publisher.publish(&envelope, trace).await.map_err(|e| ApiError::Unavailable {
            what: match e {
                PublishError::Encode(_) => "schema registry",
                PublishError::Broker(_) => "broker",
            },
            retry_after_secs: u64::from(state.settings.unavailable_retry_after_secs),
        })?;
        Ok(envelope.event_id.clone())
    };
    match idempotency_key {
        None => produce.await,
        Some(key) => {
            let (id, how) =
                state.idempotency.accept_once(owner.account_id, &key, fingerprint, produce).await?;
            if how == Acceptance::Replayed {
                metrics::counter!("ingest_idempotent_replays_total").increment(1);
            }
            Ok(id)
        }
    }
}

/// Checks an event's type and data against the schemas; a violation names the field.
fn validate(schemas: &Schemas, event: &NewEvent) -> Result<(), ApiError> {
    schemas.validate_event(&event.event_type, &event.data).map_err(|v| match v {
        Violation::UnknownEventType(t) => ApiError::invalid(
            "/event_type",
            format!("unknown event type {t:?}; known: {}", schemas.event_types().join(", ")),
        ),
        Violation::Invalid { field, message } => {
            ApiError::invalid(format!("/data{field}"), message)
        }
    })
}

fn envelope(
    state: &AppState,
    account_id: AccountId,
    event: NewEvent,
    idempotency_key: Option<&str>,
) -> Result<EventEnvelope, ApiError> {
    validate(&state.schemas, &event)?;
    let accepted = EventEnvelope::new(account_id, event.event_type, event.data);
    Ok(EventEnvelope {
        event_id: idempotency_key.map(|k| EventId::for_key(account_id, k)).unwrap_or_default(),
        occurred_at: event.occurred_at.unwrap_or(accepted.received_at),
        priority: event.priority.unwrap_or_default(),
        ..accepted
    })
}

fn prefixed(e: ApiError, prefix: &str) -> ApiError {
    match e {
        ApiError::Invalid { field, message } if !prefix.is_empty() => {
            let field = if field.starts_with('/') {
                format!("{prefix}{field}")
            } else {
                format!("{prefix}/{field}")
            };
            ApiError::Invalid { field, message }
        }
        other => other,
    }
}

/// The server span of this request: a child of the caller's `traceparent`, or the root of a
/// new trace; the request's log lines carry its ids.
fn server_span(state: &AppState, headers: &HeaderMap, route: &'static str) -> Context {
    let cx = state.tracer.server(&trace::extract_http(headers), "POST", route);
    trace::record_on_current(&cx);
    cx
}

/// Counts `webhook_received_total{event_type, outcome}`; unknown types share one label value
/// so a client cannot grow the metric's cardinality.
fn record(event_type: &str, state: &AppState, result: &Result<EventId, ApiError>) {
    let event_type =
        if state.schemas.knows(event_type) { event_type.to_owned() } else { "unknown".to_owned() };
    let outcome = match result {
        Ok(_) => "accepted",
        Err(e) => e.code(),
    };
    metrics::counter!("webhook_received_total", "event_type" => event_type, "outcome" => outcome)
        .increment(1);
}

#[cfg(test)]
mod fuzz {
    //! Property tests of parsing and validation: whatever the bytes, ingest answers with a
    //! typed refusal (400 or 422 naming a field) or accepts a schema-valid event; it never
    //! panics. Bounded (a thousand cases per property, a few seconds) so it runs in CI.

    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;
    use hookstream_core::http::extract::parse_json;

    fn check(bytes: &[u8], schemas: &Schemas) -> Result<(), ApiError> {
        let request: EventRequest = parse_json(bytes)?;
        validate(schemas, &request.into())
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            ".{0,40}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
                prop::collection::btree_map("[a-z_]{1,12}", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn assert_typed(result: Result<(), ApiError>, input: &str) {
        match result {
            Ok(()) => {}
            Err(ApiError::MalformedJson(_)) => {}
            Err(ApiError::Invalid { field, .. }) => {
                assert!(field.starts_with('/'), "{input}: field {field:?} is not a pointer");
            }
            Err(other) => panic!("{input}: unexpected refusal {other:?}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn arbitrary_bytes_are_refused_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let schemas = Schemas::load().expect("schemas");
            assert_typed(check(&bytes, &schemas), &String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn arbitrary_json_is_refused_cleanly(value in json_value()) {
            let schemas = Schemas::load().expect("schemas");
            let text = value.to_string();
            assert_typed(check(text.as_bytes(), &schemas), &text);
        }

        #[test]
        fn arbitrary_data_of_a_known_type_is_accepted_or_refused_naming_data(
            data in json_value(),
            event_type in prop::sample::select(vec!["subscriber.created", "subscriber.updated", "subscriber.deleted", "subscriber.unsubscribed"]),
        ) {
            let schemas = Schemas::load().expect("schemas");
            let body = json!({"event_type": event_type, "data": data}).to_string();
            match check(body.as_bytes(), &schemas) {
                Ok(()) => {}
                Err(ApiError::Invalid { field, .. }) => prop_assert!(field.starts_with("/data"), "{body}: {field}"),
                Err(other) => prop_assert!(false, "{body}: {other:?}"),
            }
        }

        #[test]
        fn well_formed_subscribers_are_accepted(
            id in "[A-Za-z0-9_-]{1,40}",
            local in "[a-z0-9]{1,20}",
            domain in "[a-z]{1,20}",
        ) {
            let schemas = Schemas::load().expect("schemas");
            let body = json!({
                "event_type": "subscriber.created",
                "data": {"subscriber": {"id": id, "email": format!("{local}@{domain}.com")}}
            })
            .to_string();
            prop_assert!(check(body.as_bytes(), &schemas).is_ok(), "{body}");
        }
    }
}
