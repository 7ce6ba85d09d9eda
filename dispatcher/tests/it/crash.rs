//! SIGKILL the dispatcher mid-stream and start it again: every event is delivered at least
//! once, and duplicates stay within the in-flight bound.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hookstream_core::envelope::Priority;
use hookstream_core::testkit::{self, eventually, Receiver};
use hookstream_core::tier::RateLimit;

use crate::support::World;

const EVENTS: usize = 2_000;
const IN_FLIGHT: usize = 30;

/// Kills the process when dropped, so a failing test leaves nothing running.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(world: &World, group: &str) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_hookstream-dispatcher"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOOKSTREAM_KAFKA__BROKERS", &world.kafka.brokers)
        .env("HOOKSTREAM_KAFKA__SESSION_TIMEOUT", "6s")
        .env("HOOKSTREAM_DATABASE__URL", &world.db.config.url)
        .env("HOOKSTREAM_TOPICS__PREFIX", &world.topics.prefix)
        .env("HOOKSTREAM_ADMIN__LISTEN", format!("127.0.0.1:{}", testkit::free_port()))
        .env("HOOKSTREAM_DELIVERY__ALLOW_PRIVATE_TARGETS", "true")
        .env("HOOKSTREAM_DELIVERY__RECORD_FLUSH_INTERVAL", "10ms")
        .env("HOOKSTREAM_DISPATCHER__GROUP_ID", group)
        .env("HOOKSTREAM_DISPATCHER__IN_FLIGHT", IN_FLIGHT.to_string())
        .env("HOOKSTREAM_DISPATCHER__COMMIT_INTERVAL", "100ms")
        .env("HOOKSTREAM_TELEMETRY__LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dispatcher");
    Process(child)
}

#[tokio::test]
async fn a_killed_dispatcher_loses_nothing_and_duplicates_stay_within_the_in_flight_bound() {
    let world = World::new(4).await;
    let receiver = Receiver::start().await;
    let account = world.account().await;
    // Slow enough that the kill lands mid-stream.
    world
        .endpoint(
            account,
            receiver.url("/ep"),
            &["*"],
            Some(RateLimit { per_second: 300, burst: 10 }),
        )
        .await;
    // One record per produce request: the local broker cannot resume from an offset inside a
    // multi-record batch (README, "Local broker"), which would stall the restarted consumer
    // for reasons that are not the dispatcher's.
    let mut expected = Vec::with_capacity(EVENTS);
    for _ in 0..EVENTS {
        let id = world.produce(account, "subscriber.created", Priority::Normal).await;
        expected.push(id.to_string());
    }
    let group = testkit::unique("crash-");

    let mut first = spawn(&world, &group);
    eventually(Duration::from_secs(60), "a third delivered", || async {
        (receiver.hits().len() >= EVENTS / 3).then_some(())
    })
    .await;
    first.0.kill().expect("SIGKILL");
    first.0.wait().expect("reap");
    let at_kill = receiver.hits().len();
    assert!(at_kill < EVENTS, "killed after everything was delivered; the test proves nothing");

    let second = spawn(&world, &group);
    let counts = eventually(Duration::from_secs(90), "every event delivered", || async {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for hit in receiver.hits() {
            *counts.entry(hit.webhook_id).or_default() += 1;
        }
        expected.iter().all(|id| counts.contains_key(id)).then_some(counts)
    })
    .await;
    drop(second);
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    eprintln!("killed at {at_kill} deliveries; {duplicates} duplicates after restart");
    assert!(
        duplicates <= IN_FLIGHT,
        "{duplicates} duplicates exceed the in-flight bound {IN_FLIGHT}"
    );
    assert_eq!(counts.len(), EVENTS, "no unknown ids");
}
