//! The poison suite, intake side: clients that would hold the server (slow headers, a slow
//! body, thousands of idle connections). Hostile management input: the API's walls. Each test
//! asserts the hostile client's own outcome and that a well-behaved client's events keep being
//! accepted within their normal latency while it happens.

use std::time::{Duration, Instant};

use hookstream_ingest::{IngestConfig, IngestSettings};
use hookstream_testkit as testkit;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::support::{created, Ingest};

/// Well above an accepted event on loopback (milliseconds), far below any stall.
const NORMAL_LATENCY: Duration = Duration::from_secs(2);

async fn tuned(tune: impl FnOnce(&mut IngestConfig)) -> Ingest {
    let ingest =
        Ingest::start_tuned(testkit::kafka_config(), IngestSettings::default(), tune).await;
    // The first produce to fresh topics waits for metadata: not what the tests measure.
    testkit::eventually(Duration::from_secs(20), "a first event accepted", || async {
        let r = ingest.post("/v1/events").json(&created("warm-up")).send().await.ok()?;
        (r.status() == StatusCode::ACCEPTED).then_some(())
    })
    .await;
    ingest
}

/// A well-behaved producer posting an event every 100 ms on one kept-alive connection until
/// stopped; returns the worst latency and every status it got.
fn steady_producer(
    ingest: &Ingest,
) -> (tokio_util::sync::CancellationToken, JoinHandle<(Duration, Vec<u16>)>) {
    let stop = tokio_util::sync::CancellationToken::new();
    let until = stop.clone();
    let post = ingest.post("/v1/events");
    let task = tokio::spawn(async move {
        let (mut worst, mut statuses) = (Duration::ZERO, Vec::new());
        let mut i = 0;
        while !until.is_cancelled() {
            let Some(req) = post.try_clone() else { break };
            let started = Instant::now();
            let status = match req.json(&created(&format!("steady{i}"))).send().await {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            };
            worst = worst.max(started.elapsed());
            statuses.push(status);
            i += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (worst, statuses)
    });
    (stop, task)
}

async fn assert_steady_kept_its_latency(
    stop: tokio_util::sync::CancellationToken,
    task: JoinHandle<(Duration, Vec<u16>)>,
) {
    stop.cancel();
    let (worst, statuses) = task.await.expect("producer");
    assert!(!statuses.is_empty());
    assert!(statuses.iter().all(|&s| s == 202), "every steady event accepted: {statuses:?}");
    assert!(worst < NORMAL_LATENCY, "a steady event waited {worst:?}");
}

/// Waits until the server closes `stream` (a read returns 0 or fails); how long that took.
async fn closed_within(stream: &mut TcpStream, bound: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(
            tokio::time::Instant::from_std(started + bound),
            stream.read(&mut buf),
        )
        .await
        {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

fn addr(ingest: &Ingest) -> String {
    ingest.base.trim_start_matches("http://").to_owned()
}

#[tokio::test]
async fn a_client_sending_headers_slowly_is_closed_within_the_header_timeout() {
    let ingest = tuned(|c| c.http.header_timeout = Duration::from_secs(1)).await;
    let (stop, steady) = steady_producer(&ingest);
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(addr(&ingest)).await.expect("connect");
        s.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n").await.expect("write");
        slow.push(s);
    }
    // One more header byte a second each: never a whole head.
    let dribble = tokio::spawn(async move {
        for _ in 0..3 {
            for s in &mut slow {
                let _ = s.write_all(b"X").await;
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        slow
    });
    let mut slow = dribble.await.expect("dribble");
    for s in &mut slow {
        let took = closed_within(s, Duration::from_secs(3)).await;
        assert!(
            took.is_some(),
            "a slowloris connection was still open 3 s after a 1 s header timeout"
        );
    }
    assert_steady_kept_its_latency(stop, steady).await;
    ingest.stop().await;
}

#[tokio::test]
async fn a_client_sending_its_body_slowly_gets_408_within_the_request_timeout() {
    let ingest = tuned(|c| c.http.request_timeout = Duration::from_secs(2)).await;
    let (stop, steady) = steady_producer(&ingest);
    let mut s = TcpStream::connect(addr(&ingest)).await.expect("connect");
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{",
        ingest.token
    );
    s.write_all(head.as_bytes()).await.expect("head");
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            tokio::select! {
                read = s.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                },
                _ = tokio::time::sleep(Duration::from_millis(300)) => {
                    if s.write_all(b" ").await.is_err() { break; }
                }
            }
            if started.elapsed() > Duration::from_secs(10) {
                break;
            }
        }
        answer
    });
    let answer = writer.await.expect("writer");
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(took < Duration::from_secs(4), "answered after {took:?} for a 2 s request timeout");
    assert_steady_kept_its_latency(stop, steady).await;
    ingest.stop().await;
}

