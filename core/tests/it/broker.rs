//! What the pipeline needs from a Kafka-protocol broker, proven with rdkafka against the local
//! one. Only standard Kafka APIs are used, so the same holds against Apache Kafka.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use hookstream_core::kafka::{self, TopicCreation, TopicSpec};
use hookstream_core::producer::{HealingProducer, ProduceError};
use hookstream_testkit::{self as testkit, eventually, unique};
use rdkafka::consumer::{CommitMode, Consumer, DefaultConsumerContext, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(20);

async fn topic(partitions: i32) -> String {
    let name = unique("cap.");
    testkit::create_topics(std::slice::from_ref(&name), partitions).await;
    name
}

fn producer() -> FutureProducer {
    kafka::producer(&testkit::kafka_config(), "capability-test").expect("producer")
}

fn consumer(group: &str) -> StreamConsumer {
    kafka::consumer(&testkit::kafka_config(), "capability-test", group, DefaultConsumerContext)
        .expect("consumer")
}

/// Produces `key`/`value` and returns (partition, offset) once the broker acknowledged.
async fn send(p: &FutureProducer, topic: &str, key: &str, value: &str) -> (i32, i64) {
    let delivery = p
        .send(FutureRecord::to(topic).key(key).payload(value), Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .expect("acked");
    (delivery.partition, delivery.offset)
}

async fn recv(c: &StreamConsumer) -> BorrowedMessage<'_> {
    tokio::time::timeout(TIMEOUT, c.recv()).await.expect("message in time").expect("message")
}

fn partition_count(topic: &str) -> usize {
    let c = consumer(&unique("meta-"));
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    md.topics().iter().find(|t| t.name() == topic).map(|t| t.partitions().len()).unwrap_or(0)
}

#[tokio::test]
async fn topics_are_created_with_the_requested_partitions_and_creation_is_idempotent() {
    let name = unique("cap.");
    let admin = kafka::admin(&testkit::kafka_config(), "capability-test").expect("admin");
    let spec =
        TopicSpec { name: name.clone(), partitions: 8, replication_factor: 1, configs: vec![] };
    let first = kafka::create_topics(&admin, std::slice::from_ref(&spec)).await.expect("create");
    assert_eq!(first, vec![(name.clone(), TopicCreation::Created)]);
    let again = kafka::create_topics(&admin, &[spec]).await.expect("create again");
    assert_eq!(again, vec![(name.clone(), TopicCreation::Existed)]);
    assert_eq!(partition_count(&name), 8);
}

#[tokio::test]
async fn the_same_key_always_lands_on_the_same_partition() {
    let topic = topic(8).await;
    let p = producer();
    let mut by_key: BTreeMap<String, HashSet<i32>> = BTreeMap::new();
    for round in 0..5 {
        for k in 0..16 {
            let key = format!("account-{k}");
            let (partition, _) = send(&p, &topic, &key, &format!("v{round}")).await;
            by_key.entry(key).or_default().insert(partition);
        }
    }
    assert!(by_key.values().all(|ps| ps.len() == 1), "a key moved between partitions: {by_key:?}");
    let used: HashSet<i32> = by_key.values().flatten().copied().collect();
    assert!(used.len() > 1, "16 keys all hashed to one partition: {used:?}");
}

#[tokio::test]
async fn headers_round_trip() {
    let topic = topic(1).await;
    let p = producer();
    let headers =
        OwnedHeaders::new().insert(Header { key: "hs-attempt", value: Some("3") }).insert(Header {
            key: "traceparent",
            value: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        });
    p.send(
        FutureRecord::to(&topic).key("k").payload("v").headers(headers),
        Duration::from_secs(10),
    )
    .await
    .map_err(|(e, _)| e)
    .expect("acked");

    let c = consumer(&unique("g-"));
    c.subscribe(&[&topic]).expect("subscribe");
    let m = recv(&c).await;
    let got: Vec<(String, String)> = m
        .headers()
        .expect("headers")
        .iter()
        .map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into()))
        .collect();
    assert_eq!(
        got,
        [
            ("hs-attempt".to_owned(), "3".to_owned()),
            (
                "traceparent".to_owned(),
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()
            )
        ]
    );
}

