//! What every handler shares.

use std::sync::Arc;

use hookstream_core::db::endpoint_rules::EndpointRules;
use hookstream_core::delivery::handoff::Handoff;
use hookstream_core::http::{HttpState, KeyResolver};
use sqlx::PgPool;

use crate::config::ApiSettings;
use crate::redrive::Redrives;

/// Handler state, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// `[api]` settings.
    pub settings: Arc<ApiSettings>,
    /// What an endpoint may be.
    pub rules: Arc<EndpointRules>,
    /// API key resolution.
    pub auth: KeyResolver,
    /// Postgres, every query scoped to the caller's account.
    pub pool: PgPool,
    /// Hands redriven DLQ entries back to the retry tiers.
    pub handoff: Handoff,
    /// DLQ redrive jobs running here.
    pub redrives: Redrives,
}

impl HttpState for AppState {
    fn keys(&self) -> &KeyResolver {
        &self.auth
    }

    fn max_body_bytes(&self) -> usize {
        self.settings.max_body_bytes
    }
}
