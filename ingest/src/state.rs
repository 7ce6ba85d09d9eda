//! What every handler shares.

use std::sync::Arc;

use hookstream_core::schema::Schemas;
use sqlx::PgPool;

use crate::auth::KeyResolver;
use crate::config::IngestSettings;
use crate::idempotency::IdempotencyKeys;
use crate::publish::Publisher;
use crate::rate_limit::IntakeLimits;
use crate::redrive::Redrives;

/// Handler state, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// `[ingest]` settings.
    pub settings: Arc<IngestSettings>,
    /// Compiled event schemas.
    pub schemas: Arc<Schemas>,
    /// API key resolution.
    pub auth: KeyResolver,
    /// Per-account intake limits.
    pub limits: IntakeLimits,
    /// Recently seen idempotency keys.
    pub idempotency: IdempotencyKeys,
    /// The producer.
    pub publisher: Publisher,
    /// Postgres (management and DLQ queries, always scoped to the caller's account).
    pub pool: PgPool,
    /// DLQ redrive jobs running here.
    pub redrives: Redrives,
}
