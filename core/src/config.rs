//! Typed configuration: compiled-in defaults, then an optional TOML file, then
//! `HOOKSTREAM_*` environment variables (`HOOKSTREAM_KAFKA__BROKERS=…` sets `kafka.brokers`).
//!
//! Each service owns one struct made of the sections below; [`load`] reads and validates it
//! once at start, and every error names the key at fault.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::topics::{self, Topics, DEFAULT_RETRY_SCHEDULE};

/// Environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "HOOKSTREAM_";

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The named file does not exist.
    #[error("config file {0} does not exist")]
    MissingFile(String),
    /// A value could not be parsed (figment names the key and the source).
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// A value parsed but is not acceptable.
    #[error("invalid configuration: `{key}` {message}")]
    Invalid {
        /// Dotted key, e.g. `kafka.brokers`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

impl ConfigError {
    /// An invalid-value error for `key`.
    pub fn invalid(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid { key: key.to_owned(), message: message.into() }
    }
}

/// A service's whole configuration.
pub trait ServiceConfig: Serialize + DeserializeOwned + Default {
    /// Cross-field checks, run once after loading.
    fn validate(&self) -> Result<(), ConfigError>;

    /// The `[telemetry]` section, for configurations that have one.
    fn telemetry(&self) -> TelemetryConfig {
        TelemetryConfig::default()
    }

    /// The longest a shutdown may take from SIGTERM to exit, whatever is down: the service
    /// process exits (code 1, saying what it left) when it passes.
    fn shutdown_deadline(&self) -> Duration {
        Duration::from_secs(30)
    }
}

/// Loads `T` from defaults, the optional TOML `file`, and `HOOKSTREAM_*` variables, then
/// validates it.
pub fn load<T: ServiceConfig>(file: Option<&Path>) -> Result<T, ConfigError> {
    load_with_env(file, Env::prefixed(ENV_PREFIX))
}

fn load_with_env<T: ServiceConfig>(file: Option<&Path>, env: Env) -> Result<T, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = file {
        if !path.is_file() {
            return Err(ConfigError::MissingFile(path.display().to_string()));
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    // Only variables naming one of T's sections are configuration: scripts and tests use other
    // HOOKSTREAM_* variables, which must not trip `deny_unknown_fields`.
    let sections = top_level_keys::<T>();
    let env = env.split("__").filter(move |key| {
        let first = key.as_str().split('.').next().unwrap_or_default();
        sections.contains(&first.to_ascii_lowercase())
    });
    let config: T = figment.merge(env).extract().map_err(parse_error)?;
    config.validate()?;
    Ok(config)
}

/// Names the dotted key and the source of the first error: `kafka.produce_timeout: invalid
/// value … (in HOOKSTREAM_ environment variable(s))`.
fn parse_error(errors: figment::Error) -> ConfigError {
    let Some(e) = errors.into_iter().next() else {
        return ConfigError::Parse("unknown error".into());
    };
    let source = e.metadata.as_ref().map(|m| format!(" (in {})", m.name)).unwrap_or_default();
    let key = e.path.join(".").to_ascii_lowercase();
    if key.is_empty() {
        ConfigError::Parse(format!("{}{source}", e.kind))
    } else {
        ConfigError::Parse(format!("`{key}`: {}{source}", e.kind))
    }
}

fn top_level_keys<T: ServiceConfig>() -> HashSet<String> {
    match serde_json::to_value(T::default()) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => HashSet::new(),
    }
}

/// `[kafka]`: how to reach the cluster.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated `host:port`.
    pub brokers: String,
    /// Client id reported to the broker; defaults to the service name.
    pub client_id: Option<String>,
    /// How long a produce may wait for the broker's acknowledgement.
    #[serde(with = "humantime_serde")]
    pub produce_timeout: Duration,
    /// How long the producer waits to fill a batch: raises throughput, adds up to this much
    /// latency to every produce.
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// Consumer group rebalance protocol: `classic` (cooperative-sticky assignment by the
    /// group's leader, session timeout set here) or `consumer` (KIP-848: the broker assigns,
    /// and its `group.consumer.session.timeout.ms` replaces `session_timeout`).
    pub group_protocol: GroupProtocol,
    /// Consumer group session timeout (`classic` protocol): how long a dead consumer keeps its
    /// partitions before the group hands them to another. Lower fails over faster; too low
    /// evicts consumers that merely pause (GC, CPU starvation).
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// Longest time a fetch waits at the broker for new data (`fetch.wait.max.ms`). Kafka
    /// answers as soon as data arrives, so this bounds only idle polling.
    #[serde(with = "humantime_serde")]
    pub fetch_wait: Duration,
    /// How long start-up waits for the cluster's metadata before giving up.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Extra librdkafka properties (`security.protocol`, `sasl.*`, `fetch.max.bytes`, …),
    /// applied after hookstream's own and so able to override them.
    pub properties: BTreeMap<String, String>,
    /// Confluent-compatible schema registry. Set, ingest writes events as Avro in the Confluent
    /// wire format; the dispatcher and `hookstream replay` read Avro through it (and JSON
    /// always). Every part that reads the event topics needs it once any event is Avro.
    pub schema_registry_url: Option<url::Url>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:19092".into(),
            client_id: None,
            produce_timeout: Duration::from_secs(5),
            linger: Duration::from_millis(1),
            group_protocol: GroupProtocol::default(),
            session_timeout: Duration::from_secs(10),
            fetch_wait: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(10),
            properties: BTreeMap::new(),
            schema_registry_url: None,
        }
    }
}

