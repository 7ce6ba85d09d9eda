//! `hookstream audit`: the audit log, oldest first.

use clap::Args;
use comfy_table::{presets, Table};
use hookstream_core::db::audit;
use hookstream_core::AccountId;

use hookstream_core::tool::ToolConfig;

#[derive(Args)]
pub(crate) struct AuditArgs {
    /// Only this account.
    #[arg(long)]
    account: Option<AccountId>,
    /// Entries to print, at most.
    #[arg(long, default_value_t = 100)]
    limit: i64,
    /// Continue after this entry id.
    #[arg(long)]
    after: Option<i64>,
    /// One JSON object per line (with before/after) instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(config: &ToolConfig, args: AuditArgs) -> anyhow::Result<()> {
    if !(1..=10_000).contains(&args.limit) {
        return Err(hookstream_core::tool::UsageError(
            "--limit must be between 1 and 10000".into(),
        )
        .into());
    }
    let pool = hookstream_core::db::connect(&config.database).await?;
    let entries = audit::list(&pool, args.account, args.after, args.limit).await?;
    if args.json {
        for e in &entries {
            println!("{}", serde_json::to_string(e)?);
        }
        return Ok(());
    }
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_header(["ID", "AT", "ACCOUNT", "ACTOR", "ACTION", "TARGET"]);
    for e in &entries {
        table.add_row([
            e.id.to_string(),
            e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
            e.account_id.map(|a| a.to_string()).unwrap_or_default(),
            e.actor.clone(),
            e.action.clone(),
            format!("{} {}", e.target_type, e.target_id),
        ]);
    }
    println!("{table}");
    Ok(())
}
