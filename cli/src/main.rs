//! `hookstream`: the operators' command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hookstream_core::tool;

mod accounts;
mod audit;
mod dlq;
mod events;
mod lag;
mod migrate;
mod replay;
mod topics;

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
    /// Act on one event's stored data.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Consumer lag per group, topic and partition, in messages and seconds.
    Lag(lag::LagArgs),
    /// Re-deliver the events of a time range (by record timestamp).
    Replay(replay::ReplayArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    tool::main(
        "hookstream",
        |cli: &Cli| cli.config.clone(),
        |cli, config| async move {
            match cli.command {
                Command::Migrate => migrate::run(&config).await,
                Command::Topics(cmd) => topics::run(&config, cmd).await,
                Command::Accounts(cmd) => accounts::run_accounts(&config, cmd).await,
                Command::Keys(cmd) => accounts::run_keys(&config, cmd).await,
                Command::Audit(args) => audit::run(&config, args).await,
                Command::Dlq(cmd) => dlq::run(&config, cmd).await,
                Command::Events(cmd) => events::run(&config, cmd).await,
                Command::Lag(args) => lag::run(&config, args).await,
                Command::Replay(args) => replay::run(&config, args).await,
            }
        },
    )
    .await
}
