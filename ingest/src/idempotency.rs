//! `Idempotency-Key`: the same key for the same account within the window returns the
//! original event id and produces nothing new.
//!
//! The memory is per ingest replica (see README, "Idempotency"): concurrent requests with one
//! key on one replica share a single produce; across replicas, receivers still deduplicate on
//! `webhook-id`, which is derived from account and key ([`EventId::for_key`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hookstream_core::{AccountId, EventId};
use moka::future::Cache;

use hookstream_core::http::ApiError;

/// The longest key accepted.
pub const MAX_KEY_LEN: usize = EventId::MAX_LEN;

/// Checks a client's key: 1 to 255 visible ASCII characters.
pub fn validate_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid(
            "Idempotency-Key",
            format!("must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
        ));
    }
    Ok(())
}

/// What a key was used for: a hash of the event the client sent (type, data, occurred at,
/// priority), so a second use with a different event can be told from a retry.
pub type Fingerprint = [u8; 32];

/// Keys seen recently, per account.
#[derive(Clone)]
pub struct IdempotencyKeys {
    seen: Cache<(AccountId, String), (EventId, Fingerprint)>,
}

/// Whether an accepted event was produced now or earlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acceptance {
    /// Produced by this request.
    New,
    /// Produced earlier with the same key; nothing was produced now.
    Replayed,
}

impl IdempotencyKeys {
    /// Remembers up to `capacity` keys, each for `window`.
    pub fn new(window: Duration, capacity: u64) -> Self {
        Self { seen: Cache::builder().max_capacity(capacity).time_to_live(window).build() }
    }

    /// Runs `produce` unless `(account, key)` was accepted within the window; concurrent
    /// calls with the same key wait for the one that runs. A failed produce is not remembered.
    /// The same key with a different event (`fingerprint`) within the window is a 409 naming
    /// the key, as Svix and Hook0 answer: it is a client bug, not a retry.
    pub async fn accept_once<F>(
        &self,
        account: AccountId,
        key: &str,
        fingerprint: Fingerprint,
        produce: F,
    ) -> Result<(EventId, Acceptance), ApiError>
    where
        F: Future<Output = Result<EventId, ApiError>>,
    {
        let entry = self
            .seen
            .entry((account, key.to_owned()))
            .or_try_insert_with(async { produce.await.map(|id| (id, fingerprint)) })
            .await
            .map_err(|e: Arc<ApiError>| (*e).clone())?;
        let fresh = entry.is_fresh();
        let (id, first) = entry.into_value();
        if fresh {
            return Ok((id, Acceptance::New));
        }
        if first != fingerprint {
            return Err(ApiError::Conflict(format!(
                "Idempotency-Key {key:?} was used for a different event within the last {:?}; use a new key for a new event",
                self.seen.policy().time_to_live().unwrap_or_default()
            )));
        }
        Ok((id, Acceptance::Replayed))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_repeated_key_produces_once_and_returns_the_first_id() {
        let keys = IdempotencyKeys::new(Duration::from_secs(60), 100);
        let produced = AtomicU32::new(0);
        let account = AccountId::new();
        let run = || async {
            produced.fetch_add(1, Ordering::SeqCst);
            Ok(EventId("k1".into()))
        };
        let first = keys.accept_once(account, "k1", [1; 32], run()).await.expect("first");
        let second = keys.accept_once(account, "k1", [1; 32], run()).await.expect("second");
        assert_eq!(first, (EventId("k1".into()), Acceptance::New));
        assert_eq!(second, (EventId("k1".into()), Acceptance::Replayed));
        assert_eq!(produced.load(Ordering::SeqCst), 1);
        let other =
            keys.accept_once(AccountId::new(), "k1", [1; 32], run()).await.expect("other account");
        assert_eq!(other.1, Acceptance::New, "keys are per account");
    }

    #[tokio::test]
    async fn a_failed_produce_is_not_remembered() {
        let keys = IdempotencyKeys::new(Duration::from_secs(60), 100);
        let account = AccountId::new();
        let down = ApiError::Unavailable { what: "broker", retry_after_secs: 1 };
        let failed = keys.accept_once(account, "k", [1; 32], async { Err(down.clone()) }).await;
        assert_eq!(failed, Err(down));
        let ok = keys.accept_once(account, "k", [1; 32], async { Ok(EventId("k".into())) }).await;
        assert_eq!(ok.expect("retry").1, Acceptance::New);
    }

    #[tokio::test]
    async fn the_same_key_for_a_different_event_is_a_conflict_naming_the_key() {
        let keys = IdempotencyKeys::new(Duration::from_secs(60), 100);
        let account = AccountId::new();
        let ok = || async { Ok(EventId("k".into())) };
        keys.accept_once(account, "order-7", [1; 32], ok()).await.expect("first");
        match keys.accept_once(account, "order-7", [2; 32], ok()).await {
            Err(ApiError::Conflict(m)) => assert!(m.contains("order-7"), "{m}"),
            other => panic!("{other:?}"),
        }
        let again = keys.accept_once(account, "order-7", [1; 32], ok()).await.expect("retry");
        assert_eq!(again.1, Acceptance::Replayed, "the same event again is a retry");
    }

    #[test]
    fn keys_must_be_short_visible_ascii() {
        assert!(validate_key("order-123").is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key("has space").is_err());
        assert!(validate_key(&"x".repeat(256)).is_err());
    }
}
