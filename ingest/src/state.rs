//! What every handler shares.

use std::sync::Arc;

use hookstream_core::http::{HttpState, KeyResolver};
use hookstream_core::schema::Schemas;
use hookstream_core::trace::Tracer;

use crate::config::IngestSettings;
use crate::idempotency::IdempotencyKeys;
use crate::publish::Publisher;
use crate::rate_limit::IntakeLimits;

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
    /// Makes the requests' server spans.
    pub tracer: Tracer,
}

impl HttpState for AppState {
    fn keys(&self) -> &KeyResolver {
        &self.auth
    }

    fn max_body_bytes(&self) -> usize {
        self.settings.max_body_bytes
    }
}
