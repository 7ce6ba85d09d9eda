//! What the two commands share, the operators' `hookstream` and the `hookstream-testbed`:
//! their configuration, their bad-input error and the actor they write into the audit log.

use serde::{Deserialize, Serialize};

use crate::config::{
    ConfigError, DatabaseConfig, KafkaConfig, ServiceConfig, TelemetryConfig, TopicsConfig,
};
use crate::delivery::handoff::Handoff;
use crate::producer::HealingProducer;
use crate::service::ServiceError;
use crate::trace::Tracing;

/// Exit code for bad input (also clap's).
pub const EXIT_USAGE: u8 = 2;

/// Everything a command may need: the same sections the services read.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolConfig {
    /// `[kafka]`.
    pub kafka: KafkaConfig,
    /// `[topics]`.
    pub topics: TopicsConfig,
    /// `[database]`.
    pub database: DatabaseConfig,
}

impl ToolConfig {
    /// A hand-off to the retry tiers and the DLQ for a command: a producer of its own
    /// (client id `client`) and spans exported where `OTEL_EXPORTER_OTLP_ENDPOINT` says (the
    /// [`Tracing`] flushes them when dropped, so keep it as long as the hand-off).
    pub fn handoff(&self, client: &'static str) -> Result<(Handoff, Tracing), ServiceError> {
        let producer = HealingProducer::new(&self.kafka, client)?;
        let traces = Tracing::start(&TelemetryConfig::default(), client)?;
        let handoff = Handoff::new(
            producer,
            self.topics.topics(),
            self.kafka.produce_timeout,
            traces.tracer(),
        );
        Ok((handoff, traces))
    }
}

impl ServiceConfig for ToolConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.kafka.validate()?;
        self.topics.validate()?;
        self.database.validate()
    }
}

/// Bad input that clap cannot see (such as `--to` before `--from`): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The operator named in the audit log: `operator:$USER`.
pub fn operator() -> String {
    format!("operator:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
}

/// A command's `main`: parses the arguments (`P`), loads the configuration from the file
/// `config_file` names (then `HOOKSTREAM_*`), runs `run`, and maps the outcome to an exit
/// code: 0, 2 for bad input (arguments, configuration, [`UsageError`]), 1 for the rest, each
/// failure one line on stderr prefixed with `name`. The binaries' edge, so `anyhow` here.
pub async fn main<P, F, Fut>(
    name: &str,
    config_file: impl FnOnce(&P) -> Option<std::path::PathBuf>,
    run: F,
) -> std::process::ExitCode
where
    P: clap::Parser,
    F: FnOnce(P, ToolConfig) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    use std::process::ExitCode;
    let args = match P::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // One line naming what is wrong (clap adds usage and hints).
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("{name}: {}", first.trim_start_matches("error: "));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let path = config_file(&args);
    let config = match crate::config::load::<ToolConfig>(path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(match e {
                ConfigError::MissingFile(_)
                | ConfigError::Parse(_)
                | ConfigError::Invalid { .. } => EXIT_USAGE,
            });
        }
    };
    match run(args, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            if e.is::<UsageError>() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
