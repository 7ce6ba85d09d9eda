//! Running the dispatcher against a test database and topics, and producing events the way
//! ingest does (JSON envelope keyed by account, `traceparent` header, acks=all).

use std::time::Duration;

use hookstream_core::config::AdminConfig;

use hookstream_core::delivery::DeliveryConfig;
use hookstream_core::envelope::{EventEnvelope, Priority};
use hookstream_core::tier::RateLimit;
use hookstream_core::wire::headers;
use hookstream_core::{AccountId, EndpointId, EventId};
use hookstream_dispatcher::{DispatcherConfig, DispatcherSettings};
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

impl World {
    pub(crate) async fn new(partitions: i32) -> Self {
        Self(Stage::new(partitions, "dispatcher-test").await)
    }

    pub(crate) async fn endpoint(
        &self,
        account: AccountId,
        url: String,
        types: &[&str],
        limit: Option<RateLimit>,
    ) -> (EndpointId, String) {
        testkit::create_endpoint(&self.db.pool, account, url, types, limit).await
    }

    pub(crate) fn config(&self, settings: DispatcherSettings) -> DispatcherConfig {
        DispatcherConfig {
            kafka: self.kafka.clone(),
            topics: self.topics.clone(),
            database: self.db.config.clone(),
            admin: AdminConfig { listen: ([127, 0, 0, 1], testkit::free_port()).into() },
            delivery: DeliveryConfig {
                allow_private_targets: true,
                record_flush_interval: Duration::from_millis(100),
                // No retrier runs here to deliver parked work: these tests keep every task in
                // memory (parking is tested with the retrier, retrier/tests/it/park.rs).
                park_after: Duration::from_secs(3600),
                ..DeliveryConfig::default()
            },
            dispatcher: DispatcherSettings {
                group_id: testkit::unique("dispatcher-"),
                commit_interval: Duration::from_millis(100),
                endpoint_refresh: Duration::from_millis(300),
                ..settings
            },
            ..DispatcherConfig::default()
        }
    }

    /// Produces `n` `subscriber.created` events concurrently; returns their ids.
    pub(crate) async fn produce_many(&self, account: AccountId, n: usize) -> Vec<EventId> {
        let mut ids = Vec::with_capacity(n);
        for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
            let sends =
                chunk.iter().map(|_| self.produce(account, "subscriber.created", Priority::Normal));
            ids.extend(futures::future::join_all(sends).await);
        }
        ids
    }

    /// Produces an event as ingest would; returns its id.
    pub(crate) async fn produce(
        &self,
        account: AccountId,
        event_type: &str,
        priority: Priority,
    ) -> EventId {
        let data = json!({"subscriber": {"id": "s1", "email": "s1@example.com"}});
        let envelope = EventEnvelope { priority, ..EventEnvelope::new(account, event_type, data) };
        self.produce_envelope(&envelope).await;
        envelope.event_id
    }

    /// Produces `envelope` to its lane as ingest would.
    pub(crate) async fn produce_envelope(&self, envelope: &EventEnvelope) {
        let payload = serde_json::to_vec(envelope).expect("json");
        let topic = self.topics.topics().events(envelope.priority);
        let key = envelope.key();
        let trace = testkit::new_trace();
        let record =
            FutureRecord::to(&topic).key(&key).payload(&payload).headers(headers::event(&trace));
        self.send(record).await;
    }
}

/// A dispatcher running in-process until stopped or dropped.
pub(crate) fn start_dispatcher(config: DispatcherConfig) -> Running {
    Running::start(config, hookstream_dispatcher::run)
}
