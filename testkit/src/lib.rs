//! Shared kit for integration tests: every test gets its own topic prefix and its own
//! database, so tests run in parallel against the one local broker and Postgres and leave
//! nothing behind. A dev-dependency only: never in a service binary.
//!
//! `HOOKSTREAM_TEST_BROKERS` and `HOOKSTREAM_TEST_DATABASE_URL` point it at the services that
//! `scripts/dev-up.sh` started; the defaults match that script's defaults.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod otlp;
mod running;

pub use otlp::{ExportedSpan, OtlpReceiver};
pub use running::{Running, Stage};

use std::future::Future;
use std::time::Duration;

use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use hookstream_core::config::{DatabaseConfig, KafkaConfig, TopicsConfig};
use hookstream_core::kafka::{self, TopicSpec};

/// Bootstrap servers of the test broker.
pub fn brokers() -> String {
    std::env::var("HOOKSTREAM_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".into())
}

/// URL of the test Postgres' maintenance database (tests create their own databases there).
pub fn admin_database_url() -> String {
    std::env::var("HOOKSTREAM_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://hookstream@127.0.0.1:15432/postgres".into())
}

/// A short random token for unique names.
pub fn unique(tag: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{tag}{}", &id[..12])
}

/// Kafka settings for the test broker, with short timeouts.
pub fn kafka_config() -> KafkaConfig {
    KafkaConfig {
        brokers: brokers(),
        produce_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(10),
        ..KafkaConfig::default()
    }
}

/// Topic settings with a unique prefix and a short retry schedule.
pub fn topics_config(partitions: i32) -> TopicsConfig {
    TopicsConfig {
        prefix: format!("{}.", unique("t")),
        partitions,
        retry_schedule: vec![
            Duration::from_millis(200),
            Duration::from_millis(400),
            Duration::from_millis(800),
        ],
        ..TopicsConfig::default()
    }
}

/// Creates `names` with `partitions` partitions on the test broker.
pub async fn create_topics(names: &[String], partitions: i32) {
    create_topics_on(&kafka_config(), names, partitions).await
}

/// Creates `names` with `partitions` partitions on the broker of `cfg`.
pub async fn create_topics_on(cfg: &KafkaConfig, names: &[String], partitions: i32) {
    let admin = kafka::admin(cfg, "hookstream-test").expect("admin client");
    let specs: Vec<TopicSpec> = names
        .iter()
        .map(|n| TopicSpec { name: n.clone(), partitions, replication_factor: 1, configs: vec![] })
        .collect();
    kafka::create_topics(&admin, &specs).await.expect("create topics");
}

/// A migrated database of its own, dropped when this value is dropped.
pub struct TestDatabase {
    /// Pool on the test's database.
    pub pool: PgPool,
    /// Settings pointing at it, for services started in-process.
    pub config: DatabaseConfig,
    name: String,
}

impl TestDatabase {
    /// Creates and migrates a fresh database.
    pub async fn new() -> Self {
        let name = unique("hs_test_");
        let admin_url = admin_database_url();
        let mut conn = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("test Postgres at {admin_url} unreachable (run scripts/dev-up.sh): {e}")
        });
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create db");
        let _ = conn.close().await;
        let mut url = url::Url::parse(&admin_url).expect("admin url");
        url.set_path(&name);
        let config = DatabaseConfig {
            url: url.to_string(),
            max_connections: 5,
            connect_timeout: Duration::from_secs(5),
        };
        let pool = hookstream_core::db::connect(&config).await.expect("connect test db");
        hookstream_core::db::migrate(&pool).await.expect("migrate test db");
        Self { pool, config, name }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let pool = self.pool.clone();
        // Drop runs outside async context guarantees: use a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
            if let Ok(rt) = rt {
                rt.block_on(async move {
                    // Closing waits for checked-out connections, whose return may need the
                    // test's own (now blocked) runtime; FORCE below ends them anyway.
                    let _ = tokio::time::timeout(Duration::from_secs(2), pool.close()).await;
                    if let Ok(mut conn) = PgConnection::connect(&admin_database_url()).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut conn)
                                .await;
                    }
                });
            }
        })
        .join();
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The context of a new trace's `send` span, for records a test produces as ingest would.
pub fn new_trace() -> hookstream_core::trace::Context {
    let tracing = hookstream_core::trace::Tracing::local("test");
    tracing.tracer().send(&hookstream_core::trace::Context::new(), "test")
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A service binary as the tests run it: nothing of this environment but `PATH`, the broker
/// at `brokers` and the database at `database_url`; its output shown only with
/// `HOOKSTREAM_TEST_SHOW_LOGS` set.
pub fn service_command(binary: &str, brokers: &str, database_url: &str) -> std::process::Command {
    use std::process::Stdio;
    let shown = || {
        if std::env::var_os("HOOKSTREAM_TEST_SHOW_LOGS").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        }
    };
    let mut cmd = std::process::Command::new(binary);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOOKSTREAM_KAFKA__BROKERS", brokers)
        .env("HOOKSTREAM_DATABASE__URL", database_url)
        .stdout(shown())
        .stderr(shown());
    cmd
}

