//! Routing, signing, and what happens on failure.

use std::collections::HashSet;
use std::time::Duration;

use hookstream_core::db::endpoints;
use hookstream_core::envelope::{DeliveryTask, EventEnvelope, Priority};
use hookstream_core::ids::EventId;
use hookstream_dispatcher::DispatcherSettings;
use hookstream_testkit::{self as testkit, eventually, Receiver};
use rdkafka::message::Headers;
use rdkafka::Message;

use crate::support::{start_dispatcher, World};

const WAIT: Duration = Duration::from_secs(30);

fn verifies(secret: &str, hit: &testkit::Hit) -> bool {
    let wh = standardwebhooks::Webhook::new(secret).expect("secret");
    let mut headers = axum::http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        headers.insert(name, hit.headers[name].parse().expect("header"));
    }
    wh.verify(&hit.body, &headers).is_ok()
}

#[tokio::test]
async fn each_event_reaches_every_subscribed_endpoint_of_its_account_once_signed() {
    let world = World::new(4).await;
    let receiver = Receiver::start().await;
    let a = world.account().await;
    let b = world.account().await;
    let (_, all_secret) = world.endpoint(a, receiver.url("/a/all"), &["subscriber.*"], None).await;
    let (_, created_secret) =
        world.endpoint(a, receiver.url("/a/created"), &["subscriber.created"], None).await;
    world.endpoint(a, receiver.url("/a/deleted"), &["subscriber.deleted"], None).await;
    world.endpoint(b, receiver.url("/b/all"), &["*"], None).await;
    let config = world.config(DispatcherSettings::default());
    let admin = format!("http://{}/metrics", config.admin.listen);
    let running = start_dispatcher(config);

    let created = world.produce(a, "subscriber.created", Priority::Normal).await;
    let updated = world.produce(a, "subscriber.updated", Priority::High).await;
    eventually(WAIT, "3 deliveries", || async { (receiver.hits().len() >= 3).then_some(()) }).await;
    tokio::time::sleep(Duration::from_millis(800)).await; // nothing more may arrive

    let ids = |path: &str| -> Vec<String> {
        receiver.hits_on(path).into_iter().map(|h| h.webhook_id).collect()
    };
    let all: HashSet<String> = ids("/a/all").into_iter().collect();
    assert_eq!(all, HashSet::from([created.to_string(), updated.to_string()]));
    assert_eq!(ids("/a/all").len(), 2, "once each");
    assert_eq!(ids("/a/created"), [created.to_string()]);
    assert!(ids("/a/deleted").is_empty());
    assert!(ids("/b/all").is_empty(), "another account's endpoint gets nothing");

    for hit in receiver.hits_on("/a/all") {
        assert!(verifies(&all_secret, &hit), "signature verifies with the reference library");
        assert!(!verifies(&created_secret, &hit), "and not with another endpoint's secret");
        assert!(hit.headers["user-agent"].starts_with("hookstream/"));
        assert!(hit.headers.contains_key("traceparent"));
    }
    let metrics = reqwest::get(&admin).await.expect("metrics").text().await.expect("text");
    for name in [
        "webhook_deliveries_total{outcome=\"delivered\"}",
        "webhook_event_processing_seconds_bucket",
        "webhook_processing_lag_seconds",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }
    running.stop().await;
}

#[tokio::test]
async fn a_second_copy_of_a_delivered_event_is_not_sent_again() {
    // Two ingest replicas that both accepted one Idempotency-Key produce the same event id
    // twice, each with its own receipt time, on the account's partition.
    let world = World::new(1).await;
    let receiver = Receiver::start().await;
    let account = world.account().await;
    world.endpoint(account, receiver.url("/hook"), &["*"], None).await;
    let running = start_dispatcher(world.config(DispatcherSettings::default()));
    let data = serde_json::json!({"subscriber": {"id": "s1", "email": "s1@example.com"}});
    let first = EventEnvelope {
        event_id: EventId::for_key(account, "order-17"),
        ..EventEnvelope::new(account, "subscriber.created", data)
    };
    world.produce_envelope(&first).await;
    eventually(WAIT, "the first copy delivered", || async {
        (!receiver.hits_on("/hook").is_empty()).then_some(())
    })
    .await;
    let second = EventEnvelope {
        received_at: first.received_at + chrono::Duration::milliseconds(40),
        ..first
    };
    world.produce_envelope(&second).await;
    let marker = world.produce(account, "subscriber.updated", Priority::Normal).await;
    eventually(WAIT, "the event behind the copy delivered", || async {
        receiver.hits_on("/hook").iter().any(|h| h.webhook_id == marker.to_string()).then_some(())
    })
    .await;
    let copies = receiver
        .hits_on("/hook")
        .iter()
        .filter(|h| h.webhook_id == second.event_id.to_string())
        .count();
    assert_eq!(copies, 1, "the second copy was sent again");
    running.stop().await;
}

