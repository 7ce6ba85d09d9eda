//! An OTLP/HTTP trace receiver on a free loopback port: what a collector or Jaeger gets from
//! a service whose `OTEL_EXPORTER_OTLP_ENDPOINT` names it. Export requests are decoded from
//! protobuf (`opentelemetry-proto`) into [`ExportedSpan`]s a test can inspect as a tree.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;

/// One exported span, ids in lower-case hex.
#[derive(Clone, Debug)]
pub struct ExportedSpan {
    /// `service.name` of the resource that exported it.
    pub service: String,
    /// Span name.
    pub name: String,
    /// Trace id.
    pub trace_id: String,
    /// Span id.
    pub span_id: String,
    /// Parent span id; empty for a root.
    pub parent_span_id: String,
    /// Span kind (OTLP numbering: 1 internal, 2 server, 3 client, 4 producer, 5 consumer).
    pub kind: i32,
    /// Status code (0 unset, 1 ok, 2 error).
    pub status: i32,
    /// Attributes, values as text.
    pub attributes: HashMap<String, String>,
    /// Links, as (trace id, span id).
    pub links: Vec<(String, String)>,
    /// Start, unix ns.
    pub start_ns: u64,
    /// End, unix ns.
    pub end_ns: u64,
}

impl ExportedSpan {
    /// The attribute `key`, as text.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// Its duration in milliseconds.
    pub fn millis(&self) -> f64 {
        self.end_ns.saturating_sub(self.start_ns) as f64 / 1e6
    }
}

/// The receiver; spans accumulate until it is dropped.
#[derive(Clone)]
pub struct OtlpReceiver {
    /// `http://127.0.0.1:<port>`: the value for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    spans: Arc<Mutex<Vec<ExportedSpan>>>,
}

impl OtlpReceiver {
    /// Starts it on a free loopback port; it answers `POST /v1/traces`.
    pub async fn start() -> Self {
        Self::start_on(([127, 0, 0, 1], 0).into()).await.expect("bind the OTLP receiver")
    }

    /// Starts it on `listen`.
    pub async fn start_on(listen: std::net::SocketAddr) -> std::io::Result<Self> {
        let spans: Arc<Mutex<Vec<ExportedSpan>>> = Arc::default();
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(receive))
            .with_state(Arc::clone(&spans));
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { endpoint, spans })
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ExportedSpan> {
        self.spans.lock().unwrap().clone()
    }
}

async fn receive(State(spans): State<Arc<Mutex<Vec<ExportedSpan>>>>, body: Bytes) -> StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans.resource.map(|r| attributes(&r.attributes));
        let service =
            resource.as_ref().and_then(|r| r.get("service.name").cloned()).unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            received.push(ExportedSpan {
                service: service.clone(),
                name: span.name,
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                kind: span.kind,
                status: span.status.map_or(0, |s| s.code),
                attributes: attributes(&span.attributes),
                links: span.links.iter().map(|l| (hex(&l.trace_id), hex(&l.span_id))).collect(),
                start_ns: span.start_time_unix_nano,
                end_ns: span.end_time_unix_nano,
            });
        }
    }
    spans.lock().unwrap().extend(received);
    StatusCode::OK
}

fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::BoolValue(b)) => b.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
