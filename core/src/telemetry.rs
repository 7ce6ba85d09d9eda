//! Logs, traces and metrics, set up once per process.
//!
//! Logs go through `tracing` (text or JSON; a log line written inside a traced stage carries
//! its `trace_id` and `span_id`). Traces are each service's own ([`crate::trace::Tracing`]).
//! Metrics go to a Prometheus recorder whose text the services serve at `/metrics`.

use std::sync::Mutex;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
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

/// Handles that must live as long as the process.
pub struct Telemetry {
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

/// Installs the log subscriber and the Prometheus recorder. Safe to call more than once in
/// one process (tests run services side by side): later calls reuse what the first installed.
pub fn init(cfg: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log_level));
    // A second init in the same process (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(log_layer(cfg.log_format, std::io::stdout))
        .try_init();

    Ok(Telemetry { metrics: prometheus()? })
}

/// The log lines' format, written to `writer`. JSON lines carry the fields of the span they
/// were written in under `span` (a traced stage's `trace_id` and `span_id`).
fn log_layer<S, W>(format: LogFormat, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(writer).boxed(),
        LogFormat::Json => {
            tracing_subscriber::fmt::layer().json().flatten_event(true).with_writer(writer).boxed()
        }
    }
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
    // Histogram samples pile up in the recorder until they are drained into their buckets,
    // which rendering `/metrics` does; a process nobody scrapes would grow by every sample
    // (a few dozen bytes per event). Draining on a timer keeps the memory flat either way.
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            upkeep.run_upkeep();
        })
        .map_err(|e| TelemetryError::Prometheus(format!("cannot start the upkeep thread: {e}")))?;
    *slot = Some(handle.clone());
    Ok(handle)
}

/// How often the recorder's histogram samples are drained into their buckets.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::trace::{self, Context, Tracing};

    /// Log lines, kept.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_json_log_line_in_a_traced_stage_names_its_trace_and_span() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber =
            tracing_subscriber::registry().with(log_layer(LogFormat::Json, move || writer.clone()));
        let traces = Tracing::local("test");
        let cx = traces.tracer().internal(&Context::new(), "deliver", Vec::new());
        tracing::subscriber::with_default(subscriber, || {
            let _in_stage = trace::log_span(&cx).entered();
            tracing::warn!(endpoint = "e1", "attempt failed");
        });
        let text = String::from_utf8(lines.0.lock().expect("lines").clone()).expect("utf-8");
        let line: serde_json::Value =
            serde_json::from_str(text.lines().next().expect("a line")).expect("json");
        let traceparent = trace::traceparent(&cx).expect("a span");
        let ids: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(line["message"], "attempt failed");
        assert_eq!(line["span"]["trace_id"], ids[1], "{line}");
        assert_eq!(line["span"]["span_id"], ids[2], "{line}");
    }
}
