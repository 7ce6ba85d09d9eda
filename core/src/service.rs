//! What every service does at start: reach the broker and the database, or say clearly which
//! one it cannot reach.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::admin::{Health, ReadinessCheck};
use crate::config::{AdminConfig, DatabaseConfig, HttpConfig, KafkaConfig, ServiceConfig};
use crate::db::DbError;
use crate::kafka::{ClusterProbe, KafkaClientError};
use crate::telemetry::TelemetryError;

/// Why a service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The Kafka cluster is unreachable or refused a request.
    #[error(transparent)]
    Kafka(#[from] KafkaClientError),
    /// The database is unreachable or a query failed.
    #[error(transparent)]
    Database(#[from] DbError),
    /// Telemetry could not be set up.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// Something the service needs at start is broken.
    #[error("cannot start: {0}")]
    Startup(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A listener could not be bound or served.
    #[error("http server on {addr}: {source}")]
    Http {
        /// The listen address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl ServiceError {
    /// A start-up failure, keeping its cause.
    pub fn startup(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ServiceError::Startup(Box::new(e))
    }
}

/// Connections every service holds.
#[derive(Clone)]
pub struct Backends {
    /// Probe of the Kafka cluster (also used by `/readyz`).
    pub kafka: ClusterProbe,
    /// The database pool.
    pub database: PgPool,
}

/// Waits for the cluster's metadata and a database connection, each within its configured
/// connect timeout, and fails with an error naming the one that did not answer.
pub async fn connect(
    kafka: &KafkaConfig,
    database: &DatabaseConfig,
) -> Result<Backends, ServiceError> {
    let (probe, pool) =
        tokio::join!(crate::kafka::wait_for_cluster(kafka), crate::db::connect(database));
    Ok(Backends { kafka: probe?, database: pool? })
}

/// What `/readyz` and `/metrics` need, from the service's connections and its own `checks`.
pub fn health(
    backends: &Backends,
    checks: Vec<Arc<dyn ReadinessCheck>>,
) -> Result<Health, ServiceError> {
    Ok(Health {
        metrics: crate::telemetry::prometheus()?,
        kafka: backends.kafka.clone(),
        database: backends.database.clone(),
        checks,
    })
}

/// Serves `/healthz`, `/readyz` and `/metrics` on `admin.listen` until `shutdown`; `/readyz`
/// also asks `checks`. Services start it as an [`AdminServer`].
async fn serve_admin(
    admin: &AdminConfig,
    backends: &Backends,
    checks: Vec<Arc<dyn ReadinessCheck>>,
    shutdown: CancellationToken,
) -> Result<(), ServiceError> {
    crate::admin::serve(admin.listen, crate::admin::router(health(backends, checks)?), shutdown)
        .await
        .map_err(|source| ServiceError::Http { addr: admin.listen, source })
}

/// The admin server (`/healthz`, `/readyz`, `/metrics`) running on a task of its own.
pub struct AdminServer(tokio::task::JoinHandle<Result<(), ServiceError>>);

impl AdminServer {
    /// Starts serving until `shutdown`.
    pub fn spawn(
        admin: &AdminConfig,
        backends: &Backends,
        checks: Vec<Arc<dyn ReadinessCheck>>,
        shutdown: CancellationToken,
    ) -> Self {
        let (admin, backends) = (admin.clone(), backends.clone());
        Self(tokio::spawn(async move { serve_admin(&admin, &backends, checks, shutdown).await }))
    }

    /// Waits for it to stop (after its `shutdown`), logging how it ended if not well.
    pub async fn finish(self) {
        match self.0.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "admin server stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "admin server panicked"),
            Ok(Ok(())) => {}
        }
    }
}

/// Serves an HTTP service's `app` (with `/healthz`) on `http.listen` and its `/healthz`,
/// `/readyz` and `/metrics` on `admin.listen`, until `shutdown`; open requests get `drain` to
/// finish. Returns once both servers stopped.
pub async fn serve_http(
    service: &'static str,
    http: &HttpConfig,
    admin: &AdminConfig,
    backends: &Backends,
    app: axum::Router,
    shutdown: CancellationToken,
    drain: Duration,
) -> Result<(), ServiceError> {
    let listener = tokio::net::TcpListener::bind(http.listen)
        .await
        .map_err(|source| ServiceError::Http { addr: http.listen, source })?;
    let admin_server = AdminServer::spawn(admin, backends, Vec::new(), shutdown.clone());
    tracing::info!(listen = %http.listen, admin = %admin.listen, "{service} listening");
    let app = app.merge(crate::admin::liveness());
    crate::http::server::serve(listener, app, http, service, shutdown, drain).await;
    admin_server.finish().await;
    Ok(())
}

/// Of a service's shutdown deadline, what is kept for the steps after in-flight work is done
/// (the final commit, the delivery-log flush, leaving the group).
pub const FINAL_STEPS: Duration = Duration::from_secs(5);

/// Of [`FINAL_STEPS`], how long the delivery-log writer may retry an unreachable database
/// at shutdown before it gives up the rows it holds.
pub const LOG_FLUSH_BUDGET: Duration = Duration::from_secs(3);

/// How long in-flight work may take to finish at shutdown, of `deadline` in all: what
/// [`FINAL_STEPS`] leaves, but at least half of it.
pub fn drain_budget(deadline: Duration) -> Duration {
    deadline.saturating_sub(FINAL_STEPS).max(deadline / 2)
}

/// Once `shutdown` is cancelled, ends the process after `deadline` if it is still running.
/// The clock runs on a thread of its own: a worker blocked in a client library (a synchronous
/// commit to a broker that is gone) would starve the runtime's timers, and with them the
/// deadline (seen: 14.9 s for an 8 s deadline).
async fn enforce_deadline(service: String, shutdown: CancellationToken, deadline: Duration) {
    shutdown.cancelled().await;
    let spawned = std::thread::Builder::new().name("shutdown-deadline".into()).spawn(move || {
        std::thread::sleep(deadline);
        // Whatever is still waiting (a broker or database that is gone, a client that never
        // finishes) is abandoned: the deadline is kept. Unwinding the service's clients could
        // block on the same dead peers, so the process ends here.
        tracing::error!(
            service,
            ?deadline,
            "shutdown deadline passed; exiting with work unfinished"
        );
        eprintln!(
            "{service}: shutdown deadline of {deadline:?} passed; exiting with work unfinished"
        );
        std::process::exit(1);
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the shutdown deadline's thread; the deadline is not enforced");
    }
}

/// What every service binary takes on its command line.
#[derive(clap::Parser)]
#[command(
    version,
    about = "A hookstream service (see the README); configured by a TOML file and HOOKSTREAM_* variables."
)]
struct ServiceArgs {
    /// TOML configuration file; `HOOKSTREAM_*` variables override it.
    #[arg(long, env = "HOOKSTREAM_CONFIG")]
    config: Option<std::path::PathBuf>,
}

/// The body of every service binary's `main`: parses the command line (`--config`), loads
/// `C` from that file and the environment, sets up telemetry, runs `run` until SIGTERM or
/// Ctrl-C, and turns any error into one line on stderr and exit code 1 (2 for a configuration
/// error). From the signal on, the process exits within the shutdown deadline, whatever is down.
pub fn main<C, F, Fut>(service: &'static str, run: F) -> ExitCode
where
    C: ServiceConfig,
    F: FnOnce(C, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), ServiceError>>,
{
    use clap::{CommandFactory, FromArgMatches};
    let args = ServiceArgs::command()
        .name(service)
        .try_get_matches()
        .and_then(|m| ServiceArgs::from_arg_matches(&m))
        .unwrap_or_else(|e| e.exit()); // --help, --version (0) or bad arguments (2)
    let config = match crate::config::load::<C>(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{service}: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{service}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let deadline = config.shutdown_deadline();
    let result = runtime.block_on(async {
        let _telemetry = crate::telemetry::init(&config.telemetry())?;
        let shutdown = crate::shutdown::on_signal();
        tracing::info!(service, version = env!("CARGO_PKG_VERSION"), "starting");
        tokio::spawn(enforce_deadline(service.to_owned(), shutdown.clone(), deadline));
        run(config, shutdown).await
    });
    match result {
        Ok(()) => {
            tracing::info!(service, "stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{service}: {e}");
            ExitCode::FAILURE
        }
    }
}