#[tokio::test]
async fn a_restarted_consumer_resumes_from_the_committed_offset() {
    let topic = topic(1).await;
    let p = producer();
    for i in 0..10 {
        send(&p, &topic, "k", &format!("m{i}")).await;
    }
    let group = unique("g-");
    {
        let c = consumer(&group);
        c.subscribe(&[&topic]).expect("subscribe");
        for i in 0..4 {
            let m = recv(&c).await;
            assert_eq!(m.payload_view::<str>(), Some(Ok(format!("m{i}").as_str())));
            c.store_offset_from_message(&m).expect("store");
        }
        c.commit_consumer_state(CommitMode::Sync).expect("commit");
    }
    let c = consumer(&group);
    c.subscribe(&[&topic]).expect("subscribe");
    let m = recv(&c).await;
    assert_eq!(m.payload_view::<str>(), Some(Ok("m4")), "resumed at the first uncommitted message");
}

#[tokio::test]
async fn two_consumers_in_one_group_share_the_partitions() {
    let topic = topic(8).await;
    let group = unique("g-");
    let a = consumer(&group);
    let b = consumer(&group);
    a.subscribe(&[&topic]).expect("subscribe a");
    b.subscribe(&[&topic]).expect("subscribe b");
    // Assignment happens inside poll: keep both polling while we watch it settle.
    let poll = |c: &StreamConsumer| {
        let _ = futures_poll(c);
    };
    let (na, nb) =
        eventually(Duration::from_secs(60), "8 partitions split over 2 consumers", || {
            poll(&a);
            poll(&b);
            let na = a.assignment().map(|l| l.count()).unwrap_or(0);
            let nb = b.assignment().map(|l| l.count()).unwrap_or(0);
            async move { (na + nb == 8 && na > 0 && nb > 0).then_some((na, nb)) }
        })
        .await;
    assert_eq!((na, nb), (4, 4));
}

/// Gives a stream consumer a chance to run its rebalance callbacks.
fn futures_poll(c: &StreamConsumer) -> Option<()> {
    use futures::FutureExt;
    c.recv().now_or_never().map(|_| ())
}

#[tokio::test]
async fn watermarks_and_committed_offsets_give_the_lag() {
    let topic = topic(1).await;
    let p = producer();
    for i in 0..7 {
        send(&p, &topic, "k", &format!("m{i}")).await;
    }
    let group = unique("g-");
    let c = consumer(&group);
    c.subscribe(&[&topic]).expect("subscribe");
    for _ in 0..3 {
        let m = recv(&c).await;
        c.store_offset_from_message(&m).expect("store");
    }
    c.commit_consumer_state(CommitMode::Sync).expect("commit");

    let observer = consumer(&group);
    let (low, high) =
        observer.fetch_watermarks(&topic, 0, Duration::from_secs(10)).expect("watermarks");
    assert_eq!((low, high), (0, 7));
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&topic, 0);
    let committed = observer.committed_offsets(tpl, Duration::from_secs(10)).expect("committed");
    let offset = committed.find_partition(&topic, 0).expect("partition").offset();
    assert_eq!(offset, Offset::Offset(3));
    assert_eq!(high - 3, 4, "lag in messages");
}

#[tokio::test]
async fn offsets_for_times_finds_the_first_message_at_or_after_a_time() {
    let topic = topic(1).await;
    let p = producer();
    for i in 0..5 {
        send(&p, &topic, "k", &format!("before{i}")).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let cut = chrono::Utc::now().timestamp_millis();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (_, first_after) = send(&p, &topic, "k", "after0").await;
    send(&p, &topic, "k", "after1").await;

    let c = consumer(&unique("g-"));
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(cut)).expect("tpl");
    let found = c.offsets_for_times(tpl, Duration::from_secs(10)).expect("offsets_for_times");
    let offset = found.find_partition(&topic, 0).expect("partition").offset();
    assert_eq!(offset, Offset::Offset(first_after));
}

