//! The retry schedule end to end (dispatcher → tiers → DLQ) with the short schedule
//! 200 ms, 400 ms, 800 ms.

use std::time::{Duration, Instant};

use chrono::Utc;
use hookstream_core::db::deliveries;
use hookstream_core::dlq::{self, Filter};
use hookstream_core::envelope::DeliveryTask;
use hookstream_testkit::{eventually, Hit, Receiver};

use crate::support::{start_dispatcher, start_retrier, start_retrier_assigned, state, World};

const WAIT: Duration = Duration::from_secs(30);
/// How much later than its schedule an attempt may arrive: hand-off produce, fetch and
/// delivery on a shared 2-core machine. Never earlier than scheduled.
const LATE: Duration = Duration::from_millis(200);
const SCHEDULE: [Duration; 3] =
    [Duration::from_millis(200), Duration::from_millis(400), Duration::from_millis(800)];

fn assert_on_schedule(hits: &[Hit]) {
    for (i, pair) in hits.windows(2).enumerate() {
        let gap = pair[1].at - pair[0].at;
        let want = SCHEDULE[i];
        assert!(
            gap >= want && gap <= want + LATE,
            "attempt {} came {gap:?} after attempt {}; the schedule says {want:?} (+{LATE:?})",
            i + 2,
            i + 1
        );
    }
}