/// A child process, killed and reaped when dropped, so a failing test leaves nothing running.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Proves a service binary's life cycle: a bad config value exits 2 naming the key, an
/// unreachable broker exits 1 with a one-line error, and with the local broker and Postgres
/// it becomes ready, then stops with exit 0 on SIGTERM. `listen_key` is the config key of the
/// address serving `/readyz` (e.g. `ADMIN__LISTEN`).
pub async fn assert_service_lifecycle(binary: &str, listen_key: &str) {
    use std::process::{Command, Stdio};

    let db = TestDatabase::new().await;
    let run = |envs: &[(&str, String)]| {
        let mut cmd = service_command(binary, &brokers(), &db.config.url);
        cmd.env("HOOKSTREAM_KAFKA__CONNECT_TIMEOUT", "2s")
            .env("HOOKSTREAM_DATABASE__CONNECT_TIMEOUT", "2s")
            // Ingest's public port (the other services ignore the key).
            .env("HOOKSTREAM_HTTP__LISTEN", format!("127.0.0.1:{}", free_port()))
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd
    };
    let name = std::path::Path::new(binary).file_name().unwrap().to_string_lossy().into_owned();

    let out = run(&[("HOOKSTREAM_KAFKA__PRODUCE_TIMEOUT", "soon".into())]).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "bad config must exit 2: {stderr}");
    assert!(stderr.contains("kafka.produce_timeout"), "error must name the key: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");

    let out = run(&[("HOOKSTREAM_KAFKA__BROKERS", "127.0.0.1:1".into())]).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "dead broker must exit 1: {stderr}");
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(last.starts_with(&format!("{name}: kafka broker 127.0.0.1:1 unreachable")), "{stderr}");

    let port = free_port();
    let mut child = run(&[(&format!("HOOKSTREAM_{listen_key}"), format!("127.0.0.1:{port}"))])
        .spawn()
        .expect("spawn");
    answers_ok(
        &format!("http://127.0.0.1:{port}/readyz"),
        Duration::from_secs(20),
        "service ready",
    )
    .await;
    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    assert!(killed.success());
    let status = eventually(Duration::from_secs(15), "exit after SIGTERM", || {
        let status = child.try_wait().expect("wait");
        async move { status }
    })
    .await;
    assert!(status.success(), "SIGTERM must stop the service cleanly, got {status}");
}

