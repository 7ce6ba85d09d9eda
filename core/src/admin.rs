//! The operational HTTP surface every service has: `/healthz`, `/readyz`, `/metrics`, on an
//! admin port of its own, never on a public one. Ingest's public port answers `/healthz` only
//! ([`liveness`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::kafka::ClusterProbe;

/// Something besides the broker and the database that can make a service unready (a
/// consumer whose offset commits keep failing).
pub trait ReadinessCheck: Send + Sync {
    /// Why the service is not ready, if it is not.
    fn problem(&self) -> Option<String>;
}

/// What `/readyz` checks and what `/metrics` renders.
#[derive(Clone)]
pub struct Health {
    /// Prometheus recorder handle.
    pub metrics: PrometheusHandle,
    /// Probe of the Kafka cluster.
    pub kafka: ClusterProbe,
    /// The database pool.
    pub database: PgPool,
    /// The service's own checks.
    pub checks: Vec<Arc<dyn ReadinessCheck>>,
}

impl Health {
    /// Checks broker metadata and the database, each within a short timeout.
    pub async fn readiness(&self) -> Result<(), Vec<String>> {
        let (kafka, db) = tokio::join!(
            self.kafka.check(Duration::from_secs(2)),
            tokio::time::timeout(Duration::from_secs(2), crate::db::ping(&self.database)),
        );
        let mut failures = Vec::new();
        if let Err(e) = kafka {
            failures.push(e.to_string());
        }
        if !matches!(db, Ok(true)) {
            failures.push("database unreachable".to_owned());
        }
        failures.extend(self.checks.iter().filter_map(|c| c.problem()));
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures)
        }
    }
}

/// Routes `/healthz` alone: what a public port may answer without a key.
pub fn liveness() -> Router {
    Router::new().route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
}

/// Routes `/healthz`, `/readyz` and `/metrics`.
pub fn router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

async fn readyz(State(health): State<Health>) -> (StatusCode, Json<serde_json::Value>) {
    match health.readiness().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Err(failures) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "failures": failures})),
        ),
    }
}

async fn metrics(State(health): State<Health>) -> String {
    health.metrics.render()
}

/// Serves `router` on `addr` until `shutdown` is cancelled, with the default walls of
/// [`crate::http::server`].
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "admin http listening");
    let limits = crate::config::HttpConfig::on(addr);
    crate::http::server::serve(
        listener,
        router,
        &limits,
        "admin",
        shutdown,
        Duration::from_secs(2),
    )
    .await;
    Ok(())
}
