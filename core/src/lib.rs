//! hookstream's domain library, shared by ingest, the API, dispatcher, retrier, the CLI and
//! the testbed.
//!
//! The services are thin binaries over this crate: the event envelope and delivery task
//! ([`envelope`]) and how they travel through Kafka ([`wire`]), typed configuration
//! ([`config`]), topic naming ([`topics`]), Kafka client builders ([`kafka`]), Postgres access
//! and the domain rules ([`db`]), the delivery engine ([`delivery`]), the HTTP layer of ingest
//! and the API ([`http`]), schema validation ([`schema`]), telemetry ([`telemetry`]) and the
//! service and command life cycles ([`service`], [`tool`]).

pub mod admin;
pub mod api_key;
pub mod backoff;
pub mod config;
pub mod db;
pub mod delivery;
pub mod dlq;
pub mod envelope;
pub mod http;
pub mod ids;
pub mod kafka;
pub mod offsets;
pub mod partitions;
pub mod producer;
pub mod rate_limit;
pub mod schema;
pub mod service;
pub mod shutdown;
pub mod telemetry;
pub mod tier;
pub mod tool;
pub mod topics;
pub mod trace;
pub mod wire;

pub use ids::{AccountId, ApiKeyId, DeadLetterId, EndpointId, EventId, RedriveJobId};
