//! `hookstream lag` reads what was produced minus what was committed, and how old the oldest
//! unconsumed message is.

use std::time::Duration;

use hookstream_core::kafka;
use hookstream_testkit::{self as testkit, TestDatabase};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, DefaultConsumerContext};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use crate::command::command;

#[tokio::test]
async fn lag_is_produced_minus_committed_with_the_age_of_the_oldest_unconsumed_message() {
    let db = TestDatabase::new().await;
    let prefix = testkit::unique("lag") + ".";
    let topic = format!("{prefix}events.normal");
    testkit::create_topics(std::slice::from_ref(&topic), 2).await;
    let cfg = testkit::kafka_config();
    let producer = kafka::producer(&cfg, "lag-test").expect("producer");
    // Partition 0: 10 messages, 4 committed; partition 1: 3 messages, all committed.
    for (partition, n) in [(0, 10), (1, 3)] {
        for i in 0..n {
            producer
                .send(
                    FutureRecord::<str, str>::to(&topic)
                        .partition(partition)
                        .payload(&format!("m{i}")),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
                .expect("acked");
        }
    }
    let group = testkit::unique("lag-group-");
    let member: BaseConsumer = kafka::consumer_config(&cfg, "lag-test", &group)
        .create_with_context(DefaultConsumerContext)
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(4)).expect("p0");
    tpl.add_partition_offset(&topic, 1, Offset::Offset(3)).expect("p1");
    member.commit(&tpl, CommitMode::Sync).expect("commit");
    tokio::time::sleep(Duration::from_secs(2)).await;

    let args = ["lag", "--group", &group, "--topic-prefix", &prefix, "--json"];
    let out = command(&db, &args).output().await.expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let g = &report[0];
    assert_eq!(g["group"], group);
    assert_eq!(g["lag_messages"], 6);
    let parts = g["partitions"].as_array().expect("partitions");
    let p0 = parts.iter().find(|p| p["partition"] == 0).expect("p0");
    assert_eq!(
        (p0["committed"].as_i64(), p0["high_watermark"].as_i64(), p0["lag_messages"].as_i64()),
        (Some(4), Some(10), Some(6))
    );
    let age = p0["lag_seconds"].as_f64().expect("seconds");
    assert!((2.0..30.0).contains(&age), "the oldest unconsumed message is about 2 s old: {age}");
    let p1 = parts.iter().find(|p| p["partition"] == 1).expect("p1");
    assert_eq!((p1["lag_messages"].as_i64(), p1["lag_seconds"].as_f64()), (Some(0), Some(0.0)));
}
