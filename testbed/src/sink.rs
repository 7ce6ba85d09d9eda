//! `hookstream-testbed sink`: a webhook receiver for load and fault runs. It verifies each
//! request's Standard Webhooks signature with the secrets of the endpoint whose URL it was sent to
//! (read from Postgres), records every accepted delivery (`webhook-id`, endpoint, account, arrival,
//! latency from the event's timestamp, trace id) and can be told to fail: a share of 5xx, a fixed
//! latency, a full outage for a period, 410 for chosen paths. Faults can also be changed while it
//! runs (`POST /_sink/faults`); `GET /_sink/report` and the exit report give unique deliveries,
//! duplicates, bad signatures and latency percentiles.
//!
//! The latency is measured from the body's `timestamp` (the event's `occurred_at`, which is
//! its `received_at` when the producer gave none, as with `hookstream-testbed loadgen`).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use clap::Args;
use hdrhistogram::Histogram;
use hookstream_core::delivery::endpoints::{CachedEndpoint, EndpointCache};
use hookstream_core::trace;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use hookstream_core::tool::ToolConfig;
use hookstream_core::tool::UsageError;

#[derive(Args)]
pub(crate) struct SinkArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Share (0..1) of requests answered 500.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Time taken before answering each request.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    latency: Duration,
    /// Start a full outage (every request answered 503) this long after start.
    #[arg(long, value_parser = humantime::parse_duration, requires = "outage_for")]
    outage_after: Option<Duration>,
    /// How long the outage lasts.
    #[arg(long, value_parser = humantime::parse_duration)]
    outage_for: Option<Duration>,
    /// A path answered 410 Gone (repeat for several), e.g. `/a/3`.
    #[arg(long = "gone")]
    gone: Vec<String>,
    /// Append one tab-separated line per accepted delivery to this file: webhook-id,
    /// endpoint id, account id, event type, arrival (Unix ms), latency (µs), trace id,
    /// duplicate (0/1).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Stop after this long (default: at SIGINT or SIGTERM).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Print the exit report as JSON.
    #[arg(long)]
    json: bool,
    /// Print every request as it arrives: the verdict (signature checked against the
    /// endpoint's secrets), the webhook headers and the body.
    #[arg(long)]
    print: bool,
}

/// The failures the sink injects; `POST /_sink/faults` replaces the fields it names.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Faults {
    /// Share of requests answered 500.
    #[serde(default)]
    pub(crate) fail_rate: f64,
    /// Milliseconds taken before answering.
    #[serde(default)]
    pub(crate) latency_ms: u64,
    /// An outage of this many seconds, starting now (only in a request).
    #[serde(default, skip_serializing)]
    pub(crate) outage_secs: Option<f64>,
    /// Paths answered 410.
    #[serde(default)]
    pub(crate) gone: Vec<String>,
}

/// What the sink saw.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Report {
    /// Every request received.
    pub(crate) requests: u64,
    /// Distinct (webhook-id, endpoint) pairs answered 200.
    pub(crate) delivered: u64,
    /// Requests answered 200 for a pair already answered 200.
    pub(crate) duplicates: u64,
    /// Requests whose signature did not verify (answered 401).
    pub(crate) bad_signatures: u64,
    /// Requests to a path no endpoint points at (answered 404).
    pub(crate) unknown_endpoints: u64,
    /// Requests answered 500 on purpose.
    pub(crate) injected_5xx: u64,
    /// Requests answered 503 during an outage.
    pub(crate) outage_503: u64,
    /// Requests answered 410.
    pub(crate) gone_410: u64,
    /// Latency of first deliveries, event timestamp to arrival, in milliseconds.
    pub(crate) latency_ms: Percentiles,
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Percentiles {
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
}

struct Counters {
    report: Report,
    seen: HashSet<(String, String)>,
    latency_us: Histogram<u64>,
}

struct Sink {
    faults: RwLock<Faults>,
    outage_until: Mutex<Option<Instant>>,
    endpoints: EndpointCache,
    by_path: RwLock<HashMap<String, Arc<CachedEndpoint>>>,
    last_reload: tokio::sync::Mutex<Instant>,
    pool: PgPool,
    counters: Mutex<Counters>,
    record: Option<Mutex<std::fs::File>>,
    print: bool,
}

