//! Parking (DESIGN.md, "Fairness"): an endpoint's work beyond what it drains in
//! `delivery.park_after` waits on the park topic, not in memory, so a flooding account never
//! pauses its partition: a small account on the same partition keeps its latency, the
//! partition's commits move on, and the flooded endpoint still gets its events in order, at
//! its rate, each in one attempt.

use std::time::{Duration, Instant};

use hookstream_core::envelope::{EventEnvelope, Priority};
use hookstream_core::kafka;
use hookstream_core::tier::RateLimit;
use hookstream_core::{AccountId, EndpointId};
use hookstream_testkit::{self as testkit, eventually, Receiver, Running};
use rdkafka::consumer::{Consumer, DefaultConsumerContext};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::support::{start_dispatcher, start_retrier_assigned, World};

/// The hot endpoint's limit: 20 a second keeps 40 tasks in memory (`park_after` 2 s).
const LIMIT: u32 = 20;
/// Ten times what it keeps in memory.
const FLOOD: usize = 400;

/// A world with one partition, a receiver, and a hot account whose endpoint (`/hot`) is limited
/// to [`LIMIT`] a second.
async fn flood_world() -> (World, Receiver, AccountId, EndpointId) {
    let world = World::new(1).await;
    let receiver = Receiver::start().await;
    let hot = world.account().await;
    let limit = RateLimit { per_second: LIMIT, burst: 1 };
    let (hot_ep, _) =
        testkit::create_endpoint(&world.db.pool, hot, receiver.url("/hot"), &["*"], Some(limit))
            .await;
    (world, receiver, hot, hot_ep)
}

/// [`flood_world`] with a retrier (assigned every partition) and a dispatcher running.
struct Flood {
    world: World,
    receiver: Receiver,
    hot: AccountId,
    /// The dispatcher's `/metrics`.
    metrics: String,
    retrier: Running,
    dispatcher: Running,
}

impl Flood {
    async fn start() -> Self {
        let (world, receiver, hot, _) = flood_world().await;
        let config = world.dispatcher();
        let metrics = format!("http://{}/metrics", config.admin.listen);
        let retrier = start_retrier_assigned(world.retrier()).await;
        let dispatcher = start_dispatcher(config);
        Flood { world, receiver, hot, metrics, retrier, dispatcher }
    }
}

/// The offset `group` committed on partition 0 of `topic` (-1 before any commit).
async fn committed(world: &World, group: &str, topic: &str) -> i64 {
    let consumer = kafka::consumer(&world.kafka, "park-test", group, DefaultConsumerContext)
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let tpl = tokio::task::spawn_blocking(move || {
        consumer.committed_offsets(tpl, Duration::from_secs(5)).expect("committed offsets")
    })
    .await
    .expect("blocking task");
    match tpl.elements()[0].offset() {
        Offset::Offset(o) => o,
        _ => -1,
    }
}

