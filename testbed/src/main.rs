//! `hookstream-testbed`: the tools of load, fault and benchmark runs. Not an operators' tool
//! and not in the image: `sink` reads every endpoint's signing secret.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hookstream_core::tool;

mod bench_dispatch;
mod bench_produce;
mod bench_retry;
mod loadgen;
mod otlp_sink;
mod plot;
mod proc_stats;
mod reconcile;
mod seed;
mod sink;

/// Load, fault and benchmark runs against a hookstream installation.
#[derive(Parser)]
#[command(name = "hookstream-testbed", version, about)]
struct Testbed {
    /// TOML configuration file (environment: HOOKSTREAM_CONFIG); `HOOKSTREAM_*` variables
    /// override it.
    #[arg(long, global = true, env = "HOOKSTREAM_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send events to ingest and report throughput and latency.
    Loadgen(loadgen::LoadgenArgs),
    /// A webhook receiver for load and fault runs: verifies signatures, records deliveries,
    /// injects failures.
    Sink(sink::SinkArgs),
    /// Create accounts with a key and one endpoint each, for load and fault runs.
    Seed(seed::SeedArgs),
    /// Account for every accepted event after a run: delivered, in the DLQ, or lost.
    Reconcile(reconcile::ReconcileArgs),
    /// Baseline for the ingest benchmark: a bare producer with the same payloads.
    BenchProduce(bench_produce::BenchProduceArgs),
    /// Dispatcher benchmark: bare HTTP loop vs a dispatcher draining pre-produced events.
    BenchDispatch(bench_dispatch::BenchDispatchArgs),
    /// Retrier benchmark: lateness of tasks coming due at a constant rate, and the DLQ
    /// redrive rate.
    BenchRetry(bench_retry::BenchRetryArgs),
    /// An OTLP/HTTP trace receiver that counts what it gets, for the cost of tracing.
    OtlpSink(otlp_sink::OtlpSinkArgs),
    /// Draw columns of a TSV as a PNG of stacked panels (the soak's curves).
    Plot(plot::PlotArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    tool::main(
        "hookstream-testbed",
        |t: &Testbed| t.config.clone(),
        |t, config| async move {
            match t.command {
                Command::Loadgen(args) => loadgen::run(args).await,
                Command::Sink(args) => sink::run(&config, args).await,
                Command::Seed(args) => seed::run(&config, args).await,
                Command::Reconcile(args) => reconcile::run(&config, args).await,
                Command::BenchProduce(args) => bench_produce::run(&config, args).await,
                Command::BenchDispatch(args) => bench_dispatch::run(&config, args).await,
                Command::BenchRetry(args) => bench_retry::run(&config, args).await,
                Command::OtlpSink(args) => otlp_sink::run(args).await,
                Command::Plot(args) => plot::run(args).await,
            }
        },
    )
    .await
}