pub(crate) async fn run(config: &ToolConfig, args: SinkArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.fail_rate) {
        return Err(UsageError("--fail-rate takes a share between 0 and 1".into()).into());
    }
    let pool = hookstream_core::db::connect(&config.database).await?;
    let record = match &args.record {
        Some(path) => {
            Some(Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?))
        }
        None => None,
    };
    let sink = Arc::new(Sink {
        faults: RwLock::new(Faults {
            fail_rate: args.fail_rate,
            latency_ms: args.latency.as_millis() as u64,
            outage_secs: None,
            gone: args.gone.clone(),
        }),
        outage_until: Mutex::new(None),
        endpoints: EndpointCache::default(),
        by_path: RwLock::new(HashMap::new()),
        last_reload: tokio::sync::Mutex::new(Instant::now() - Duration::from_secs(60)),
        pool,
        counters: Mutex::new(Counters {
            report: Report::default(),
            seen: HashSet::new(),
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3)?,
        }),
        record,
        print: args.print,
    });
    sink.reload().await;
    if let (Some(after), Some(length)) = (args.outage_after, args.outage_for) {
        let sink = Arc::clone(&sink);
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            *sink.outage_until.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(Instant::now() + length);
        });
    }

    let app = Router::new()
        .route("/_sink/report", get(report))
        .route("/_sink/faults", post(set_faults).get(get_faults))
        .fallback(receive)
        .with_state(Arc::clone(&sink));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("sink listening on http://{}", listener.local_addr()?);
    let stop = hookstream_core::shutdown::on_signal();
    let until = stop.clone();
    if let Some(d) = args.duration {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            stop.cancel();
        });
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { until.cancelled().await })
        .await?;

    let report = sink.report();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "requests {} delivered {} duplicates {} bad signatures {} unknown endpoints {}; injected 5xx {} outage 503 {} gone 410 {}; latency p50 {:.1} ms p99 {:.1} ms p99.9 {:.1} ms max {:.1} ms",
            report.requests,
            report.delivered,
            report.duplicates,
            report.bad_signatures,
            report.unknown_endpoints,
            report.injected_5xx,
            report.outage_503,
            report.gone_410,
            report.latency_ms.p50,
            report.latency_ms.p99,
            report.latency_ms.p999,
            report.latency_ms.max,
        );
    }
    Ok(())
}

async fn report(State(sink): State<Arc<Sink>>) -> Json<Report> {
    Json(sink.report())
}

async fn get_faults(State(sink): State<Arc<Sink>>) -> Json<Faults> {
    Json(sink.faults.read().unwrap_or_else(|p| p.into_inner()).clone())
}

async fn set_faults(
    State(sink): State<Arc<Sink>>,
    Json(new): Json<Faults>,
) -> Result<Json<Faults>, (StatusCode, String)> {
    if !(0.0..=1.0).contains(&new.fail_rate) {
        return Err((StatusCode::UNPROCESSABLE_ENTITY, "fail_rate takes 0..1".into()));
    }
    if let Some(secs) = new.outage_secs {
        if !(0.0..=86_400.0).contains(&secs) {
            return Err((StatusCode::UNPROCESSABLE_ENTITY, "outage_secs takes 0..86400".into()));
        }
        *sink.outage_until.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Instant::now() + Duration::from_secs_f64(secs));
    }
    let mut faults = sink.faults.write().unwrap_or_else(|p| p.into_inner());
    *faults = Faults { outage_secs: None, ..new };
    Ok(Json(faults.clone()))
}

async fn receive(
    State(sink): State<Arc<Sink>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let faults = sink.faults.read().unwrap_or_else(|p| p.into_inner()).clone();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_owned();
    let outage = sink
        .outage_until
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_some_and(|until| Instant::now() < until);
    let verdict = if outage {
        Verdict::Outage
    } else {
        match sink.endpoint(&path).await {
            None => Verdict::Unknown,
            Some(endpoint) if !verifies(&endpoint, &headers, &body) => Verdict::BadSignature,
            Some(_) if faults.gone.contains(&path) => Verdict::Gone,
            Some(_) if faults.fail_rate > 0.0 && rand::thread_rng().gen_bool(faults.fail_rate) => {
                Verdict::Injected
            }
            Some(endpoint) => Verdict::Accept(endpoint),
        }
    };
    if sink.print {
        print_request(&verdict, &path, &headers, &body);
    }
    sink.count(verdict, &headers, &body)
}

/// One block per request for `--print`: what the sink answered and why, then the body.
fn print_request(verdict: &Verdict, path: &str, headers: &HeaderMap, body: &[u8]) {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("-");
    let what = match verdict {
        Verdict::Outage => "503 (outage injected)".to_owned(),
        Verdict::Unknown => "404: no endpoint points at this path".to_owned(),
        Verdict::BadSignature => "401: signature does NOT verify".to_owned(),
        Verdict::Gone => "410 (gone injected)".to_owned(),
        Verdict::Injected => "500 (failure injected)".to_owned(),
        Verdict::Accept(e) => format!("200: signature verified (endpoint {})", e.target.id),
    };
    println!(
        "POST {path} -> {what}\n  webhook-id: {}\n  webhook-timestamp: {}\n  webhook-signature: {}\n  {}",
        text("webhook-id"),
        text("webhook-timestamp"),
        text("webhook-signature"),
        String::from_utf8_lossy(body),
    );
}

