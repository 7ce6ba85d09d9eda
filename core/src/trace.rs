//! Traces that follow the event: one OpenTelemetry trace from ingest's request through Kafka to
//! every delivery attempt, its retries and its hand-offs.
//!
//! Spans are made with the OpenTelemetry API, named and attributed after the semantic
//! conventions for messaging (`send <topic>`, `process <topic>`) and HTTP (`POST`, server
//! and client). The context crosses HTTP through the W3C trace-context propagator
//! ([`extract_http`], [`inject_http`]) and Kafka through the same propagator in
//! [`crate::wire::headers`]. Each service holds its own [`Tracing`]: spans are exported over
//! OTLP/HTTP when an endpoint is configured; without one they still get ids, so the webhook's
//! `traceparent` continues the event's trace, but nothing leaves the process. Sampling follows
//! the standard `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` variables.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    Link, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

pub use opentelemetry::{Context, KeyValue};

use crate::config::TelemetryConfig;
use crate::telemetry::TelemetryError;

/// The propagation format on HTTP and Kafka: W3C `traceparent` and `tracestate`.
pub fn propagator() -> TraceContextPropagator {
    TraceContextPropagator::new()
}

/// A service's tracer provider: exporting over OTLP/HTTP when configured. Spans still queued
/// are flushed by [`Tracing::shutdown`] (or when it is dropped).
pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: Tracer,
    exporting: bool,
}

impl Tracing {
    /// The provider for `service` (the `service.name` of its spans): exporting to
    /// `telemetry.otlp_endpoint`, else to `OTEL_EXPORTER_OTLP_ENDPOINT` (or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), else nowhere.
    pub fn start(cfg: &TelemetryConfig, service: &'static str) -> Result<Self, TelemetryError> {
        let from_env = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
            .iter()
            .any(|v| std::env::var(v).is_ok_and(|v| !v.is_empty()));
        let mut builder = SdkTracerProvider::builder()
            .with_resource(Resource::builder().with_service_name(service).build());
        let exporting = cfg.otlp_endpoint.is_some() || from_env;
        if exporting {
            let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_http();
            if let Some(endpoint) = &cfg.otlp_endpoint {
                use opentelemetry_otlp::WithExportConfig;
                let traces =
                    endpoint.join("v1/traces").map_err(|e| TelemetryError::Otlp(e.to_string()))?;
                exporter = exporter.with_endpoint(traces.to_string());
            }
            let exporter = exporter.build().map_err(|e| TelemetryError::Otlp(e.to_string()))?;
            builder = builder.with_batch_exporter(exporter);
        }
        let provider = builder.build();
        let tracer = Tracer { inner: provider.tracer("hookstream") };
        Ok(Self { provider, tracer, exporting })
    }

    /// Spans with ids and nothing exported (tools and tests that need no export).
    pub fn local(service: &'static str) -> Self {
        let provider = SdkTracerProvider::builder()
            .with_resource(Resource::builder().with_service_name(service).build())
            .build();
        let tracer = Tracer { inner: provider.tracer("hookstream") };
        Self { provider, tracer, exporting: false }
    }

    /// The tracer to make spans with.
    pub fn tracer(&self) -> Tracer {
        self.tracer.clone()
    }

    /// Exports what is still queued; spans made afterwards are dropped.
    pub fn shutdown(&self) {
        if self.exporting {
            if let Err(e) = self.provider.shutdown() {
                tracing::warn!(error = %e, "flushing traces failed");
            }
        }
    }
}

/// Makes the spans of hookstream's stages. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Tracer {
    inner: SdkTracer,
}

/// One span's place in Kafka, for `process` spans.
pub struct Consumed<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Consumer group.
    pub group: &'a str,
}

