//! The `hookstream` command as the tests run it.

use hookstream_testkit::{self as testkit, TestDatabase};
use tokio::process::Command;

/// `hookstream ARGS` with a clean environment pointed at the test broker and `db`; a test adds
/// what else it needs.
pub(crate) fn command(db: &TestDatabase, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookstream"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOOKSTREAM_KAFKA__BROKERS", testkit::brokers())
        .env("HOOKSTREAM_DATABASE__URL", &db.config.url);
    command
}

/// The same on the topics under `prefix`, with the tests' short retry schedule
/// ([`testkit::topics_config`]).
pub(crate) fn on_topics(db: &TestDatabase, prefix: &str, args: &[&str]) -> Command {
    let mut command = command(db, args);
    command
        .env("HOOKSTREAM_TOPICS__PREFIX", prefix)
        .env("HOOKSTREAM_TOPICS__RETRY_SCHEDULE", "200ms,400ms,800ms");
    command
}