/// A committed offset inside a compressed batch of several records (what a concurrent producer
/// writes) must be resumable. Kafka returns the whole batch and the client skips the records
/// before the offset; a broker that started at the next batch would lose the rest of it.
#[tokio::test]
async fn resuming_from_an_offset_inside_a_multi_record_batch_reads_the_rest() {
    let topic = topic(1).await;
    let p = producer();
    let sends = (0..50).map(|i| {
        let (p, topic) = (&p, &topic);
        async move { send(p, topic, "k", &format!("m{i}")).await }
    });
    futures::future::join_all(sends).await;
    let group = unique("g-");
    {
        let c = consumer(&group);
        c.subscribe(&[&topic]).expect("subscribe");
        for _ in 0..20 {
            let m = recv(&c).await;
            c.store_offset_from_message(&m).expect("store");
        }
        c.commit_consumer_state(CommitMode::Sync).expect("commit");
    }
    let c = consumer(&group);
    c.subscribe(&[&topic]).expect("subscribe");
    let mut rest = 0;
    while rest < 30 {
        let m = recv(&c).await;
        assert!(m.offset() >= 20, "re-read {}", m.offset());
        rest += 1;
    }
}

/// A consumer that tails a partition must read every record in order, also while producers on
/// separate connections race to append to it (a broker that raised the high watermark before
/// the batch was written would let it skip one for good). Dispatching relies on this.
#[tokio::test]
async fn a_consumer_tailing_racing_producers_reads_every_record() {
    const PRODUCERS: usize = 4;
    const EACH: usize = 2_500;
    let topic = topic(1).await;
    let mut cfg = testkit::kafka_config();
    cfg.linger = Duration::ZERO;
    cfg.fetch_wait = Duration::from_millis(1);
    let c = kafka::consumer(&cfg, "capability-test", &unique("g-"), DefaultConsumerContext)
        .expect("consumer");
    c.subscribe(&[&topic]).expect("subscribe");
    let producing = (0..PRODUCERS).map(|n| {
        let (cfg, topic) = (cfg.clone(), topic.clone());
        tokio::spawn(async move {
            let p = kafka::producer(&cfg, "capability-test").expect("producer");
            let sends = (0..EACH).map(|i| {
                let (p, topic) = (&p, &topic);
                async move { send(p, topic, "k", &format!("p{n}-{i}")).await }
            });
            futures::future::join_all(sends).await;
        })
    });
    let producing = tokio::spawn(futures::future::join_all(producing));
    let mut seen = HashSet::new();
    let mut next_offset = 0;
    while seen.len() < PRODUCERS * EACH {
        let m = recv(&c).await;
        assert_eq!(m.offset(), next_offset, "the consumer skipped from {next_offset}");
        next_offset = m.offset() + 1;
        let value = m.payload_view::<str>().and_then(Result::ok).unwrap_or_default().to_owned();
        assert!(seen.insert(value), "read twice at {}", m.offset());
    }
    for joined in producing.await.expect("producers") {
        joined.expect("producer task");
    }
}

/// librdkafka keeps a partition paused across revoke and re-assign. The fault run found the
/// retrier stuck for good on partitions it had paused for a not-yet-due task when the broker
/// outage ended its session: the new assignment must start fetching.
#[tokio::test]
async fn a_partition_paused_before_a_rebalance_is_fetched_after_it() {
    use hookstream_core::partitions::{self, Flow, PartitionContext, Partitions};
    use std::sync::Arc;

    let topic = topic(1).await;
    let p = producer();
    send(&p, &topic, "k", "before").await;
    let state = Arc::new(Partitions::default());
    let c = kafka::consumer(
        &testkit::kafka_config(),
        "capability-test",
        &unique("g-"),
        PartitionContext::new(Arc::clone(&state)),
    )
    .expect("consumer");
    c.subscribe(&[&topic]).expect("subscribe");
    let first = tokio::time::timeout(TIMEOUT, c.recv()).await.expect("in time").expect("message");
    assert_eq!(first.payload(), Some(&b"before"[..]));
    drop(first);
    partitions::apply(&c, &(topic.clone(), 0), Flow::Pause);
    c.unsubscribe();
    // Let the revoke run (callbacks are served while polling).
    let _ = tokio::time::timeout(Duration::from_secs(2), c.recv()).await;
    send(&p, &topic, "k", "after").await;
    c.subscribe(&[&topic]).expect("subscribe again");
    let m = tokio::time::timeout(TIMEOUT, c.recv()).await.expect("fetched after re-assign");
    let m = m.expect("message");
    // From the start again: nothing was committed.
    let mut seen = vec![String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()];
    drop(m);
    while !seen.iter().any(|v| v == "after") {
        let m = tokio::time::timeout(TIMEOUT, c.recv()).await.expect("in time").expect("message");
        seen.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
    }
    assert_eq!(state.totals().1, 0, "no partition counted as paused after the re-assign");
}

