//! A service running in-process on a test's runtime, and the broker-and-database stage the
//! consumer services' tests share.

use std::future::Future;
use std::time::Duration;

use hookstream_core::config::{KafkaConfig, TopicsConfig};
use hookstream_core::db::accounts;
use hookstream_core::envelope::DeliveryTask;
use hookstream_core::tier::Tier;
use hookstream_core::wire::task::TaskRecord;
use hookstream_core::{kafka, AccountId};
use rdkafka::message::ToBytes;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use crate::TestDatabase;

/// A service's `run` on a task until [`stop`](Running::stop)ped, [`crash`](Running::crash)ed
/// or dropped (dropping asks it to stop and does not wait). A service that fails panics the
/// task, so the test that awaits it fails saying why.
pub struct Running {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Starts `run(config, shutdown)`.
    pub fn start<C, F, Fut, E>(config: C, run: F) -> Self
    where
        F: FnOnce(C, CancellationToken) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let stop = CancellationToken::new();
        let service = run(config, stop.clone());
        Self::spawn("service", stop, service)
    }

    /// Runs `service`, which ends when `stop` is cancelled, on a task.
    pub fn spawn<Fut, E>(name: &'static str, stop: CancellationToken, service: Fut) -> Self
    where
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let task = tokio::spawn(async move {
            if let Err(e) = service.await {
                panic!("{name} failed: {e}");
            }
        });
        Self { stop, task: Some(task) }
    }

    /// Ends the service at once, as a crash would: nothing is finished or committed.
    pub async fn crash(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Shuts the service down as SIGTERM would and waits for it.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            t.await.expect("service task");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What the dispatcher's and the retrier's tests run on: every topic of a fresh prefix, a
/// database of its own, and a producer (acks=all) to write to the topics as ingest would.
pub struct Stage {
    /// The database.
    pub db: TestDatabase,
    /// The topics (the short test schedule).
    pub topics: TopicsConfig,
    /// The broker.
    pub kafka: KafkaConfig,
    /// A producer on the broker.
    pub producer: FutureProducer,
}

impl Stage {
    /// Creates the topics with `partitions` each and the database.
    pub async fn new(partitions: i32, client: &str) -> Self {
        let topics = crate::topics_config(partitions);
        let kafka = crate::kafka_config();
        crate::create_topics(&topics.topics().all(), partitions).await;
        let db = TestDatabase::new().await;
        let producer = kafka::producer(&kafka, client).expect("producer");
        Self { db, topics, kafka, producer }
    }

    /// A new account (tier xlarge: its own limits out of the tests' way).
    pub async fn account(&self) -> AccountId {
        accounts::create(&self.db.pool, "acct", Tier::Xlarge, "operator:test")
            .await
            .expect("account")
            .id
    }

    /// The delivery tasks on `topic` (a retry tier, the DLQ): exactly `n` of them within
    /// 30 s, and no more during `settle` after the last (else the test fails).
    pub async fn tasks_on(&self, topic: &str, n: usize, settle: Duration) -> Vec<DeliveryTask> {
        let wait = Duration::from_secs(30);
        crate::consume_exactly(&self.kafka, &[topic.to_owned()], n, wait, settle)
            .await
            .iter()
            .map(|m| TaskRecord::decode(m).expect("a task").task)
            .collect()
    }

    /// Sends `record` and waits for the broker's ack.
    pub async fn send<K, P>(&self, record: FutureRecord<'_, K, P>)
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("acked");
    }
}
