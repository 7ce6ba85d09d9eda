//! Integration tests of the retrier against the local broker and Postgres.

mod crash;
mod park;
mod schedule;
mod support;
mod throttle;
mod walls;

use hookstream_testkit as testkit;

#[tokio::test]
async fn starts_fails_clearly_and_stops_on_sigterm() {
    testkit::assert_service_lifecycle(env!("CARGO_BIN_EXE_hookstream-retrier"), "ADMIN__LISTEN")
        .await;
}