impl KafkaConfig {
    /// Checks the section; keys are reported under `kafka.`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.brokers.split(',').any(|b| !b.trim().contains(':')) {
            return Err(ConfigError::invalid(
                "kafka.brokers",
                format!("must be comma-separated host:port pairs, got {:?}", self.brokers),
            ));
        }
        if let Some(url) = &self.schema_registry_url {
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ConfigError::invalid(
                    "kafka.schema_registry_url",
                    format!("must be an http(s) URL, got {url}"),
                ));
            }
        }
        positive("kafka.produce_timeout", self.produce_timeout)?;
        positive("kafka.fetch_wait", self.fetch_wait)?;
        positive("kafka.connect_timeout", self.connect_timeout)?;
        // `kafka.properties` are applied last; these would silently undo a guarantee.
        if let Some((key, why)) =
            RESERVED_PROPERTIES.iter().find(|(key, _)| self.properties.contains_key(*key))
        {
            return Err(ConfigError::invalid(
                &format!("kafka.properties.\"{key}\""),
                format!("hookstream sets it: {why}"),
            ));
        }
        Ok(())
    }
}

/// librdkafka properties that `kafka.properties` may not set: each has a setting of its own,
/// or changing it would lose, skip or duplicate events.
pub const RESERVED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "set kafka.brokers"),
    ("group.id", "set the service's group_id"),
    ("group.protocol", "set kafka.group_protocol"),
    ("message.timeout.ms", "set kafka.produce_timeout"),
    ("enable.auto.commit", "an offset is committed only once its work is done"),
    ("enable.auto.offset.store", "an offset is stored only once its work is done"),
    ("auto.offset.reset", "a new group starts from the earliest record, skipping none"),
    ("enable.idempotence", "a retried produce must not write an event twice"),
    ("acks", "an event is accepted only once every in-sync replica has it"),
];

/// The consumer group protocol of `kafka.group_protocol` (librdkafka's `group.protocol`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupProtocol {
    /// The classic protocol with cooperative-sticky assignment; works with any Kafka.
    #[default]
    Classic,
    /// KIP-848 (Kafka 4.0 or newer): the broker assigns partitions and owns the session
    /// timeout and heartbeat interval.
    Consumer,
}

/// `[topics]`: names and shapes of the pipeline's topics.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicsConfig {
    /// Prefix of every topic name.
    pub prefix: String,
    /// Partitions of each topic created by `hookstream topics create`.
    pub partitions: i32,
    /// Replication factor of created topics.
    pub replication_factor: i32,
    /// Delays of the retry tiers, one topic each, in order.
    #[serde(with = "duration_list")]
    pub retry_schedule: Vec<Duration>,
    /// How long the event and retry topics keep records (`retention.ms`, with
    /// `cleanup.policy=delete`): the window `hookstream replay` can reach back into, and what
    /// keeps the broker's log bounded. Set when a topic is created.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How long the DLQ keeps records.
    #[serde(with = "humantime_serde")]
    pub dlq_retention: Duration,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            prefix: "hookstream.".into(),
            partitions: 8,
            replication_factor: 1,
            retry_schedule: DEFAULT_RETRY_SCHEDULE.to_vec(),
            retention: Duration::from_secs(7 * 24 * 3600),
            dlq_retention: Duration::from_secs(14 * 24 * 3600),
        }
    }
}