#[tokio::test]
async fn a_flood_is_parked_while_a_small_account_on_its_partition_keeps_its_latency() {
    // One partition: the two accounts share it.
    let (world, receiver, hot, hot_ep) = flood_world().await;
    let small = world.account().await;
    world.endpoint(small, receiver.url("/small")).await;
    let dispatcher = world.dispatcher();
    let group = dispatcher.dispatcher.group_id.clone();
    let retrier = start_retrier_assigned(world.retrier()).await;
    let dispatcher = start_dispatcher(dispatcher);

    // Baseline: the small account alone.
    let alone = small_latencies(&world, &receiver, small, 5).await;
    let flood_started = Instant::now();
    let sends = (0..FLOOD).map(|_| world.produce_event(hot, "subscriber.created"));
    futures::future::join_all(sends).await;
    // While the hot account's backlog is ten times what it may keep in memory.
    let beside = small_latencies(&world, &receiver, small, 20).await;
    let hot_so_far = receiver.hits_on("/hot").len();
    assert!(hot_so_far < FLOOD / 2, "the flood is still draining: {hot_so_far} delivered");
    let worst = beside.iter().max().copied().unwrap_or_default();
    let worst_alone = alone.iter().max().copied().unwrap_or_default();
    println!("small account alone: worst {worst_alone:?}; beside the flood: worst {worst:?}");
    assert!(worst < Duration::from_millis(500), "a small event waited {worst:?} beside the flood");

    // The partition's commits moved past the whole flood long before it was delivered.
    let lane = world.topics.topics().events(Priority::Normal);
    let end = (FLOOD + 25) as i64;
    eventually(Duration::from_secs(10), "the events partition committed to its end", || async {
        (committed(&world, &group, &lane).await >= end).then_some(())
    })
    .await;
    let hot_at_commit = receiver.hits_on("/hot").len();
    assert!(hot_at_commit < FLOOD / 2, "committed with {hot_at_commit} of {FLOOD} delivered");

    // Every hot event arrives once, in the order it was produced, at the endpoint's rate.
    eventually(Duration::from_secs(60), "every hot event delivered", || async {
        (receiver.hits_on("/hot").len() >= FLOOD).then_some(())
    })
    .await;
    let took = flood_started.elapsed();
    let hits = receiver.hits_on("/hot");
    let delivered: Vec<String> = hits.iter().map(|h| h.webhook_id.clone()).collect();
    let produced = produced_order(&world, &lane, hot).await;
    assert_eq!(delivered.len(), FLOOD, "no event delivered twice");
    let first_off = delivered.iter().zip(&produced).position(|(d, p)| d != p);
    let place = |id: &String| produced.iter().position(|p| p == id);
    let around: Vec<Option<usize>> = first_off
        .map(|i| delivered[i.saturating_sub(3)..(i + 5).min(FLOOD)].iter().map(place).collect())
        .unwrap_or_default();
    assert!(
        first_off.is_none(),
        "the hot endpoint's events arrived out of order from delivery {first_off:?}: produced places {around:?}"
    );
    let rate = FLOOD as f64 / took.as_secs_f64();
    println!("hot endpoint: {FLOOD} in {took:?}, {rate:.1}/s (limit {LIMIT}/s)");
    assert!(rate <= f64::from(LIMIT) * 1.1, "{rate:.1}/s over the limit of {LIMIT}/s");
    assert!(rate >= f64::from(LIMIT) * 0.8, "{rate:.1}/s: parking lost the endpoint's pace");
    let attempts: Vec<(i32,)> = sqlx::query_as(
        "SELECT attempts FROM deliveries WHERE endpoint_id = $1 AND state = 'delivered'",
    )
    .bind(hot_ep)
    .fetch_all(&world.db.pool)
    .await
    .expect("deliveries");
    assert_eq!(attempts.len(), FLOOD);
    assert!(attempts.iter().all(|a| a.0 == 1), "a park counted as an attempt");
    dispatcher.stop().await;
    retrier.stop().await;
}

