//! A test world: topics with the short schedule (200 ms, 400 ms, 800 ms), a database, and the
//! dispatcher and retrier running in-process against them.

use std::time::Duration;

use hookstream_core::config::AdminConfig;
use hookstream_core::delivery::DeliveryConfig;
use hookstream_core::envelope::{DeliveryTask, EventEnvelope, Origin, Priority};
use hookstream_core::wire::{self, headers};
use hookstream_core::{AccountId, EndpointId, EventId};
use hookstream_dispatcher::{DispatcherConfig, DispatcherSettings};
use hookstream_retrier::{RetrierConfig, RetrierSettings};
use hookstream_testkit::{self as testkit, Running, Stage};
use rdkafka::producer::FutureRecord;
use serde_json::json;

pub(crate) struct World(Stage);

impl std::ops::Deref for World {
    type Target = Stage;

    fn deref(&self) -> &Stage {
        &self.0
    }
}

pub(crate) fn delivery() -> DeliveryConfig {
    DeliveryConfig {
        allow_private_targets: true,
        record_flush_interval: Duration::from_millis(100),
        // Tests fail endpoints on purpose; the circuit would turn their retries into skips.
        circuit_threshold: 1_000,
        ..DeliveryConfig::default()
    }
}

impl World {
    pub(crate) async fn new(partitions: i32) -> Self {
        Self(Stage::new(partitions, "retrier-test").await)
    }

    pub(crate) async fn endpoint(&self, account: AccountId, url: String) -> EndpointId {
        testkit::create_endpoint(&self.db.pool, account, url, &["*"], None).await.0
    }

    pub(crate) fn dispatcher(&self) -> DispatcherConfig {
        DispatcherConfig {
            kafka: self.kafka.clone(),
            topics: self.topics.clone(),
            database: self.db.config.clone(),
            admin: AdminConfig { listen: ([127, 0, 0, 1], testkit::free_port()).into() },
            delivery: delivery(),
            dispatcher: DispatcherSettings {
                group_id: testkit::unique("dispatcher-"),
                commit_interval: Duration::from_millis(100),
                endpoint_refresh: Duration::from_millis(300),
                ..DispatcherSettings::default()
            },
            ..DispatcherConfig::default()
        }
    }

    pub(crate) fn retrier(&self) -> RetrierConfig {
        RetrierConfig {
            kafka: self.kafka.clone(),
            topics: self.topics.clone(),
            database: self.db.config.clone(),
            admin: AdminConfig { listen: ([127, 0, 0, 1], testkit::free_port()).into() },
            delivery: delivery(),
            retrier: RetrierSettings {
                group_id: testkit::unique("retrier-"),
                dlq_group_id: testkit::unique("retrier-dlq-"),
                commit_interval: Duration::from_millis(100),
                endpoint_refresh: Duration::from_millis(300),
                dlq_size_interval: Duration::from_millis(500),
                ..RetrierSettings::default()
            },
            ..RetrierConfig::default()
        }
    }

    pub(crate) fn envelope(&self, account: AccountId, event_type: &str) -> EventEnvelope {
        let data = json!({"subscriber": {"id": "s1", "email": "s1@example.com"}});
        EventEnvelope::new(account, event_type, data)
    }

    /// Produces an event as ingest would; returns its id.
    pub(crate) async fn produce_event(&self, account: AccountId, event_type: &str) -> EventId {
        let envelope = self.envelope(account, event_type);
        let payload = serde_json::to_vec(&envelope).expect("json");
        let topic = self.topics.topics().events(Priority::Normal);
        let key = envelope.key();
        let trace = testkit::new_trace();
        let record =
            FutureRecord::to(&topic).key(&key).payload(&payload).headers(headers::event(&trace));
        self.send(record).await;
        envelope.event_id
    }

    /// Produces a delivery task straight onto retry tier `tier`, partition `partition`, due at
    /// `due_ms` (unix ms), as the dispatcher's hand-off would.
    pub(crate) async fn produce_task(
        &self,
        task: &DeliveryTask,
        tier: usize,
        partition: i32,
        due_ms: i64,
    ) {
        let topics = self.topics.topics();
        let topic = topics.retry(topics.retry_delays()[tier]);
        let key = task.envelope.key();
        let origin = Origin { topic: topics.events(Priority::Normal), partition: 0, offset: 0 };
        let trace = testkit::new_trace();
        let (payload, headers) =
            wire::task::encode(task, due_ms, None, &origin, &trace).expect("task");
        let record = FutureRecord::to(&topic)
            .key(&key)
            .partition(partition)
            .payload(&payload)
            .headers(headers);
        self.send(record).await;
    }

    /// A task after one failed attempt.
    pub(crate) fn task(&self, account: AccountId, endpoint: EndpointId) -> DeliveryTask {
        DeliveryTask::new(self.envelope(account, "subscriber.created"), endpoint).failed(1, 500)
    }
}

/// A dispatcher and a retrier (assigned every tier) on `world`, `[delivery]` of both tuned by
/// `tune`; stopped in that order by [`Pipeline::stop`].
pub(crate) struct Pipeline(Running, Running);

impl Pipeline {
    pub(crate) async fn start(world: &World, tune: impl Fn(&mut DeliveryConfig)) -> Self {
        let (mut dispatcher, mut retrier) = (world.dispatcher(), world.retrier());
        tune(&mut dispatcher.delivery);
        tune(&mut retrier.delivery);
        let dispatcher = start_dispatcher(dispatcher);
        Self(start_retrier_assigned(retrier).await, dispatcher)
    }

    pub(crate) async fn stop(self) {
        self.0.stop().await;
        self.1.stop().await;
    }
}

/// Waits until the delivery log shows `event` delivered; its (state, attempts, last status).
pub(crate) async fn delivered(world: &World, event: &str) -> (String, i32, Option<i32>) {
    testkit::eventually(Duration::from_secs(30), "delivered", || async {
        state(world, event).await.filter(|s| s.0 == "delivered")
    })
    .await
}

/// The delivery log's (state, attempts, last status) of `event`.
pub(crate) async fn state(world: &World, event: &str) -> Option<(String, i32, Option<i32>)> {
    sqlx::query_as("SELECT state, attempts, last_status FROM deliveries WHERE event_id = $1")
        .bind(event)
        .fetch_optional(&world.db.pool)
        .await
        .expect("deliveries")
}

/// A dispatcher running in-process until stopped or dropped.
pub(crate) fn start_dispatcher(config: DispatcherConfig) -> Running {
    Running::start(config, hookstream_dispatcher::run)
}

/// A retrier running in-process until stopped or dropped.
pub(crate) fn start_retrier(config: RetrierConfig) -> Running {
    Running::start(config, hookstream_retrier::run)
}

/// Starts a retrier and returns once it owns partitions of every tier (its metrics list
/// each tier), so a test's timings do not include joining the group.
pub(crate) async fn start_retrier_assigned(config: RetrierConfig) -> Running {
    let metrics = format!("http://{}/metrics", config.admin.listen);
    let running = start_retrier(config);
    testkit::eventually(Duration::from_secs(30), "retrier assigned every tier", || async {
        let m = reqwest::get(&metrics).await.ok()?.text().await.ok()?;
        ["200ms", "400ms", "800ms"]
            .iter()
            .all(|t| m.contains(&format!("retrier_paused_partitions{{tier=\"{t}\"}}")))
            .then_some(())
    })
    .await;
    running
}
