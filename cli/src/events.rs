//! `hookstream events expunge`: an operator deletes what hookstream keeps of one event's
//! subscriber data (a data-subject request): the receivers' response bodies and the DLQ
//! entries. Audited as `operator:$USER`.

use clap::Subcommand;
use hookstream_core::db::deliveries;
use hookstream_core::tool::{operator, ToolConfig};
use hookstream_core::{AccountId, EventId};

#[derive(Subcommand)]
pub(crate) enum EventsCommand {
    /// Delete an event's stored response bodies and DLQ entries; prints what was removed as
    /// JSON. The delivery log's states stay.
    Expunge {
        /// The account the event belongs to.
        #[arg(long)]
        account: AccountId,
        /// The event id.
        event: EventId,
    },
}

pub(crate) async fn run(config: &ToolConfig, cmd: EventsCommand) -> anyhow::Result<()> {
    let pool = hookstream_core::db::connect(&config.database).await?;
    match cmd {
        EventsCommand::Expunge { account, event } => {
            let Some(removed) =
                deliveries::expunge(&pool, account, event.as_str(), &operator()).await?
            else {
                anyhow::bail!("account {account} has no event {event}");
            };
            let mut out = serde_json::to_value(removed)?;
            out["event_id"] = serde_json::Value::String(event.to_string());
            println!("{out}");
        }
    }
    Ok(())
}