/// Waits until a GET of `url` answers 2xx, or panics after `timeout` naming `what`.
async fn answers_ok(url: &str, timeout: Duration, what: &str) {
    eventually(timeout, what, || async move {
        let r = reqwest::get(url).await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
}

/// A broker of the test's own, for tests that stop and restart it: one Apache Kafka node
/// started with `scripts/kafka-node.sh` (path from `HOOKSTREAM_KAFKA_NODE`, which the scripts
/// set) on free ports, its log in a directory of its own, so topics, records and committed
/// offsets survive [`OwnBroker::stop`] and [`OwnBroker::restart`]. Killed and deleted on drop.
pub struct OwnBroker {
    /// `127.0.0.1:<port>`.
    pub address: String,
    port: u16,
    controller_port: u16,
    dir: std::path::PathBuf,
    properties: Vec<String>,
    child: Option<std::process::Child>,
}

impl OwnBroker {
    /// Starts the broker and waits until it answers.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// The same with broker settings (`key=value`) added to its `server.properties`.
    pub async fn start_with(properties: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(unique("hookstream-broker-"));
        std::fs::create_dir_all(&dir).expect("broker directory");
        let port = free_port();
        let mut broker = Self {
            address: format!("127.0.0.1:{port}"),
            port,
            controller_port: free_port(),
            dir,
            properties: properties.iter().map(|p| (*p).to_owned()).collect(),
            child: None,
        };
        broker.restart().await;
        broker
    }

    /// Stops the broker (SIGKILL: an outage, not a clean shutdown; Kafka recovers its log at
    /// the next start).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same ports and directory, and waits until it answers.
    pub async fn restart(&mut self) {
        self.stop();
        let script = std::env::var("HOOKSTREAM_KAFKA_NODE")
            .expect("HOOKSTREAM_KAFKA_NODE not set: run the tests through scripts/test.sh");
        let out = std::fs::File::create(self.dir.join("kafka.out")).expect("broker output file");
        let err = out.try_clone().expect("broker output file");
        let dir = self.dir.to_string_lossy().into_owned();
        let child = std::process::Command::new(script)
            .args([dir.as_str(), &self.port.to_string(), &self.controller_port.to_string()])
            .args(&self.properties)
            // Several test brokers may run at once beside the dev one: a small heap each.
            .env("HOOKSTREAM_BROKER_HEAP", "256m")
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn scripts/kafka-node.sh");
        self.child = Some(child);
        // Kafka opens its client listener once the node has started.
        let port = self.port;
        let child = &mut self.child;
        eventually(Duration::from_secs(90), "own broker listening", || {
            let exited = child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            assert!(exited.is_none(), "the test broker exited at start ({exited:?}): see {dir}");
            async move { tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ()) }
        })
        .await;
    }

    /// Kafka settings pointing at this broker.
    pub fn kafka_config(&self) -> KafkaConfig {
        KafkaConfig { brokers: self.address.clone(), ..kafka_config() }
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Confluent-compatible schema registry of the test's own: Apicurio Registry started with
/// `scripts/registry-node.sh` (path from `HOOKSTREAM_REGISTRY_NODE`) on a free port, in-memory
/// storage. Killed on drop.
pub struct SchemaRegistry {
    /// The Confluent API's base URL, `http://127.0.0.1:<port>/apis/ccompat/v7/`.
    pub url: String,
    child: std::process::Child,
}

impl SchemaRegistry {
    /// Starts the registry and waits until its Confluent API answers.
    pub async fn start() -> Self {
        let script = std::env::var("HOOKSTREAM_REGISTRY_NODE")
            .expect("HOOKSTREAM_REGISTRY_NODE not set: run the tests through scripts/test.sh");
        let port = free_port();
        let child = std::process::Command::new(script)
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn scripts/registry-node.sh");
        let registry = Self { url: format!("http://127.0.0.1:{port}/apis/ccompat/v7/"), child };
        let subjects = format!("{}subjects", registry.url);
        answers_ok(&subjects, Duration::from_secs(90), "schema registry answering").await;
        registry
    }
}

impl Drop for SchemaRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `count` messages from `topics` with a fresh consumer group (from the beginning), or
/// panics after `timeout`. Then waits `settle` more and fails if any further message arrives,
/// so "exactly `count`" can be asserted.
pub async fn consume_exactly(
    cfg: &KafkaConfig,
    topics: &[String],
    count: usize,
    timeout: Duration,
    settle: Duration,
) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::consumer::{Consumer, DefaultConsumerContext};
    use rdkafka::Message;

    let consumer =
        kafka::consumer(cfg, "hookstream-test", &unique("read-"), DefaultConsumerContext)
            .expect("consumer");
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).expect("subscribe");
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while got.len() < count {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, consumer.recv()).await {
            Ok(Ok(m)) => got.push(m.detach()),
            Ok(Err(e)) => panic!("consume error: {e}"),
            Err(_) => panic!("got {} of {count} messages within {timeout:?}", got.len()),
        }
    }
    if let Ok(Ok(extra)) = tokio::time::timeout(settle, consumer.recv()).await {
        panic!(
            "expected exactly {count} messages, got another: key {:?}",
            extra.key().map(String::from_utf8_lossy)
        );
    }
    got
}

