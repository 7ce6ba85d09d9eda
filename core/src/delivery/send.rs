//! One HTTP attempt: a signed `POST` with the Standard Webhooks headers, classified.

use std::time::{Duration, Instant};

use chrono::Utc;

use super::guard;
use super::outcome::{classify_status, classify_transport_error, FailureReason, Outcome};
use super::sign::{signature_header, SigningSecret};
use super::DeliveryConfig;
use crate::envelope::EventEnvelope;
use crate::ids::{AccountId, EndpointId};
use crate::trace::Context;

/// What the engine needs to know of an endpoint.
#[derive(Debug, Clone)]
pub struct Target {
    /// Endpoint id.
    pub id: EndpointId,
    /// Owning account.
    pub account_id: AccountId,
    /// Where to POST.
    pub url: url::Url,
    /// Active signing secrets (two during a rotation).
    pub secrets: Vec<SigningSecret>,
}

/// The result of one attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// What it means for the task.
    pub outcome: Outcome,
    /// HTTP status, when a response came back.
    pub status: Option<u16>,
    /// Time from sending to the response (or error).
    pub latency: Duration,
    /// The start of the response body, for the delivery log.
    pub response_body: Option<String>,
    /// Transport error or refusal, when there was no response.
    pub error: Option<String>,
    /// Why it failed (none when delivered).
    pub reason: Option<FailureReason>,
}

impl Attempt {
    /// Whether a failure counts against the retry schedule. A receiver's 429 and an open
    /// circuit (no request) delay the task instead: the endpoint is throttled or resting, and
    /// the event has not failed.
    pub fn counts(&self) -> bool {
        !matches!(self.reason, Some(FailureReason::TooManyRequests | FailureReason::CircuitOpen))
    }
}

/// Sends webhooks over pooled keep-alive connections.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    config: DeliveryConfig,
}

impl Sender {
    /// Builds the HTTP client (with the SSRF guard unless private targets are allowed).
    pub fn new(config: &DeliveryConfig) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("hookstream/", env!("CARGO_PKG_VERSION")))
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .redirect(reqwest::redirect::Policy::none());
        if !config.allow_private_targets {
            builder = builder.dns_resolver(guard::resolver());
        }
        // A proxy from HTTP(S)_PROXY would resolve the target itself, past the guard: only the
        // one configured for deliveries is used.
        builder = match &config.proxy {
            Some(proxy) => builder.proxy(reqwest::Proxy::all(proxy.as_str())?),
            None => builder.no_proxy(),
        };
        Ok(Self { client: builder.build()?, config: config.clone() })
    }

    /// The request body: Standard Webhooks' recommended shape. Serialized from borrowed
    /// fields: the event's data is not copied for each endpoint and attempt.
    pub fn body(envelope: &EventEnvelope) -> Vec<u8> {
        // Keys in the order serde_json's map writes them (sorted), as receivers have seen.
        #[derive(serde::Serialize)]
        struct Body<'a> {
            account_id: &'a AccountId,
            data: &'a serde_json::Value,
            id: &'a crate::ids::EventId,
            timestamp: &'a chrono::DateTime<Utc>,
            #[serde(rename = "type")]
            event_type: &'a str,
        }
        let body = Body {
            account_id: &envelope.account_id,
            data: &envelope.data,
            id: &envelope.event_id,
            timestamp: &envelope.occurred_at,
            event_type: &envelope.event_type,
        };
        // Serializing borrowed JSON values and plain strings cannot fail.
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// Makes one attempt of `envelope` to `target`; the request carries the trace context of
    /// `cx` (its HTTP client span) as `traceparent`.
    pub async fn send(&self, target: &Target, envelope: &EventEnvelope, cx: &Context) -> Attempt {
        let started = Instant::now();
        if !self.config.allow_private_targets {
            if let Err(e) = guard::check_literal(&target.url) {
                return refused(e.to_string(), started);
            }
        }
        let body = Self::body(envelope);
        let timestamp = Utc::now().timestamp();
        let msg_id = envelope.event_id.as_str();
        let mut trace_headers = reqwest::header::HeaderMap::new();
        crate::trace::inject_http(cx, &mut trace_headers);
        let request = self
            .client
            .post(target.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                signature_header(&target.secrets, msg_id, timestamp, &body),
            )
            .headers(trace_headers)
            .body(body);
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let outcome = classify_status(status, retry_after.as_deref());
                let body = read_prefix(response, self.config.max_response_body).await;
                let reason =
                    (outcome != Outcome::Delivered).then(|| FailureReason::of_status(status));
                Attempt {
                    outcome,
                    status: Some(status),
                    latency: started.elapsed(),
                    response_body: (!body.is_empty()).then_some(body),
                    error: None,
                    reason,
                }
            }
            Err(e) => {
                if let Some(internal) = refused_by_guard(&e) {
                    return refused(internal.to_string(), started);
                }
                Attempt {
                    outcome: classify_transport_error(),
                    status: None,
                    latency: started.elapsed(),
                    response_body: None,
                    error: Some(error_chain(&e)),
                    reason: Some(FailureReason::of_transport(&e)),
                }
            }
        }
    }
}

