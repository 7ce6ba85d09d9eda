//! `hookstream`: the operators' command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hookstream_core::config::{self, ConfigError};

mod accounts;
mod audit;
mod bench_dispatch;
mod bench_produce;
mod bench_retry;
mod config_file;
mod dlq;
mod lag;
mod loadgen;
mod migrate;
mod proc_stats;
mod reconcile;
mod replay;
mod seed;
mod sink;
mod topics;

use config_file::CliConfig;

/// Operate a hookstream installation: schema, topics, accounts, replay, DLQ, lag.
#[derive(Parser)]
#[command(name = "hookstream", version, about)]
struct Cli {
    /// TOML configuration file (environment: HOOKSTREAM_CONFIG); `HOOKSTREAM_*` variables
    /// override it.
    #[arg(long, global = true, env = "HOOKSTREAM_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending database migrations (a no-op when there are none).
    Migrate,
    /// Manage the pipeline's Kafka topics.
    #[command(subcommand)]
    Topics(topics::TopicsCommand),
    /// Manage accounts.
    #[command(subcommand)]
    Accounts(accounts::AccountsCommand),
    /// Issue and revoke API keys.
    #[command(subcommand)]
    Keys(accounts::KeysCommand),
    /// Read the audit log.
    Audit(audit::AuditArgs),
    /// Inspect the dead-letter queue and redrive entries.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Consumer lag per group, topic and partition, in messages and seconds.
    Lag(lag::LagArgs),
    /// Re-deliver the events of a time range (by record timestamp).
    Replay(replay::ReplayArgs),
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
}

/// Exit code for bad input (also clap's).
const EXIT_USAGE: u8 = 2;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // One line naming what is wrong, exit code 2 (clap adds usage and hints).
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("hookstream: {}", first.trim_start_matches("error: "));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let config = match config::load::<CliConfig>(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hookstream: {e}");
            return ExitCode::from(match e {
                ConfigError::MissingFile(_)
                | ConfigError::Parse(_)
                | ConfigError::Invalid { .. } => EXIT_USAGE,
            });
        }
    };
    let result = match cli.command {
        Command::Migrate => migrate::run(&config).await,
        Command::Topics(cmd) => topics::run(&config, cmd).await,
        Command::Accounts(cmd) => accounts::run_accounts(&config, cmd).await,
        Command::Keys(cmd) => accounts::run_keys(&config, cmd).await,
        Command::Audit(args) => audit::run(&config, args).await,
        Command::Dlq(cmd) => dlq::run(&config, cmd).await,
        Command::Lag(args) => lag::run(&config, args).await,
        Command::Replay(args) => replay::run(&config, args).await,
        Command::Loadgen(args) => loadgen::run(args).await,
        Command::Sink(args) => sink::run(&config, args).await,
        Command::Seed(args) => seed::run(&config, args).await,
        Command::Reconcile(args) => reconcile::run(&config, args).await,
        Command::BenchProduce(args) => bench_produce::run(&config, args).await,
        Command::BenchDispatch(args) => bench_dispatch::run(&config, args).await,
        Command::BenchRetry(args) => bench_retry::run(&config, args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookstream: {e:#}");
            if e.is::<UsageError>() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The operator named in the audit log: `operator:$USER`.
pub(crate) fn operator() -> String {
    format!("operator:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
}

/// Bad input that clap cannot see (such as `--to` before `--from`): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub(crate) String);