impl TopicsConfig {
    /// Checks the section; keys are reported under `topics.`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !topics::is_valid_prefix(&self.prefix) {
            return Err(ConfigError::invalid(
                "topics.prefix",
                format!("may hold only letters, digits, '.', '_' and '-', got {:?}", self.prefix),
            ));
        }
        at_least_one("topics.partitions", self.partitions)?;
        at_least_one("topics.replication_factor", self.replication_factor)?;
        if self.retry_schedule.is_empty() {
            return Err(ConfigError::invalid("topics.retry_schedule", "needs at least one delay"));
        }
        for pair in self.retry_schedule.windows(2) {
            if pair[1] <= pair[0] {
                return Err(ConfigError::invalid(
                    "topics.retry_schedule",
                    "delays must be strictly increasing",
                ));
            }
        }
        if self.retry_schedule.iter().any(|d| d.as_millis() == 0) {
            return Err(ConfigError::invalid(
                "topics.retry_schedule",
                "delays must be at least 1ms",
            ));
        }
        // A record waits in its retry tier until it is due; one deleted first would be lost.
        let longest = self.retry_schedule.iter().max().copied().unwrap_or_default();
        if self.retention <= longest {
            return Err(ConfigError::invalid(
                "topics.retention",
                format!(
                    "must be longer than the longest retry delay ({}), got {}",
                    humantime::format_duration(longest),
                    humantime::format_duration(self.retention)
                ),
            ));
        }
        positive("topics.dlq_retention", self.dlq_retention)
    }

    /// The topic names this section describes.
    pub fn topics(&self) -> Topics {
        Topics::new(self.prefix.clone(), self.retry_schedule.clone())
    }
}

/// `[database]`: the Postgres connection.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    /// Pool size.
    pub max_connections: u32,
    /// How long to wait for a connection before failing.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "postgres://hookstream@127.0.0.1:15432/hookstream".into(),
            max_connections: 10,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl DatabaseConfig {
    /// Checks the section; keys are reported under `database.`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match Url::parse(&self.url) {
            Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => {}
            Ok(u) => {
                return Err(ConfigError::invalid(
                    "database.url",
                    format!("must be a postgres:// URL, got scheme {:?}", u.scheme()),
                ))
            }
            Err(e) => {
                return Err(ConfigError::invalid("database.url", format!("is not a URL: {e}")))
            }
        }
        at_least_one("database.max_connections", self.max_connections)?;
        positive("database.connect_timeout", self.connect_timeout)
    }
}

/// A URL with its password replaced, for logs and error messages.
pub fn redact_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<unparseable url>".into(),
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines, for development.
    #[default]
    Text,
    /// One JSON object per line, for production log pipelines.
    Json,
}

/// `[telemetry]`: logs, traces and metrics.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Log format.
    pub log_format: LogFormat,
    /// `tracing` filter directives (overridden by `RUST_LOG` when set).
    pub log_level: String,
    /// OTLP/HTTP endpoint for traces; when unset, `OTEL_EXPORTER_OTLP_ENDPOINT` is used, and
    /// when neither is set no traces are exported.
    pub otlp_endpoint: Option<Url>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { log_format: LogFormat::Text, log_level: "info".into(), otlp_endpoint: None }
    }
}

impl TelemetryConfig {
    /// Checks the section; keys are reported under `telemetry.`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        tracing_subscriber::EnvFilter::try_new(&self.log_level)
            .map(|_| ())
            .map_err(|e| ConfigError::invalid("telemetry.log_level", e.to_string()))
    }
}

/// `[admin]`: the small HTTP server of the background services (`/healthz`, `/readyz`,
/// `/metrics`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Listen address.
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { listen: SocketAddr::from(([127, 0, 0, 1], 9091)) }
    }
}

