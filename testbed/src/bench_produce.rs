//! `hookstream-testbed bench-produce`: the baseline for ingest's benchmark — a bare rdkafka
//! producer with ingest's settings, the same payloads, and the same number of sends in flight, each
//! awaiting its acknowledgement as ingest does.

use std::time::{Duration, Instant};

use clap::Args;
use futures::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use hookstream_core::kafka::{self, TopicSpec};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;

use crate::loadgen::padded_body;
use hookstream_core::tool::ToolConfig;

#[derive(Args)]
pub(crate) struct BenchProduceArgs {
    /// How long to produce.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Sends awaiting acknowledgement at once (match loadgen's --connections).
    #[arg(long, default_value_t = 32)]
    in_flight: usize,
    /// Approximate message size in bytes (the same body loadgen sends).
    #[arg(long, default_value_t = 1024)]
    payload_bytes: usize,
    /// Distinct keys (accounts).
    #[arg(long, default_value_t = 100)]
    keys: usize,
}

pub(crate) async fn run(config: &ToolConfig, args: BenchProduceArgs) -> anyhow::Result<()> {
    kafka::wait_for_cluster(&config.kafka).await?;
    let topic = format!("{}bench.produce", config.topics.prefix);
    let admin = kafka::admin(&config.kafka, "hookstream-bench")?;
    let spec = TopicSpec {
        name: topic.clone(),
        partitions: config.topics.partitions,
        replication_factor: config.topics.replication_factor,
        configs: vec![],
    };
    kafka::create_topics(&admin, &[spec]).await?;
    let producer = kafka::producer(&config.kafka, "hookstream-bench")?;
    let payload = padded_body(args.payload_bytes);
    let keys: Vec<String> = (0..args.keys.max(1)).map(|i| format!("account-{i:05}")).collect();
    let mut histogram = Histogram::<u64>::new(3)?;
    let mut pending = FuturesUnordered::new();
    let started = Instant::now();
    let deadline = started + args.duration;
    let (mut sent, mut acked, mut failed) = (0u64, 0u64, 0u64);
    loop {
        while pending.len() < args.in_flight && Instant::now() < deadline {
            let key = &keys[(sent % keys.len() as u64) as usize];
            let record = FutureRecord::to(&topic).key(key).payload(&payload);
            let at = Instant::now();
            let send = producer.send(record, Timeout::After(config.kafka.produce_timeout));
            pending.push(async move { (send.await, at.elapsed()) });
            sent += 1;
        }
        match pending.next().await {
            Some((Ok(_), latency)) => {
                acked += 1;
                histogram.record(latency.as_micros().max(1) as u64)?;
            }
            Some((Err(_), _)) => failed += 1,
            None => break,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "bare producer: {acked} acked, {failed} failed in {seconds:.1}s: {:.0} msgs/s; ack latency p50 {:.2} ms p99 {:.2} ms",
        acked as f64 / seconds,
        ms(0.5),
        ms(0.99)
    );
    Ok(())
}