#[tokio::test]
async fn a_dispatcher_crashing_mid_flood_loses_nothing_and_redelivers_at_most_its_window() {
    let (world, receiver, hot, _) = flood_world().await;
    let config = world.dispatcher();
    let retrier = start_retrier_assigned(world.retrier()).await;
    let mut again = world.dispatcher();
    again.dispatcher.group_id = config.dispatcher.group_id.clone();
    let first = start_dispatcher(config);
    let sends = (0..FLOOD).map(|_| world.produce_event(hot, "subscriber.created"));
    let produced: Vec<String> =
        futures::future::join_all(sends).await.iter().map(|e| e.as_str().to_owned()).collect();
    // Mid-flood: some delivered from memory, the rest parked or queued.
    eventually(Duration::from_secs(20), "the flood under way", || async {
        (receiver.hits_on("/hot").len() >= 20).then_some(())
    })
    .await;
    first.crash().await;
    let second = start_dispatcher(again);
    eventually(Duration::from_secs(90), "every hot event delivered", || async {
        let got: std::collections::HashSet<String> =
            receiver.hits_on("/hot").into_iter().map(|h| h.webhook_id).collect();
        produced.iter().all(|id| got.contains(id)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let duplicates = receiver.hits_on("/hot").len() - FLOOD;
    // What the crashed dispatcher held for the endpoint: its queue in memory (what it drains in
    // `park_after`, 2 s) and the one request in flight (an endpoint's worker sends one at a time).
    let window = 2 * LIMIT as usize + 1;
    println!("{duplicates} duplicates after the crash (window {window})");
    assert!(duplicates <= window, "{duplicates} duplicates, more than the window of {window}");
    second.stop().await;
    retrier.stop().await;
}

#[tokio::test]
async fn a_flooded_retry_tier_parks_the_endpoints_excess_and_passes_other_accounts_tasks_on() {
    let (world, receiver, hot, hot_ep) = flood_world().await;
    let small = world.account().await;
    let small_ep = world.endpoint(small, receiver.url("/small")).await;
    let mut config = world.retrier();
    // Without parking, the tier's partition would pause at 100 buffered tasks and the small
    // account's task behind the flood would wait for the hot endpoint to drain (20 s).
    config.retrier.max_buffered_per_partition = 100;
    let retrier = start_retrier_assigned(config).await;
    let now = chrono::Utc::now().timestamp_millis();
    for _ in 0..FLOOD {
        world.produce_task(&world.task(hot, hot_ep), 0, 0, now).await;
    }
    let sent = Instant::now();
    let task = world.task(small, small_ep);
    world.produce_task(&task, 0, 0, now).await;
    let arrived = eventually(Duration::from_secs(30), "the small account's retry", || async {
        receiver.hits_on("/small").first().map(|h| h.at)
    })
    .await;
    let waited = arrived - sent;
    let hot_so_far = receiver.hits_on("/hot").len();
    println!("small retry after {waited:?}, with {hot_so_far} of {FLOOD} hot retries delivered");
    assert!(waited < Duration::from_secs(2), "the small account's retry waited {waited:?}");
    assert!(hot_so_far < FLOOD / 4, "the flood was not still draining: {hot_so_far}");
    eventually(Duration::from_secs(60), "every hot retry delivered", || async {
        (receiver.hits_on("/hot").len() >= FLOOD).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.hits_on("/hot").len(), FLOOD, "each hot retry once");
    retrier.stop().await;
}

#[tokio::test]
async fn once_its_parked_work_is_behind_it_a_steady_stream_is_not_parked_any_more() {
    let Flood { world, receiver, hot, metrics, retrier, dispatcher } = Flood::start().await;
    // A burst of 100 (the endpoint keeps 40 in memory: 60 parked, the last due about 5.6 s
    // on), then a steady stream at half the endpoint's limit: each streamed event parked
    // behind the backlog moves it 50 ms further, so the backlog is behind it by about 11 s.
    let burst: Vec<String> =
        futures::future::join_all((0..100).map(|_| world.produce_event(hot, "subscriber.created")))
            .await
            .iter()
            .map(|e| e.as_str().to_owned())
            .collect();
    let mut stream = Vec::new();
    let mut parked_at_15s = 0;
    for i in 0..200 {
        stream.push(world.produce_event(hot, "subscriber.created").await.as_str().to_owned());
        if i == 150 {
            parked_at_15s = parked_total(&metrics, hot).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let parked_at_end = parked_total(&metrics, hot).await;
    println!("parked: {parked_at_15s} by 15 s, {parked_at_end} by the end");
    assert!(parked_at_15s >= 60, "the burst was not parked: {parked_at_15s}");
    // Before the fix every streamed event was parked "due now", for ever (10 a second here).
    assert_eq!(parked_at_end, parked_at_15s, "the stream is still parked 15 s after the burst");

    let all = burst.len() + stream.len();
    eventually(Duration::from_secs(30), "every event delivered", || async {
        (receiver.hits_on("/hot").len() >= all).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let delivered: Vec<String> =
        receiver.hits_on("/hot").into_iter().map(|h| h.webhook_id).collect();
    assert_eq!(delivered.len(), all, "an event delivered twice");
    // The burst first (its own order is the other tests'), then the stream in order: leaving
    // the park let no streamed event overtake a parked one.
    let mut first: Vec<String> = delivered[..burst.len()].to_vec();
    first.sort();
    let mut expected = burst.clone();
    expected.sort();
    assert_eq!(first, expected, "a streamed event overtook the burst");
    assert_eq!(&delivered[burst.len()..], &stream[..], "the stream out of order");
    dispatcher.stop().await;
    retrier.stop().await;
}

#[tokio::test]
async fn a_receiver_that_stalls_once_is_not_parked_and_its_stream_keeps_its_latency() {
    let Flood { world, receiver, hot, metrics, retrier, dispatcher } = Flood::start().await;
    // A steady stream at half the endpoint's limit; one request, the 11th, takes 3 s. The ~30
    // events that arrive meanwhile fit in what the endpoint keeps in memory (40). Before the
    // fix that one answer made the endpoint look 600 times slower: the events behind it were
    // parked 0.6 s apart, and the stream behind them for half a minute.
    let stall = Duration::from_secs(3);
    let mut sent = Vec::new();
    for i in 0..100 {
        if i == 10 {
            receiver.delay("/hot", stall);
        }
        let at = Instant::now();
        let event = world.produce_event(hot, "subscriber.created").await.as_str().to_owned();
        if i == 10 {
            let id = event.clone();
            eventually(Duration::from_secs(10), "the stalled request", || async {
                receiver.hits_on("/hot").iter().any(|h| h.webhook_id == id).then_some(())
            })
            .await;
            receiver.delay("/hot", Duration::ZERO);
        }
        sent.push((event, at));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually(Duration::from_secs(60), "every event delivered", || async {
        (receiver.hits_on("/hot").len() >= sent.len()).then_some(())
    })
    .await;
    let hits = receiver.hits_on("/hot");
    let latency = |(id, at): &(String, Instant)| {
        hits.iter().find(|h| &h.webhook_id == id).map(|h| h.at - *at).unwrap_or(Duration::MAX)
    };
    let worst = sent.iter().map(latency).max().unwrap_or_default();
    // The ~30 events queued behind the stall drain at the limit (20/s) while the stream adds 10
    // a second: the queue is back to empty about 3 s after the stall, by the 70th event.
    let worst_after = sent[80..].iter().map(latency).max().unwrap_or_default();
    let parked = parked_total(&metrics, hot).await;
    println!("worst {worst:?}; from the 80th event, worst {worst_after:?}; {parked} parked");
    assert_eq!(parked, 0, "one slow answer parked the endpoint's stream");
    assert!(worst < stall + Duration::from_secs(1), "an event waited {worst:?}");
    assert!(worst_after < Duration::from_millis(500), "after the stall, {worst_after:?}");
    dispatcher.stop().await;
    retrier.stop().await;
}

#[tokio::test]
async fn a_receiver_that_was_slow_when_its_work_was_parked_gets_it_at_its_pace_once_fast_again() {
    let Flood { world, receiver, hot, metrics, retrier, dispatcher } = Flood::start().await;
    // The receiver answers after 1 s: the endpoint drains 1 a second and keeps 4 in memory.
    let slow = Duration::from_secs(1);
    receiver.delay("/hot", slow);
    let mut sent = Vec::new();
    for _ in 0..2 {
        sent.push(world.produce_event(hot, "subscriber.created").await.as_str().to_owned());
    }
    eventually(Duration::from_secs(10), "the first two at the slow pace", || async {
        (receiver.hits_on("/hot").len() >= 2).then_some(())
    })
    .await;
    // A burst of 40: 4 in memory, 36 parked 1 s apart, the last due about 40 s on.
    let burst = Instant::now();
    for e in
        futures::future::join_all((0..40).map(|_| world.produce_event(hot, "subscriber.created")))
            .await
    {
        sent.push(e.as_str().to_owned());
    }
    eventually(Duration::from_secs(10), "the burst parked", || async {
        (parked_total(&metrics, hot).await >= 36).then_some(())
    })
    .await;
    // Fast again. Before, the parked tasks still went at their slots, a second apart, and
    // the last arrived some 40 s after the burst.
    receiver.delay("/hot", Duration::ZERO);
    eventually(Duration::from_secs(60), "every event delivered", || async {
        (receiver.hits_on("/hot").len() >= sent.len()).then_some(())
    })
    .await;
    let took = burst.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let delivered: Vec<String> =
        receiver.hits_on("/hot").into_iter().map(|h| h.webhook_id).collect();
    println!("the burst of 40 delivered {took:?} after it was sent");
    assert_eq!(delivered, sent, "each once, in the order produced");
    // The first parked task waits for the 4 in memory (5.1 s, a margin included); then the
    // 36 go at the endpoint's limit (20 a second).
    assert!(took < Duration::from_secs(12), "the parked burst took {took:?}");
    dispatcher.stop().await;
    retrier.stop().await;
}

/// The dispatcher's `webhook_parked_total` for `account` (0 before the first park).
async fn parked_total(metrics: &str, account: AccountId) -> u64 {
    let text = reqwest::get(metrics).await.expect("metrics").text().await.expect("text");
    let series = format!("webhook_parked_total{{account=\"{account}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Sends `n` events of `account` a quarter second apart; each one's time from produce to
/// arrival at `/small`.
async fn small_latencies(
    world: &World,
    receiver: &Receiver,
    account: AccountId,
    n: usize,
) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let sent = Instant::now();
        let event = world.produce_event(account, "subscriber.created").await;
        let arrived = eventually(Duration::from_secs(30), "the small account's event", || async {
            receiver.hits_on("/small").iter().find(|h| h.webhook_id == event.as_str()).map(|h| h.at)
        })
        .await;
        latencies.push(arrived - sent);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    latencies
}

/// The event ids of `account` in the order they stand on `topic`.
async fn produced_order(world: &World, topic: &str, account: AccountId) -> Vec<String> {
    let all = testkit::consume_exactly(
        &world.kafka,
        &[topic.to_owned()],
        FLOOD + 25,
        Duration::from_secs(30),
        Duration::from_millis(500),
    )
    .await;
    all.iter()
        .filter_map(|m| serde_json::from_slice::<EventEnvelope>(m.payload()?).ok())
        .filter(|e| e.account_id == account)
        .map(|e| e.event_id.as_str().to_owned())
        .collect()
}
