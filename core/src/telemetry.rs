//! Logs, traces and metrics, set up once per process.
//!
//! Logs go through `tracing` (text or JSON). Traces are exported over OTLP/HTTP when an
//! endpoint is configured, with W3C trace context as the propagation format so a trace can
//! be carried in Kafka headers. Metrics go to a Prometheus recorder whose text the services
//! serve at `/metrics`.

use std::sync::Mutex;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TelemetryConfig};

/// Latency histogram buckets in seconds, from 0.5 ms to 60 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built.
    #[error("cannot build the OTLP trace exporter: {0}")]
    Otlp(String),
    /// The Prometheus recorder could not be installed.
    #[error("cannot install the Prometheus recorder: {0}")]
    Prometheus(String),
}

/// Handles that must live as long as the process; dropping flushes pending spans.
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
    metrics: PrometheusHandle,
}

impl Telemetry {
    /// The Prometheus text exposition of every metric recorded so far.
    pub fn render_metrics(&self) -> String {
        self.metrics.render()
    }

    /// The recorder's handle, for HTTP handlers.
    pub fn metrics_handle(&self) -> PrometheusHandle {
        self.metrics.clone()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.tracer_provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("hookstream: flushing traces failed: {e}");
            }
        }
    }
}

/// Installs the log subscriber, the OTLP exporter (when configured) and the Prometheus
/// recorder. Safe to call more than once in one process (tests run services side by side):
/// later calls reuse what the first installed.
pub fn init(cfg: &TelemetryConfig, service: &str) -> Result<Telemetry, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let tracer_provider = otlp_provider(cfg, service)?;

    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log_level));
    let fmt = match cfg.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_target(true).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer().json().flatten_event(true).boxed(),
    };
    let otel = tracer_provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service.to_owned())));
    // A second init in the same process (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry().with(filter).with(fmt).with(otel).try_init();

    Ok(Telemetry { tracer_provider, metrics: prometheus()? })
}

fn otlp_provider(
    cfg: &TelemetryConfig,
    service: &str,
) -> Result<Option<SdkTracerProvider>, TelemetryError> {
    let from_env =
        std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok().filter(|v| !v.is_empty()).or_else(|| {
            std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").ok().filter(|v| !v.is_empty())
        });
    if cfg.otlp_endpoint.is_none() && from_env.is_none() {
        return Ok(None);
    }
    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_http();
    if let Some(endpoint) = &cfg.otlp_endpoint {
        use opentelemetry_otlp::WithExportConfig;
        let traces = endpoint.join("v1/traces").map_err(|e| TelemetryError::Otlp(e.to_string()))?;
        builder = builder.with_endpoint(traces.to_string());
    }
    let exporter = builder.build().map_err(|e| TelemetryError::Otlp(e.to_string()))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service.to_owned()).build())
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(Some(provider))
}

/// The process's Prometheus recorder, installed on first use.
pub fn prometheus() -> Result<PrometheusHandle, TelemetryError> {
    // A mutex, not only a OnceLock: two services starting at once in one test process must not
    // both try to install a global recorder.
    static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut slot = HANDLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(h) = slot.as_ref() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)
        .map_err(|e| TelemetryError::Prometheus(e.to_string()))?
        .install_recorder()
        .map_err(|e| TelemetryError::Prometheus(e.to_string()))?;
    *slot = Some(handle.clone());
    Ok(handle)
}
