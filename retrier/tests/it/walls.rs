//! The poison suite, retry side: outside data that no shared writer may choke on, and a
//! shutdown that keeps its deadline with the broker and Postgres gone.

use std::time::Duration;

use hookstream_testkit::{self as testkit, eventually, Receiver};
use serde_json::json;

use crate::support::{start_dispatcher, start_retrier, World};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn nul_in_an_events_data_does_not_stop_the_dlq_index_for_anyone() {
    let world = World::new(1).await;
    let receiver = Receiver::start().await;
    receiver.respond("/h", 400);
    receiver.respond("/g", 400);
    let h = world.account().await;
    let g = world.account().await;
    let h_endpoint = world.endpoint(h, receiver.url("/h")).await;
    let g_endpoint = world.endpoint(g, receiver.url("/g")).await;
    let dispatcher = start_dispatcher(world.dispatcher());
    let retrier = start_retrier(world.retrier());

    // Straight to the DLQ (400): first the poison one, then a well-behaved account's.
    let mut poison = world.task(h, h_endpoint);
    poison.envelope.data =
        json!({"subscriber": {"id": "s\u{0}1", "email": "a\u{0}@example.com"}, "k\u{0}": 1});
    world.produce_task(&poison, 0, 0, 0).await;
    let well = world.task(g, g_endpoint);
    world.produce_task(&well, 0, 0, 0).await;

    let indexed = |account| {
        let pool = world.db.pool.clone();
        async move {
            let n: i64 =
                sqlx::query_scalar("SELECT count(*) FROM dead_letters WHERE account_id = $1")
                    .bind(account)
                    .fetch_one(&pool)
                    .await
                    .ok()?;
            (n == 1).then_some(())
        }
    };
    eventually(WAIT, "the well-behaved account's dead letter is indexed", || indexed(g)).await;
    eventually(WAIT, "the poison dead letter is indexed too", || indexed(h)).await;
    let data: serde_json::Value =
        sqlx::query_scalar("SELECT task->'data' FROM dead_letters WHERE account_id = $1")
            .bind(h)
            .fetch_one(&world.db.pool)
            .await
            .expect("data");
    assert_eq!(
        data,
        json!({"subscriber": {"id": "s\u{2400}1", "email": "a\u{2400}@example.com"}, "k\u{2400}": 1}),
        "NUL stored as U+2400"
    );
    retrier.stop().await;
    dispatcher.stop().await;
}

#[tokio::test]
async fn shutdown_keeps_its_deadline_with_the_broker_and_postgres_gone() {
    let mut broker = testkit::OwnBroker::start().await;
    let kafka = broker.kafka_config();
    let topics = testkit::topics_config(2);
    testkit::create_topics_on(&kafka, &topics.topics().all(), 2).await;
    let db = testkit::TestDatabase::new().await;
    let envs = [
        ("HOOKSTREAM_TOPICS__PREFIX", topics.prefix.clone()),
        ("HOOKSTREAM_DELIVERY__ALLOW_PRIVATE_TARGETS", "true".to_owned()),
        ("HOOKSTREAM_RETRIER__GROUP_ID", testkit::unique("retrier-")),
        ("HOOKSTREAM_RETRIER__DLQ_GROUP_ID", testkit::unique("retrier-dlq-")),
    ];
    testkit::assert_shutdown_deadline_with_dependencies_gone(
        env!("CARGO_BIN_EXE_hookstream-retrier"),
        &envs,
        &mut broker,
        &db,
        "RETRIER__SHUTDOWN_DEADLINE",
        Duration::from_secs(8),
        || async {},
    )
    .await;
}
