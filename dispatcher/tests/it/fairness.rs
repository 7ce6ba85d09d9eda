//! Per-key rate limits and isolation between keys on one partition.

use std::time::{Duration, Instant};

use hookstream_core::envelope::Priority;
use hookstream_core::tier::RateLimit;
use hookstream_dispatcher::DispatcherSettings;
use hookstream_testkit::{eventually, Receiver};

use crate::support::{start_dispatcher, World};

#[tokio::test]
async fn an_endpoint_limited_to_r_per_second_receives_at_most_r_per_second() {
    let world = World::new(1).await;
    let receiver = Receiver::start().await;
    let a = world.account().await;
    let limit = RateLimit { per_second: 10, burst: 2 };
    world.endpoint(a, receiver.url("/limited"), &["*"], Some(limit)).await;
    for _ in 0..40 {
        world.produce(a, "subscriber.created", Priority::Normal).await;
    }
    let running = start_dispatcher(world.config(DispatcherSettings::default()));
    eventually(Duration::from_secs(30), "40 deliveries", || async {
        (receiver.hits_on("/limited").len() >= 40).then_some(())
    })
    .await;
    let times: Vec<Instant> = receiver.hits_on("/limited").iter().map(|h| h.at).collect();
    // In any one-second window: at most R + burst.
    let worst = times
        .iter()
        .map(|start| {
            times.iter().filter(|t| **t >= *start && **t < *start + Duration::from_secs(1)).count()
        })
        .max()
        .unwrap_or(0);
    assert!(worst <= 12, "{worst} deliveries in one second, limit 10/s + burst 2");
    let span = *times.last().expect("last") - times[0];
    assert!(span >= Duration::from_secs(3), "40 deliveries at 10/s took only {span:?}");
    running.stop().await;
}

#[tokio::test]
async fn a_hot_rate_limited_account_does_not_delay_a_cold_account_on_the_same_partition() {
    let world = World::new(1).await; // one partition: both accounts share it
    let receiver = Receiver::start().await;
    let hot = world.account().await;
    let cold = world.account().await;
    world
        .endpoint(hot, receiver.url("/hot"), &["*"], Some(RateLimit { per_second: 200, burst: 10 }))
        .await;
    world.endpoint(cold, receiver.url("/cold"), &["*"], None).await;
    world.produce_many(hot, 10_000).await;
    world.produce_many(cold, 100).await;
    let running = start_dispatcher(world.config(DispatcherSettings::default()));
    eventually(Duration::from_secs(40), "the cold account's 100 deliveries", || async {
        (receiver.hits_on("/cold").len() >= 100).then_some(())
    })
    .await;
    let hot_done = receiver.hits_on("/hot").len();
    assert!(hot_done < 10_000, "the hot account is still draining ({hot_done} of 10000)");
    running.stop().await;
}

#[tokio::test]
async fn an_account_with_slow_receivers_cannot_hold_every_request_in_flight() {
    let world = World::new(1).await;
    let receiver = Receiver::start().await;
    let slow = world.account().await;
    let fast = world.account().await;
    // Twenty endpoints answering after 3 s: the slow account wants twice the pool.
    for i in 0..20 {
        let path = format!("/slow/{i}");
        receiver.delay(&path, Duration::from_secs(3));
        world.endpoint(slow, receiver.url(&path), &["*"], None).await;
    }
    world.endpoint(fast, receiver.url("/fast"), &["*"], None).await;
    let settings = DispatcherSettings { in_flight: 10, ..DispatcherSettings::default() };
    let running = start_dispatcher(world.config(settings));
    world.produce(slow, "subscriber.created", Priority::Normal).await;
    eventually(Duration::from_secs(20), "the slow account's requests open", || async {
        (receiver.hits().iter().filter(|h| h.path.starts_with("/slow/")).count() >= 9).then_some(())
    })
    .await;
    // Every permit but the reserve is the slow account's, for the next 3 s.
    let sent = Instant::now();
    world.produce(fast, "subscriber.created", Priority::Normal).await;
    let arrived = eventually(Duration::from_secs(20), "the fast account's delivery", || async {
        receiver.hits_on("/fast").first().map(|h| h.at)
    })
    .await;
    let waited = arrived - sent;
    assert!(
        waited < Duration::from_secs(1),
        "the fast account waited {waited:?} for a request slot"
    );
    let slow_open = receiver.hits().iter().filter(|h| h.path.starts_with("/slow/")).count();
    assert!(slow_open < 10, "the slow account took the reserve too: {slow_open} requests");
    running.stop().await;
}