/// One request received by a [`Receiver`].
#[derive(Debug, Clone)]
pub struct Hit {
    /// Request path, e.g. `/ep/a`.
    pub path: String,
    /// `webhook-id`.
    pub webhook_id: String,
    /// All headers, lower-case names.
    pub headers: std::collections::HashMap<String, String>,
    /// Body.
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: std::time::Instant,
}

/// A webhook receiver on a free loopback port: records every request and answers each path
/// with the status set for it (200 by default).
#[derive(Clone)]
pub struct Receiver {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    hits: std::sync::Arc<std::sync::Mutex<Vec<Hit>>>,
    statuses: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, u16>>>,
    scripts: std::sync::Arc<
        std::sync::Mutex<std::collections::HashMap<String, std::collections::VecDeque<u16>>>,
    >,
    retry_after: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
    delays: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Duration>>>,
}

impl Receiver {
    /// Starts the receiver.
    pub async fn start() -> Self {
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode, Uri};

        let receiver = Self {
            base: String::new(),
            hits: Default::default(),
            statuses: Default::default(),
            scripts: Default::default(),
            retry_after: Default::default(),
            delays: Default::default(),
        };
        let state = receiver.clone();
        let app = axum::Router::new()
            .fallback(
                |State(r): State<Receiver>,
                 uri: Uri,
                 headers: HeaderMap,
                 body: axum::body::Bytes| async move {
                    let path = uri.path().to_owned();
                    let headers: std::collections::HashMap<String, String> = headers
                        .iter()
                        .map(|(k, v)| {
                            (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned())
                        })
                        .collect();
                    let hit = Hit {
                        webhook_id: headers.get("webhook-id").cloned().unwrap_or_default(),
                        path: path.clone(),
                        headers,
                        body: body.to_vec(),
                        at: std::time::Instant::now(),
                    };
                    r.hits.lock().unwrap().push(hit);
                    let scripted =
                        r.scripts.lock().unwrap().get_mut(&path).and_then(|s| s.pop_front());
                    let status = scripted.unwrap_or_else(|| {
                        r.statuses.lock().unwrap().get(&path).copied().unwrap_or(200)
                    });
                    let delay = r.delays.lock().unwrap().get(&path).copied();
                    if let Some(delay) = delay {
                        tokio::time::sleep(delay).await;
                    }
                    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                    let retry_after = r.retry_after.lock().unwrap().get(&path).copied();
                    let header = retry_after.map(|s| [("retry-after", s.to_string())]);
                    (status, axum::response::AppendHeaders(header.into_iter().flatten()))
                },
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, ..receiver }
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Answers `path` with `status` from now on.
    pub fn respond(&self, path: &str, status: u16) {
        self.statuses.lock().unwrap().insert(path.to_owned(), status);
    }

    /// Answers the next requests to `path` with `statuses`, one each, then as
    /// [`Self::respond`] set (200 by default).
    pub fn script(&self, path: &str, statuses: &[u16]) {
        self.scripts.lock().unwrap().insert(path.to_owned(), statuses.iter().copied().collect());
    }

    /// Answers `path` with `Retry-After: seconds` (on every answer) from now on.
    pub fn retry_after(&self, path: &str, seconds: u64) {
        self.retry_after.lock().unwrap().insert(path.to_owned(), seconds);
    }

    /// Answers requests to `path` only after `delay` (a slow receiver).
    pub fn delay(&self, path: &str, delay: Duration) {
        self.delays.lock().unwrap().insert(path.to_owned(), delay);
    }

    /// Every request so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Requests to `path` so far.
    pub fn hits_on(&self, path: &str) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| h.path == path).collect()
    }
}

/// A TCP proxy on a free loopback port to `target`, which a test can cut: every open
/// connection is dropped and new ones are refused, as when the peer's host goes away.
pub struct TcpProxy {
    /// `127.0.0.1:<port>`.
    pub address: String,
    cut: CancellationToken,
}

