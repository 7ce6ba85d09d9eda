//! Per-account intake limits: one `governor` limiter per account, built with that account's
//! quota (its own setting or its tier's default) and rebuilt when the quota changes.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hookstream_core::tier::RateLimit;
use hookstream_core::AccountId;
use moka::sync::Cache;

use crate::error::ApiError;

/// Intake limiters by account.
#[derive(Clone)]
pub struct IntakeLimits {
    limiters: Cache<AccountId, Arc<(RateLimit, DefaultDirectRateLimiter)>>,
    clock: DefaultClock,
}

impl Default for IntakeLimits {
    fn default() -> Self {
        // Idle accounts' limiters are dropped; a returning account starts with a full burst.
        Self {
            limiters: Cache::builder().time_to_idle(Duration::from_secs(600)).build(),
            clock: DefaultClock::default(),
        }
    }
}

impl IntakeLimits {
    /// Takes one permit for `account`, or says how long to wait.
    pub fn check(&self, account: AccountId, limit: RateLimit) -> Result<(), ApiError> {
        let mut entry = self.limiters.get_with(account, || Arc::new((limit, limiter(limit))));
        if entry.0 != limit {
            entry = Arc::new((limit, limiter(limit)));
            self.limiters.insert(account, Arc::clone(&entry));
        }
        entry.1.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            ApiError::RateLimited { retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64 }
        })
    }
}

fn limiter(limit: RateLimit) -> DefaultDirectRateLimiter {
    let rate = NonZeroU32::new(limit.per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(limit.burst.max(limit.per_second)).unwrap_or(rate);
    RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_over_its_burst_is_told_to_wait_and_others_are_not() {
        let limits = IntakeLimits::default();
        let hot = AccountId::new();
        let cold = AccountId::new();
        let limit = RateLimit { per_second: 1, burst: 3 };
        for _ in 0..3 {
            limits.check(hot, limit).expect("within burst");
        }
        match limits.check(hot, limit) {
            Err(ApiError::RateLimited { retry_after_secs }) => assert!(retry_after_secs >= 1),
            other => panic!("expected 429, got {other:?}"),
        }
        limits.check(cold, limit).expect("another account is unaffected");
    }

    #[test]
    fn a_raised_limit_takes_effect() {
        let limits = IntakeLimits::default();
        let a = AccountId::new();
        limits.check(a, RateLimit { per_second: 1, burst: 1 }).expect("first");
        assert!(limits.check(a, RateLimit { per_second: 1, burst: 1 }).is_err());
        limits.check(a, RateLimit { per_second: 100, burst: 100 }).expect("new quota");
    }
}