#[tokio::test]
async fn failures_go_to_the_retry_tier_or_the_dlq_and_410_disables_the_endpoint() {
    let world = World::new(1).await;
    let receiver = Receiver::start().await;
    let a = world.account().await;
    receiver.respond("/flaky", 500);
    receiver.respond("/bad", 400);
    receiver.respond("/gone", 410);
    let (flaky, _) = world.endpoint(a, receiver.url("/flaky"), &["subscriber.created"], None).await;
    let (bad, _) = world.endpoint(a, receiver.url("/bad"), &["subscriber.updated"], None).await;
    let (gone, _) = world.endpoint(a, receiver.url("/gone"), &["subscriber.deleted"], None).await;
    let running = start_dispatcher(world.config(DispatcherSettings::default()));

    let e500 = world.produce(a, "subscriber.created", Priority::Normal).await;
    let e400 = world.produce(a, "subscriber.updated", Priority::Normal).await;
    let e410 = world.produce(a, "subscriber.deleted", Priority::Normal).await;

    let topics = world.topics.topics();
    let first_tier = topics.retry(topics.retry_delays()[0]);
    let retried = testkit::consume_exactly(
        &world.kafka,
        std::slice::from_ref(&first_tier),
        1,
        WAIT,
        Duration::from_millis(500),
    )
    .await;
    let task: DeliveryTask =
        serde_json::from_slice(retried[0].payload().expect("payload")).expect("task");
    assert_eq!(
        (task.envelope.event_id.clone(), task.endpoint_id, task.attempt),
        (e500.clone(), flaky, 1)
    );
    assert_eq!(task.last_status, Some(500));
    let headers: Vec<String> =
        retried[0].headers().expect("headers").iter().map(|h| h.key.to_owned()).collect();
    for h in ["hs-attempt", "hs-due-at", "hs-origin", "traceparent"] {
        assert!(headers.contains(&h.to_owned()), "missing {h}: {headers:?}");
    }

    let dead = world.tasks_on(&topics.dlq(), 2, Duration::from_millis(500)).await;
    let mut in_dlq: Vec<(String, u16)> = dead
        .iter()
        .map(|t| (t.envelope.event_id.to_string(), t.last_status.unwrap_or(0)))
        .collect();
    in_dlq.sort();
    let mut expected = vec![(e400.to_string(), 400), (e410.to_string(), 410)];
    expected.sort();
    assert_eq!(in_dlq, expected);
    let _ = bad;

    let status = eventually(WAIT, "endpoint disabled", || async {
        let s = endpoints::status(&world.db.pool, a, gone).await.expect("status")?;
        (!s.0).then_some(s)
    })
    .await;
    assert!(status.1.unwrap_or_default().contains("410"));

    // The delivery log shows each state.
    let states = eventually(WAIT, "delivery log", || async {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT event_id, state FROM deliveries WHERE account_id = $1 ORDER BY event_id",
        )
        .bind(a)
        .fetch_all(&world.db.pool)
        .await
        .ok()?;
        (rows.len() == 3).then_some(rows)
    })
    .await;
    for (event, state) in states {
        let want = if event == e500.to_string() { "retrying" } else { "failed" };
        assert_eq!(state, want, "{event}");
    }
    running.stop().await;
}

