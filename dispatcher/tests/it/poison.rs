//! The poison suite, delivery side: hostile receivers (NUL and invalid UTF-8 in bodies, NUL in
//! status lines and headers, a 1 GiB body, an endless body, no answer at all). Each test
//! asserts the hostile case's own outcome **and** that a second, well-behaved account's events
//! keep arriving, and being logged, within their normal latency while it happens.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::routing::post;
use hookstream_core::envelope::Priority;
use hookstream_core::{AccountId, EventId};
use hookstream_dispatcher::{DispatcherConfig, DispatcherSettings};
use hookstream_testkit::{eventually, Receiver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{start_dispatcher, World};

const WAIT: Duration = Duration::from_secs(30);
/// Well above a well-behaved delivery on loopback (milliseconds), far below any stall.
const NORMAL_LATENCY: Duration = Duration::from_secs(2);
const EVENTS: usize = 20;

/// A receiver that answers each path in its own hostile way.
struct Hostile {
    base: String,
}

impl Hostile {
    async fn start() -> Self {
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let endless = {
            let chunk = chunk.clone();
            move || {
                let chunk = chunk.clone();
                async move {
                    let stream = futures::stream::repeat_with(move || {
                        Ok::<_, std::io::Error>(chunk.clone())
                    });
                    Response::new(Body::from_stream(stream))
                }
            }
        };
        let huge = move || {
            let chunk = chunk.clone();
            async move {
                const GIB: u64 = 1 << 30;
                let n = GIB / chunk.len() as u64;
                let stream = futures::stream::iter(
                    (0..n).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
                );
                Response::builder()
                    .header(header::CONTENT_LENGTH, GIB)
                    .body(Body::from_stream(stream))
                    .expect("response")
            }
        };
        let app = axum::Router::new()
            .route("/nul", post(|| async { (StatusCode::OK, "ok\0ok") }))
            .route(
                "/bad-utf8",
                post(|| async { (StatusCode::OK, Bytes::from_static(b"\xff\xfe ok \xc3")) }),
            )
            .route("/endless", post(endless))
            .route("/huge", post(huge))
            .route(
                "/hang",
                post(|| async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    StatusCode::OK
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// A raw TCP receiver that answers every request with `response`, bytes as given (for what
/// an HTTP server library would refuse to send: NUL in a status line or a header).
async fn raw_receiver(response: &'static [u8]) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen = Vec::new();
                // Read the head and whatever body came with it, then answer and close.
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = stream.write_all(response).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    base
}

/// What one hostile case leaves behind.
struct Outcome {
    world: World,
    hostile: AccountId,
    good_latency_max: Duration,
}

/// Runs the dispatcher with one hostile endpoint (account H) and one well-behaved one (account
/// G), produces `EVENTS` events for each, interleaved, and waits until G's have all arrived and
/// are in the delivery log. Returns G's worst latency, produce to arrival.
async fn with_hostile_receiver(
    hostile_url: impl FnOnce(&World) -> String,
    tune: impl FnOnce(&mut DispatcherConfig),
) -> Outcome {
    let world = World::new(2).await;
    let good = Receiver::start().await;
    let h = world.account().await;
    let g = world.account().await;
    let url = hostile_url(&world);
    world.endpoint(h, url, &["*"], None).await;
    world.endpoint(g, good.url("/good"), &["*"], None).await;
    let mut config = world.config(DispatcherSettings::default());
    tune(&mut config);
    let running = start_dispatcher(config);

    let mut sent: Vec<(EventId, Instant)> = Vec::new();
    for _ in 0..EVENTS {
        world.produce(h, "subscriber.created", Priority::Normal).await;
        let at = Instant::now();
        sent.push((world.produce(g, "subscriber.created", Priority::Normal).await, at));
    }
    eventually(WAIT, "the well-behaved account's events arrive", || async {
        (good.hits_on("/good").len() >= EVENTS).then_some(())
    })
    .await;
    let hits = good.hits_on("/good");
    let good_latency_max = sent
        .iter()
        .map(|(id, at)| {
            let hit = hits.iter().find(|h| h.webhook_id == id.to_string()).expect("each arrived");
            hit.at.saturating_duration_since(*at)
        })
        .max()
        .unwrap_or_default();
    eventually(WAIT, "the well-behaved account's deliveries are in the log", || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM deliveries WHERE account_id = $1 AND state = 'delivered'",
        )
        .bind(g)
        .fetch_one(&world.db.pool)
        .await
        .ok()?;
        (n == EVENTS as i64).then_some(())
    })
    .await;
    running.stop().await;
    Outcome { world, hostile: h, good_latency_max }
}

/// The hostile account's attempts as logged: (outcome, response body, error).
async fn attempts(o: &Outcome) -> Vec<(String, Option<String>, Option<String>)> {
    eventually(WAIT, "the hostile account's attempts are in the log", || async {
        let rows: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT outcome, response_body, error FROM delivery_attempts WHERE account_id = $1",
        )
        .bind(o.hostile)
        .fetch_all(&o.world.db.pool)
        .await
        .ok()?;
        (!rows.is_empty()).then_some(rows)
    })
    .await
}

fn assert_good_kept_its_latency(o: &Outcome) {
    assert!(
        o.good_latency_max < NORMAL_LATENCY,
        "the well-behaved account waited {:?} beside the hostile one",
        o.good_latency_max
    );
}

#[tokio::test]
async fn nul_in_a_receivers_answer_is_stored_replaced_and_the_log_keeps_writing() {
    let hostile = Hostile::start().await;
    let o = with_hostile_receiver(|_| hostile.url("/nul"), |_| {}).await;
    assert_good_kept_its_latency(&o);
    let rows = attempts(&o).await;
    assert!(rows.iter().all(|(outcome, ..)| outcome == "delivered"), "{rows:?}");
    assert!(
        rows.iter().all(|(_, body, _)| body.as_deref() == Some("ok\u{2400}ok")),
        "NUL stored as U+2400: {rows:?}"
    );
}

#[tokio::test]
async fn invalid_utf8_in_a_receivers_answer_is_stored_replaced() {
    let hostile = Hostile::start().await;
    let o = with_hostile_receiver(|_| hostile.url("/bad-utf8"), |_| {}).await;
    assert_good_kept_its_latency(&o);
    let rows = attempts(&o).await;
    assert!(
        rows.iter().all(|(outcome, body, _)| outcome == "delivered"
            && body.as_deref().is_some_and(|b| b.contains('\u{fffd}') && b.contains("ok"))),
        "{rows:?}"
    );
}

#[tokio::test]
async fn nul_in_a_status_line_or_header_is_a_failed_attempt_not_a_stall() {
    for response in [
        &b"HTTP/1.1 200 O\0K\r\ncontent-length: 2\r\n\r\nok"[..],
        &b"HTTP/1.1 200 OK\r\nx-evil: a\0b\r\ncontent-length: 2\r\n\r\nok"[..],
    ] {
        let base = raw_receiver(response).await;
        let o = with_hostile_receiver(|_| format!("{base}/raw"), |_| {}).await;
        assert_good_kept_its_latency(&o);
        let rows = attempts(&o).await;
        assert!(
            rows.iter().all(|(outcome, _, error)| outcome != "delivered" && error.is_some()),
            "an unparseable answer is a failed attempt with its error: {rows:?}"
        );
    }
}

/// Peak resident memory of this process (the dispatcher runs in it), from /proc.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::test]
async fn a_1_gib_or_endless_response_body_is_read_only_up_to_the_bound() {
    for path in ["/huge", "/endless"] {
        let hostile = Hostile::start().await;
        let o = with_hostile_receiver(
            |_| hostile.url(path),
            |c| {
                c.delivery.timeout = Duration::from_secs(5);
            },
        )
        .await;
        assert_good_kept_its_latency(&o);
        let rows = attempts(&o).await;
        let max = hookstream_core::delivery::DeliveryConfig::default().max_response_body;
        assert!(
            rows.iter().all(|(outcome, body, _)| outcome == "delivered"
                && body.as_deref().is_some_and(|b| b.len() == max)),
            "{path}: delivered, the first {max} bytes kept: {rows:?}"
        );
        let peak = peak_rss_mb();
        eprintln!("{path}: peak RSS of the test process (dispatcher, receivers, broker client) {peak:.0} MB");
        // Reading the whole body would take this process past 1 GiB.
        assert!(peak < 250.0, "{path}: peak RSS {peak:.0} MB");
    }
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_without_holding_anyone_else() {
    let hostile = Hostile::start().await;
    let o = with_hostile_receiver(
        |_| hostile.url("/hang"),
        |c| {
            c.delivery.timeout = Duration::from_secs(2);
        },
    )
    .await;
    assert_good_kept_its_latency(&o);
    let rows = attempts(&o).await;
    // Each attempt timed out, until enough had that the endpoint's circuit opened: its later
    // tasks go to the retry tier without holding a request slot.
    let timed_out = |e: &str| e.contains("timed out");
    assert!(
        rows.iter().all(|(outcome, _, error)| outcome == "retryable"
            && error.as_deref().is_some_and(|e| timed_out(e) || e.starts_with("circuit open"))),
        "{rows:?}"
    );
    assert!(rows.iter().any(|(_, _, e)| e.as_deref().is_some_and(timed_out)), "{rows:?}");
}

#[tokio::test]
async fn shutdown_keeps_its_deadline_with_the_broker_and_postgres_gone() {
    let mut broker = hookstream_testkit::OwnBroker::start().await;
    let kafka = broker.kafka_config();
    let topics = hookstream_testkit::topics_config(2);
    hookstream_testkit::create_topics_on(&kafka, &topics.topics().all(), 2).await;
    let db = hookstream_testkit::TestDatabase::new().await;
    let receiver = Receiver::start().await;
    let account = hookstream_core::db::accounts::create(
        &db.pool,
        "a",
        hookstream_core::tier::Tier::Xlarge,
        "operator:test",
    )
    .await
    .expect("account");
    hookstream_testkit::create_endpoint(&db.pool, account.id, receiver.url("/a"), &["*"], None)
        .await;
    let producer = hookstream_core::kafka::producer(&kafka, "shutdown-test").expect("producer");
    let envs = [
        ("HOOKSTREAM_TOPICS__PREFIX", topics.prefix.clone()),
        ("HOOKSTREAM_DELIVERY__ALLOW_PRIVATE_TARGETS", "true".to_owned()),
        ("HOOKSTREAM_DISPATCHER__GROUP_ID", hookstream_testkit::unique("dispatcher-")),
    ];
    let topic = topics.topics().events(Priority::Normal);
    hookstream_testkit::assert_shutdown_deadline_with_dependencies_gone(
        env!("CARGO_BIN_EXE_hookstream-dispatcher"),
        &envs,
        &mut broker,
        &db,
        "DISPATCHER__SHUTDOWN_DEADLINE",
        Duration::from_secs(8),
        || async {
            // Deliveries under way and their log rows pending when both go away.
            for i in 0..500 {
                let envelope = serde_json::json!({
                    "event_id": EventId::new(), "account_id": account.id,
                    "event_type": "subscriber.created", "occurred_at": chrono::Utc::now(),
                    "received_at": chrono::Utc::now(), "priority": "normal",
                    "data": {"subscriber": {"id": format!("s{i}"), "email": "a@example.com"}},
                    "schema_version": 1,
                })
                .to_string();
                let key = account.id.to_string();
                let record =
                    rdkafka::producer::FutureRecord::to(&topic).key(&key).payload(&envelope);
                producer
                    .send(record, Duration::from_secs(5))
                    .await
                    .map_err(|(e, _)| e)
                    .expect("acked");
            }
            eventually(WAIT, "deliveries under way", || async {
                (!receiver.hits().is_empty()).then_some(())
            })
            .await;
        },
    )
    .await;
}

#[tokio::test]
async fn an_endpoint_created_just_before_an_event_gets_it() {
    let world = World::new(1).await;
    let receiver = Receiver::start().await;
    let account = world.account().await;
    // The periodic reload is far away: only the change notification can bring the endpoint in.
    let mut config = world.config(DispatcherSettings::default());
    config.dispatcher.endpoint_refresh = Duration::from_secs(600);
    let running = start_dispatcher(config);
    tokio::time::sleep(Duration::from_secs(2)).await; // running, its cache loaded (empty)
    world.endpoint(account, receiver.url("/new"), &["*"], None).await;
    let id = world.produce(account, "subscriber.created", Priority::Normal).await;
    eventually(Duration::from_secs(10), "the new endpoint's first event", || async {
        receiver.hits_on("/new").iter().any(|h| h.webhook_id == id.to_string()).then_some(())
    })
    .await;
    running.stop().await;
}
