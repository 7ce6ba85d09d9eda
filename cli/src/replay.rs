//! `hookstream replay`: re-delivers the events of a time range. Start offsets come from the
//! broker's timestamp index (`offsets_for_times`), but the range itself is decided by each
//! record's own timestamp: records before `--from` are skipped, and a partition ends at its
//! first record at or after `--to` (or at the high watermark taken at start). A timestamp
//! index that answers loosely (Kafka-compatible brokers differ; producers may set timestamps
//! out of order) can then only cost extra reading, never a wrong window. Matching events become delivery
//! tasks for their endpoints, due at once on the first retry tier, marked as replays (delivered
//! even if the log shows them delivered, flagged `replay` there). Receivers see the same
//! `webhook-id`. A window with no record in it is an error that says so.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Args;
use governor::{Quota, RateLimiter};
use hookstream_core::db::endpoints::{self, DeliveryEndpoint};
use hookstream_core::delivery::endpoints::matches;
use hookstream_core::envelope::{DeliveryTask, Origin};
use hookstream_core::trace::{self, KeyValue};
use hookstream_core::wire::{self, EnvelopeCodec, WireError};
use hookstream_core::{kafka, AccountId, EndpointId};
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::consumer::{Consumer, DefaultConsumerContext, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use hookstream_core::tool::ToolConfig;
use hookstream_core::tool::UsageError;

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Args)]
pub(crate) struct ReplayArgs {
    /// Topic to replay, with or without the configured prefix (`events.normal`).
    #[arg(long)]
    topic: String,
    /// Start of the range (RFC 3339), by record timestamp.
    #[arg(long)]
    from: DateTime<Utc>,
    /// End of the range, exclusive (RFC 3339; default: everything up to now).
    #[arg(long)]
    to: Option<DateTime<Utc>>,
    /// Only this account's events.
    #[arg(long)]
    account: Option<AccountId>,
    /// Only this event type, or a `prefix.*` wildcard.
    #[arg(long)]
    event_type: Option<String>,
    /// Only to this endpoint (default: every enabled endpoint subscribed to the event).
    #[arg(long)]
    endpoint: Option<EndpointId>,
    /// Tasks per second, at most.
    #[arg(long, default_value = "1000")]
    rate: NonZeroU32,
    /// Count what would be replayed and send nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Default, Debug)]
struct Progress {
    scanned: u64,
    matched: u64,
    tasks: u64,
    undecodable: u64,
}

pub(crate) async fn run(config: &ToolConfig, args: ReplayArgs) -> anyhow::Result<()> {
    if let Some(to) = args.to {
        if to <= args.from {
            return Err(
                UsageError(format!("--to ({to}) must be after --from ({})", args.from)).into()
            );
        }
    }
    let prefix = &config.topics.prefix;
    let topic = if args.topic.starts_with(prefix.as_str()) {
        args.topic.clone()
    } else {
        format!("{prefix}{}", args.topic)
    };
    let consumer: StreamConsumer = kafka::consumer_config(
        &config.kafka,
        "hookstream-replay",
        &format!("hookstream-replay-{}", std::process::id()),
    )
    .create_with_context(DefaultConsumerContext)?;
    let metadata = consumer.fetch_metadata(Some(&topic), TIMEOUT)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        return Err(UsageError(format!("unknown topic {topic}")).into());
    }

