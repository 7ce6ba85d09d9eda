//! `hookstream accounts create|list|show|set-tier|set-limits` and `hookstream keys
//! issue|list|revoke`. Every change is audited as `operator:$USER`.

use clap::{Args, Subcommand};
use comfy_table::{presets, Table};
use hookstream_core::db::accounts::{self, AccountPatch};
use hookstream_core::db::api_keys;
use hookstream_core::tier::{RateLimit, Tier};
use hookstream_core::{AccountId, ApiKeyId};

use hookstream_core::tool::operator;
use hookstream_core::tool::ToolConfig;

#[derive(Subcommand)]
pub(crate) enum AccountsCommand {
    /// Create an account and print its id.
    Create(CreateAccount),
    /// List accounts, oldest first.
    List {
        /// Accounts to print, at most.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Continue after this account id.
        #[arg(long)]
        after: Option<AccountId>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print one account, its effective limits and its keys, as JSON.
    Show {
        /// The account.
        id: AccountId,
    },
    /// Change an account's tier (its default limits follow unless overridden).
    SetTier {
        /// The account.
        id: AccountId,
        /// small, medium, large or xlarge.
        #[arg(value_parser = parse_tier)]
        tier: Tier,
    },
    /// Override (or with `--default`, clear) an account's intake or delivery limit.
    SetLimit(SetLimit),
}

#[derive(Args)]
pub(crate) struct CreateAccount {
    /// Display name.
    #[arg(long)]
    name: String,
    /// Tier: small, medium, large or xlarge (seed 000's subscriber-count tiers).
    #[arg(long, default_value = "small", value_parser = parse_tier)]
    tier: Tier,
    /// Intake limit in events/s (default: the tier's).
    #[arg(long)]
    ingest_rate: Option<u32>,
    /// Intake burst (default: the rate).
    #[arg(long)]
    ingest_burst: Option<u32>,
}

#[derive(Args)]
pub(crate) struct SetLimit {
    /// The account.
    id: AccountId,
    /// Which limit: ingest or delivery.
    #[arg(value_parser = ["ingest", "delivery"])]
    which: String,
    /// Per second.
    #[arg(long, required_unless_present = "default", value_parser = clap::value_parser!(u32).range(1..))]
    rate: Option<u32>,
    /// Burst (default: the rate).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    burst: Option<u32>,
    /// Back to the tier's default.
    #[arg(long, conflicts_with_all = ["rate", "burst"])]
    default: bool,
}

#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// Issue a key for an account; the key is printed once and stored only as a hash.
    Issue {
        /// The account.
        #[arg(long)]
        account: AccountId,
        /// A label for the key.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List an account's keys (prefixes only).
    List {
        /// The account.
        #[arg(long)]
        account: AccountId,
    },
    /// Revoke a key; ingest refuses it within its key cache TTL.
    Revoke {
        /// The account owning the key.
        #[arg(long)]
        account: AccountId,
        /// The key's id (printed at issue).
        #[arg(long)]
        key_id: ApiKeyId,
    },
}

fn parse_tier(s: &str) -> Result<Tier, String> {
    Tier::parse(s)
        .ok_or_else(|| format!("unknown tier {s:?}: expected small, medium, large or xlarge"))
}

fn limit(rate: Option<u32>, burst: Option<u32>) -> Option<RateLimit> {
    rate.map(|r| RateLimit { per_second: r, burst: burst.unwrap_or(r) })
}

pub(crate) async fn run_accounts(config: &ToolConfig, cmd: AccountsCommand) -> anyhow::Result<()> {
    let pool = hookstream_core::db::connect(&config.database).await?;
    let actor = operator();
    match cmd {
        AccountsCommand::Create(c) => {
            let account = accounts::create(&pool, &c.name, c.tier, &actor).await?;
            if let Some(l) = limit(c.ingest_rate, c.ingest_burst) {
                let patch = AccountPatch { ingest_limit: Some(Some(l)), ..AccountPatch::default() };
                accounts::update(&pool, account.id, &patch, &actor).await?;
            }
            println!("{}", account.id);
        }
        AccountsCommand::List { limit, after, json } => {
            if !(1..=10_000).contains(&limit) {
                return Err(hookstream_core::tool::UsageError(
                    "--limit must be between 1 and 10000".into(),
                )
                .into());
            }
            let list = accounts::list(&pool, after, limit).await?;
            if json {
                for a in &list {
                    println!("{}", serde_json::to_string(a)?);
                }
                return Ok(());
            }
            let mut table = Table::new();
            table.load_preset(presets::NOTHING).set_header(["ID", "NAME", "TIER", "CREATED"]);
            for a in &list {
                table.add_row([
                    a.id.to_string(),
                    a.name.clone(),
                    a.tier.as_str().to_owned(),
                    a.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                ]);
            }
            println!("{table}");
        }
        AccountsCommand::Show { id } => {
            let Some(a) = accounts::get(&pool, id).await? else {
                anyhow::bail!("no account {id}");
            };
            let keys = api_keys::list(&pool, id).await?;
            let shown = serde_json::json!({
                "account": a,
                "effective_ingest_limit": effective(a.ingest_rate_per_sec, a.ingest_burst, a.tier.default_ingest_limit()),
                "effective_delivery_limit": effective(a.delivery_rate_per_sec, a.delivery_burst, a.tier.default_delivery_limit()),
                "keys": keys,
            });
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        AccountsCommand::SetTier { id, tier } => {
            let patch = AccountPatch { tier: Some(tier), ..AccountPatch::default() };
            match accounts::update(&pool, id, &patch, &actor).await? {
                Some(a) => println!("{} is now {}", a.id, a.tier.as_str()),
                None => anyhow::bail!("no account {id}"),
            }
        }
        AccountsCommand::SetLimit(s) => {
            let value = if s.default { None } else { limit(s.rate, s.burst) };
            let patch = match s.which.as_str() {
                "ingest" => AccountPatch { ingest_limit: Some(value), ..AccountPatch::default() },
                _ => AccountPatch { delivery_limit: Some(value), ..AccountPatch::default() },
            };
            if accounts::update(&pool, s.id, &patch, &actor).await?.is_none() {
                anyhow::bail!("no account {}", s.id);
            }
            println!("{} {} limit set", s.id, s.which);
        }
    }
    Ok(())
}

/// An override, or the tier default.
fn effective(rate: Option<i32>, burst: Option<i32>, default: RateLimit) -> RateLimit {
    match rate {
        Some(r) => {
            RateLimit { per_second: r.max(1) as u32, burst: burst.unwrap_or(r).max(1) as u32 }
        }
        None => default,
    }
}

pub(crate) async fn run_keys(config: &ToolConfig, cmd: KeysCommand) -> anyhow::Result<()> {
    let pool = hookstream_core::db::connect(&config.database).await?;
    let actor = operator();
    match cmd {
        KeysCommand::Issue { account, name } => {
            if accounts::get(&pool, account).await?.is_none() {
                anyhow::bail!("no account {account}");
            }
            let (id, key) = api_keys::issue(&pool, account, &name, &actor).await?;
            eprintln!("key id {id}; the key below is shown only now:");
            println!("{}", key.key);
        }
        KeysCommand::List { account } => {
            let mut table = Table::new();
            table
                .load_preset(presets::NOTHING)
                .set_header(["ID", "NAME", "PREFIX", "CREATED", "REVOKED"]);
            for k in api_keys::list(&pool, account).await? {
                table.add_row([
                    k.id.to_string(),
                    k.name,
                    k.prefix,
                    k.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    k.revoked_at
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_default(),
                ]);
            }
            println!("{table}");
        }
        KeysCommand::Revoke { account, key_id } => {
            if !api_keys::revoke(&pool, account, key_id, &actor).await? {
                anyhow::bail!("account {account} has no live key {key_id}");
            }
            println!("revoked {key_id}");
        }
    }
    Ok(())
}
