//! `hookstream-testbed seed`: accounts for a load or fault run, each with an API key and one
//! endpoint (or `--endpoints`) subscribed to everything, pointing at a sink. Writes the keys to a
//! file (one per line, in account order) for `hookstream-testbed loadgen --keys-file`, and prints
//! one line per endpoint: account id, endpoint id, URL.

use std::path::PathBuf;

use clap::Args;
use hookstream_core::db::endpoint_rules::EndpointRules;
use hookstream_core::db::{accounts, api_keys, endpoints};
use hookstream_core::schema::Schemas;
use hookstream_core::tier::{RateLimit, Tier};
use hookstream_core::AccountId;
use sqlx::PgPool;
use tokio::io::AsyncWriteExt;

use hookstream_core::tool::ToolConfig;
use hookstream_core::tool::UsageError;

#[derive(Args)]
pub(crate) struct SeedArgs {
    /// Accounts to create.
    #[arg(long, default_value_t = 10)]
    accounts: usize,
    /// Endpoint URL of each account; `{n}` becomes the account's number (0-based), `{e}` the
    /// endpoint's within its account.
    #[arg(long, default_value = "http://127.0.0.1:9000/a/{n}")]
    endpoint_url: String,
    /// Endpoints of each account (with several, put `{e}` in `--endpoint-url`).
    #[arg(long, default_value_t = 1)]
    endpoints: usize,
    /// Intake and delivery limit of every account, events/s (default: unlimited in effect).
    #[arg(long, default_value_t = 1_000_000)]
    rate: u32,
    /// Delivery limit of the first account only, deliveries/s (a rate-limited hot account).
    #[arg(long)]
    first_delivery_rate: Option<u32>,
    /// Where to write the API keys, one per line.
    #[arg(long)]
    keys_out: PathBuf,
    /// Account name prefix.
    #[arg(long, default_value = "seed")]
    name: String,
}

pub(crate) async fn run(config: &ToolConfig, args: SeedArgs) -> anyhow::Result<()> {
    if args.accounts == 0 || args.endpoints == 0 {
        return Err(UsageError("--accounts and --endpoints must be at least 1".into()).into());
    }
    if args.endpoints > 1 && !args.endpoint_url.contains("{e}") {
        return Err(UsageError("with --endpoints above 1, --endpoint-url needs {e}".into()).into());
    }
    if args.rate == 0 || args.first_delivery_rate == Some(0) {
        return Err(UsageError("rates must be at least 1/s".into()).into());
    }
    let pool = hookstream_core::db::connect(&config.database).await?;
    let actor = hookstream_core::tool::operator();
    let mut keys = String::new();
    for n in 0..args.accounts {
        let account =
            accounts::create(&pool, &format!("{}-{n}", args.name), Tier::Xlarge, &actor).await?;
        let limit = RateLimit { per_second: args.rate, burst: args.rate };
        let delivery = match args.first_delivery_rate {
            Some(rate) if n == 0 => RateLimit { per_second: rate, burst: rate },
            _ => limit,
        };
        let patch = accounts::AccountPatch {
            ingest_limit: Some(Some(limit)),
            delivery_limit: Some(Some(delivery)),
            ..Default::default()
        };
        accounts::update(&pool, account.id, &patch, &actor).await?;
        for e in 0..args.endpoints {
            let new = endpoints::NewEndpoint {
                url: args
                    .endpoint_url
                    .replace("{n}", &n.to_string())
                    .replace("{e}", &e.to_string()),
                description: format!("{} sink", args.name),
                event_types: vec!["*".into()],
                rate_limit: None,
            };
            let endpoint = create_endpoint(&pool, account.id, new.clone(), &actor).await?;
            println!("{}\t{}\t{}", account.id, endpoint.id, new.url);
        }
        let (_, key) = api_keys::issue(&pool, account.id, &args.name, &actor).await?;
        keys.push_str(&key.key);
        keys.push('\n');
    }
    let mut file = tokio::fs::File::create(&args.keys_out).await?;
    file.write_all(keys.as_bytes()).await?;
    file.flush().await?;
    eprintln!("{} accounts; keys in {}", args.accounts, args.keys_out.display());
    Ok(())
}

/// Creates an endpoint through the installation's endpoint rules, with http:// and loopback
/// targets allowed (the testbed's sinks listen on loopback).
pub(crate) async fn create_endpoint(
    pool: &PgPool,
    account: AccountId,
    new: endpoints::NewEndpoint,
    actor: &str,
) -> anyhow::Result<endpoints::Endpoint> {
    let rules = EndpointRules::new(true, true, &Schemas::load()?);
    let new = rules.check_new(new).await?;
    Ok(endpoints::create(pool, account, &new, actor).await?.0)
}