enum Verdict {
    Outage,
    Unknown,
    BadSignature,
    Gone,
    Injected,
    Accept(Arc<CachedEndpoint>),
}

/// Whether any of the request's signatures is one of the endpoint's secrets' over the id,
/// timestamp and body.
fn verifies(endpoint: &CachedEndpoint, headers: &HeaderMap, body: &[u8]) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(id), Some(ts), Some(sigs)) =
        (text("webhook-id"), text("webhook-timestamp"), text("webhook-signature"))
    else {
        return false;
    };
    let Ok(ts) = ts.parse::<i64>() else { return false };
    let given: Vec<&str> = sigs.split(' ').collect();
    endpoint.target.secrets.iter().any(|s| given.contains(&s.sign(id, ts, body).as_str()))
}

#[derive(Deserialize)]
struct Body {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    account_id: String,
    timestamp: DateTime<Utc>,
}

impl Sink {
    /// Reloads the endpoints and indexes them by path and query.
    async fn reload(&self) {
        if let Err(e) = self.endpoints.reload(&self.pool).await {
            tracing::warn!(error = %e, "sink: reloading endpoints failed");
            return;
        }
        let map = self
            .endpoints
            .all()
            .into_iter()
            .map(|e| {
                let url = &e.target.url;
                let key = match url.query() {
                    Some(q) => format!("{}?{q}", url.path()),
                    None => url.path().to_owned(),
                };
                (key, e)
            })
            .collect();
        *self.by_path.write().unwrap_or_else(|p| p.into_inner()) = map;
    }

    /// The endpoint pointing at `path`; an unknown path reloads (at most twice a second), so
    /// endpoints created after the sink started are found.
    async fn endpoint(&self, path: &str) -> Option<Arc<CachedEndpoint>> {
        if let Some(e) = self.lookup(path) {
            return Some(e);
        }
        {
            let mut last = self.last_reload.lock().await;
            if last.elapsed() >= Duration::from_millis(500) {
                self.reload().await;
                *last = Instant::now();
            }
        }
        self.lookup(path)
    }

    fn lookup(&self, path: &str) -> Option<Arc<CachedEndpoint>> {
        self.by_path.read().unwrap_or_else(|p| p.into_inner()).get(path).cloned()
    }

    fn count(&self, verdict: Verdict, headers: &HeaderMap, body: &[u8]) -> StatusCode {
        let mut c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        c.report.requests += 1;
        let endpoint = match verdict {
            Verdict::Outage => {
                c.report.outage_503 += 1;
                return StatusCode::SERVICE_UNAVAILABLE;
            }
            Verdict::Unknown => {
                c.report.unknown_endpoints += 1;
                return StatusCode::NOT_FOUND;
            }
            Verdict::BadSignature => {
                c.report.bad_signatures += 1;
                return StatusCode::UNAUTHORIZED;
            }
            Verdict::Gone => {
                c.report.gone_410 += 1;
                return StatusCode::GONE;
            }
            Verdict::Injected => {
                c.report.injected_5xx += 1;
                return StatusCode::INTERNAL_SERVER_ERROR;
            }
            Verdict::Accept(endpoint) => endpoint,
        };
        let Ok(event) = serde_json::from_slice::<Body>(body) else {
            return StatusCode::BAD_REQUEST;
        };
        let now = Utc::now();
        let latency_us = (now - event.timestamp).num_microseconds().unwrap_or(i64::MAX).max(1);
        let trace = trace::trace_id(&trace::extract_http(headers)).unwrap_or_default();
        let endpoint_id = endpoint.target.id.to_string();
        let first = c.seen.insert((event.id.clone(), endpoint_id.clone()));
        if first {
            c.report.delivered += 1;
            let _ = c.latency_us.record(latency_us as u64);
        } else {
            c.report.duplicates += 1;
        }
        // Written before answering: a delivery the dispatcher saw succeed is on disk.
        if let Some(file) = &self.record {
            let line = format!(
                "{}\t{endpoint_id}\t{}\t{}\t{}\t{latency_us}\t{trace}\t{}\n",
                event.id,
                event.account_id,
                event.event_type,
                now.timestamp_millis(),
                u8::from(!first)
            );
            let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = f.write_all(line.as_bytes()) {
                tracing::error!(error = %e, "sink: cannot write the record; answering 500");
                return StatusCode::INTERNAL_SERVER_ERROR;
            }
        }
        StatusCode::OK
    }

    fn report(&self) -> Report {
        let c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let h = &c.latency_us;
        let ms = |us: u64| us as f64 / 1000.0;
        let mut report = c.report.clone();
        if !h.is_empty() {
            report.latency_ms = Percentiles {
                p50: ms(h.value_at_quantile(0.5)),
                p99: ms(h.value_at_quantile(0.99)),
                p999: ms(h.value_at_quantile(0.999)),
                max: ms(h.max()),
            };
        }
        report
    }
}
