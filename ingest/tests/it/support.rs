//! Starting ingest in-process against a test database and topic prefix.

use std::future::Future;

use hookstream_core::service::ServiceError;
use hookstream_ingest::{IngestConfig, IngestSettings};
use hookstream_testkit::{HttpService, Served, Wiring};
use tokio_util::sync::CancellationToken;

/// A running ingest with one account and its key.
pub(crate) type Ingest = Served<Intake>;

/// Ingest, as the test kit starts it.
pub(crate) struct Intake;

impl HttpService for Intake {
    type Config = IngestConfig;
    type Settings = IngestSettings;
    const NAME: &'static str = "ingest";
    const EVENT_TOPICS: bool = true;

    fn configure(w: Wiring, ingest: IngestSettings) -> IngestConfig {
        let Wiring { kafka, topics, database, http, admin } = w;
        IngestConfig { kafka, topics, database, http, admin, ingest, ..IngestConfig::default() }
    }

    fn run(
        config: IngestConfig,
        shutdown: CancellationToken,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send + 'static {
        hookstream_ingest::run(config, shutdown)
    }
}

/// A valid `subscriber.created` event body.
pub(crate) fn created(id: &str) -> serde_json::Value {
    serde_json::json!({
        "event_type": "subscriber.created",
        "data": {"subscriber": {"id": id, "email": format!("{id}@example.com")}}
    })
}
