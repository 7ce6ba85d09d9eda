//! Per-account intake limits: one `governor` limiter per account, built with that account's
//! quota (its own setting or its tier's default) and rebuilt when the quota changes.

use governor::clock::{Clock, DefaultClock};
use hookstream_core::rate_limit::KeyedLimiters;
use hookstream_core::tier::RateLimit;
use hookstream_core::AccountId;

use hookstream_core::http::ApiError;

/// Intake limiters by account.
#[derive(Clone, Default)]
pub struct IntakeLimits {
    limiters: KeyedLimiters<AccountId>,
    clock: DefaultClock,
}

impl IntakeLimits {
    /// Takes one permit for `account`, or says how long to wait.
    pub fn check(&self, account: AccountId, limit: RateLimit) -> Result<(), ApiError> {
        let entry = self.limiters.get(&account, limit);
        entry.1.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            ApiError::RateLimited { retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64 }
        })
    }
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
