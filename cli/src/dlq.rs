//! `hookstream dlq list|show|redrive`: inspect the dead-letter queue and put entries back on the
//! retry schedule.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use comfy_table::{presets, Table};
use hookstream_core::dlq::{self, Filter, RedriveOptions};
use hookstream_core::{AccountId, DeadLetterId, EndpointId};
use indicatif::{ProgressBar, ProgressStyle};

use hookstream_core::tool::ToolConfig;
use hookstream_core::tool::UsageError;

#[derive(Subcommand)]
pub(crate) enum DlqCommand {
    /// List entries, oldest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Also entries already redriven.
        #[arg(long)]
        include_redriven: bool,
        /// Entries to print, at most.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Continue after this entry id (the last id of the previous page).
        #[arg(long)]
        after: Option<DeadLetterId>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print one entry with its whole task, as JSON.
    Show {
        /// Entry id (from `dlq list`).
        id: DeadLetterId,
    },
    /// Put matching entries back on the retry schedule (first tier); each is marked redriven.
    Redrive {
        #[command(flatten)]
        filter: FilterArgs,
        /// Count what would be redriven and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Entries per second, at most.
        #[arg(long, default_value = "500")]
        rate: NonZeroU32,
    },
}

#[derive(Args)]
pub(crate) struct FilterArgs {
    /// Only this account.
    #[arg(long)]
    account: Option<AccountId>,
    /// Only this endpoint.
    #[arg(long)]
    endpoint: Option<EndpointId>,
    /// Only this event type, or a `prefix.*` wildcard.
    #[arg(long)]
    event_type: Option<String>,
    /// Dead-lettered at or after (RFC 3339).
    #[arg(long)]
    from: Option<DateTime<Utc>>,
    /// Dead-lettered before (RFC 3339).
    #[arg(long)]
    to: Option<DateTime<Utc>>,
    /// Only this error class.
    #[arg(long, value_enum)]
    error_class: Option<dlq::ErrorClass>,
}

impl FilterArgs {
    fn filter(self, include_redriven: bool) -> Result<Filter, UsageError> {
        if let (Some(from), Some(to)) = (self.from, self.to) {
            if to <= from {
                return Err(UsageError(format!("--to ({to}) must be after --from ({from})")));
            }
        }
        Ok(Filter {
            account: self.account,
            endpoint: self.endpoint,
            event_type: self.event_type,
            from: self.from,
            to: self.to,
            error_class: self.error_class,
            include_redriven,
        })
    }
}

pub(crate) async fn run(config: &ToolConfig, cmd: DlqCommand) -> anyhow::Result<()> {
    let pool = hookstream_core::db::connect(&config.database).await?;
    match cmd {
        DlqCommand::List { filter, include_redriven, limit, after, json } => {
            if !(1..=10_000).contains(&limit) {
                return Err(UsageError("--limit must be between 1 and 10000".into()).into());
            }
            let entries = dlq::list(&pool, &filter.filter(include_redriven)?, after, limit).await?;
            if json {
                for e in &entries {
                    println!("{}", serde_json::to_string(e)?);
                }
                return Ok(());
            }
            let mut table = Table::new();
            table.load_preset(presets::NOTHING).set_header([
                "ID",
                "DEAD AT",
                "ACCOUNT",
                "ENDPOINT",
                "EVENT",
                "TYPE",
                "ATTEMPTS",
                "CLASS",
                "LAST ERROR",
                "REDRIVEN",
            ]);
            for e in &entries {
                table.add_row([
                    e.id.to_string(),
                    e.dead_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    e.account_id.to_string(),
                    e.endpoint_id.to_string(),
                    e.event_id.clone(),
                    e.event_type.clone(),
                    e.attempts.to_string(),
                    e.error_class.clone(),
                    e.last_error.clone().unwrap_or_default().chars().take(60).collect(),
                    e.redriven_at
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_default(),
                ]);
            }
            println!("{table}");
            eprintln!("{} entries", entries.len());
        }
        DlqCommand::Show { id } => match dlq::get(&pool, None, id).await? {
            Some(d) => println!("{}", serde_json::to_string_pretty(&d)?),
            None => anyhow::bail!("no DLQ entry {id}"),
        },
        DlqCommand::Redrive { filter, dry_run, rate } => {
            let filter = filter.filter(false)?;
            let (handoff, _traces) = config.handoff("hookstream-cli")?;
            let bar = ProgressBar::new(0).with_style(
                ProgressStyle::with_template(
                    "{spinner} redriving [{bar:40}] {pos}/{len} {per_sec} eta {eta}",
                )?
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            let started = Instant::now();
            let actor = hookstream_core::tool::operator();
            let pace = dlq::pace(rate);
            let options = RedriveOptions {
                handoff: (!dry_run).then_some(&handoff),
                actor: &actor,
                pace: Some(&pace),
                limit: None,
                stop: None,
                page: None,
            };
            let result = dlq::redrive(&pool, &filter, options, |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })
            .await;
            bar.finish_and_clear();
            let report = result?;
            let seconds = started.elapsed().as_secs_f64();
            if dry_run {
                println!("dry run: {} entries would be redriven; nothing changed", report.matched);
            } else {
                println!(
                    "redrove {} of {} entries in {seconds:.1} s ({:.0}/s)",
                    report.redriven,
                    report.matched,
                    report.redriven as f64 / seconds.max(1e-9)
                );
            }
        }
    }
    Ok(())
}
