//! `hookstream accounts create` and `hookstream keys issue|revoke`.

use clap::{Args, Subcommand};
use hookstream_core::db::{accounts, api_keys};
use hookstream_core::tier::Tier;
use hookstream_core::{AccountId, ApiKeyId};

use crate::config_file::CliConfig;

#[derive(Subcommand)]
pub(crate) enum AccountsCommand {
    /// Create an account and print its id.
    Create(CreateAccount),
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
    /// Intake burst (default: the tier's, or the rate).
    #[arg(long)]
    ingest_burst: Option<u32>,
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

pub(crate) async fn run_accounts(config: &CliConfig, cmd: AccountsCommand) -> anyhow::Result<()> {
    let pool = hookstream_core::db::connect(&config.database).await?;
    match cmd {
        AccountsCommand::Create(c) => {
            let account = accounts::create(&pool, &c.name, c.tier).await?;
            if c.ingest_rate.is_some() || c.ingest_burst.is_some() {
                let to_i32 = |v: Option<u32>| v.map(|v| i32::try_from(v).unwrap_or(i32::MAX));
                accounts::set_ingest_limit(
                    &pool,
                    account.id,
                    to_i32(c.ingest_rate),
                    to_i32(c.ingest_burst),
                )
                .await?;
            }
            println!("{}", account.id);
        }
    }
    Ok(())
}

pub(crate) async fn run_keys(config: &CliConfig, cmd: KeysCommand) -> anyhow::Result<()> {
    let pool = hookstream_core::db::connect(&config.database).await?;
    match cmd {
        KeysCommand::Issue { account, name } => {
            if accounts::get(&pool, account).await?.is_none() {
                anyhow::bail!("no account {account}");
            }
            let (id, key) = api_keys::issue(&pool, account, &name).await?;
            eprintln!("key id {id}; the key below is shown only now:");
            println!("{}", key.key);
        }
        KeysCommand::Revoke { account, key_id } => {
            if !api_keys::revoke(&pool, account, key_id).await? {
                anyhow::bail!("account {account} has no live key {key_id}");
            }
            println!("revoked {key_id}");
        }
    }
    Ok(())
}