#[tokio::test]
async fn two_thousand_idle_connections_are_capped_then_closed_and_a_busy_client_keeps_going() {
    let ingest = tuned(|c| {
        c.http.header_timeout = Duration::from_secs(1);
        c.http.max_connections = 1024;
    })
    .await;
    let (stop, steady) = steady_producer(&ingest);
    tokio::time::sleep(Duration::from_millis(300)).await; // its connection is open
    let mut idle = Vec::new();
    for _ in 0..2_000 {
        idle.push(TcpStream::connect(addr(&ingest)).await.expect("connect"));
    }
    let mut closed = 0;
    for s in &mut idle {
        if closed_within(s, Duration::from_secs(3)).await.is_some() {
            closed += 1;
        }
    }
    assert_eq!(
        closed, 2_000,
        "every idle connection closed: past the cap at once, the rest after the header timeout"
    );
    assert_steady_kept_its_latency(stop, steady).await;
    // The slots are free again: a new client is served.
    let r = ingest.post("/v1/events").json(&created("after")).send().await.expect("post");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    ingest.stop().await;
}

#[tokio::test]
async fn requests_hyper_cannot_parse_are_answered_in_the_json_error_format() {
    let ingest = tuned(|_| {}).await;
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    let headers: String = (0..300).map(|i| format!("x-h{i}: v\r\n")).collect();
    let many_headers = format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
    for (request, status, code) in [
        ("GARBAGE\r\n\r\n".to_owned(), 400, "bad_request"),
        (long_target, 414, "uri_too_long"),
        (many_headers, 431, "request_header_fields_too_large"),
    ] {
        let mut s = TcpStream::connect(addr(&ingest)).await.expect("connect");
        // The server may answer and close before the whole request is written.
        let _ = s.write_all(request.as_bytes()).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{code}: {text}");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{text}");
        let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(v["error"]["code"], code, "{text}");
    }
    ingest.stop().await;
}

/// One connection of a keyless flood: `GET /healthz` with no key every second on a kept-alive
/// connection, reopened whenever the server closes it, until `stop`.
async fn flooder(addr: String, stop: tokio_util::sync::CancellationToken) {
    while !stop.is_cancelled() {
        let Ok(mut s) = TcpStream::connect(&addr).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut buf = [0u8; 2048];
        loop {
            if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.is_err() {
                break;
            }
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

#[tokio::test]
async fn keyless_connections_holding_every_slot_do_not_lock_a_producer_out() {
    const CAP: usize = 64;
    const REQUESTS: usize = 40;
    let ingest = tuned(|c| c.http.max_connections = CAP).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let flood: Vec<_> =
        (0..CAP).map(|_| tokio::spawn(flooder(addr(&ingest), stop.clone()))).collect();
    tokio::time::sleep(Duration::from_secs(2)).await; // every slot held
                                                      // The producer opens a new connection for every request: the hardest case at the cap.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
    let mut latencies = Vec::new();
    let mut accepted = 0;
    for i in 0..REQUESTS {
        let started = Instant::now();
        let r = client
            .post(format!("{}/v1/events", ingest.base))
            .bearer_auth(&ingest.token)
            .json(&created(&format!("p{i}")))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        latencies.push(started.elapsed());
        if r.is_ok_and(|r| r.status() == StatusCode::ACCEPTED) {
            accepted += 1;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.cancel();
    for f in flood {
        let _ = f.await;
    }
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    assert!(accepted * 100 >= REQUESTS * 95, "{accepted} of {REQUESTS} accepted beside the flood");
    assert!(p99 < Duration::from_millis(100), "p99 {p99:?} beside the flood: {latencies:?}");
    ingest.stop().await;
}

#[tokio::test]
async fn shutdown_keeps_its_deadline_with_a_client_holding_a_request_open() {
    let ingest = tuned(|c| {
        c.http.request_timeout = Duration::from_secs(60);
        c.http.header_timeout = Duration::from_secs(60);
        c.ingest.shutdown_deadline = Duration::from_secs(6);
    })
    .await;
    let mut s = TcpStream::connect(addr(&ingest)).await.expect("connect");
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{",
        ingest.token
    );
    s.write_all(head.as_bytes()).await.expect("head");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    ingest.stop().await;
    let took = started.elapsed();
    // The drain gets the deadline less the 5 s kept for the final steps: here 3 s.
    assert!(took < Duration::from_secs(6), "shutdown took {took:?} for a 6 s deadline");
}

#[tokio::test]
async fn every_error_is_json_also_those_of_the_framework() {
    let ingest = Ingest::start().await;
    let base = &ingest.base;
    let mut many = reqwest::header::HeaderMap::new();
    for i in 0..150 {
        many.insert(
            reqwest::header::HeaderName::from_bytes(format!("x-h{i}").as_bytes()).expect("name"),
            "v".parse().expect("value"),
        );
    }
    let cases = [
        (ingest.http.put(format!("{base}/v1/events")), 405, "method_not_allowed"),
        (ingest.http.get(format!("{base}/v1/nothing-here")), 404, "not_found"),
        (
            ingest.http.post(format!("{base}/v1/events")).headers(many),
            431,
            "request_header_fields_too_large",
        ),
    ];
    for (request, status, code) in cases {
        let r = request.send().await.expect("send");
        assert_eq!(r.status().as_u16(), status);
        assert!(
            r.headers()["content-type"].to_str().is_ok_and(|c| c.starts_with("application/json")),
            "{status} must be JSON"
        );
        let v: Value = r.json().await.expect("json body");
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(v["error"]["message"].is_string(), "{v}");
    }
    ingest.stop().await;
}
