//! The endpoint cache: every enabled endpoint, reloaded from Postgres on every change
//! notification and every `endpoint_refresh`, so lookups per event or task never touch the
//! database. [`EndpointCache::catch_up`] makes sure an event sees every change committed
//! before it was produced.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::send::Target;
use super::sign::SigningSecret;
use crate::db::endpoints::{self, DeliveryEndpoint};
use crate::tier::RateLimit;
use crate::{AccountId, EndpointId};
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgPool};
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
    /// The account's tier.
    pub tier: crate::tier::Tier,
}

/// Shortest time between two version checks of [`EndpointCache::catch_up`]: it bounds their
/// cost (at most 200 one-row queries a second) and the wait it adds to an event (this plus one
/// round trip, shared by every event that arrived meanwhile).
const CHECK_INTERVAL: Duration = Duration::from_millis(5);
/// How long a version check may take.
const CHECK_TIMEOUT: Duration = Duration::from_millis(500);
/// How long after a failed check (Postgres down) events pass without one: delivery goes on
/// with the cache as it is, and a long outage stalls the consumer loop for at most
/// `CHECK_TIMEOUT` in every `CHECK_BACKOFF`.
const CHECK_BACKOFF: Duration = Duration::from_secs(5);

/// Endpoints by account.
#[derive(Clone, Default)]
pub struct EndpointCache {
    by_account: Arc<RwLock<HashMap<AccountId, Vec<Arc<CachedEndpoint>>>>>,
    freshness: Arc<Freshness>,
}

/// How current the cache is.
#[derive(Default)]
struct Freshness {
    /// Unix milliseconds before which every committed endpoint change is in the cache.
    as_of_ms: AtomicI64,
    /// The `endpoint_changes` version the cache was loaded at (read before its rows).
    version: AtomicI64,
    /// One check at a time; holds when the last one started and, after a failure, until when
    /// checks are skipped.
    check: tokio::sync::Mutex<CheckState>,
    /// One reload at a time (the refresh task's and a check's): a slower, older reload must
    /// not store its rows after a newer one's.
    reload: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct CheckState {
    last: Option<tokio::time::Instant>,
    skip_until: Option<tokio::time::Instant>,
    /// A connection of the checks' own: from the pool, a check would queue behind the
    /// delivery log's writes, and every event behind it.
    conn: Option<sqlx::PgConnection>,
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
    /// (its `api.allow_private_endpoints` is on) but the guard refuses every delivery to
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
                 set it to match api.allow_private_endpoints (scripts/run.sh --local sets both)"
            );
        }
    }

    /// Waits until the cache holds every endpoint change committed before `produced_ms` (an
    /// event's Kafka timestamp, Unix milliseconds), so an endpoint created just before an event
    /// gets it even when the change notification arrives after the event. Events older than
    /// the last check pass at once; a newer one waits for one check of the change version
    /// (shared with every event that arrived meanwhile) and, if it moved, a reload. While
    /// Postgres does not answer, events pass with the cache as it is (said in the log).
    /// Clocks of ingest and dispatcher hosts are assumed to agree within the time an event
    /// takes from ingest to here.
    pub async fn catch_up(&self, pool: &PgPool, produced_ms: i64) {
        let fresh = &self.freshness;
        if fresh.as_of_ms.load(Ordering::Acquire) >= produced_ms {
            return;
        }
        let mut check = fresh.check.lock().await;
        let now = tokio::time::Instant::now();
        if fresh.as_of_ms.load(Ordering::Acquire) >= produced_ms
            || check.skip_until.is_some_and(|until| now < until)
        {
            return;
        }
        if let Some(last) = check.last {
            tokio::time::sleep_until(last + CHECK_INTERVAL).await;
        }
        check.last = Some(tokio::time::Instant::now());
        let started_ms = chrono::Utc::now().timestamp_millis();
        let conn = &mut check.conn;
        let checked = tokio::time::timeout(CHECK_TIMEOUT, async {
            let c = match conn {
                Some(c) => c,
                None => {
                    conn.insert(sqlx::PgConnection::connect_with(&pool.connect_options()).await?)
                }
            };
            let version = endpoints::change_version(&mut *c).await?;
            if version != fresh.version.load(Ordering::Acquire) {
                self.reload(pool).await?;
            }
            Ok::<_, crate::db::DbError>(())
        })
        .await;
        match checked {
            Ok(Ok(())) => {
                fresh.as_of_ms.fetch_max(started_ms, Ordering::AcqRel);
            }
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {CHECK_TIMEOUT:?}"),
                };
                tracing::warn!(%error, "cannot check the endpoint change version; dispatching with the cache as it is for {CHECK_BACKOFF:?}");
                check.skip_until = Some(tokio::time::Instant::now() + CHECK_BACKOFF);
                check.conn = None;
            }
        }
    }

    /// Reloads everything; on error the previous contents stay.
    pub async fn reload(&self, pool: &PgPool) -> Result<usize, crate::db::DbError> {
        let _one_at_a_time = self.freshness.reload.lock().await;
        let started_ms = chrono::Utc::now().timestamp_millis();
        // The version first: a change committed between the two reads is then in the rows but
        // not in the version, and costs one more reload, never a missed change.
        let version = endpoints::change_version(pool).await?;
        let rows = endpoints::load_enabled(pool, chrono::Utc::now()).await?;
        let count = rows.len();
        let mut map: HashMap<AccountId, Vec<Arc<CachedEndpoint>>> = HashMap::new();
        for row in rows {
            if let Some(e) = cached(row) {
                map.entry(e.target.account_id).or_default().push(Arc::new(e));
            }
        }
        *self.by_account.write().unwrap_or_else(|p| p.into_inner()) = map;
        self.freshness.version.store(version, Ordering::Release);
        self.freshness.as_of_ms.fetch_max(started_ms, Ordering::AcqRel);
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
        tier: row.tier,
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
