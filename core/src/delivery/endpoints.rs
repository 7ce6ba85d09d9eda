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
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// The Postgres channel on which every change to `endpoints` is announced.
const CHANGE_CHANNEL: &str = "hookstream_endpoints";

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

    /// Says so, loudly, when `delivery.allow_private_targets` is off and some enabled endpoints
    /// point at a loopback or internal address literal (or `localhost`): ingest accepted them
    /// (its `ingest.allow_private_endpoints` is on) but the guard refuses every delivery to
    /// them. Run once at start, after the first load.
    pub fn warn_if_guard_disagrees(&self, allow_private_targets: bool) {
        if allow_private_targets {
            return;
        }
        let refused: Vec<String> = self
            .all()
            .iter()
            .filter(|e| refused_by_guard(&e.target.url))
            .map(|e| e.target.url.to_string())
            .collect();
        if let Some(example) = refused.first() {
            tracing::warn!(
                endpoints = refused.len(),
                example = %example,
                "settings disagree: enabled endpoints point at loopback or internal addresses, \
                 but delivery.allow_private_targets is off, so every delivery to them is refused; \
                 set it to match ingest.allow_private_endpoints (scripts/run.sh --local sets both)"
            );
        }
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

    /// Reloads at once whenever Postgres announces a change to `endpoints` (the
    /// `hookstream_endpoints` channel, see the migration that adds its trigger), and every
    /// `every` in any case: notifications sent while the listening connection was down are
    /// lost, the periodic reload bounds how long that can matter. Until `shutdown`.
    pub fn spawn_refresh(&self, pool: PgPool, every: Duration, shutdown: CancellationToken) {
        let cache = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            let mut listener: Option<PgListener> = None;
            loop {
                if listener.is_none() {
                    listener = listen(&pool).await;
                }
                let notified = async {
                    match listener.as_mut() {
                        Some(l) => l.recv().await.map(|_| ()),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                    received = notified => {
                        if let Err(e) = received {
                            tracing::warn!(error = %e, "endpoint change notifications lost; reloading every {every:?} until they are back");
                            listener = None;
                        } else if let Some(l) = listener.as_mut() {
                            // A burst of changes (a seed, a bulk update) is one reload.
                            while let Ok(Ok(_)) = tokio::time::timeout(Duration::ZERO, l.recv()).await {}
                        }
                    }
                }
                if let Err(e) = cache.reload(&pool).await {
                    tracing::warn!(error = %e, "endpoint cache refresh failed; keeping the last one");
                }
            }
        });
    }
}

/// A listener on the endpoint change channel, or None (said once per failure) while Postgres
/// cannot be reached.
async fn listen(pool: &PgPool) -> Option<PgListener> {
    let result = async {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(CHANGE_CHANNEL).await?;
        Ok::<_, sqlx::Error>(listener)
    }
    .await;
    match result {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for endpoint changes; reloading periodically");
            None
        }
    }
}

/// Whether the guard refuses this URL whatever DNS answers: an internal IP literal or a
/// `localhost` name.
fn refused_by_guard(url: &url::Url) -> bool {
    let localhost = url.host_str().is_some_and(|h| {
        let h = h.trim_end_matches('.').to_ascii_lowercase();
        h == "localhost" || h.ends_with(".localhost")
    });
    localhost || super::guard::check_literal(url).is_err()
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
    use super::{matches, refused_by_guard};

    #[test]
    fn loopback_and_internal_literals_are_refused_whatever_dns_says() {
        for url in [
            "http://127.0.0.1:9000/x",
            "http://localhost:9000/",
            "http://[::1]/",
            "http://api.localhost/",
        ] {
            assert!(refused_by_guard(&url.parse().expect(url)), "{url}");
        }
        for url in ["https://example.com/x", "https://8.8.8.8/"] {
            assert!(!refused_by_guard(&url.parse().expect(url)), "{url}");
        }
    }

    #[test]
    fn wildcards_match_by_prefix() {
        assert!(matches("*", "subscriber.created"));
        assert!(matches("subscriber.*", "subscriber.created"));
        assert!(!matches("subscriber.*", "order.created"));
        assert!(matches("subscriber.created", "subscriber.created"));
        assert!(!matches("subscriber.created", "subscriber.updated"));
    }
}
