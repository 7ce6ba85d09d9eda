//! Integration tests of the management API against the local broker and Postgres, through
//! HTTP.

mod dlq;
mod management;
mod openapi;
mod support;
mod walls;

use hookstream_testkit as testkit;

#[tokio::test]
async fn starts_fails_clearly_and_stops_on_sigterm() {
    testkit::assert_service_lifecycle(env!("CARGO_BIN_EXE_hookstream-api"), "ADMIN__LISTEN").await;
}
