//! A throttled endpoint is delayed, not failed: a receiver's 429 and an open circuit do not
//! spend the retry schedule, a 429 holds back the endpoint's other tasks for the time it asked
//! for, and `delivery.max_task_age` still ends a task whose receiver never stops throttling in
//! the DLQ. Short schedule: 200 ms, 400 ms, 800 ms.

use std::time::Duration;

use hookstream_core::delivery::outcome::FailureReason;
use hookstream_core::dlq::{self, Filter};
use hookstream_testkit::{eventually, Receiver};

use crate::support::{delivered, Pipeline, World};

const WAIT: Duration = Duration::from_secs(30);

async fn dead_letters(world: &World, account: hookstream_core::AccountId) -> usize {
    let filter = Filter { account: Some(account), ..Filter::default() };
    dlq::list(&world.db.pool, &filter, None, 100).await.expect("list").len()
}

#[tokio::test]
async fn a_receiver_answering_429_more_often_than_the_schedule_has_tiers_still_gets_the_event() {
    let world = World::new(1).await;
    let receiver = Receiver::start().await;
    let a = world.account().await;
    // Six 429s, twice the three tiers: as many 503s would have sent it to the DLQ.
    receiver.script("/busy", &[429; 6]);
    world.endpoint(a, receiver.url("/busy")).await;
    let pipeline = Pipeline::start(&world, |_| {}).await;

    let event = world.produce_event(a, "subscriber.created").await;
    let s = delivered(&world, event.as_str()).await;
    assert_eq!((s.1, s.2), (7, Some(200)), "seven requests, the last one answered 200");
    let hits = receiver.hits_on("/busy");
    assert_eq!(hits.len(), 7);
    // Each delay waits a tier longer than the one before: 200 ms, 400 ms, then the last tier.
    let gaps: Vec<Duration> = hits.windows(2).map(|p| p[1].at - p[0].at).collect();
    for (gap, tier) in gaps.iter().zip([200, 400, 800, 800, 800, 800]) {
        assert!(*gap >= Duration::from_millis(tier), "gaps {gaps:?}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(dead_letters(&world, a).await, 0, "nothing in the DLQ");
    pipeline.stop().await;
}

#[tokio::test]
async fn a_receiver_that_always_answers_429_ends_in_the_dlq_at_the_maximum_age() {
    let world = World::new(1).await;
    let receiver = Receiver::start().await;
    let a = world.account().await;
    receiver.respond("/never", 429);
    let ep = world.endpoint(a, receiver.url("/never")).await;
    let max_age = Duration::from_secs(3);
    let pipeline = Pipeline::start(&world, |d| d.max_task_age = max_age).await;

    let event = world.produce_event(a, "subscriber.created").await;
    let topics = world.topics.topics();
    let task = world.tasks_on(&topics.dlq(), 1, Duration::from_secs(1)).await.remove(0);
    let hits = receiver.hits_on("/never");
    assert_eq!((task.envelope.event_id, task.endpoint_id), (event, ep));
    assert_eq!(task.last_reason, Some(FailureReason::TooManyRequests));
    assert!(task.attempt > 4, "more requests than the schedule's four: {}", task.attempt);
    assert_eq!(task.uncounted, task.attempt, "none of them counted against the schedule");
    assert_eq!(hits.len() as u32, task.attempt);
    let span = hits[hits.len() - 1].at - hits[0].at;
    assert!(span >= max_age - Duration::from_millis(900), "retried for {span:?}");
    pipeline.stop().await;
}

#[tokio::test]
async fn a_429_with_retry_after_holds_back_the_endpoints_other_events_until_then() {
    let world = World::new(1).await;
    let receiver = Receiver::start().await;
    let a = world.account().await;
    receiver.script("/slow-down", &[429]);
    receiver.retry_after("/slow-down", 2);
    world.endpoint(a, receiver.url("/slow-down")).await;
    let pipeline = Pipeline::start(&world, |_| {}).await;

    let first = world.produce_event(a, "subscriber.created").await;
    let throttled = eventually(WAIT, "the 429", || async {
        receiver.hits_on("/slow-down").first().map(|h| h.at)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = world.produce_event(a, "subscriber.created").await;
    for event in [&first, &second] {
        delivered(&world, event.as_str()).await;
    }
    let hits = receiver.hits_on("/slow-down");
    assert_eq!(hits.len(), 3, "the 429, then each event once");
    for hit in &hits[1..] {
        let after = hit.at - throttled;
        assert!(after >= Duration::from_secs(2), "a request {after:?} after Retry-After: 2");
    }
    assert_eq!(hits[2].webhook_id, second.as_str());
    pipeline.stop().await;
}

#[tokio::test]
async fn an_open_circuit_delays_tasks_without_spending_their_schedule() {
    let world = World::new(1).await;
    let receiver = Receiver::start().await;
    let a = world.account().await;
    // The dispatcher's first request fails, and the retrier's: both circuits open for 3 s,
    // longer than the whole schedule (1.4 s). Tasks that met the open circuit at every tier
    // used to reach the DLQ without a single request.
    receiver.script("/blip", &[503, 503]);
    world.endpoint(a, receiver.url("/blip")).await;
    let pipeline = Pipeline::start(&world, |d| {
        d.circuit_threshold = 1;
        d.circuit_cooldown = Duration::from_secs(3);
    })
    .await;

    let mut events = Vec::new();
    for _ in 0..10 {
        events.push(world.produce_event(a, "subscriber.created").await);
    }
    for event in &events {
        delivered(&world, event.as_str()).await;
    }
    assert_eq!(dead_letters(&world, a).await, 0, "nothing in the DLQ");
    assert_eq!(receiver.hits_on("/blip").len(), 12, "two failures, then each event once");
    pipeline.stop().await;
}