impl TcpProxy {
    /// Starts forwarding to `target` (`host:port`).
    pub async fn start(target: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("addr").to_string();
        let cut = CancellationToken::new();
        let (target, stop) = (target.to_owned(), cut.clone());
        tokio::spawn(async move {
            loop {
                let inbound = tokio::select! {
                    _ = stop.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((s, _)) => s,
                        Err(_) => continue,
                    },
                };
                let (target, stop) = (target.clone(), stop.clone());
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    let mut inbound = inbound;
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
            // Keep the port, refusing: nothing else may take it while the test runs.
            drop(listener);
        });
        Self { address, cut }
    }

    /// Drops every connection and stops accepting.
    pub fn cut(&self) {
        self.cut.cancel();
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url_through(&self, url: &str) -> String {
        let mut u = url::Url::parse(url).expect("url");
        let (host, port) = self.address.split_once(':').expect("address");
        u.set_host(Some(host)).expect("host");
        u.set_port(port.parse().ok()).expect("port");
        u.to_string()
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut.cancel();
    }
}

/// Proves that a service binary keeps its shutdown deadline with the broker and Postgres both
/// gone: started against `broker` and a proxy to the test database, given `work` to do
/// (delivery-log rows pending and the like), then both dependencies are cut and it gets
/// SIGTERM; it must exit within `deadline` (set as `deadline_key`) plus one second.
pub async fn assert_shutdown_deadline_with_dependencies_gone<W, Fut>(
    binary: &str,
    envs: &[(&str, String)],
    broker: &mut OwnBroker,
    db: &TestDatabase,
    deadline_key: &str,
    deadline: Duration,
    work: W,
) where
    W: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    use std::process::Command;

    let pg = url::Url::parse(&db.config.url).expect("db url");
    let proxy = TcpProxy::start(&format!(
        "{}:{}",
        pg.host_str().unwrap_or("127.0.0.1"),
        pg.port().unwrap_or(5432)
    ))
    .await;
    let admin = free_port();
    let mut cmd = service_command(binary, &broker.address, &proxy.url_through(&db.config.url));
    cmd.env("HOOKSTREAM_ADMIN__LISTEN", format!("127.0.0.1:{admin}"))
        .env("HOOKSTREAM_HTTP__LISTEN", format!("127.0.0.1:{}", free_port()))
        .env(
            format!("HOOKSTREAM_{deadline_key}"),
            humantime::format_duration(deadline).to_string(),
        );
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn");
    let ready = format!("http://127.0.0.1:{admin}/readyz");
    eventually(Duration::from_secs(30), "service ready", || {
        let url = ready.clone();
        async move { reqwest::get(&url).await.ok()?.status().is_success().then_some(()) }
    })
    .await;
    work().await;
    proxy.cut();
    broker.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    let killed =
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let bound = deadline + Duration::from_secs(1);
    let mut status = None;
    while started.elapsed() < bound + Duration::from_secs(30) {
        status = child.try_wait().expect("wait");
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    eprintln!("shutdown with the broker and Postgres gone: exited {status:?} after {took:?} (deadline {deadline:?})");
    // Reaped in every case (a no-op kill when it has exited).
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        status.is_some() && took <= bound,
        "with the broker and Postgres gone, shutdown took {took:?} ({status:?}) for a {deadline:?} deadline"
    );
}

/// An endpoint of `account` at `url` for `types`, created through the endpoint rules with
/// http:// and loopback targets allowed (the test receivers listen on loopback); its id and
/// signing secret.
pub async fn create_endpoint(
    pool: &PgPool,
    account: hookstream_core::AccountId,
    url: String,
    types: &[&str],
    rate_limit: Option<hookstream_core::tier::RateLimit>,
) -> (hookstream_core::EndpointId, String) {
    use hookstream_core::db::endpoints;
    let new = endpoints::NewEndpoint {
        url,
        description: String::new(),
        event_types: types.iter().map(|t| t.to_string()).collect(),
        rate_limit,
    };
    let schemas = hookstream_core::schema::Schemas::load().expect("schemas");
    let rules = hookstream_core::db::endpoint_rules::EndpointRules::new(true, true, &schemas);
    let new = rules.check_new(new).await.expect("a valid endpoint");
    let (endpoint, secret) =
        endpoints::create(pool, account, &new, "operator:test").await.expect("endpoint");
    (endpoint.id, secret)
}