fn refused(reason: String, started: Instant) -> Attempt {
    Attempt {
        outcome: Outcome::Permanent { disable_endpoint: false },
        status: None,
        latency: started.elapsed(),
        response_body: None,
        error: Some(reason),
        reason: Some(FailureReason::Refused),
    }
}

/// The guard's refusal, if that is why the request failed: the resolver's error travels in
/// the error's source chain.
fn refused_by_guard(e: &reqwest::Error) -> Option<&guard::InternalTarget> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(internal) = s.downcast_ref::<guard::InternalTarget>() {
            return Some(internal);
        }
        source = s.source();
    }
    None
}

/// The first `max` bytes of the body as text (invalid UTF-8 replaced; NUL is the delivery-log
/// writer's to replace, as for all text it stores).
/// Reading stops there: the rest is never read into memory, and dropping the response closes
/// the connection, so an endless or huge body costs at most `max` bytes and the request timeout.
async fn read_prefix(mut response: reqwest::Response, max: usize) -> String {
    let mut kept: Vec<u8> = Vec::with_capacity(max.min(64 * 1024));
    while kept.len() < max {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = max - kept.len();
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            // The end, or a body cut short or too slow (the request timeout): keep what came.
            Ok(None) | Err(_) => break,
        }
    }
    truncate(&String::from_utf8_lossy(&kept), max)
}

fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_body_is_the_standard_webhooks_shape_byte_for_byte() {
        let mut e = envelope();
        e.data = json!({"subscriber": {"id": "s1", "tags": ["a", "b"]}, "n": 1.5});
        let expected = json!({
            "id": e.event_id,
            "type": e.event_type,
            "timestamp": e.occurred_at,
            "account_id": e.account_id,
            "data": e.data,
        });
        assert_eq!(Sender::body(&e), expected.to_string().into_bytes());
    }

    fn envelope() -> EventEnvelope {
        EventEnvelope::new(AccountId::new(), "subscriber.created", json!({}))
    }

    #[tokio::test]
    async fn a_refusal_by_name_or_by_literal_is_typed_and_filed_as_refused() {
        let sender = Sender::new(&DeliveryConfig::default()).expect("sender");
        for url in [
            "http://localhost:9/x",
            "http://127.0.0.1:9/x",
            "http://[::127.0.0.1]:9/x",
            "http://[::ffff:0:127.0.0.1]:9/x",
            "http://[::ffff:0:a9fe:a9fe]:9/x",
            "http://[2001:2::1]:9/x",
            "http://[3fff::1]:9/x",
            "http://[5f00::1]:9/x",
        ] {
            let target = Target {
                id: EndpointId::new(),
                account_id: AccountId::new(),
                url: url.parse().expect("url"),
                secrets: vec![],
            };
            let attempt = sender.send(&target, &envelope(), &Context::new()).await;
            let error = attempt.error.expect("an error");
            assert!(error.starts_with(guard::REFUSED), "{url}: {error}");
            assert_eq!(attempt.reason, Some(FailureReason::Refused), "{url}");
            assert!(matches!(attempt.outcome, Outcome::Permanent { .. }), "{url}");
        }
    }

    #[tokio::test]
    async fn deliveries_ignore_http_proxy_variables() {
        // A "proxy" that counts who connects, and a receiver; HTTP_PROXY points at the former.
        let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let proxy_addr = proxy.local_addr().expect("addr");
        let proxied = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = std::sync::Arc::clone(&proxied);
        tokio::spawn(async move {
            while proxy.accept().await.is_ok() {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let receiver_addr = receiver.local_addr().expect("addr");
        let app = axum::Router::new().fallback(|| async { "ok" });
        tokio::spawn(async move { axum::serve(receiver, app).await });
        // nextest runs each test in a process of its own: the variables reach no other test.
        for var in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"] {
            std::env::set_var(var, format!("http://{proxy_addr}"));
        }
        let config = DeliveryConfig { allow_private_targets: true, ..DeliveryConfig::default() };
        let sender = Sender::new(&config).expect("sender");
        let target = Target {
            id: EndpointId::new(),
            account_id: AccountId::new(),
            url: format!("http://{receiver_addr}/hook").parse().expect("url"),
            secrets: vec![],
        };
        let attempt = sender.send(&target, &envelope(), &Context::new()).await;
        assert_eq!(attempt.status, Some(200), "{attempt:?}");
        assert_eq!(
            proxied.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "nothing went through the proxy"
        );
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