impl Tracer {
    fn start(
        &self,
        name: impl Into<std::borrow::Cow<'static, str>>,
        kind: SpanKind,
        parent: &Context,
        attributes: Vec<KeyValue>,
        links: Vec<Link>,
    ) -> Context {
        let span = self
            .inner
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes)
            .with_links(links)
            .start_with_context(&self.inner, parent);
        parent.with_span(span)
    }

    /// An HTTP server span for `method route`, a child of the caller's context.
    pub fn server(&self, parent: &Context, method: &str, route: &'static str) -> Context {
        self.start(
            format!("{method} {route}"),
            SpanKind::Server,
            parent,
            vec![
                KeyValue::new("http.request.method", method.to_owned()),
                KeyValue::new("http.route", route),
                KeyValue::new("url.scheme", "http"),
            ],
            Vec::new(),
        )
    }

    /// A producer span `send <topic>`; its context is what the record's headers carry.
    /// [`sent`] adds where the broker stored it.
    pub fn send(&self, parent: &Context, topic: &str) -> Context {
        self.start(
            format!("send {topic}"),
            SpanKind::Producer,
            parent,
            vec![
                KeyValue::new("messaging.system", "kafka"),
                KeyValue::new("messaging.operation.type", "send"),
                KeyValue::new("messaging.operation.name", "send"),
                KeyValue::new("messaging.destination.name", topic.to_owned()),
            ],
            Vec::new(),
        )
    }

    /// A consumer span `process <topic>` for a record read at `at`, a child of the context
    /// its headers carried.
    pub fn process(&self, parent: &Context, at: &Consumed<'_>) -> Context {
        self.start(
            format!("process {}", at.topic),
            SpanKind::Consumer,
            parent,
            vec![
                KeyValue::new("messaging.system", "kafka"),
                KeyValue::new("messaging.operation.type", "process"),
                KeyValue::new("messaging.operation.name", "process"),
                KeyValue::new("messaging.destination.name", at.topic.to_owned()),
                KeyValue::new("messaging.destination.partition.id", at.partition.to_string()),
                KeyValue::new("messaging.kafka.offset", at.offset),
                KeyValue::new("messaging.consumer.group.name", at.group.to_owned()),
            ],
            Vec::new(),
        )
    }

    /// An internal span of hookstream's own (`deliver`, `redrive`, `replay`).
    pub fn internal(
        &self,
        parent: &Context,
        name: &'static str,
        attributes: Vec<KeyValue>,
    ) -> Context {
        self.start(name, SpanKind::Internal, parent, attributes, Vec::new())
    }

    /// The root of a new trace, linked to the span of `original` (a redrive or a replay
    /// starts its own trace and points back at the event's).
    pub fn linked_root(
        &self,
        name: &'static str,
        original: &Context,
        attributes: Vec<KeyValue>,
    ) -> Context {
        let original = original.span().span_context().clone();
        let links =
            if original.is_valid() { vec![Link::with_context(original)] } else { Vec::new() };
        self.start(name, SpanKind::Internal, &Context::new(), attributes, links)
    }

    /// An HTTP client span for a `POST` to `url` (query and credentials left out).
    pub fn client_post(&self, parent: &Context, url: &url::Url) -> Context {
        let mut full = url.clone();
        full.set_query(None);
        let _ = full.set_username("");
        let _ = full.set_password(None);
        let mut attributes = vec![
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("url.full", full.to_string()),
        ];
        if let Some(host) = url.host_str() {
            attributes.push(KeyValue::new("server.address", host.to_owned()));
        }
        if let Some(port) = url.port_or_known_default() {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        self.start("POST", SpanKind::Client, parent, attributes, Vec::new())
    }
}

/// Adds where the broker stored a produced record to its `send` span.
pub fn sent(cx: &Context, partition: i32, offset: i64) {
    cx.span().set_attributes([
        KeyValue::new("messaging.destination.partition.id", partition.to_string()),
        KeyValue::new("messaging.kafka.offset", offset),
    ]);
}

/// Ends the span of `cx`: in error with `error` (its `error.type` and description), else
/// unset (the conventions leave success unset).
pub fn end(cx: &Context, error: Option<(&str, &str)>) {
    let span = cx.span();
    if let Some((kind, description)) = error {
        span.set_attribute(KeyValue::new("error.type", kind.to_owned()));
        span.set_status(Status::error(description.to_owned()));
    }
    span.end();
}

/// The context a request's `traceparent` (and `tracestate`) carry; empty when none parses.
pub fn extract_http(headers: &axum::http::HeaderMap) -> Context {
    propagator().extract(&HeaderExtractor(headers))
}

/// Writes the context of `cx` as `traceparent` (and `tracestate`) into `headers`.
pub fn inject_http(cx: &Context, headers: &mut axum::http::HeaderMap) {
    propagator().inject_context(cx, &mut HeaderInjector(headers));
}