/// An account with a live API key, on a test database.
pub struct Tenant {
    /// The account.
    pub account: hookstream_core::AccountId,
    /// The key's id (the audit log names `key:<id>`).
    pub key_id: hookstream_core::ApiKeyId,
    /// The key itself.
    pub token: String,
}

impl Tenant {
    /// A new small-tier account named `name` with one key.
    pub async fn create(pool: &PgPool, name: &str) -> Self {
        use hookstream_core::db::{accounts, api_keys};
        let account =
            accounts::create(pool, name, hookstream_core::tier::Tier::Small, "operator:test")
                .await
                .expect("account");
        let (key_id, key) =
            api_keys::issue(pool, account.id, name, "operator:test").await.expect("key");
        Self { account: account.id, key_id, token: key.key }
    }
}

/// An HTTP service (ingest, the API) running in this test process on its own ports.
pub struct InProcess {
    /// `http://127.0.0.1:<port>`: the public port.
    pub base: String,
    /// `/readyz` and `/metrics` (not on the public port).
    pub admin_base: String,
    /// A client for it.
    pub http: reqwest::Client,
    running: Option<Running>,
}

impl InProcess {
    /// Runs `run(public port, admin port, shutdown)` on a task and waits until `/healthz`
    /// answers on the public port.
    pub async fn start<F, Fut, E>(name: &'static str, run: F) -> Self
    where
        F: FnOnce(u16, u16, CancellationToken) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let (port, admin_port) = (free_port(), free_port());
        let shutdown = CancellationToken::new();
        let service = run(port, admin_port, shutdown.clone());
        let running = Running::spawn(name, shutdown, service);
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let health = format!("{base}/healthz");
        eventually(Duration::from_secs(20), &format!("{name} listening"), || {
            let (http, health) = (http.clone(), health.clone());
            async move { http.get(&health).send().await.ok().map(|_| ()) }
        })
        .await;
        Self {
            base,
            admin_base: format!("http://127.0.0.1:{admin_port}"),
            http,
            running: Some(running),
        }
    }

    /// Shuts the service down and waits for it (dropping it only asks it to stop).
    pub async fn halt(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }
}

/// What a service started by [`Harness`] is wired to: build its configuration from these.
pub struct Wiring {
    /// The broker.
    pub kafka: KafkaConfig,
    /// Its topics (a prefix of its own).
    pub topics: TopicsConfig,
    /// Its database.
    pub database: DatabaseConfig,
    /// The public listener, on a free port.
    pub http: hookstream_core::config::HttpConfig,
    /// The admin listener, on a free port.
    pub admin: hookstream_core::config::AdminConfig,
}

/// An HTTP service (ingest, the API) running in-process on a database and topics of its own,
/// with one account and its key.
pub struct Harness {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// `/readyz` and `/metrics` (not on the public port).
    pub admin_base: String,
    /// The account.
    pub account: hookstream_core::AccountId,
    /// Its key's id.
    pub key_id: hookstream_core::ApiKeyId,
    /// Its key.
    pub token: String,
    /// The service's topics.
    pub topics: TopicsConfig,
    /// The service's broker.
    pub kafka: KafkaConfig,
    /// The service's database.
    pub db: TestDatabase,
    /// A client.
    pub http: reqwest::Client,
    service: InProcess,
}

