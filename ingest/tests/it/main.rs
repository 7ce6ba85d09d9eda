//! Integration tests of ingest against the local broker and Postgres, through HTTP.

mod errors;
mod events;
mod openapi;
mod outage;
mod registry;
mod support;
mod walls;

use hookstream_testkit as testkit;

#[tokio::test]
async fn starts_fails_clearly_and_stops_on_sigterm() {
    testkit::assert_service_lifecycle(env!("CARGO_BIN_EXE_hookstream-ingest"), "ADMIN__LISTEN")
        .await;
}
