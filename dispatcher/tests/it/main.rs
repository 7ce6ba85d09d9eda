//! Integration tests of the dispatcher: real broker, real Postgres, a real HTTP receiver.

mod crash;
mod delivery;
mod fairness;
mod poison;
mod support;

use hookstream_testkit as testkit;

#[tokio::test]
async fn starts_fails_clearly_and_stops_on_sigterm() {
    testkit::assert_service_lifecycle(env!("CARGO_BIN_EXE_hookstream-dispatcher"), "ADMIN__LISTEN")
        .await;
}