impl Harness {
    /// Starts `run(wiring, shutdown)` on `kafka`; with `event_topics`, the event lanes are
    /// created first.
    pub async fn start<F, Fut, E>(
        name: &'static str,
        kafka: KafkaConfig,
        event_topics: bool,
        run: F,
    ) -> Self
    where
        F: FnOnce(Wiring, CancellationToken) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let topics = topics_config(4);
        if event_topics {
            create_topics_on(&kafka, &topics.topics().all_events(), 4).await;
        }
        let db = TestDatabase::new().await;
        let tenant = Tenant::create(&db.pool, "test account").await;
        let wiring = (kafka.clone(), topics.clone(), db.config.clone());
        let service = InProcess::start(name, move |port, admin_port, shutdown| {
            let (kafka, topics, database) = wiring;
            let wiring = Wiring {
                kafka,
                topics,
                database,
                http: hookstream_core::config::HttpConfig::on(([127, 0, 0, 1], port).into()),
                admin: hookstream_core::config::AdminConfig {
                    listen: ([127, 0, 0, 1], admin_port).into(),
                },
            };
            run(wiring, shutdown)
        })
        .await;
        Self {
            base: service.base.clone(),
            admin_base: service.admin_base.clone(),
            account: tenant.account,
            key_id: tenant.key_id,
            token: tenant.token,
            topics,
            kafka,
            db,
            http: service.http.clone(),
            service,
        }
    }

    /// A new account with its own key on this service's database.
    pub async fn another_account(&self) -> (hookstream_core::AccountId, String) {
        let t = Tenant::create(&self.db.pool, "other").await;
        (t.account, t.token)
    }

    /// `POST {path}` with JSON and this account's key.
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
    }

    /// Stops the service and waits for it.
    pub async fn stop(mut self) {
        self.halt().await;
    }

    /// Shuts the service down and waits for it, keeping its database for inspection.
    pub async fn halt(&mut self) {
        self.service.halt().await;
    }
}

/// An HTTP service the tests start in-process as a [`Served`]: how its configuration is made
/// from the test's [`Wiring`] and its own section, and how it runs.
pub trait HttpService {
    /// Its whole configuration.
    type Config;
    /// Its own section (`[api]`, `[ingest]`).
    type Settings: Default;
    /// Its name, in logs.
    const NAME: &'static str;
    /// Whether the event lanes must exist before it starts (ingest produces to them).
    const EVENT_TOPICS: bool;
    /// The configuration for `wiring` and `settings`, the rest default.
    fn configure(wiring: Wiring, settings: Self::Settings) -> Self::Config;
    /// Runs it until `shutdown`.
    fn run(
        config: Self::Config,
        shutdown: CancellationToken,
    ) -> impl Future<Output = Result<(), hookstream_core::service::ServiceError>> + Send + 'static;
}

/// A running [`HttpService`] with one account and its key: a [`Harness`] that knows what it runs.
pub struct Served<S>(Harness, std::marker::PhantomData<S>);

impl<S: HttpService> Served<S> {
    /// On the shared test broker with default settings.
    pub async fn start() -> Self {
        Self::start_with(kafka_config(), S::Settings::default()).await
    }

    /// On `kafka` with `settings`.
    pub async fn start_with(kafka: KafkaConfig, settings: S::Settings) -> Self {
        Self::start_tuned(kafka, settings, |_| {}).await
    }

    /// [`Self::start_with`], with the whole configuration tuned by `tune` last.
    pub async fn start_tuned(
        kafka: KafkaConfig,
        settings: S::Settings,
        tune: impl FnOnce(&mut S::Config),
    ) -> Self {
        let harness = Harness::start(S::NAME, kafka, S::EVENT_TOPICS, move |wiring, shutdown| {
            let mut config = S::configure(wiring, settings);
            tune(&mut config);
            S::run(config, shutdown)
        })
        .await;
        Self(harness, std::marker::PhantomData)
    }

    /// Stops it and waits for it to finish.
    pub async fn stop(self) {
        self.0.stop().await;
    }
}

impl<S> std::ops::Deref for Served<S> {
    type Target = Harness;
    fn deref(&self) -> &Harness {
        &self.0
    }
}

impl<S> std::ops::DerefMut for Served<S> {
    fn deref_mut(&mut self) -> &mut Harness {
        &mut self.0
    }
}

/// A service's OpenAPI document, checked: `generated` must equal the checked-in file at
/// `path`, whose text is returned to compare with what the service serves. With
/// `UPDATE_OPENAPI` set the file is rewritten instead, and `None` returned.
pub fn checked_in_openapi(generated: &str, path: &str) -> Option<String> {
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, generated).expect("write the OpenAPI document");
        return None;
    }
    let checked_in = std::fs::read_to_string(path).expect("read the checked-in document");
    assert!(
        checked_in == generated,
        "{path} is stale: regenerate it with UPDATE_OPENAPI=1 cargo nextest run openapi"
    );
    Some(checked_in)
}
