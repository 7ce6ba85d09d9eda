//! `hookstream lag`: per consumer group, topic and partition: committed offset, high
//! watermark, lag in messages and in seconds (age of the oldest unconsumed message), plus
//! totals — `kafka-consumer-groups --describe` with the time column it lacks.

use std::time::Duration;

use chrono::Utc;
use clap::Args;
use comfy_table::{presets, Table};
use hookstream_core::kafka;
use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;

use hookstream_core::tool::ToolConfig;

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Args)]
pub(crate) struct LagArgs {
    /// Only this consumer group (default: every group the broker lists).
    #[arg(long)]
    group: Vec<String>,
    /// Only topics starting with this (default: the configured prefix).
    #[arg(long)]
    topic_prefix: Option<String>,
    /// JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// One partition of one group.
#[derive(Debug, Serialize)]
pub(crate) struct PartitionLag {
    group: String,
    topic: String,
    partition: i32,
    committed: i64,
    high_watermark: i64,
    lag_messages: i64,
    lag_seconds: f64,
}

/// A group's totals.
#[derive(Debug, Serialize)]
pub(crate) struct GroupLag {
    group: String,
    lag_messages: i64,
    /// The oldest unconsumed message over all its partitions.
    lag_seconds: f64,
    partitions: Vec<PartitionLag>,
}

pub(crate) async fn run(config: &ToolConfig, args: LagArgs) -> anyhow::Result<()> {
    let kafka_config = config.kafka.clone();
    let prefix = args.topic_prefix.clone().unwrap_or_else(|| config.topics.prefix.clone());
    let groups = args.group.clone();
    let report =
        tokio::task::spawn_blocking(move || measure(&kafka_config, &prefix, groups)).await??;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(presets::NOTHING).set_header([
        "GROUP",
        "TOPIC",
        "PARTITION",
        "COMMITTED",
        "HIGH WATERMARK",
        "LAG",
        "LAG SECONDS",
    ]);
    for g in &report {
        for p in &g.partitions {
            table.add_row([
                p.group.clone(),
                p.topic.clone(),
                p.partition.to_string(),
                p.committed.to_string(),
                p.high_watermark.to_string(),
                p.lag_messages.to_string(),
                format!("{:.1}", p.lag_seconds),
            ]);
        }
        table.add_row([
            g.group.clone(),
            "TOTAL".into(),
            String::new(),
            String::new(),
            String::new(),
            g.lag_messages.to_string(),
            format!("{:.1}", g.lag_seconds),
        ]);
    }
    println!("{table}");
    Ok(())
}

fn measure(
    cfg: &hookstream_core::config::KafkaConfig,
    prefix: &str,
    groups: Vec<String>,
) -> anyhow::Result<Vec<GroupLag>> {
    let probe: BaseConsumer = kafka::consumer_config(cfg, "hookstream-lag", "hookstream-lag-probe")
        .create_with_context(DefaultConsumerContext)?;
    let groups = if groups.is_empty() {
        let list = probe.fetch_group_list(None, TIMEOUT)?;
        let mut names: Vec<String> = list.groups().iter().map(|g| g.name().to_owned()).collect();
        names.sort();
        names
    } else {
        groups
    };
    let metadata = probe.fetch_metadata(None, TIMEOUT)?;
    let mut all = TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| t.name().starts_with(prefix)) {
        for p in t.partitions() {
            all.add_partition(t.name(), p.id());
        }
    }
    let mut report = Vec::new();
    for group in groups {
        let member: BaseConsumer = kafka::consumer_config(cfg, "hookstream-lag", &group)
            .create_with_context(DefaultConsumerContext)?;
        let committed = member.committed_offsets(all.clone(), TIMEOUT)?;
        let mut partitions = Vec::new();
        for e in committed.elements() {
            let Offset::Offset(offset) = e.offset() else { continue };
            let (_, high) = probe.fetch_watermarks(e.topic(), e.partition(), TIMEOUT)?;
            let lag = (high - offset).max(0);
            let lag_seconds =
                if lag == 0 { 0.0 } else { age_of(&probe, e.topic(), e.partition(), offset)? };
            partitions.push(PartitionLag {
                group: group.clone(),
                topic: e.topic().to_owned(),
                partition: e.partition(),
                committed: offset,
                high_watermark: high,
                lag_messages: lag,
                lag_seconds,
            });
        }
        if partitions.is_empty() {
            continue; // a group with no commits on these topics
        }
        report.push(GroupLag {
            group,
            lag_messages: partitions.iter().map(|p| p.lag_messages).sum(),
            lag_seconds: partitions.iter().map(|p| p.lag_seconds).fold(0.0, f64::max),
            partitions,
        });
    }
    Ok(report)
}

/// Seconds since the message at `offset` was written (the oldest one not consumed).
fn age_of(probe: &BaseConsumer, topic: &str, partition: i32, offset: i64) -> anyhow::Result<f64> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    probe.assign(&tpl)?;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while std::time::Instant::now() < deadline {
        match probe.poll(Duration::from_millis(200)) {
            Some(Ok(m)) if m.topic() == topic && m.partition() == partition => {
                let written =
                    m.timestamp().to_millis().unwrap_or_else(|| Utc::now().timestamp_millis());
                return Ok(((Utc::now().timestamp_millis() - written).max(0)) as f64 / 1000.0);
            }
            Some(Err(e)) => return Err(e.into()),
            _ => {}
        }
    }
    anyhow::bail!("could not read {topic}/{partition} at offset {offset} within {TIMEOUT:?}")
}
