//! Postgres access: the pool and the embedded migrations. Queries live in modules per table.

pub mod accounts;
pub mod api_keys;
pub mod audit;
pub mod deliveries;
pub mod endpoint_rules;
pub mod endpoints;
pub mod log_partitions;
pub mod redrive_jobs;
pub mod text;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::config::{redact_url, DatabaseConfig};

/// The migrations in `migrations/`, compiled into every binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL could not be parsed.
    #[error("invalid database url {url}: {source}")]
    Url {
        /// The URL, password redacted.
        url: String,
        /// The parse error.
        #[source]
        source: sqlx::Error,
    },
    /// No connection could be made in time.
    #[error("database {url} unreachable: {source}")]
    Unreachable {
        /// The URL, password redacted.
        url: String,
        /// The last connection error.
        #[source]
        source: sqlx::Error,
    },
    /// Applying migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
}

impl DbError {
    /// Whether trying again unchanged may succeed (see [`text::is_transient`]).
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Unreachable { .. } => true,
            DbError::Query(e) => text::is_transient(e),
            DbError::Url { .. } | DbError::Migrate(_) => false,
        }
    }
}

/// Opens a pool and checks that one connection works, failing within
/// `database.connect_timeout`. Later outages are recovered by the pool on its own.
pub async fn connect(cfg: &DatabaseConfig) -> Result<PgPool, DbError> {
    let url = redact_url(&cfg.url);
    let options: PgConnectOptions =
        cfg.url.parse().map_err(|source| DbError::Url { url: url.clone(), source })?;
    let pool = PgPoolOptions::new()
        .max_connections(cfg.max_connections)
        .acquire_timeout(cfg.connect_timeout)
        .connect_with(options)
        .await
        .map_err(|source| DbError::Unreachable { url, source })?;
    Ok(pool)
}

/// Applies pending migrations; a second run is a no-op. Returns how many were applied.
pub async fn migrate(pool: &PgPool) -> Result<usize, DbError> {
    let applied_before: i64 = applied_count(pool).await.unwrap_or(0);
    MIGRATOR.run(pool).await?;
    let applied_after = applied_count(pool).await?;
    Ok(usize::try_from(applied_after - applied_before).unwrap_or(0))
}

async fn applied_count(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success").fetch_one(pool).await
}

/// Whether the database answers a trivial query (for `/readyz`).
pub async fn ping(pool: &PgPool) -> bool {
    sqlx::query("SELECT 1").execute(pool).await.is_ok()
}
