//! `hookstream-testbed sink`: verifies signatures with the endpoint's secret from Postgres, records
//! each accepted delivery once (duplicates apart), injects the failures it is told to, and
//! reports what it saw.

use std::time::Duration;

use chrono::Utc;
use hookstream_core::db::accounts;
use hookstream_core::delivery::sign::SigningSecret;
use hookstream_core::tier::Tier;
use hookstream_testkit::{self as testkit, eventually, TestDatabase};
use serde_json::{json, Value};

#[tokio::test]
async fn the_sink_verifies_records_and_fails_on_demand() {
    let db = TestDatabase::new().await;
    let port = testkit::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let account =
        accounts::create(&db.pool, "sink", Tier::Small, "operator:test").await.expect("a");
    let mut secrets = Vec::new();
    for path in ["/s/ok", "/s/gone"] {
        let url = format!("{base}{path}");
        let (id, secret) = testkit::create_endpoint(&db.pool, account.id, url, &["*"], None).await;
        secrets.push((id, SigningSecret::parse(&secret).expect("secret")));
    }
    let record = std::env::temp_dir().join(testkit::unique("sink-record-"));
    let sink = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookstream-testbed"))
        .args(["sink", "--listen", &format!("127.0.0.1:{port}"), "--gone", "/s/gone", "--json"])
        .arg("--record")
        .arg(&record)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOOKSTREAM_DATABASE__URL", &db.config.url)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sink");
    eventually(Duration::from_secs(20), "sink listening", || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ())
    })
    .await;

    let client = reqwest::Client::new();
    let sent_at = Utc::now();
    let body = json!({"id": "evt_1", "type": "subscriber.created", "timestamp": sent_at,
        "account_id": account.id, "data": {}})
    .to_string();
    let post = |path: &str, secret: &SigningSecret, id: &str, body: &str| {
        let ts = Utc::now().timestamp();
        client
            .post(format!("{base}{path}"))
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", secret.sign(id, ts, body.as_bytes()))
            .header("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            .body(body.to_owned())
            .send()
    };
    let (ok_secret, gone_secret) = (&secrets[0].1, &secrets[1].1);
    let stranger = SigningSecret::parse(&SigningSecret::generate()).expect("stranger");
    let status = |r: reqwest::Result<reqwest::Response>| r.expect("request").status().as_u16();

    assert_eq!(status(post("/s/ok", ok_secret, "evt_1", &body).await), 200);
    assert_eq!(status(post("/s/ok", ok_secret, "evt_1", &body).await), 200, "a duplicate");
    assert_eq!(status(post("/s/ok", &stranger, "evt_1", &body).await), 401, "bad signature");
    let ts = Utc::now().timestamp();
    let tampered = client
        .post(format!("{base}/s/ok"))
        .header("webhook-id", "evt_other")
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", ok_secret.sign("evt_1", ts, body.as_bytes()))
        .body(body.clone())
        .send()
        .await;
    assert_eq!(status(tampered), 401, "the id is signed");
    assert_eq!(status(post("/s/gone", gone_secret, "evt_1", &body).await), 410);
    assert_eq!(status(post("/s/nowhere", ok_secret, "evt_1", &body).await), 404);

    let faults = |v: Value| client.post(format!("{base}/_sink/faults")).json(&v).send();
    assert_eq!(status(faults(json!({"fail_rate": 1.0})).await), 200);
    assert_eq!(status(post("/s/ok", ok_secret, "evt_1", &body).await), 500, "told to fail");
    assert_eq!(status(faults(json!({"fail_rate": 2.0})).await), 422, "a share is 0..1");
    assert_eq!(status(faults(json!({"outage_secs": 60})).await), 200);
    assert_eq!(status(post("/s/ok", ok_secret, "evt_1", &body).await), 503, "outage");

    let report: Value = client
        .get(format!("{base}/_sink/report"))
        .send()
        .await
        .expect("report")
        .json()
        .await
        .expect("json");
    for (field, want) in [
        ("requests", 8),
        ("delivered", 1),
        ("duplicates", 1),
        ("bad_signatures", 2),
        ("gone_410", 1),
        ("unknown_endpoints", 1),
        ("injected_5xx", 1),
        ("outage_503", 1),
    ] {
        assert_eq!(report[field], want, "{field}: {report}");
    }
    let p50 = report["latency_ms"]["p50"].as_f64().expect("p50");
    assert!(p50 > 0.0 && p50 < 10_000.0, "latency from the event timestamp: {p50}");

    let lines: Vec<Vec<String>> = std::fs::read_to_string(&record)
        .expect("record")
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let endpoint = secrets[0].0.to_string();
    let account = account.id.to_string();
    for (line, duplicate) in lines.iter().zip(["0", "1"]) {
        assert_eq!(line[0], "evt_1");
        assert_eq!(line[1], endpoint);
        assert_eq!(line[2], account);
        assert_eq!(line[3], "subscriber.created");
        assert_eq!(line[6], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(line[7], duplicate);
    }

    // SIGTERM: a clean exit with the report.
    let pid = sink.id().expect("pid");
    assert!(std::process::Command::new("kill")
        .arg(pid.to_string())
        .status()
        .expect("kill")
        .success());
    let out = tokio::time::timeout(Duration::from_secs(15), sink.wait_with_output())
        .await
        .expect("exits")
        .expect("output");
    assert!(out.status.success(), "{:?}", out.status);
    let last: Value = serde_json::from_slice(&out.stdout).expect("report on exit");
    assert_eq!(last["delivered"], 1);
    let _ = std::fs::remove_file(&record);
}