/// `[http]`: a public HTTP listener and the walls around it, so that no client (a slow one, an
/// idle one, a thousand of them) can hold the server or its shutdown.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// A request's headers must arrive within this time of the connection opening or of the
    /// previous response; it is also how long an idle keep-alive connection is kept. Past it,
    /// the connection is closed.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Whole-request limit, body included: past it the answer is 408 and the connection is
    /// closed. Must exceed `kafka.produce_timeout`.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Open connections at most. At the cap a new connection is let in and the longest-idle
    /// connection that never had a request with credentials succeed is closed
    /// (`http_connections_evicted_total`); with none such, the new one is closed at once
    /// (`http_connections_refused_total`).
    pub max_connections: usize,
}

impl HttpConfig {
    /// The defaults, listening on `listen`.
    pub fn on(listen: SocketAddr) -> Self {
        Self {
            listen,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }

    /// Checks the section; keys are reported under `http.`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("http.header_timeout", self.header_timeout)?;
        positive("http.request_timeout", self.request_timeout)?;
        at_least_one("http.max_connections", self.max_connections)?;
        Ok(())
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self::on(SocketAddr::from(([127, 0, 0, 1], 8080)))
    }
}

/// Serde for a list of humantime durations: `["1s", "5s"]` in TOML, or `"1s,5s"` (handy in
/// an environment variable).
mod duration_list {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(list: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        let labels: Vec<String> =
            list.iter().map(|d| humantime::format_duration(*d).to_string()).collect();
        labels.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Labels {
            List(Vec<String>),
            Commas(String),
        }
        let labels = match Labels::deserialize(d)? {
            Labels::List(l) => l,
            Labels::Commas(s) => s.split(',').map(|p| p.trim().to_owned()).collect(),
        };
        labels
            .iter()
            .map(|l| humantime::parse_duration(l).map_err(serde::de::Error::custom))
            .collect()
    }
}

// The checks of one setting that the services' `validate` share; each names `key` when it fails.

/// A duration that must be greater than zero.
pub fn positive(key: &str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        return Err(ConfigError::invalid(key, "must be greater than zero"));
    }
    Ok(())
}

/// A duration that must be at least `min`.
pub fn at_least(key: &str, d: Duration, min: Duration) -> Result<(), ConfigError> {
    if d < min {
        let min = humantime::format_duration(min);
        return Err(ConfigError::invalid(key, format!("must be at least {min}")));
    }
    Ok(())
}

/// A count that must be at least 1.
pub fn at_least_one<N: TryInto<u64>>(key: &str, n: N) -> Result<(), ConfigError> {
    match n.try_into() {
        Ok(n) if n >= 1 => Ok(()),
        _ => Err(ConfigError::invalid(key, "must be at least 1")),
    }
}