#[tokio::test]
async fn an_endpoint_that_fails_twice_gets_the_event_at_attempt_three_on_schedule() {
    let world = World::new(1).await;
    let receiver = Receiver::start().await;
    let a = world.account().await;
    receiver.script("/flaky", &[500, 503]);
    let ep = world.endpoint(a, receiver.url("/flaky")).await;
    let dispatcher = start_dispatcher(world.dispatcher());
    let retrier = start_retrier_assigned(world.retrier()).await;

    let event = world.produce_event(a, "subscriber.created").await;
    let hits = eventually(WAIT, "3 attempts", || async {
        let h = receiver.hits_on("/flaky");
        (h.len() >= 3).then_some(h)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.hits_on("/flaky").len(), 3, "delivered at attempt 3, then no more");
    assert!(hits.iter().all(|h| h.webhook_id == event.as_str()), "every retry keeps webhook-id");
    for (i, gap) in hits.windows(2).map(|p| p[1].at - p[0].at).enumerate() {
        eprintln!("gap {} → {}: {gap:?}", i + 1, i + 2);
    }
    assert_on_schedule(&hits);
    let s = eventually(WAIT, "delivery log", || async {
        state(&world, event.as_str()).await.filter(|s| s.0 == "delivered")
    })
    .await;
    assert_eq!((s.1, s.2), (3, Some(200)));
    // What GET /v1/events/{id}/deliveries and /v1/endpoints/{id}/stats read.
    let log = deliveries::for_event(&world.db.pool, a, event.as_str()).await.expect("log");
    assert_eq!(log.len(), 1);
    let statuses: Vec<Option<i32>> = log[0].attempt_log.iter().map(|x| x.http_status).collect();
    assert_eq!(statuses, [Some(500), Some(503), Some(200)]);
    let numbers: Vec<i32> = log[0].attempt_log.iter().map(|x| x.attempt).collect();
    assert_eq!(numbers, [1, 2, 3]);
    assert!(log[0].attempt_log.iter().all(|x| x.latency_ms.is_some()));
    let since = Utc::now() - chrono::Duration::hours(1);
    let stats = deliveries::endpoint_stats(&world.db.pool, a, ep, since).await.expect("stats");
    assert_eq!((stats.delivered, stats.failed, stats.retrying, stats.attempts), (1, 0, 0, 3));
    assert!(stats.latency_ms_p50.is_some());
    retrier.stop().await;
    dispatcher.stop().await;
}

#[tokio::test]
async fn an_endpoint_that_always_fails_gets_one_attempt_per_tier_then_one_dlq_record() {
    let world = World::new(1).await;
    let receiver = Receiver::start().await;
    let a = world.account().await;
    receiver.respond("/down", 503);
    let ep = world.endpoint(a, receiver.url("/down")).await;
    let dispatcher = start_dispatcher(world.dispatcher());
    let retrier_config = world.retrier();
    let admin = format!("http://{}/metrics", retrier_config.admin.listen);
    let retrier = start_retrier_assigned(retrier_config).await;

    let event = world.produce_event(a, "subscriber.created").await;
    let topics = world.topics.topics();
    let task = world.tasks_on(&topics.dlq(), 1, Duration::from_secs(2)).await.remove(0);
    assert_eq!(
        (task.envelope.event_id.clone(), task.endpoint_id, task.attempt),
        (event.clone(), ep, 4)
    );
    assert_eq!(task.last_status, Some(503));
    assert_eq!(task.last_error.as_deref(), Some("http 503"));

    let hits = receiver.hits_on("/down");
    assert_eq!(hits.len(), 4, "the first attempt and one per tier");
    assert_on_schedule(&hits);
    let s = eventually(WAIT, "failed in the log", || async {
        state(&world, event.as_str()).await.filter(|s| s.0 == "failed" && s.1 == 4)
    })
    .await;
    assert_eq!(s.2, Some(503));

    let indexed = eventually(WAIT, "DLQ indexed", || async {
        let filter = Filter { account: Some(a), ..Filter::default() };
        let l = dlq::list(&world.db.pool, &filter, None, 10).await.expect("list");
        (!l.is_empty()).then_some(l)
    })
    .await;
    assert_eq!(indexed.len(), 1);
    assert_eq!(indexed[0].event_id, event.as_str());
    assert_eq!((indexed[0].error_class.as_str(), indexed[0].attempts), ("http_5xx", 4));

    let metrics = eventually(WAIT, "DLQ size gauge", || async {
        let m = reqwest::get(&admin).await.ok()?.text().await.ok()?;
        m.contains("webhook_dlq_size 1").then_some(m)
    })
    .await;
    for name in [
        "webhook_retry_tasks_total{tier=\"200ms\",outcome=\"retryable\"} 1",
        "webhook_retry_tasks_total{tier=\"800ms\",outcome=\"retryable\"} 1",
        "webhook_retry_lateness_seconds_bucket{tier=\"400ms\"",
        "webhook_dlq_entries_total 1",
        "retrier_paused_partitions{tier=\"800ms\"}",
        "webhook_processing_lag_seconds{tier=\"800ms\"}",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }
    retrier.stop().await;
    dispatcher.stop().await;
}

#[tokio::test]
async fn a_400_on_a_retry_goes_to_the_dlq_at_once() {
    let world = World::new(1).await;
    let receiver = Receiver::start().await;
    let a = world.account().await;
    receiver.script("/turns-bad", &[500, 400]);
    world.endpoint(a, receiver.url("/turns-bad")).await;
    let dispatcher = start_dispatcher(world.dispatcher());
    let retrier = start_retrier(world.retrier());

    let event = world.produce_event(a, "subscriber.created").await;
    let dlq = world.topics.topics().dlq();
    let task = world.tasks_on(&dlq, 1, Duration::from_secs(2)).await.remove(0);
    assert_eq!((task.envelope.event_id, task.attempt, task.last_status), (event, 2, Some(400)));
    assert_eq!(receiver.hits_on("/turns-bad").len(), 2, "no attempt after the 400");
    retrier.stop().await;
    dispatcher.stop().await;
}

#[tokio::test]
async fn a_task_not_yet_due_holds_up_neither_other_partitions_nor_other_tiers() {
    let world = World::new(2).await;
    let receiver = Receiver::start().await;
    let a = world.account().await;
    let ep = world.endpoint(a, receiver.url("/ep")).await;
    let now = Utc::now().timestamp_millis();
    let late = world.task(a, ep);
    let other_partition = world.task(a, ep);
    let other_tier = world.task(a, ep);
    // The last tier, partition 0: due in 4 s. Its partition waits; nothing else may.
    world.produce_task(&late, 2, 0, now + 4_000).await;
    world.produce_task(&other_partition, 2, 1, now).await;
    world.produce_task(&other_tier, 0, 0, now).await;
    let started = Instant::now();
    let retrier = start_retrier(world.retrier());

    let due = eventually(WAIT, "the two due tasks", || async {
        let h = receiver.hits_on("/ep");
        (h.len() >= 2).then_some(h)
    })
    .await;
    let mut ids: Vec<String> = due.iter().map(|h| h.webhook_id.clone()).collect();
    ids.sort();
    let mut want = vec![
        other_partition.envelope.event_id.to_string(),
        other_tier.envelope.event_id.to_string(),
    ];
    want.sort();
    assert_eq!(ids, want, "the not-yet-due task is not among the first");
    // Joining the group takes a few hundred ms; the held task is due only at 4 s.
    let after: Vec<Duration> = due.iter().map(|h| h.at - started).collect();
    assert!(after.iter().all(|d| *d < Duration::from_secs(3)), "due tasks waited: {after:?}");
    let waited = eventually(WAIT, "the late task", || async {
        receiver
            .hits_on("/ep")
            .into_iter()
            .find(|h| h.webhook_id == late.envelope.event_id.as_str())
    })
    .await;
    let due_at = chrono::DateTime::from_timestamp_millis(now + 4_000).expect("time");
    let arrived = Utc::now() - chrono::Duration::from_std(waited.at.elapsed()).expect("elapsed");
    assert!(arrived >= due_at - chrono::Duration::milliseconds(5), "delivered before it was due");
    assert!(due.iter().all(|h| h.at < waited.at), "due tasks went first");
    retrier.stop().await;
}

#[tokio::test]
async fn tasks_written_in_multi_record_batches_all_arrive_across_pauses() {
    // Produced at once, many tasks share a record batch; their due times are spread, so the
    // tier's partition is paused and resumed at offsets inside batches. Every task must still
    // arrive, once (a broker that resumes after the containing batch would skip some).
    const TASKS: i64 = 300;
    let world = World::new(1).await;
    let receiver = Receiver::start().await;
    let a = world.account().await;
    let ep = world.endpoint(a, receiver.url("/ep")).await;
    let retrier = start_retrier_assigned(world.retrier()).await;
    let now = Utc::now().timestamp_millis();
    let tasks: Vec<DeliveryTask> = (0..TASKS).map(|_| world.task(a, ep)).collect();
    let sends = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| world.produce_task(t, 0, 0, now + 300 + (i as i64) * 7));
    futures::future::join_all(sends).await;
    let hits = eventually(WAIT, "every task", || async {
        let h = receiver.hits_on("/ep");
        (h.len() as i64 >= TASKS).then_some(h)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ids: Vec<String> = receiver.hits_on("/ep").into_iter().map(|h| h.webhook_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len() as i64, TASKS, "each task once");
    assert_eq!(hits.len() as i64, TASKS);
    retrier.stop().await;
}
