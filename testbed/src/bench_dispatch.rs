//! `hookstream-testbed bench-dispatch`: the dispatcher benchmark, in one run. A fast local sink; a
//! bare reqwest loop at concurrency C against it (the baseline); then N pre-produced events
//! drained by a dispatcher process with the same C, timed at the sink; and the dispatcher's
//! peak RSS.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use clap::Args;
use futures::stream::{FuturesUnordered, StreamExt};
use hookstream_core::db::{accounts, endpoints};
use hookstream_core::envelope::{EventEnvelope, Priority};
use hookstream_core::kafka::{self, TopicSpec};
use hookstream_core::tier::{RateLimit, Tier};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use serde_json::json;

use crate::proc_stats::{hwm_kb, rss_kb};
use hookstream_core::tool::ToolConfig;

/// Endpoints per account in the benchmark.
const FAN_OUT: usize = 4;

#[derive(Args)]
pub(crate) struct BenchDispatchArgs {
    /// Path of the `hookstream-dispatcher` binary to measure.
    #[arg(long)]
    dispatcher_bin: PathBuf,
    /// Deliveries to drain (events × 4 endpoints each).
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Requests in flight (the dispatcher's `in_flight`, the loop's concurrency).
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// How long the bare loop runs.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    loop_duration: Duration,
}

pub(crate) async fn run(config: &ToolConfig, args: BenchDispatchArgs) -> anyhow::Result<()> {
    let hits = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&hits);
    let app = axum::Router::new().route(
        "/sink",
        post(move || {
            counter.fetch_add(1, Ordering::Relaxed);
            async { "" }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink = format!("http://{}/sink", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let body = serde_json::to_vec(
        &json!({"type": "subscriber.created", "data": {"subscriber": {"id": "s1", "email": "a@example.com"}}}),
    )?;
    let bare = bare_loop(&sink, &body, args.concurrency, args.loop_duration).await?;
    println!("bare reqwest loop: {bare:.0} requests/s at concurrency {}", args.concurrency);

    // A fresh prefix, so the dispatcher sees only this run's events.
    let prefix = format!("{}bench{}.", config.topics.prefix, std::process::id());
    let mut topics_cfg = config.topics.clone();
    topics_cfg.prefix = prefix.clone();
    let admin = kafka::admin(&config.kafka, "hookstream-bench")?;
    let specs: Vec<TopicSpec> = kafka::topic_specs(&topics_cfg);
    kafka::create_topics(&admin, &specs).await?;
    let pool = hookstream_core::db::connect(&config.database).await?;
    // Each endpoint is one ordered key, so concurrency comes from many endpoints: C endpoints
    // over C/4 accounts, every event fanned out to its account's 4.
    let unlimited = RateLimit { per_second: 1_000_000, burst: 1_000_000 };
    let mut account_ids = Vec::new();
    for _ in 0..(args.concurrency / FAN_OUT).max(1) {
        let account =
            accounts::create(&pool, "bench-dispatch", Tier::Xlarge, "operator:bench").await?;
        let patch =
            accounts::AccountPatch { delivery_limit: Some(Some(unlimited)), ..Default::default() };
        accounts::update(&pool, account.id, &patch, "operator:bench").await?;
        for i in 0..FAN_OUT {
            let new = endpoints::NewEndpoint {
                url: format!("{sink}?e={}", account_ids.len() * FAN_OUT + i),
                description: "bench".into(),
                event_types: vec!["*".into()],
                rate_limit: None,
            };
            crate::seed::create_endpoint(&pool, account.id, new, "operator:bench").await?;
        }
        account_ids.push(account.id);
    }
    let event_count = args.events / FAN_OUT;

    let producer = kafka::producer(&config.kafka, "hookstream-bench")?;
    let topic = topics_cfg.topics().events(Priority::Normal);
    let mut pending = FuturesUnordered::new();
    for i in 0..event_count {
        let account = account_ids[i % account_ids.len()];
        let data = json!({"subscriber": {"id": "s1", "email": "a@example.com"}});
        let envelope = EventEnvelope::new(account, "subscriber.created", data);
        let payload = serde_json::to_vec(&envelope)?;
        let key = envelope.key();
        let producer = producer.clone();
        let topic = topic.clone();
        pending.push(async move {
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&payload),
                    Timeout::After(Duration::from_secs(30)),
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        });
        if pending.len() >= 10_000 {
            if let Some(r) = pending.next().await {
                r?;
            }
        }
    }
    while let Some(r) = pending.next().await {
        r?;
    }
    let before = hits.load(Ordering::Relaxed);

    let mut child = std::process::Command::new(&args.dispatcher_bin)
        .env("HOOKSTREAM_TOPICS__PREFIX", &prefix)
        .env("HOOKSTREAM_DATABASE__URL", &config.database.url)
        .env("HOOKSTREAM_KAFKA__BROKERS", &config.kafka.brokers)
        .env("HOOKSTREAM_DELIVERY__ALLOW_PRIVATE_TARGETS", "true")
        // The dispatcher alone is measured, with no retrier to deliver what it parks: a
        // backlog drained at full speed must stay in memory, as the dispatcher tests keep it.
        .env("HOOKSTREAM_DELIVERY__PARK_AFTER", "1h")
        .env("HOOKSTREAM_DISPATCHER__IN_FLIGHT", (args.concurrency * 10 / 3).to_string())
        .env("HOOKSTREAM_DISPATCHER__GROUP_ID", format!("bench-{}", std::process::id()))
        .env("HOOKSTREAM_ADMIN__LISTEN", "127.0.0.1:0")
        .env("HOOKSTREAM_TELEMETRY__LOG_LEVEL", "warn")
        .spawn()?;
    let pid = child.id();
    let started = Instant::now();
    let mut first: Option<Instant> = None;
    let target = before + (event_count * FAN_OUT) as u64;
    let deadline = started + Duration::from_secs(600);
    let mut peak_rss_kb = 0u64;
    while hits.load(Ordering::Relaxed) < target && Instant::now() < deadline {
        if first.is_none() && hits.load(Ordering::Relaxed) > before {
            first = Some(Instant::now());
        }
        peak_rss_kb = peak_rss_kb.max(rss_kb(pid));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = hits.load(Ordering::Relaxed) - before;
    let drained = first.map(|f| f.elapsed()).unwrap_or_default().as_secs_f64().max(1e-3);
    peak_rss_kb = peak_rss_kb.max(hwm_kb(pid));
    let _ = child.kill();
    let _ = child.wait();
    let rate = done as f64 / drained;
    println!("dispatcher: {done} of {} delivered in {drained:.1}s after the first: {rate:.0} deliveries/s; peak RSS {:.1} MB", args.events, peak_rss_kb as f64 / 1024.0);
    println!();
    println!("| measure (concurrency {}) | value | target |", args.concurrency);
    println!("| --- | --- | --- |");
    println!("| bare reqwest loop | {bare:.0} requests/s | baseline |");
    println!(
        "| dispatcher, {} pre-produced events | {rate:.0} deliveries/s | >= 10,000/s |",
        args.events
    );
    println!("| dispatcher / bare loop | {:.2} | >= 0.8 |", rate / bare);
    println!("| dispatcher peak RSS | {:.1} MB | < 100 MB |", peak_rss_kb as f64 / 1024.0);
    Ok(())
}

async fn bare_loop(
    url: &str,
    body: &[u8],
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, body, done) =
                (client.clone(), url.to_owned(), body.to_vec(), Arc::clone(&done));
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let ok = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .map(|r| r.status().is_success())
                        .unwrap_or(false);
                    if ok {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await?;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}
