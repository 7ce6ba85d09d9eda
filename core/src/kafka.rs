//! Kafka client builders with the settings DESIGN.md fixes, plus the admin calls the CLI and
//! start-up need. Only the standard Kafka protocol is used, so any Kafka-compatible cluster
//! works.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, FromClientConfig, FromClientConfigAndContext};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::{GroupProtocol, KafkaConfig, TopicsConfig};

/// Why a Kafka client could not be built or used.
#[derive(Debug, thiserror::Error)]
pub enum KafkaClientError {
    /// librdkafka refused the configuration.
    #[error("invalid kafka client configuration: {0}")]
    Config(#[source] KafkaError),
    /// No broker answered a metadata request in time.
    #[error("kafka broker {brokers} unreachable: {source}")]
    Unreachable {
        /// The configured bootstrap servers.
        brokers: String,
        /// The last error.
        #[source]
        source: KafkaError,
    },
    /// An admin request failed as a whole.
    #[error("kafka admin request failed: {0}")]
    Admin(#[source] KafkaError),
    /// The broker refused to create one topic.
    #[error("could not create topic {topic}: {code}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
}

/// The librdkafka settings shared by every client, with the user's `kafka.properties` last.
pub fn client_config(cfg: &KafkaConfig, client_id: &str) -> ClientConfig {
    with_overrides(base_config(cfg, client_id), cfg)
}

fn base_config(cfg: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("client.id", cfg.client_id.as_deref().unwrap_or(client_id))
        // Surface an unreachable broker within the connect timeout instead of retrying quietly.
        .set("socket.connection.setup.timeout.ms", millis(cfg.connect_timeout));
    c
}

/// Applies `kafka.properties` last, so they can override hookstream's own settings.
fn with_overrides(mut c: ClientConfig, cfg: &KafkaConfig) -> ClientConfig {
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c
}

/// Producer settings of DESIGN.md: idempotent, `acks=all`, lz4, a short linger, and a delivery
/// timeout equal to `kafka.produce_timeout`.
pub fn producer_config(cfg: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut c = base_config(cfg, client_id);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", millis(cfg.linger))
        .set("message.timeout.ms", millis(cfg.produce_timeout));
    with_overrides(c, cfg)
}

/// Consumer settings of DESIGN.md: manual commits of explicitly stored offsets, incremental
/// (cooperative) rebalancing, start from the earliest offset for a new group.
pub fn consumer_config(cfg: &KafkaConfig, client_id: &str, group_id: &str) -> ClientConfig {
    let mut c = base_config(cfg, client_id);
    c.set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", millis(cfg.fetch_wait))
        // librdkafka prefetches up to 64 MB by default, most of a service's memory budget
        // (100 MB) on its own; 8 MB is still seconds of traffic at thousands of events/s,
        // and the partitions' buffers (`max_buffered_per_partition`) hold the work itself.
        .set("queued.max.messages.kbytes", "8192");
    match cfg.group_protocol {
        GroupProtocol::Classic => {
            c.set("group.protocol", "classic")
                .set("partition.assignment.strategy", "cooperative-sticky")
                .set("session.timeout.ms", millis(cfg.session_timeout))
                .set("heartbeat.interval.ms", millis(cfg.session_timeout / 4));
        }
        // The broker owns assignment, session timeout and heartbeat: librdkafka refuses them.
        GroupProtocol::Consumer => {
            c.set("group.protocol", "consumer");
        }
    }
    with_overrides(c, cfg)
}

/// Builds the idempotent producer.
pub fn producer(cfg: &KafkaConfig, client_id: &str) -> Result<FutureProducer, KafkaClientError> {
    producer_config(cfg, client_id).create().map_err(KafkaClientError::Config)
}

/// Builds a consumer in `group_id` with a custom context (rebalance callbacks).
pub fn consumer<C: ConsumerContext + 'static>(
    cfg: &KafkaConfig,
    client_id: &str,
    group_id: &str,
    context: C,
) -> Result<StreamConsumer<C>, KafkaClientError> {
    StreamConsumer::from_config_and_context(&consumer_config(cfg, client_id, group_id), context)
        .map_err(KafkaClientError::Config)
}

/// Builds an admin client.
pub fn admin(
    cfg: &KafkaConfig,
    client_id: &str,
) -> Result<AdminClient<DefaultClientContext>, KafkaClientError> {
    AdminClient::from_config(&client_config(cfg, client_id)).map_err(KafkaClientError::Config)
}

/// A client kept for one purpose: asking the cluster for metadata, to tell whether it is up.
#[derive(Clone)]
pub struct ClusterProbe {
    client: Arc<BaseConsumer>,
    brokers: String,
}

impl ClusterProbe {
    /// Builds the probe's client (no connection is made yet).
    pub fn new(cfg: &KafkaConfig) -> Result<Self, KafkaClientError> {
        let client: BaseConsumer =
            client_config(cfg, "hookstream-probe").create().map_err(KafkaClientError::Config)?;
        Ok(Self { client: Arc::new(client), brokers: cfg.brokers.clone() })
    }

