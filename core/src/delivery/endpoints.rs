//! The endpoint cache: every enabled endpoint, reloaded from Postgres every
//! `endpoint_refresh`, so lookups per event or task never touch the database.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::send::Target;
use super::sign::SigningSecret;
use crate::db::endpoints::{self, DeliveryEndpoint};
use crate::tier::RateLimit;
use crate::{AccountId, EndpointId};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// An endpoint ready for delivery.
#[derive(Debug, Clone)]
pub struct CachedEndpoint {
    /// Where and how to send.
    pub target: Target,
    /// Subscribed event types and wildcards.
    pub event_types: Vec<String>,
    /// Per-endpoint limit.
    pub rate_limit: Option<RateLimit>,
    /// The account's limit.
    pub account_limit: RateLimit,
}

/// Endpoints by account.
#[derive(Clone, Default)]
pub struct EndpointCache {
    by_account: Arc<RwLock<HashMap<AccountId, Vec<Arc<CachedEndpoint>>>>>,
}

/// Whether `pattern` (`*`, `subscriber.*` or an exact type) covers `event_type`.
pub fn matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some("") => true,
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

impl EndpointCache {
    /// The account's enabled endpoints subscribed to `event_type`.
    pub fn matching(&self, account: AccountId, event_type: &str) -> Vec<Arc<CachedEndpoint>> {
        let map = self.by_account.read().unwrap_or_else(|p| p.into_inner());
        map.get(&account)
            .map(|eps| {
                eps.iter()
                    .filter(|e| e.event_types.iter().any(|p| matches(p, event_type)))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One enabled endpoint of the account, by id.
    pub fn get(&self, account: AccountId, endpoint: EndpointId) -> Option<Arc<CachedEndpoint>> {
        let map = self.by_account.read().unwrap_or_else(|p| p.into_inner());
        map.get(&account)?.iter().find(|e| e.target.id == endpoint).cloned()
    }

    /// Every cached endpoint.
    pub fn all(&self) -> Vec<Arc<CachedEndpoint>> {
        let map = self.by_account.read().unwrap_or_else(|p| p.into_inner());
        map.values().flatten().cloned().collect()
    }

    /// Reloads everything; on error the previous contents stay.
    pub async fn reload(&self, pool: &PgPool) -> Result<usize, crate::db::DbError> {
        let rows = endpoints::load_enabled(pool, chrono::Utc::now()).await?;
        let count = rows.len();
        let mut map: HashMap<AccountId, Vec<Arc<CachedEndpoint>>> = HashMap::new();
        for row in rows {
            if let Some(e) = cached(row) {
                map.entry(e.target.account_id).or_default().push(Arc::new(e));
            }
        }
        *self.by_account.write().unwrap_or_else(|p| p.into_inner()) = map;
        Ok(count)
    }

    /// Reloads every `every` until `shutdown`.
    pub fn spawn_refresh(&self, pool: PgPool, every: Duration, shutdown: CancellationToken) {
        let cache = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {
                        if let Err(e) = cache.reload(&pool).await {
                            tracing::warn!(error = %e, "endpoint cache refresh failed; keeping the last one");
                        }
                    }
                }
            }
        });
    }
}

fn cached(row: DeliveryEndpoint) -> Option<CachedEndpoint> {
    let url = match url::Url::parse(&row.url) {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(endpoint = %row.id, error = %e, "endpoint has an invalid URL; skipped");
            return None;
        }
    };
    let secrets = row.secrets.iter().filter_map(|s| SigningSecret::parse(s).ok()).collect();
    Some(CachedEndpoint {
        target: Target { id: row.id, account_id: row.account_id, url, secrets },
        event_types: row.event_types,
        rate_limit: row.rate_limit,
        account_limit: row.account_limit,
    })
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn wildcards_match_by_prefix() {
        assert!(matches("*", "subscriber.created"));
        assert!(matches("subscriber.*", "subscriber.created"));
        assert!(!matches("subscriber.*", "order.created"));
        assert!(matches("subscriber.created", "subscriber.created"));
        assert!(!matches("subscriber.created", "subscriber.updated"));
    }
}