/// The log stays bounded: the topics `topic_specs` describes (`cleanup.policy=delete` and
/// `retention.ms`) lose their records past retention, and the log then starts after them. Kafka
/// deletes whole closed segments, so this test's broker checks every second from its start and
/// the topic rolls
/// a segment every second (production topics roll at `log.segment.bytes` or a week); a topic
/// created without `retention.ms` keeps the broker's default of seven days and is the control.
#[tokio::test]
async fn records_past_their_topics_retention_are_deleted_by_the_broker() {
    use hookstream_core::config::TopicsConfig;

    let broker = testkit::OwnBroker::start_with(&[
        "log.retention.check.interval.ms=1000",
        // The first check otherwise waits 30 s after start.
        "log.initial.task.delay.ms=0",
    ])
    .await;
    let cfg = broker.kafka_config();
    let topics = TopicsConfig {
        prefix: unique("ret.") + ".",
        partitions: 1,
        retention: Duration::from_secs(3),
        ..TopicsConfig::default()
    };
    let mut bounded = kafka::topic_specs(&topics).remove(0);
    bounded.configs.push(("segment.ms".into(), "1000".into()));
    let mut kept = bounded.clone();
    kept.name = unique("ret.kept.");
    kept.configs.retain(|(k, _)| k == "segment.ms");
    let admin = kafka::admin(&cfg, "capability-test").expect("admin");
    kafka::create_topics(&admin, &[bounded.clone(), kept.clone()]).await.expect("create");

    let p = kafka::producer(&cfg, "capability-test").expect("producer");
    for topic in [&bounded.name, &kept.name] {
        for i in 0..10 {
            let value = format!("old{i}");
            let record = FutureRecord::to(topic).key("k").payload(&value).partition(0);
            p.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).expect("acked");
        }
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Rolls a new segment: the old one is closed and past retention.
    for topic in [&bounded.name, &kept.name] {
        let record = FutureRecord::to(topic).key("k").payload("new").partition(0);
        p.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).expect("acked");
    }

    let observer = kafka::consumer(&cfg, "capability-test", &unique("g-"), DefaultConsumerContext)
        .expect("consumer");
    let watermarks = |topic: &str| {
        observer.fetch_watermarks(topic, 0, Duration::from_secs(10)).expect("watermarks")
    };
    eventually(Duration::from_secs(30), "records past retention deleted", || {
        let low = watermarks(&bounded.name).0;
        async move { (low == 10).then_some(()) }
    })
    .await;
    assert_eq!(watermarks(&bounded.name), (10, 11), "the log starts at the first kept record");
    assert_eq!(watermarks(&kept.name), (0, 11), "a topic without retention.ms keeps all");

    // Read without a group: what is asked is where the log starts, not how a group joins
    // (a new group on a fresh broker waits for its offsets topic, slow on a loaded machine).
    let reader = kafka::consumer(&cfg, "capability-test", &unique("g-"), DefaultConsumerContext)
        .expect("consumer");
    let mut from_start = TopicPartitionList::new();
    from_start.add_partition_offset(&bounded.name, 0, Offset::Beginning).expect("tpl");
    reader.assign(&from_start).expect("assign");
    let first = tokio::time::timeout(TIMEOUT, reader.recv()).await.expect("in time").expect("ok");
    assert_eq!((first.offset(), first.payload()), (10, Some(&b"new"[..])));
}

