//! Start-up against services that are not there: a clear error within the timeout, no hang.

use std::time::{Duration, Instant};

use hookstream_core::config::{DatabaseConfig, KafkaConfig};
use hookstream_core::service::{self, ServiceError};

fn dead_kafka() -> KafkaConfig {
    KafkaConfig {
        brokers: "127.0.0.1:1".into(),
        connect_timeout: Duration::from_secs(2),
        ..KafkaConfig::default()
    }
}

fn dead_database() -> DatabaseConfig {
    DatabaseConfig {
        url: "postgres://hookstream:secret@127.0.0.1:1/hookstream".into(),
        connect_timeout: Duration::from_secs(2),
        ..DatabaseConfig::default()
    }
}

#[tokio::test]
async fn an_unreachable_broker_is_named_within_the_connect_timeout() {
    let started = Instant::now();
    let err =
        hookstream_core::kafka::wait_for_cluster(&dead_kafka()).await.err().expect("must fail");
    assert!(started.elapsed() < Duration::from_secs(6), "took {:?}", started.elapsed());
    let msg = err.to_string();
    assert!(msg.contains("kafka broker 127.0.0.1:1 unreachable"), "{msg}");
}

#[tokio::test]
async fn an_unreachable_database_is_named_without_its_password() {
    let started = Instant::now();
    let err = hookstream_core::db::connect(&dead_database()).await.expect_err("must fail");
    assert!(started.elapsed() < Duration::from_secs(6), "took {:?}", started.elapsed());
    let msg = err.to_string();
    assert!(
        msg.contains("database postgres://hookstream:***@127.0.0.1:1/hookstream unreachable"),
        "{msg}"
    );
    assert!(!msg.contains("secret"), "{msg}");
}

#[tokio::test]
async fn services_fail_to_start_naming_the_missing_backend() {
    let live_db = DatabaseConfig {
        url: hookstream_testkit::admin_database_url(),
        ..DatabaseConfig::default()
    };
    let err = service::connect(&dead_kafka(), &live_db).await.err().expect("must fail");
    assert!(matches!(err, ServiceError::Kafka(_)), "{err}");
    let err = service::connect(&hookstream_testkit::kafka_config(), &dead_database())
        .await
        .err()
        .expect("must fail");
    assert!(matches!(err, ServiceError::Database(_)), "{err}");
}