/// The `traceparent` value of `cx` (`None` without a valid span).
pub fn traceparent(cx: &Context) -> Option<String> {
    let mut fields = HashMap::new();
    propagator().inject_context(cx, &mut fields);
    fields.remove("traceparent")
}

/// The trace id of `cx` as 32 hex digits (`None` without a valid span).
pub fn trace_id(cx: &Context) -> Option<String> {
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// The context a stored `traceparent` value names (a DLQ row's); empty when it does not parse.
pub fn from_traceparent(value: Option<&str>) -> Context {
    let fields: HashMap<String, String> =
        value.map(|v| ("traceparent".to_owned(), v.to_owned())).into_iter().collect();
    propagator().extract(&fields)
}

/// A `tracing` span whose fields name the trace and span of `cx`, so every log line written
/// inside it leads to its trace (the JSON log format prints them under `span`).
pub fn log_span(cx: &Context) -> tracing::Span {
    let sc = cx.span().span_context().clone();
    tracing::info_span!("trace", trace_id = %sc.trace_id(), span_id = %sc.span_id())
}

/// Records the trace and span of `cx` on the current `tracing` span (an HTTP request's, which
/// declares both fields empty: [`crate::http::observe`]), so its log lines lead to the trace.
pub fn record_on_current(cx: &Context) {
    let sc = cx.span().span_context().clone();
    let current = tracing::Span::current();
    current.record("trace_id", tracing::field::display(sc.trace_id()));
    current.record("span_id", tracing::field::display(sc.span_id()));
}

/// Ends an HTTP server span with the response's status (an error from 500 on, as the
/// conventions say for servers).
pub fn end_server(cx: &Context, status: u16) {
    cx.span().set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
    let error = (status >= 500).then(|| status.to_string());
    end(cx, error.as_deref().map(|s| (s, "server error")));
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_child_keeps_the_callers_trace_and_gets_a_span_of_its_own() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("traceparent", SAMPLE.parse().expect("header"));
        let parent = extract_http(&headers);
        let tracing = Tracing::local("test");
        let cx = tracing.tracer().server(&parent, "POST", "/v1/events");
        let child = traceparent(&cx).expect("valid");
        assert!(child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{child}");
        assert_ne!(child, SAMPLE);
        let mut out = axum::http::HeaderMap::new();
        inject_http(&cx, &mut out);
        assert_eq!(out["traceparent"], child.as_str());
        assert_eq!(traceparent(&from_traceparent(Some(&child))).as_deref(), Some(child.as_str()));
    }

    #[test]
    fn without_a_caller_context_a_new_trace_starts() {
        let tracing = Tracing::local("test");
        let a = traceparent(&tracing.tracer().server(&Context::new(), "POST", "/v1/events"));
        let b = traceparent(&tracing.tracer().server(&Context::new(), "POST", "/v1/events"));
        let trace = |t: &Option<String>| t.as_deref().map(|t| t[3..35].to_owned());
        assert!(a.is_some() && b.is_some());
        assert_ne!(trace(&a), trace(&b));
    }

    #[test]
    fn invalid_values_start_nothing() {
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(traceparent(&from_traceparent(Some(bad))), None, "{bad}");
        }
    }

    #[test]
    fn the_standard_sampler_variable_is_honoured() {
        // Each test runs in a process of its own under nextest; elsewhere a test that meets
        // the variable still sees valid ids, only unsampled.
        std::env::set_var("OTEL_TRACES_SAMPLER", "always_off");
        let tracing = Tracing::local("test");
        std::env::remove_var("OTEL_TRACES_SAMPLER");
        let cx = tracing.tracer().server(&Context::new(), "POST", "/v1/events");
        let tp = traceparent(&cx).expect("ids even when not sampled");
        assert!(tp.ends_with("-00"), "not sampled: {tp}");
        assert!(!cx.span().is_recording());
        let sampled = Tracing::local("test").tracer().server(&Context::new(), "POST", "/");
        assert!(traceparent(&sampled).expect("ids").ends_with("-01"), "the default samples");
    }

    #[test]
    fn a_redrive_starts_its_own_trace_linked_to_the_original() {
        let original = from_traceparent(Some(SAMPLE));
        let tracing = Tracing::local("test");
        let cx = tracing.tracer().linked_root("redrive", &original, vec![]);
        let tp = traceparent(&cx).expect("valid");
        assert!(!tp.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{tp}");
    }
}
