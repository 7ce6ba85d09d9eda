//! Bearer API keys, resolved from an in-memory directory of every live key so the hot path
//! makes no database round trip.
//!
//! The directory is reloaded whole every `key_cache_ttl`: a revoked key leaves it at the
//! next reload, also if nobody used it since, so revocation takes effect within that time. While
//! Postgres is unreachable the last directory keeps authenticating (up to `key_stale_ttl`
//! after its last successful load), and a key revoked before the outage is already gone from it.
//! A key not in the directory (issued since the last load, or not a key at all) costs one
//! lookup, but such lookups are bounded (`unknown_key_lookups_per_second`): a flood of
//! random keys cannot load the database or slow real clients, and never displaces a real key.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::error::ApiError;
use crate::api_key;
use crate::db::api_keys::{self, KeyOwner};
use crate::AccountId;

/// Longest wait for a key lookup: beyond it the database counts as down.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Directory {
    keys: HashMap<[u8; 32], KeyOwner>,
    /// When the last whole load succeeded.
    loaded_at: Option<Instant>,
}

/// Resolves keys to accounts.
#[derive(Clone)]
pub struct KeyResolver {
    pool: PgPool,
    directory: Arc<RwLock<Directory>>,
    reload_every: Duration,
    stale_ttl: Duration,
    unknown_lookups: Arc<DefaultDirectRateLimiter>,
}

impl KeyResolver {
    /// A resolver reloading its directory every `reload_every`, serving from it for `stale_ttl`
    /// after its last successful load while the database is down (zero: not at all), and making
    /// at most `unknown_per_second` lookups of keys it does not know.
    pub fn new(
        pool: PgPool,
        reload_every: Duration,
        stale_ttl: Duration,
        unknown_per_second: NonZeroU32,
    ) -> Self {
        Self {
            pool,
            directory: Arc::default(),
            reload_every,
            stale_ttl,
            unknown_lookups: Arc::new(RateLimiter::direct(Quota::per_second(unknown_per_second))),
        }
    }

    /// Loads the directory now, then every `reload_every` until `shutdown`.
    pub async fn spawn_reload(&self, shutdown: CancellationToken) {
        self.reload().await;
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.reload_every);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => this.reload().await,
                }
            }
        });
    }

    async fn reload(&self) {
        match api_keys::load_live(&self.pool).await {
            Ok(rows) => {
                metrics::gauge!("http_live_api_keys").set(rows.len() as f64);
                let mut d = self.directory.write().unwrap_or_else(|p| p.into_inner());
                d.keys = rows.into_iter().collect();
                d.loaded_at = Some(Instant::now());
            }
            Err(e) => {
                tracing::warn!(error = %e, "reloading the API key directory failed; serving the last one")
            }
        }
    }

    /// The owner of the request's `Authorization: Bearer` key (the scheme in any case, RFC 7235).
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<KeyOwner, ApiError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .ok_or(ApiError::Unauthorized)?;
        if !api_key::looks_valid(token) {
            return Err(ApiError::Unauthorized);
        }
        let hash = api_key::hash(token);
        let known = {
            let d = self.directory.read().unwrap_or_else(|p| p.into_inner());
            let fresh =
                d.loaded_at.is_some_and(|at| at.elapsed() <= self.reload_every + self.stale_ttl);
            fresh.then(|| d.keys.get(&hash).cloned())
        };
        match known {
            Some(Some(owner)) => return Ok(owner),
            // Not known: a key issued since the last load, a revoked one, or none at all.
            Some(None) => {}
            None => {
                tracing::warn!(
                    "the API key directory is older than key_stale_ttl; refusing until it loads"
                );
                return Err(ApiError::Unavailable { what: "key store", retry_after_secs: 1 });
            }
        }
        if self.unknown_lookups.check().is_err() {
            metrics::counter!("http_unknown_key_lookups_refused_total").increment(1);
            return Err(ApiError::Unavailable { what: "key store", retry_after_secs: 1 });
        }
        let found = tokio::time::timeout(LOOKUP_TIMEOUT, api_keys::find_by_hash(&self.pool, &hash))
            .await
            .map_err(|_| "key lookup timed out".to_owned())
            .and_then(|r| r.map_err(|e| e.to_string()));
        match found {
            Ok(None) => Err(ApiError::Unauthorized),
            Ok(Some(o)) if o.revoked_at.is_some() => Err(ApiError::KeyRevoked),
            Ok(Some(o)) => {
                let mut d = self.directory.write().unwrap_or_else(|p| p.into_inner());
                d.keys.insert(hash, o.clone());
                Ok(o)
            }
            Err(e) => {
                tracing::warn!(error = %e, "API key lookup failed");
                Err(ApiError::Unavailable { what: "key store", retry_after_secs: 1 })
            }
        }
    }
}

/// The authenticated caller, the owner of the request's API key: a handler that takes it runs
/// only for a live key (401 otherwise, 503 while keys cannot be checked).
#[derive(Debug, Clone)]
pub struct Caller(pub KeyOwner);

impl Caller {
    /// The caller's account: every query a handler makes is scoped by it.
    pub fn account(&self) -> AccountId {
        self.0.account_id
    }

    /// The actor written into the audit log: `key:<key id>`.
    pub fn actor(&self) -> String {
        format!("key:{}", self.0.key_id)
    }
}

impl<S: super::HttpState> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        state.keys().authenticate(&parts.headers).await.map(Caller)
    }
}

/// The credentials of an `Authorization` value whose scheme is `Bearer`, in any case.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for v in ["Bearer abc", "bearer abc", "BEARER  abc ", "bEaReR abc"] {
            assert_eq!(bearer_token(v), Some("abc"), "{v}");
        }
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }
}