/// Topics created and written at once on a broker that has just started (a fresh install:
/// `topics create`, then the services start and take traffic): every record the producer
/// reported stored must be on the broker. Kafka answers the creation before its broker has
/// created every partition's log; batches meeting that window fail with "not leader", and a
/// later batch of the same partition that arrives once the log exists is taken as the
/// producer's first. librdkafka then reports the failed records delivered, without an offset
/// ([`HealingProducer::send`] refuses those). Without that check this test fails about every
/// second run (1–2 of 2,500 records missing).
#[tokio::test]
async fn records_reported_stored_right_after_their_topics_were_created_are_all_stored() {
    const TOPICS: usize = 30;
    const TARGETS: usize = 8;
    const PARTITIONS: i32 = 8;
    const RECORDS: usize = 2_500;
    let broker = testkit::OwnBroker::start().await;
    let cfg = broker.kafka_config();
    // A producer that already has its producer id, as a running ingest has.
    let producer = HealingProducer::new(&cfg, "capability-test").expect("producer");
    let admin = kafka::admin(&cfg, "capability-test").expect("admin");
    let spec = |name: &str| TopicSpec {
        name: name.to_owned(),
        partitions: PARTITIONS,
        replication_factor: 1,
        configs: vec![],
    };
    let warm = unique("warm.");
    kafka::create_topics(&admin, &[spec(&warm)]).await.expect("create");
    producer
        .send(FutureRecord::to(&warm).key("k").payload("v"), Duration::from_secs(30))
        .await
        .expect("first record");
    let names: Vec<String> = (0..TOPICS).map(|_| unique("fresh.")).collect();
    let specs: Vec<TopicSpec> = names.iter().map(|n| spec(n)).collect();
    kafka::create_topics(&admin, &specs).await.expect("create");
    // Records as ingest sends them, one every millisecond, over the partitions of several
    // of the new topics: each partition whose log is not there yet fails a batch, retries it
    // after a backoff with the records queued meanwhile, and may see its log appear between
    // two of those requests.
    let targets: Vec<String> = names[TOPICS - TARGETS..].to_vec();
    let sends = (0..RECORDS).map(|n| {
        let (producer, topic) = (producer.clone(), targets[n % TARGETS].clone());
        async move {
            tokio::time::sleep(Duration::from_millis(n as u64)).await;
            let value = format!("r{n}");
            let key = format!("key-{}", n / TARGETS % 8);
            let sent = producer
                .send(FutureRecord::to(&topic).key(&key).payload(&value), Duration::from_secs(10))
                .await;
            (value, sent)
        }
    });
    let mut stored = HashSet::new();
    let mut unconfirmed = 0;
    for (value, sent) in futures::future::join_all(sends).await {
        match sent {
            Ok(_) => {
                stored.insert(value);
            }
            Err(ProduceError::Unconfirmed) => unconfirmed += 1,
            Err(e) => panic!("send {value}: {e}"),
        }
    }
    let c: StreamConsumer =
        kafka::consumer(&cfg, "capability-test", &unique("g-"), DefaultConsumerContext)
            .expect("consumer");
    let mut from_start = TopicPartitionList::new();
    for t in &targets {
        for p in 0..PARTITIONS {
            from_start.add_partition_offset(t, p, Offset::Beginning).expect("tpl");
        }
    }
    c.assign(&from_start).expect("assign");
    let mut on_broker = HashSet::new();
    while on_broker.len() < RECORDS {
        match tokio::time::timeout(Duration::from_secs(5), c.recv()).await {
            Ok(Ok(m)) => {
                on_broker.insert(String::from_utf8_lossy(m.payload().unwrap_or_default()).into());
            }
            Ok(Err(e)) => panic!("consume: {e}"),
            Err(_) => break,
        }
    }
    let missing: Vec<&String> = stored.difference(&on_broker).collect();
    eprintln!(
        "{} reported stored, {unconfirmed} unconfirmed, {} on the broker",
        stored.len(),
        on_broker.len()
    );
    assert!(
        missing.is_empty(),
        "{} reported stored but not on the broker: {missing:?}",
        missing.len()
    );
}
