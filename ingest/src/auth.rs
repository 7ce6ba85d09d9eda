//! Bearer API keys, resolved through an in-memory cache so the hot path makes no database
//! round trip. Revocation takes effect within `ingest.key_cache_ttl`. While Postgres is
//! unreachable, a key's last answer (up to `ingest.key_stale_ttl` old) still authenticates, so
//! a database outage does not stop ingestion.

use std::time::Duration;

use axum::http::{header, HeaderMap};
use hookstream_core::api_key;
use hookstream_core::db::api_keys::{self, KeyOwner};
use hookstream_core::db::DbError;
use moka::future::Cache;
use sqlx::PgPool;

use crate::error::ApiError;

/// Longest wait for a key lookup: beyond it the database counts as down, and a known key is
/// served from its last answer instead of holding the request for the pool's acquire timeout.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
enum LookupError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("key lookup timed out after {LOOKUP_TIMEOUT:?}")]
    TimedOut,
}

/// Resolves keys to accounts, caching hits and misses alike for the TTL.
#[derive(Clone)]
pub struct KeyResolver {
    pool: PgPool,
    cache: Cache<[u8; 32], Option<KeyOwner>>,
    /// Last answer per key, used only when the database cannot be asked (None: disabled).
    last_known: Option<Cache<[u8; 32], Option<KeyOwner>>>,
}

impl KeyResolver {
    /// A resolver whose answers live `ttl`, and serve for `stale_ttl` while the database is
    /// down (zero: not at all).
    pub fn new(pool: PgPool, ttl: Duration, stale_ttl: Duration) -> Self {
        let cache = |ttl| Cache::builder().max_capacity(100_000).time_to_live(ttl).build();
        let last_known = (!stale_ttl.is_zero()).then(|| cache(stale_ttl));
        Self { pool, cache: cache(ttl), last_known }
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
        let last_known = self.last_known.clone();
        // Concurrent requests with the same key share one lookup; errors are not cached.
        let fresh = self
            .cache
            .try_get_with(hash, async move {
                let owner =
                    tokio::time::timeout(LOOKUP_TIMEOUT, api_keys::find_by_hash(&pool, &hash))
                        .await
                        .map_err(|_| LookupError::TimedOut)??;
                if let Some(last_known) = last_known {
                    last_known.insert(hash, owner.clone()).await;
                }
                Ok::<_, LookupError>(owner)
            })
            .await;
        let owner = match fresh {
            Ok(owner) => owner,
            Err(e) => {
                let stale = match &self.last_known {
                    Some(last_known) => last_known.get(&hash).await,
                    None => None,
                };
                match stale {
                    Some(owner) => {
                        tracing::debug!(error = %e, "API key lookup failed; using its last answer");
                        owner
                    }
                    None => {
                        tracing::warn!(error = %e, "API key lookup failed");
                        return Err(ApiError::Unavailable {
                            what: "key store",
                            retry_after_secs: 1,
                        });
                    }
                }
            }
        };
        match owner {
            None => Err(ApiError::Unauthorized),
            Some(o) if o.revoked_at.is_some() => Err(ApiError::KeyRevoked),
            Some(o) => Ok(o),
        }
    }
}
