//! `hookstream topics create|list`.

use clap::Subcommand;
use hookstream_core::kafka::{self, topic_specs, TopicCreation};

use hookstream_core::tool::ToolConfig;

#[derive(Subcommand)]
pub(crate) enum TopicsCommand {
    /// Create the event lanes, the retry tiers of the configured schedule and the DLQ
    /// (existing topics are left as they are).
    Create,
    /// Print the topic names of this configuration.
    List,
}

pub(crate) async fn run(config: &ToolConfig, cmd: TopicsCommand) -> anyhow::Result<()> {
    let specs = topic_specs(&config.topics);
    match cmd {
        TopicsCommand::List => {
            for s in &specs {
                println!("{}", s.name);
            }
        }
        TopicsCommand::Create => {
            kafka::wait_for_cluster(&config.kafka).await?;
            let admin = kafka::admin(&config.kafka, "hookstream-cli")?;
            for (topic, outcome) in kafka::create_topics(&admin, &specs).await? {
                let what = match outcome {
                    TopicCreation::Created => "created",
                    TopicCreation::Existed => "exists ",
                };
                println!("{what} {topic}");
            }
        }
    }
    Ok(())
}
