//! `hookstream-testbed bench-retry`: the retrier benchmark, in one run. Tasks are produced to the
//! first retry tier at a constant rate, each due one tier delay later; a retrier process delivers
//! them to a local sink, which measures lateness (arrival minus `hs-due-at`). Then the DLQ redrive
//! rate: entries indexed in Postgres put back on the first tier, unthrottled.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Json;
use chrono::Utc;
use clap::Args;
use hdrhistogram::Histogram;
use hookstream_core::db::{accounts, endpoints};
use hookstream_core::delivery::handoff::Handoff;
use hookstream_core::dlq::{self, NewDeadLetter, RedriveOptions};
use hookstream_core::envelope::{DeliveryTask, EventEnvelope};
use hookstream_core::kafka::{self, TopicSpec};
use hookstream_core::producer::HealingProducer;
use hookstream_core::tier::{RateLimit, Tier};
use hookstream_core::trace::Tracing;
use hookstream_core::wire::headers;
use hookstream_core::{AccountId, EndpointId};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use serde_json::{json, Value};

use crate::proc_stats::{hwm_kb, rss_kb};
use hookstream_core::tool::ToolConfig;

#[derive(Args)]
pub(crate) struct BenchRetryArgs {
    /// Path of the `hookstream-retrier` binary to measure.
    #[arg(long)]
    retrier_bin: PathBuf,
    /// Tasks per second coming due.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    /// How long tasks are produced.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Endpoints the tasks are spread over.
    #[arg(long, default_value_t = 64)]
    endpoints: usize,
    /// DLQ entries redriven in the redrive measurement.
    #[arg(long, default_value_t = 20_000)]
    redrive: usize,
}

type Lateness = Arc<Mutex<Histogram<u64>>>;

