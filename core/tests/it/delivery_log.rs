//! The delivery log at scale against the real Postgres: day partitions created on demand and
//! dropped by retention, and the progress marks that spare the hot path its lookups.

use std::time::Duration;

use chrono::{DateTime, Days, Utc};
use hookstream_core::db::{accounts, deliveries, log_partitions};
use hookstream_core::delivery::engine::Source;
use hookstream_core::delivery::outcome::Outcome;
use hookstream_core::delivery::record::{self, AttemptRecord, DeliveryState, Recorder};
use hookstream_core::delivery::redelivery::{Redeliveries, REFRESH};
use hookstream_core::ids::{AccountId, EndpointId, EventId};
use hookstream_core::tier::Tier;
use hookstream_testkit::TestDatabase;
use tokio_util::sync::CancellationToken;

fn attempt(account: AccountId, endpoint: EndpointId, at: DateTime<Utc>) -> AttemptRecord {
    AttemptRecord {
        account_id: account,
        event_id: EventId::new(),
        endpoint_id: endpoint,
        event_type: "subscriber.created".into(),
        received_at: at,
        attempt: 1,
        replay: false,
        outcome: Outcome::Delivered,
        state: DeliveryState::Delivered,
        http_status: Some(200),
        latency: Duration::from_millis(12),
        response_body: Some("ok".into()),
        error: None,
        attempted_at: at,
        source: None,
    }
}

/// Writes `records` through the log's writer, as the engine does, and waits for it to end.
async fn log(db: &TestDatabase, records: Vec<AttemptRecord>) {
    let stop = CancellationToken::new();
    let (recorder, task) = Recorder::spawn(
        db.pool.clone(),
        100,
        Duration::from_millis(50),
        stop.clone(),
        Duration::from_secs(5),
    );
    for r in records {
        recorder.record(r).await;
    }
    stop.cancel();
    task.await.expect("writer");
}

#[tokio::test]
async fn retention_drops_whole_days_past_it_and_keeps_the_rest_readable() {
    let db = TestDatabase::new().await;
    let account =
        accounts::create(&db.pool, "Acme", Tier::Small, "test").await.expect("account").id;
    let endpoint = EndpointId::new();
    let now = Utc::now();
    let days_ago = |n| now - chrono::Duration::days(n);
    // Day -40 has no partition: the writer creates it before it writes (an old event replayed).
    let old = attempt(account, endpoint, days_ago(40));
    let recent = attempt(account, endpoint, days_ago(5));
    let today = attempt(account, endpoint, now);
    log(&db, vec![old.clone(), recent.clone(), today.clone()]).await;
    for r in [&old, &recent, &today] {
        let found =
            deliveries::for_event(&db.pool, account, r.event_id.as_str()).await.expect("read");
        assert_eq!(found.len(), 1, "{}", r.received_at);
        assert_eq!(found[0].attempt_log.len(), 1);
    }

    let dropped = log_partitions::expire(&db.pool, Duration::from_secs(30 * 86_400), now)
        .await
        .expect("expire");
    let old_day = days_ago(40).date_naive().format("%Y%m%d").to_string();
    let mut expected =
        vec![format!("deliveries_p{old_day}"), format!("delivery_attempts_p{old_day}")];
    expected.sort();
    let mut got = dropped.clone();
    got.sort();
    assert_eq!(got, expected, "only the day past the retention goes");

    let left = log_partitions::list(&db.pool).await.expect("list");
    let oldest = left.iter().map(|p| p.day).min().expect("partitions left");
    assert_eq!(oldest, days_ago(5).date_naive(), "{left:?}");
    assert!(left.iter().any(|p| p.day == now.date_naive() + Days::new(log_partitions::DAYS_AHEAD)));
    // The old event is gone with its day; the others, and the routes' queries, still answer.
    assert!(deliveries::for_event(&db.pool, account, old.event_id.as_str())
        .await
        .expect("read")
        .is_empty());
    for r in [&recent, &today] {
        let found =
            deliveries::for_event(&db.pool, account, r.event_id.as_str()).await.expect("read");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].state, "delivered");
    }
    let stats =
        deliveries::endpoint_stats(&db.pool, account, endpoint, days_ago(10)).await.expect("stats");
    assert_eq!((stats.delivered, stats.attempts), (2, 2), "{stats:?}");
    // Expiring again finds nothing more to drop; writing goes on.
    assert!(log_partitions::expire(&db.pool, Duration::from_secs(30 * 86_400), now)
        .await
        .expect("again")
        .is_empty());
    log(&db, vec![attempt(account, endpoint, Utc::now())]).await;
}

#[tokio::test]
async fn only_records_at_or_below_the_progress_mark_may_be_redeliveries() {
    let db = TestDatabase::new().await;
    let account =
        accounts::create(&db.pool, "Acme", Tier::Small, "test").await.expect("account").id;
    let endpoint = EndpointId::new();
    let tp = ("hookstream.events.default".to_string(), 3);
    let other = ("hookstream.events.default".to_string(), 4);
    let from = |tp: &(String, i32), offset| AttemptRecord {
        source: Some((tp.clone(), offset)),
        ..attempt(account, endpoint, Utc::now())
    };
    log(&db, vec![from(&tp, 5), from(&tp, 9), from(&other, 3)]).await;
    // A later batch with a lower offset (a retry finishing late) does not lower the mark.
    log(&db, vec![from(&tp, 7)]).await;
    assert_eq!(record::log_mark(&db.pool, &tp).await.expect("mark"), Some(9));
    assert_eq!(record::log_mark(&db.pool, &other).await.expect("mark"), Some(3));

    let source =
        |tp: &(String, i32), offset, generation| Source { tp: tp.clone(), offset, generation };
    let settled = Redeliveries::new(db.pool.clone(), Duration::ZERO);
    assert!(settled.possible(&source(&tp, 9, 1)).await);
    assert!(settled.possible(&source(&tp, 2, 1)).await);
    assert!(!settled.possible(&source(&tp, 10, 1)).await, "above the mark: never attempted");
    assert!(
        !settled.possible(&source(&("unseen".into(), 0), 0, 1)).await,
        "no mark: nothing logged"
    );
    // While an assignment settles the previous owner may still be writing: the mark is read
    // again when the copy in hand is older than REFRESH. Settled, it is kept.
    let settling = Redeliveries::new(db.pool.clone(), Duration::from_secs(3600));
    assert!(!settling.possible(&source(&tp, 10, 1)).await);
    log(&db, vec![from(&tp, 12)]).await;
    tokio::time::sleep(REFRESH).await;
    assert!(settling.possible(&source(&tp, 10, 1)).await, "the late attempt raised the mark");
    log(&db, vec![from(&tp, 20)]).await;
    tokio::time::sleep(REFRESH).await;
    assert!(!settled.possible(&source(&tp, 15, 1)).await, "a settled assignment keeps its read");
    assert!(settled.possible(&source(&tp, 15, 2)).await, "a new assignment reads it again");
}