    /// Asks for cluster metadata, retrying until it answers or `timeout` has passed.
    pub async fn check(&self, timeout: Duration) -> Result<(), KafkaClientError> {
        let client = Arc::clone(&self.client);
        let result = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match client.fetch_metadata(None, left.max(Duration::from_millis(100))) {
                    Ok(_) => return Ok(()),
                    Err(e) if Instant::now() >= deadline => return Err(e),
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        })
        .await
        .unwrap_or(Err(KafkaError::MetadataFetch(RDKafkaErrorCode::Fail)));
        result.map_err(|source| KafkaClientError::Unreachable {
            brokers: self.brokers.clone(),
            source,
        })
    }
}

/// Waits until the cluster answers a metadata request, or fails after `kafka.connect_timeout`.
///
/// librdkafka otherwise retries forever in the background; start-up wants a clear error.
pub async fn wait_for_cluster(cfg: &KafkaConfig) -> Result<ClusterProbe, KafkaClientError> {
    let probe = ClusterProbe::new(cfg)?;
    probe.check(cfg.connect_timeout).await?;
    Ok(probe)
}

/// What [`create_topics`] did with one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicCreation {
    /// The topic was created.
    Created,
    /// It existed already (creation is idempotent).
    Existed,
}

/// A topic to create.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    /// Full topic name.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// Replication factor.
    pub replication_factor: i32,
    /// Topic configs such as `retention.ms`.
    pub configs: Vec<(String, String)>,
}

/// Every topic of the pipeline, as `topics` configures it: lanes, retry tiers, and the DLQ,
/// each deleting records past its retention.
pub fn topic_specs(cfg: &TopicsConfig) -> Vec<TopicSpec> {
    let topics = cfg.topics();
    let spec = |name: String, configs: Vec<(String, String)>| TopicSpec {
        name,
        partitions: cfg.partitions,
        replication_factor: cfg.replication_factor,
        configs,
    };
    // Kafka's default policy too, but stated: a cluster whose default is `compact` would
    // otherwise keep every record.
    let delete_after = |d: Duration| {
        vec![
            ("cleanup.policy".to_owned(), "delete".to_owned()),
            ("retention.ms".to_owned(), millis(d)),
        ]
    };
    let mut specs: Vec<TopicSpec> = topics
        .all_events()
        .into_iter()
        .chain(topics.delayed())
        .map(|n| spec(n, delete_after(cfg.retention)))
        .collect();
    specs.push(spec(topics.dlq(), delete_after(cfg.dlq_retention)));
    specs
}

/// Creates topics, treating "already exists" as success.
pub async fn create_topics<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    specs: &[TopicSpec],
) -> Result<Vec<(String, TopicCreation)>, KafkaClientError> {
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|s| {
            let mut t =
                NewTopic::new(&s.name, s.partitions, TopicReplication::Fixed(s.replication_factor));
            for (k, v) in &s.configs {
                t = t.set(k, v);
            }
            t
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(&new_topics, &opts).await.map_err(KafkaClientError::Admin)?;
    results
        .into_iter()
        .map(|r| match r {
            Ok(topic) => Ok((topic, TopicCreation::Created)),
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                Ok((topic, TopicCreation::Existed))
            }
            Err((topic, code)) => Err(KafkaClientError::CreateTopic { topic, code }),
        })
        .collect()
}

fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_is_idempotent_with_acks_all_and_user_overrides_win() {
        let mut cfg = KafkaConfig::default();
        cfg.properties.insert("linger.ms".into(), "20".into());
        let c = producer_config(&cfg, "t");
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("message.timeout.ms"), Some("5000"));
        assert_eq!(c.get("linger.ms"), Some("20"));
    }

    #[test]
    fn consumer_commits_manually_with_cooperative_assignment() {
        let c = consumer_config(&KafkaConfig::default(), "t", "g");
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("partition.assignment.strategy"), Some("cooperative-sticky"));
        assert_eq!(c.get("group.id"), Some("g"));
        assert_eq!(c.get("group.protocol"), Some("classic"));
    }

    #[test]
    fn the_consumer_protocol_leaves_assignment_and_session_to_the_broker() {
        let cfg = KafkaConfig { group_protocol: GroupProtocol::Consumer, ..KafkaConfig::default() };
        let c = consumer_config(&cfg, "t", "g");
        assert_eq!(c.get("group.protocol"), Some("consumer"));
        for key in ["partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms"]
        {
            assert_eq!(c.get(key), None, "{key}");
        }
    }

    #[test]
    fn every_topic_deletes_past_its_retention() {
        let cfg = TopicsConfig::default();
        let specs = topic_specs(&cfg);
        let config = |s: &TopicSpec, key: &str| {
            s.configs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
        };
        for s in &specs {
            assert_eq!(config(s, "cleanup.policy").as_deref(), Some("delete"), "{}", s.name);
            let want = if s.name == cfg.topics().dlq() { cfg.dlq_retention } else { cfg.retention };
            assert_eq!(config(s, "retention.ms"), Some(millis(want)), "{}", s.name);
        }
        assert_eq!(specs.len(), cfg.topics().all().len(), "lanes, tiers, park and the DLQ");
    }
}