    // [start, end) per partition.
    let at = |time: DateTime<Utc>| -> anyhow::Result<HashMap<i32, Option<i64>>> {
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(&topic, *p, Offset::Offset(time.timestamp_millis()))?;
        }
        let found = consumer.offsets_for_times(tpl, TIMEOUT)?;
        Ok(found
            .elements()
            .iter()
            .map(|e| {
                (e.partition(), if let Offset::Offset(o) = e.offset() { Some(o) } else { None })
            })
            .collect())
    };
    let starts = at(args.from)?;
    let from_ms = args.from.timestamp_millis();
    let to_ms = args.to.map(|t| t.timestamp_millis());
    let mut ranges: HashMap<i32, (i64, i64)> = HashMap::new();
    for p in &partitions {
        let (low, high) = consumer.fetch_watermarks(&topic, *p, TIMEOUT)?;
        let start = starts.get(p).copied().flatten().unwrap_or(high).clamp(low, high);
        if start < high {
            ranges.insert(*p, (start, high));
        }
    }
    let total: u64 = ranges.values().map(|(s, e)| (e - s) as u64).sum();

    let pool = hookstream_core::db::connect(&config.database).await?;
    let mut by_account: HashMap<AccountId, Vec<DeliveryEndpoint>> = HashMap::new();
    for e in endpoints::load_enabled(&pool, Utc::now()).await? {
        by_account.entry(e.account_id).or_default().push(e);
    }
    let codec = EnvelopeCodec::new(config.kafka.schema_registry_url.as_ref())?;
    let (handoff, _traces) = config.handoff("hookstream-replay")?;
    handoff.warm_up().await;
    let limiter = RateLimiter::direct(Quota::per_second(args.rate));

    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:40}] {pos}/{len} read, eta {eta}")?
            .progress_chars("=> "),
    );
    let mut assignment = TopicPartitionList::new();
    for (p, (start, _)) in &ranges {
        assignment.add_partition_offset(&topic, *p, Offset::Offset(*start))?;
    }
    consumer.assign(&assignment)?;
    let mut position: HashMap<i32, i64> = ranges.iter().map(|(p, (s, _))| (*p, *s)).collect();
    let mut progress = Progress::default();
    let mut interrupted = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    while position.iter().any(|(p, o)| *o < ranges[p].1) {
        let m = tokio::select! {
            _ = &mut ctrl_c => { interrupted = true; break; }
            m = consumer.recv() => m?,
        };
        let (p, offset) = (m.partition(), m.offset());
        let Some(&(_, end)) = ranges.get(&p) else { continue };
        if offset >= end || position.get(&p).is_some_and(|&at| at >= end) {
            position.insert(p, end);
            continue;
        }
        let envelope = match codec.decode(m.payload()).await {
            Ok(e) => Some(e),
            // Avro that cannot be read now: stop rather than skip events of the window.
            Err(e @ (WireError::NoRegistry | WireError::Registry { .. })) => {
                anyhow::bail!("{topic}/{p}/{offset}: {e} (replay stopped there)")
            }
            Err(_) => None,
        };
        // The record's own time: its timestamp, else the event's received_at.
        let time = m
            .timestamp()
            .to_millis()
            .or_else(|| envelope.as_ref().map(|e| e.received_at.timestamp_millis()));
        if let (Some(t), Some(to)) = (time, to_ms) {
            if t >= to {
                // This partition's window is over: stop fetching it.
                position.insert(p, end);
                let mut done = TopicPartitionList::new();
                done.add_partition(&topic, p);
                let _ = consumer.pause(&done);
                continue;
            }
        }
        position.insert(p, offset + 1);
        bar.inc(1);
        if time.is_some_and(|t| t < from_ms) {
            continue;
        }
        progress.scanned += 1;
        let Some(envelope) = envelope else {
            progress.undecodable += 1;
            continue;
        };
        if args.account.is_some_and(|a| a != envelope.account_id)
            || args.event_type.as_deref().is_some_and(|t| !matches(t, &envelope.event_type))
        {
            continue;
        }
        progress.matched += 1;
        let targets: Vec<EndpointId> = by_account
            .get(&envelope.account_id)
            .into_iter()
            .flatten()
            .filter(|e| e.event_types.iter().any(|t| matches(t, &envelope.event_type)))
            .filter(|e| args.endpoint.is_none_or(|id| id == e.id))
            .map(|e| e.id)
            .collect();
        progress.tasks += targets.len() as u64;
        if args.dry_run || targets.is_empty() {
            bar.set_message(format!("{} events, {} tasks", progress.matched, progress.tasks));
            continue;
        }
        // A new trace per replayed event, linked to the one it travelled in.
        let original = wire::headers::context(&m);
        let cx = handoff.tracer().linked_root(
            "replay",
            &original,
            vec![KeyValue::new("hookstream.event.id", envelope.event_id.to_string())],
        );
        let origin = Origin { topic: topic.clone(), partition: p, offset };
        for endpoint_id in targets {
            limiter.until_ready().await;
            let task =
                DeliveryTask { replay: true, ..DeliveryTask::new(envelope.clone(), endpoint_id) };
            handoff.replay(&task, &origin, &cx).await?;
        }
        trace::end(&cx, None);
        bar.set_message(format!("{} events, {} tasks", progress.matched, progress.tasks));
    }
    bar.finish_and_clear();
    if progress.scanned == 0 && !interrupted {
        let window = match args.to {
            Some(to) => format!("[{}, {to})", args.from),
            None => format!("from {}", args.from),
        };
        anyhow::bail!(
            "nothing to replay: no record of {topic} has a timestamp {window} ({total} records after the broker's start offsets, {} partitions with any); check the window against the topic's retention and its newest records",
            ranges.len()
        );
    }
    let verb = if args.dry_run { "would replay" } else { "replayed" };
    println!(
        "{verb} {} events as {} delivery tasks ({} records in the window; {} undecodable skipped)",
        progress.matched, progress.tasks, progress.scanned, progress.undecodable
    );
    if progress.matched == 0 {
        println!("none of the window's records matched the filters (--account, --event-type)");
    }
    if interrupted {
        let mut at: Vec<(i32, i64)> = position.into_iter().collect();
        at.sort();
        let at: Vec<String> = at.iter().map(|(p, o)| format!("{p}@{o}")).collect();
        println!("interrupted: stopped at partition@offset {}", at.join(" "));
        anyhow::bail!("interrupted");
    }
    Ok(())
}
