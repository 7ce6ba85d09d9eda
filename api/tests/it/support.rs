//! Starting the management API in-process against a test database and topic prefix.

use std::future::Future;

use hookstream_api::{ApiConfig, ApiSettings};
use hookstream_core::service::ServiceError;
use hookstream_testkit::{HttpService, Served, Wiring};
use tokio_util::sync::CancellationToken;

/// A running management API with one account and its key.
pub(crate) type Api = Served<ManagementApi>;

/// The management API, as the test kit starts it.
pub(crate) struct ManagementApi;

impl HttpService for ManagementApi {
    type Config = ApiConfig;
    type Settings = ApiSettings;
    const NAME: &'static str = "api";
    const EVENT_TOPICS: bool = false;

    fn configure(w: Wiring, api: ApiSettings) -> ApiConfig {
        let Wiring { kafka, topics, database, http, admin } = w;
        ApiConfig { kafka, topics, database, http, admin, api, ..ApiConfig::default() }
    }

    fn run(
        config: ApiConfig,
        shutdown: CancellationToken,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send + 'static {
        hookstream_api::run(config, shutdown)
    }
}
