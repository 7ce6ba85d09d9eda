//! `hookstream-testbed loadgen`: drives ingest over keep-alive HTTP/1.1 at a constant rate or as
//! fast as it answers, and reports throughput and latency. Latency is measured from each event's
//! scheduled send time, so a slow server cannot hide queueing (no coordinated omission).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

#[derive(Args, Clone)]
pub(crate) struct LoadgenArgs {
    /// Ingest's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API key of an account (repeat for several accounts).
    #[arg(long = "key")]
    keys: Vec<String>,
    /// File with one API key per line (added to --key).
    #[arg(long)]
    keys_file: Option<PathBuf>,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Events per second; 0 sends as fast as ingest answers.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// How long to send.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Approximate size of each request body in bytes.
    #[arg(long, default_value_t = 1024)]
    payload_bytes: usize,
    /// Share (0..1) of events sent with the first key (a hot account); the rest is spread
    /// evenly over the other keys. Without it, all keys share evenly.
    #[arg(long)]
    hot_share: Option<f64>,
    /// Write the id of every accepted event here, one per line.
    #[arg(long)]
    ids_out: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// What one run measured.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Summary {
    pub(crate) sent: u64,
    pub(crate) accepted: u64,
    pub(crate) statuses: BTreeMap<String, u64>,
    pub(crate) seconds: f64,
    pub(crate) accepted_per_sec: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

struct Outcome {
    status: String,
    latency: Duration,
    event_id: Option<String>,
}

pub(crate) async fn run(mut args: LoadgenArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.keys_file {
        let text = tokio::fs::read_to_string(path).await?;
        args.keys.extend(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned));
    }
    if args.keys.is_empty() {
        anyhow::bail!("give at least one --key or --keys-file");
    }
    if let Some(share) = args.hot_share {
        if !(0.0..=1.0).contains(&share) || args.keys.len() < 2 {
            anyhow::bail!("--hot-share takes 0..1 and needs at least two keys");
        }
    }
    if args.connections == 0 {
        anyhow::bail!("--connections must be at least 1");
    }
    let summary = drive(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "sent {} accepted {} in {:.1}s: {:.0} events/s accepted; latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms; statuses {:?}",
            summary.sent,
            summary.accepted,
            summary.seconds,
            summary.accepted_per_sec,
            summary.p50_ms,
            summary.p99_ms,
            summary.max_ms,
            summary.statuses
        );
    }
    Ok(())
}

async fn drive(args: &LoadgenArgs) -> anyhow::Result<Summary> {
    let client = reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(args.connections)
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = format!("{}/v1/events", args.url.trim_end_matches('/'));
    let body = Arc::new(padded_body(args.payload_bytes));
    let keys = Arc::new(args.keys.clone());
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + args.duration;
    let total = (args.rate > 0).then(|| args.rate * args.duration.as_secs().max(1));

    let mut workers = Vec::new();
    for _ in 0..args.connections {
        let (client, url, body, keys, next) =
            (client.clone(), url.clone(), Arc::clone(&body), Arc::clone(&keys), Arc::clone(&next));
        let (rate, hot) = (args.rate, args.hot_share);
        workers.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let scheduled = match total {
                    Some(total) if i >= total => break,
                    Some(_) => start + Duration::from_secs_f64(i as f64 / rate as f64),
                    None if Instant::now() >= deadline => break,
                    None => Instant::now(),
                };
                tokio::time::sleep_until(scheduled.into()).await;
                let key = &keys[pick_key(i, keys.len(), hot)];
                let response = client
                    .post(&url)
                    .bearer_auth(key)
                    .header("content-type", "application/json")
                    .body(body.as_bytes().to_vec())
                    .send()
                    .await;
                let latency = scheduled.elapsed();
                let outcome = match response {
                    Ok(r) => {
                        let status = r.status().as_u16().to_string();
                        let event_id = if status == "202" {
                            r.json::<Value>()
                                .await
                                .ok()
                                .and_then(|v| v["event_id"].as_str().map(str::to_owned))
                        } else {
                            None
                        };
                        Outcome { status, latency, event_id }
                    }
                    Err(e) => Outcome { status: format!("error: {e}"), latency, event_id: None },
                };
                outcomes.push(outcome);
            }
            outcomes
        }));
    }
    let mut histogram = Histogram::<u64>::new(3)?;
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut ids = Vec::new();
    for w in workers {
        for o in w.await? {
            *statuses.entry(o.status).or_default() += 1;
            histogram.record(o.latency.as_micros().max(1) as u64)?;
            ids.extend(o.event_id);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    if let Some(path) = &args.ids_out {
        let mut f = tokio::fs::File::create(path).await?;
        f.write_all(ids.join("\n").as_bytes()).await?;
        f.write_all(b"\n").await?;
    }
    let accepted = ids.len() as u64;
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    Ok(Summary {
        sent: histogram.len(),
        accepted,
        statuses,
        seconds,
        accepted_per_sec: accepted as f64 / seconds,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        max_ms: histogram.max() as f64 / 1000.0,
    })
}

/// Index of the key for event `i`: the hot key for `hot` of the events, the others evenly.
fn pick_key(i: u64, keys: usize, hot: Option<f64>) -> usize {
    match hot {
        None => (i % keys as u64) as usize,
        Some(share) => {
            // A fixed scramble of i, so the mix is even at every scale of the run.
            let u = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
            if u < share {
                0
            } else {
                1 + (i % (keys as u64 - 1)) as usize
            }
        }
    }
}

/// A valid `subscriber.created` body of about `bytes` bytes.
pub(crate) fn padded_body(bytes: usize) -> String {
    let base = json!({
        "event_type": "subscriber.created",
        "data": {"subscriber": {"id": "sub_000001", "email": "load@example.com", "fields": {"pad": ""}}}
    });
    let pad = bytes.saturating_sub(base.to_string().len());
    let mut body = base;
    body["data"]["subscriber"]["fields"]["pad"] = json!("x".repeat(pad));
    body.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hot_key_gets_its_share_and_the_rest_is_even() {
        let mut counts = [0u32; 5];
        for i in 0..100_000 {
            counts[pick_key(i, 5, Some(0.9))] += 1;
        }
        assert!((89_000..91_000).contains(&counts[0]), "{counts:?}");
        for c in &counts[1..] {
            assert!((2_200..2_800).contains(c), "{counts:?}");
        }
    }

    #[test]
    fn bodies_have_the_requested_size_and_stay_valid() {
        let body = padded_body(1024);
        assert_eq!(body.len(), 1024);
        let v: Value = serde_json::from_str(&body).expect("json");
        let schemas = hookstream_core::schema::Schemas::load().expect("schemas");
        schemas.validate_event("subscriber.created", &v["data"]).expect("valid event");
    }
}
