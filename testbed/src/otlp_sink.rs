//! `otlp-sink`: receives OTLP/HTTP trace exports (what a collector would) until SIGTERM or
//! Ctrl-C, then prints how many spans and traces arrived, as JSON. The ingest benchmark points
//! `OTEL_EXPORTER_OTLP_ENDPOINT` at it to measure what exporting costs.

use std::collections::HashSet;
use std::net::SocketAddr;

use clap::Args;
use hookstream_testkit::OtlpReceiver;

/// `otlp-sink` arguments.
#[derive(Args)]
pub(crate) struct OtlpSinkArgs {
    /// Where to listen (`POST /v1/traces`).
    #[arg(long, default_value = "127.0.0.1:4318")]
    listen: SocketAddr,
}

/// Runs the sink until a signal.
pub(crate) async fn run(args: OtlpSinkArgs) -> anyhow::Result<()> {
    let receiver = OtlpReceiver::start_on(args.listen).await?;
    eprintln!("otlp-sink listening on {}", receiver.endpoint);
    hookstream_core::shutdown::on_signal().cancelled().await;
    let spans = receiver.spans();
    let traces: HashSet<&str> = spans.iter().map(|s| s.trace_id.as_str()).collect();
    println!("{}", serde_json::json!({"spans": spans.len(), "traces": traces.len()}));
    Ok(())
}
