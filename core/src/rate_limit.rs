//! `governor` limiters keyed by id, each with its own quota (an account's or endpoint's
//! setting, or a default), rebuilt when the quota changes. Ingest checks them; the delivery
//! engine waits on them.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use moka::sync::Cache;

use crate::tier::RateLimit;

/// One limiter per key.
#[derive(Clone)]
pub struct KeyedLimiters<K: Hash + Eq + Send + Sync + 'static> {
    limiters: Cache<K, Arc<(RateLimit, DefaultDirectRateLimiter)>>,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Default for KeyedLimiters<K> {
    fn default() -> Self {
        // An idle key's limiter is dropped; a returning key starts with a full burst.
        Self { limiters: Cache::builder().time_to_idle(Duration::from_secs(600)).build() }
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> KeyedLimiters<K> {
    /// The limiter of `key` with quota `limit`.
    pub fn get(&self, key: &K, limit: RateLimit) -> Arc<(RateLimit, DefaultDirectRateLimiter)> {
        let entry = self.limiters.get_with_by_ref(key, || Arc::new((limit, limiter(limit))));
        if entry.0 == limit {
            return entry;
        }
        let fresh = Arc::new((limit, limiter(limit)));
        self.limiters.insert(key.clone(), Arc::clone(&fresh));
        fresh
    }
}

fn limiter(limit: RateLimit) -> DefaultDirectRateLimiter {
    let rate = NonZeroU32::new(limit.per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
}