pub(crate) async fn run(config: &ToolConfig, args: BenchRetryArgs) -> anyhow::Result<()> {
    // The sink: lateness of each delivery against the due time the task carries in its data.
    let lateness: Lateness = Arc::new(Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3)?));
    let recorded = Arc::clone(&lateness);
    let app = axum::Router::new().route(
        "/sink",
        post(move |Json(body): Json<Value>| {
            let now_us = Utc::now().timestamp_micros();
            if let Some(due_ms) = body["data"]["due_ms"].as_i64() {
                let late_us = (now_us - due_ms * 1000).max(1) as u64;
                let mut h = recorded.lock().unwrap_or_else(|p| p.into_inner());
                let _ = h.record(late_us);
            }
            async { "" }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink = format!("http://{}/sink", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let prefix = format!("{}benchretry{}.", config.topics.prefix, std::process::id());
    let mut topics_cfg = config.topics.clone();
    topics_cfg.prefix = prefix.clone();
    let topics = topics_cfg.topics();
    let admin = kafka::admin(&config.kafka, "hookstream-bench")?;
    let specs: Vec<TopicSpec> = kafka::topic_specs(&topics_cfg);
    kafka::create_topics(&admin, &specs).await?;
    let pool = hookstream_core::db::connect(&config.database).await?;
    let unlimited = RateLimit { per_second: 1_000_000, burst: 1_000_000 };
    let mut targets: Vec<(AccountId, EndpointId)> = Vec::new();
    for _ in 0..(args.endpoints / 4).max(1) {
        let account =
            accounts::create(&pool, "bench-retry", Tier::Xlarge, "operator:bench").await?;
        let patch =
            accounts::AccountPatch { delivery_limit: Some(Some(unlimited)), ..Default::default() };
        accounts::update(&pool, account.id, &patch, "operator:bench").await?;
        for _ in 0..4 {
            let new = endpoints::NewEndpoint {
                url: format!("{sink}?e={}", targets.len()),
                description: "bench".into(),
                event_types: vec!["*".into()],
                rate_limit: None,
            };
            targets.push((
                account.id,
                crate::seed::create_endpoint(&pool, account.id, new, "operator:bench").await?.id,
            ));
        }
    }

    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let schedule: Vec<String> = topics_cfg
        .retry_schedule
        .iter()
        .map(|d| hookstream_core::topics::delay_label(*d))
        .collect();
    let mut child = std::process::Command::new(&args.retrier_bin)
        .env("HOOKSTREAM_TOPICS__PREFIX", &prefix)
        .env("HOOKSTREAM_TOPICS__RETRY_SCHEDULE", schedule.join(","))
        .env("HOOKSTREAM_DATABASE__URL", &config.database.url)
        .env("HOOKSTREAM_KAFKA__BROKERS", &config.kafka.brokers)
        .env("HOOKSTREAM_DELIVERY__ALLOW_PRIVATE_TARGETS", "true")
        .env("HOOKSTREAM_RETRIER__GROUP_ID", format!("bench-retry-{}", std::process::id()))
        .env("HOOKSTREAM_RETRIER__DLQ_GROUP_ID", format!("bench-retry-dlq-{}", std::process::id()))
        .env("HOOKSTREAM_ADMIN__LISTEN", format!("127.0.0.1:{admin_port}"))
        .env("HOOKSTREAM_TELEMETRY__LOG_LEVEL", "warn")
        .spawn()?;
    let pid = child.id();
    // Wait for the retrier to own its partitions, so joining the group is not measured.
    let metrics = format!("http://127.0.0.1:{admin_port}/metrics");
    let first_tier = hookstream_core::topics::delay_label(topics.retry_delays()[0]);
    let ready = Instant::now() + Duration::from_secs(60);
    loop {
        let body = match reqwest::get(&metrics).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if body.contains(&format!("retrier_paused_partitions{{tier=\"{first_tier}\"}}")) {
            break;
        }
        anyhow::ensure!(Instant::now() < ready, "the retrier did not join its group within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let producer = HealingProducer::new(&config.kafka, "hookstream-bench")?;
    let delay = topics.retry_delays()[0];
    let topic = topics.retry(delay);
    let total = args.rate * args.duration.as_secs();
    let started = Instant::now();
    let mut peak_rss_kb = 0u64;
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..total {
        // Constant rate: task i leaves at i / rate seconds.
        let at = started + Duration::from_secs_f64(i as f64 / args.rate as f64);
        tokio::time::sleep_until(at.into()).await;
        let (account, endpoint) = targets[i as usize % targets.len()];
        let due_ms = Utc::now().timestamp_millis() + delay.as_millis() as i64;
        let task = task(account, endpoint, json!({"due_ms": due_ms, "n": i}));
        let payload = serde_json::to_vec(&task)?;
        let (producer, topic) = (producer.current(), topic.clone());
        sends.spawn(async move {
            let key = task.envelope.key();
            let due = due_ms.to_string();
            let record = FutureRecord::to(&topic).key(&key).payload(&payload).headers(
                OwnedHeaders::new()
                    .insert(Header { key: headers::ATTEMPT, value: Some("1") })
                    .insert(Header { key: headers::DUE_AT, value: Some(due.as_str()) }),
            );
            producer
                .send(record, Timeout::After(Duration::from_secs(30)))
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        });
        if i % 100 == 0 {
            peak_rss_kb = peak_rss_kb.max(rss_kb(pid));
            while let Some(r) = sends.try_join_next() {
                r??;
            }
        }
    }
    while let Some(r) = sends.join_next().await {
        r??;
    }
    let deadline = Instant::now() + delay + Duration::from_secs(60);
    while lateness.lock().unwrap_or_else(|p| p.into_inner()).len() < total
        && Instant::now() < deadline
    {
        peak_rss_kb = peak_rss_kb.max(rss_kb(pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    peak_rss_kb = peak_rss_kb.max(hwm_kb(pid));
    let _ = child.kill();
    let _ = child.wait();
    let h = lateness.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "retrier: {} of {total} tasks delivered; lateness p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; peak RSS {:.1} MB",
        h.len(),
        ms(0.5),
        ms(0.99),
        h.max() as f64 / 1000.0,
        peak_rss_kb as f64 / 1024.0
    );

    // Redrive: index entries as the retrier would, then put them all back, unthrottled.
    let account = targets[0].0;
    let now = Utc::now();
    for chunk in (0..args.redrive).collect::<Vec<_>>().chunks(1_000) {
        let rows: Vec<NewDeadLetter> = chunk
            .iter()
            .map(|i| NewDeadLetter {
                topic: topics.dlq(),
                partition: 0,
                offset: *i as i64,
                task: task(account, targets[0].1, json!({"n": i})),
                origin: None,
                traceparent: None,
                dead_at: now,
            })
            .collect();
        dlq::index(&pool, &rows).await?;
    }
    let traces = Tracing::local("hookstream-testbed");
    let handoff = Handoff::new(
        producer.clone(),
        topics.clone(),
        config.kafka.produce_timeout,
        traces.tracer(),
    );
    handoff.warm_up().await;
    let filter = dlq::Filter { account: Some(account), ..dlq::Filter::default() };
    let options = RedriveOptions {
        handoff: Some(&handoff),
        actor: "operator:bench",
        pace: None,
        limit: None,
        stop: None,
        page: None,
    };
    let redrive_started = Instant::now();
    let report = dlq::redrive(&pool, &filter, options, |_, _| {}).await?;
    let redrive_rate = report.redriven as f64 / redrive_started.elapsed().as_secs_f64();
    println!(
        "redrive: {} entries in {:.1} s: {redrive_rate:.0}/s",
        report.redriven,
        redrive_started.elapsed().as_secs_f64()
    );
    println!();
    println!("| measure | value | note |");
    println!("| --- | --- | --- |");
    println!("| tasks coming due | {} /s for {} s ({total} tasks, {} endpoints) | first tier ({first_tier}) |", args.rate, args.duration.as_secs(), targets.len());
    println!("| delivered | {} of {total} | |", h.len());
    println!("| retry lateness p50 | {:.1} ms | arrival at the sink minus hs-due-at |", ms(0.5));
    println!("| retry lateness p99 | {:.1} ms | |", ms(0.99));
    println!("| retry lateness max | {:.1} ms | |", h.max() as f64 / 1000.0);
    println!("| retrier peak RSS | {:.1} MB | |", peak_rss_kb as f64 / 1024.0);
    println!("| DLQ redrive rate | {redrive_rate:.0} entries/s | {} entries, unthrottled (`--rate` bounds it) |", report.redriven);
    Ok(())
}

/// A task after one failed attempt.
fn task(account: AccountId, endpoint: EndpointId, data: Value) -> DeliveryTask {
    let envelope = EventEnvelope::new(account, "subscriber.created", data);
    DeliveryTask::new(envelope, endpoint).failed(1, 503)
}
