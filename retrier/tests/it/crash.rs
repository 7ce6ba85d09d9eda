//! SIGKILL the retrier while its tasks wait for their due time and start it again: nothing is
//! lost, nothing is delivered before it is due.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hookstream_testkit::{self as testkit, eventually, KillOnDrop, Receiver};

use crate::support::World;

const TASKS: i64 = 40;
/// How long a killed member keeps its partitions: the restarted retrier waits this long for the
/// group, so tasks due meanwhile arrive late by up to this much (plus a margin below).
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);

fn spawn(world: &World, group: &str, admin: u16) -> KillOnDrop {
    let binary = env!("CARGO_BIN_EXE_hookstream-retrier");
    let child = testkit::service_command(binary, &world.kafka.brokers, &world.db.config.url)
        .env("HOOKSTREAM_KAFKA__SESSION_TIMEOUT", format!("{}s", SESSION_TIMEOUT.as_secs()))
        .env("HOOKSTREAM_TOPICS__PREFIX", &world.topics.prefix)
        .env("HOOKSTREAM_TOPICS__RETRY_SCHEDULE", "200ms,400ms,800ms")
        .env("HOOKSTREAM_ADMIN__LISTEN", format!("127.0.0.1:{admin}"))
        .env("HOOKSTREAM_DELIVERY__ALLOW_PRIVATE_TARGETS", "true")
        .env("HOOKSTREAM_RETRIER__GROUP_ID", group)
        .env("HOOKSTREAM_RETRIER__DLQ_GROUP_ID", format!("{group}-dlq"))
        .env("HOOKSTREAM_RETRIER__COMMIT_INTERVAL", "100ms")
        .env("HOOKSTREAM_RETRIER__ENDPOINT_REFRESH", "300ms")
        .env("HOOKSTREAM_TELEMETRY__LOG_LEVEL", "warn")
        .spawn()
        .expect("spawn retrier");
    KillOnDrop(child)
}

#[tokio::test]
async fn a_retrier_killed_while_tasks_wait_loses_none_and_delivers_none_early() {
    let world = World::new(2).await;
    let receiver = Receiver::start().await;
    let a = world.account().await;
    let ep = world.endpoint(a, receiver.url("/ep")).await;
    let start = Utc::now().timestamp_millis();
    // Due 4 s to 6 s from now, on both partitions of the last tier.
    let mut due: HashMap<String, DateTime<Utc>> = HashMap::new();
    for i in 0..TASKS {
        let task = world.task(a, ep);
        let due_ms = start + 4_000 + i * 50;
        world.produce_task(&task, 2, (i % 2) as i32, due_ms).await;
        due.insert(
            task.envelope.event_id.to_string(),
            DateTime::from_timestamp_millis(due_ms).expect("ms"),
        );
    }
    let group = testkit::unique("retrier-crash-");
    let admin = testkit::free_port();
    let mut first = spawn(&world, &group, admin);
    // Kill it once it holds waiting tasks (both partitions of the tier paused).
    eventually(Duration::from_secs(30), "tasks held", || async {
        let m = reqwest::get(format!("http://127.0.0.1:{admin}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        m.contains("retrier_paused_partitions{tier=\"800ms\"} 2").then_some(())
    })
    .await;
    assert!(receiver.hits().is_empty(), "nothing is due yet");
    first.0.kill().expect("SIGKILL");
    first.0.wait().expect("reap");

    let _second = spawn(&world, &group, testkit::free_port());
    let hits = eventually(Duration::from_secs(60), "every task delivered", || async {
        let h = receiver.hits_on("/ep");
        let seen: std::collections::HashSet<&str> =
            h.iter().map(|h| h.webhook_id.as_str()).collect();
        due.keys().all(|id| seen.contains(id.as_str())).then_some(h)
    })
    .await;
    let now = Utc::now();
    let mut worst = chrono::Duration::zero();
    for h in &hits {
        let at = now - chrono::Duration::from_std(h.at.elapsed()).expect("elapsed");
        let due_at = due[&h.webhook_id];
        assert!(
            at >= due_at - chrono::Duration::milliseconds(5),
            "{} delivered {} ms early",
            h.webhook_id,
            (due_at - at).num_milliseconds()
        );
        worst = worst.max(at - due_at);
    }
    eprintln!(
        "{} deliveries of {TASKS} tasks; latest {} ms after due",
        hits.len(),
        worst.num_milliseconds()
    );
    let bound =
        chrono::Duration::from_std(SESSION_TIMEOUT + Duration::from_secs(4)).expect("bound");
    assert!(worst <= bound, "a task came {} ms after its due time", worst.num_milliseconds());
    assert_eq!(hits.len() as i64, TASKS, "each task delivered once");
}