/// A name that must not be blank.
pub fn not_blank(key: &str, s: &str) -> Result<(), ConfigError> {
    if s.trim().is_empty() {
        return Err(ConfigError::invalid(key, "must not be empty"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct TestConfig {
        kafka: KafkaConfig,
        topics: TopicsConfig,
        database: DatabaseConfig,
        telemetry: TelemetryConfig,
    }

    impl ServiceConfig for TestConfig {
        fn validate(&self) -> Result<(), ConfigError> {
            self.kafka.validate()?;
            self.topics.validate()?;
            self.database.validate()?;
            self.telemetry.validate()
        }
    }

    #[test]
    fn the_example_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/hookstream.example.toml");
        let text = std::fs::read_to_string(path).expect("example config");
        let c = load_toml(&text).expect("example config is valid");
        assert_eq!(c.topics.dlq_retention, Duration::from_secs(14 * 24 * 3600));
    }

    #[test]
    fn kafka_properties_may_not_undo_a_guarantee() {
        for key in ["acks", "enable.auto.commit", "auto.offset.reset", "bootstrap.servers"] {
            let toml = format!("[kafka.properties]\n\"{key}\" = \"1\"\n");
            let err = load_toml(&toml).err().expect("must fail");
            assert!(err.to_string().contains(&format!("kafka.properties.\"{key}\"")), "{err}");
        }
        let ok = load_toml("[kafka.properties]\n\"fetch.max.bytes\" = \"1048576\"\n");
        assert!(ok.is_ok(), "{:?}", ok.err());
    }

    fn load_toml(toml: &str) -> Result<TestConfig, ConfigError> {
        let dir = std::env::temp_dir().join(format!("hs-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join("c.toml");
        std::fs::write(&path, toml).expect("write");
        let result = load_with_env(Some(&path), Env::prefixed("HSCONFIGTEST_NONE_"));
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    #[test]
    fn each_check_names_its_key_and_the_bound() {
        let said = |r: Result<(), ConfigError>| r.map_err(|e| e.to_string()).err();
        assert_eq!(said(positive("a.b", Duration::from_millis(1))), None);
        assert!(said(positive("a.b", Duration::ZERO)).is_some_and(|e| e.contains("a.b")));
        let day = Duration::from_secs(86_400);
        assert_eq!(said(at_least("a.c", day, day)), None);
        let short = said(at_least("a.c", Duration::from_secs(3600), day)).unwrap_or_default();
        assert!(short.contains("a.c") && short.contains("at least 1day"), "{short}");
        assert_eq!(said(at_least_one("a.d", 1u32)), None);
        assert!(said(at_least_one("a.d", 0usize)).is_some_and(|e| e.contains("a.d")));
        assert!(said(at_least_one("a.d", -1i32)).is_some_and(|e| e.contains("at least 1")));
        assert!(said(not_blank("a.e", "  ")).is_some_and(|e| e.contains("a.e")));
        assert_eq!(said(not_blank("a.e", "x")), None);
    }

    #[test]
    fn defaults_are_valid() {
        let c = load_toml("").expect("defaults");
        assert_eq!(c.topics.retry_schedule, DEFAULT_RETRY_SCHEDULE.to_vec());
        assert_eq!(c.kafka.produce_timeout, Duration::from_secs(5));
    }

    #[test]
    fn file_values_and_humantime_durations_are_read() {
        let c = load_toml(
            "[kafka]\nbrokers = \"a:1,b:2\"\nproduce_timeout = \"250ms\"\n\
             [topics]\nretry_schedule = [\"200ms\", \"400ms\", \"800ms\"]\n",
        )
        .expect("load");
        assert_eq!(c.kafka.brokers, "a:1,b:2");
        assert_eq!(c.kafka.produce_timeout, Duration::from_millis(250));
        assert_eq!(c.topics.retry_schedule.len(), 3);
        let c = load_toml("[topics]\nretry_schedule = \"1s, 5s,25s\"\n").expect("commas");
        assert_eq!(c.topics.retry_schedule, DEFAULT_RETRY_SCHEDULE[..3].to_vec());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load_toml("[kafka]\nbrokerz = \"x:1\"\n").err().expect("must fail");
        let msg = err.to_string();
        assert!(msg.contains("brokerz"), "{msg}");
    }

    #[test]
    fn wrong_type_is_named() {
        let err = load_toml("[topics]\npartitions = \"many\"\n").err().expect("must fail");
        assert!(err.to_string().contains("topics.partitions"), "{err}");
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases = [
            ("[kafka]\nbrokers = \"nohostport\"\n", "kafka.brokers"),
            ("[topics]\nretry_schedule = [\"5s\", \"1s\"]\n", "topics.retry_schedule"),
            ("[topics]\nprefix = \"a b\"\n", "topics.prefix"),
            ("[topics]\nretention = \"10m\"\n", "topics.retention"),
            ("[database]\nurl = \"mysql://x\"\n", "database.url"),
            ("[kafka]\nproduce_timeout = \"0s\"\n", "kafka.produce_timeout"),
        ];
        for (toml, key) in cases {
            let err = load_toml(toml).err().expect(key);
            assert!(err.to_string().contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn environment_overrides_file_and_ignores_foreign_variables() {
        let prefix = format!("HSCFG{}_", uuid::Uuid::new_v4().simple());
        // Unique variable names per test, so parallel tests cannot race on them.
        std::env::set_var(format!("{prefix}KAFKA__BROKERS"), "env:9");
        std::env::set_var(format!("{prefix}DEV_DIR"), "/not/config");
        let c: TestConfig = load_with_env(None, Env::prefixed(&prefix)).expect("load");
        assert_eq!(c.kafka.brokers, "env:9");
    }

    #[test]
    fn missing_file_is_reported() {
        let err = load::<TestConfig>(Some(Path::new("/nonexistent/hookstream.toml")))
            .err()
            .expect("must fail");
        assert!(matches!(err, ConfigError::MissingFile(_)));
    }

    #[test]
    fn passwords_are_redacted() {
        let r = redact_url("postgres://u:secret@h:1/db");
        assert!(!r.contains("secret"), "{r}");
    }
}
