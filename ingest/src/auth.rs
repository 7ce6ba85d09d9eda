//! Bearer API keys, resolved through an in-memory cache so the hot path makes no database
//! round trip. Revocation takes effect within `ingest.key_cache_ttl`.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap};
use hookstream_core::api_key;
use hookstream_core::db::api_keys::{self, KeyOwner};
use moka::future::Cache;
use sqlx::PgPool;

use crate::error::ApiError;

/// Resolves keys to accounts, caching hits and misses alike for the TTL.
#[derive(Clone)]
pub struct KeyResolver {
    pool: PgPool,
    cache: Cache<[u8; 32], Option<KeyOwner>>,
}

impl KeyResolver {
    /// A resolver whose answers live `ttl`.
    pub fn new(pool: PgPool, ttl: Duration) -> Self {
        Self { pool, cache: Cache::builder().max_capacity(100_000).time_to_live(ttl).build() }
    }

    /// The owner of the request's `Authorization: Bearer` key.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<KeyOwner, ApiError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(ApiError::Unauthorized)?;
        if !api_key::looks_valid(token) {
            return Err(ApiError::Unauthorized);
        }
        let hash = api_key::hash(token);
        let pool = self.pool.clone();
        // Concurrent requests with the same key share one lookup; errors are not cached.
        let owner = self
            .cache
            .try_get_with(hash, async move { api_keys::find_by_hash(&pool, &hash).await })
            .await
            .map_err(|e: Arc<_>| {
                tracing::warn!(error = %e, "API key lookup failed");
                ApiError::Unavailable { what: "key store", retry_after_secs: 1 }
            })?;
        match owner {
            None => Err(ApiError::Unauthorized),
            Some(o) if o.revoked_at.is_some() => Err(ApiError::KeyRevoked),
            Some(o) => Ok(o),
        }
    }
}