#[tokio::test]
async fn the_endpoint_cache_sees_new_and_disabled_endpoints_without_a_restart() {
    let world = World::new(1).await;
    let receiver = Receiver::start().await;
    let a = world.account().await;
    let running = start_dispatcher(world.config(DispatcherSettings::default()));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (ep, _) = world.endpoint(a, receiver.url("/new"), &["*"], None).await;
    tokio::time::sleep(Duration::from_millis(800)).await; // > endpoint_refresh
    let first = world.produce(a, "subscriber.created", Priority::Normal).await;
    eventually(WAIT, "delivery to the new endpoint", || async {
        receiver.hits_on("/new").iter().any(|h| h.webhook_id == first.to_string()).then_some(())
    })
    .await;

    assert!(endpoints::disable(&world.db.pool, a, ep, "test", "operator:test")
        .await
        .expect("disable"));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let second = world.produce(a, "subscriber.created", Priority::Normal).await;
    let marker = world.account().await; // a later event on another account proves progress
    let (_, _) = world.endpoint(marker, receiver.url("/marker"), &["*"], None).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let done = world.produce(marker, "subscriber.created", Priority::Normal).await;
    eventually(WAIT, "the marker delivery", || async {
        receiver.hits_on("/marker").iter().any(|h| h.webhook_id == done.to_string()).then_some(())
    })
    .await;
    assert!(
        !receiver.hits_on("/new").iter().any(|h| h.webhook_id == second.to_string()),
        "a disabled endpoint receives nothing"
    );
    running.stop().await;
}

#[tokio::test]
async fn during_a_secret_rotation_deliveries_carry_both_signatures_and_after_it_one() {
    const OVERLAP: Duration = Duration::from_secs(3);
    let world = World::new(1).await;
    let receiver = Receiver::start().await;
    let a = world.account().await;
    let (ep, old) = world.endpoint(a, receiver.url("/rot"), &["*"], None).await;
    let running = start_dispatcher(world.config(DispatcherSettings::default()));
    let (new, _) = endpoints::rotate_secret(&world.db.pool, a, ep, OVERLAP, "operator:test")
        .await
        .expect("rotate")
        .expect("endpoint exists");
    let rotated_at = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(800)).await; // the cache reloads every 300 ms

    world.produce(a, "subscriber.created", Priority::Normal).await;
    let during = eventually(WAIT, "delivery during the overlap", || async {
        receiver.hits_on("/rot").into_iter().next()
    })
    .await;
    assert!(
        during.at - rotated_at < OVERLAP,
        "delivered within the overlap; the test proves nothing otherwise"
    );
    assert_eq!(during.headers["webhook-signature"].split(' ').count(), 2, "two signatures");
    assert!(verifies(&old, &during), "receivers on the old secret still verify");
    assert!(verifies(&new, &during), "receivers on the new secret verify");

    tokio::time::sleep((OVERLAP + Duration::from_millis(800)).saturating_sub(rotated_at.elapsed()))
        .await;
    world.produce(a, "subscriber.created", Priority::Normal).await;
    let after = eventually(WAIT, "delivery after the overlap", || async {
        receiver.hits_on("/rot").into_iter().nth(1)
    })
    .await;
    assert_eq!(after.headers["webhook-signature"].split(' ').count(), 1, "one signature");
    assert!(verifies(&new, &after));
    assert!(!verifies(&old, &after), "the old secret no longer signs");
    running.stop().await;
}

/// The value of gauge `name` on a `/metrics` page.
fn gauge(page: &str, name: &str) -> Option<f64> {
    page.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

#[tokio::test]
async fn idle_endpoint_workers_exit_and_come_back_for_the_next_delivery() {
    let world = World::new(2).await;
    let receiver = Receiver::start().await;
    let a = world.account().await;
    for n in 0..5 {
        world.endpoint(a, receiver.url(&format!("/idle/{n}")), &["*"], None).await;
    }
    let mut config = world.config(DispatcherSettings::default());
    config.delivery.worker_idle = Duration::from_millis(300);
    let metrics = format!("http://{}/metrics", config.admin.listen);
    let running = start_dispatcher(config);
    let workers = || async {
        let page = reqwest::get(&metrics).await.ok()?.text().await.ok()?;
        gauge(&page, "delivery_workers")
    };

    world.produce(a, "subscriber.created", Priority::Normal).await;
    eventually(WAIT, "5 deliveries", || async { (receiver.hits().len() >= 5).then_some(()) }).await;
    eventually(WAIT, "the 5 workers gone once idle", || async {
        (workers().await? == 0.0).then_some(())
    })
    .await;

    // The next event starts them again and reaches every endpoint.
    let second = world.produce(a, "subscriber.updated", Priority::Normal).await;
    eventually(WAIT, "5 more deliveries", || async {
        let hits = receiver.hits();
        (hits.iter().filter(|h| h.webhook_id == second.to_string()).count() == 5).then_some(())
    })
    .await;
    eventually(WAIT, "and gone again", || async { (workers().await? == 0.0).then_some(()) }).await;
    running.stop().await;
}
