//! Per-endpoint circuit breaker: after `threshold` consecutive failures an endpoint's tasks go
//! straight to the retry path without a request, until a single half-open probe succeeds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::ids::EndpointId;

#[derive(Debug, Clone, Copy)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// Breakers for all endpoints.
#[derive(Debug)]
pub struct CircuitBreakers {
    states: Mutex<HashMap<EndpointId, State>>,
    threshold: u32,
    cooldown: Duration,
}

impl CircuitBreakers {
    /// Opens after `threshold` consecutive failures, probes again after `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self { states: Mutex::new(HashMap::new()), threshold: threshold.max(1), cooldown }
    }

    /// Whether a request to `endpoint` may be made now (at most one probe while half-open).
    pub fn allow(&self, endpoint: EndpointId) -> bool {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let state = states.entry(endpoint).or_insert(State::Closed { failures: 0 });
        match *state {
            State::Closed { .. } => true,
            State::Open { until } if Instant::now() >= until => {
                *state = State::HalfOpen;
                true
            }
            State::Open { .. } | State::HalfOpen => false,
        }
    }

    /// Records an attempt's result.
    pub fn record(&self, endpoint: EndpointId, success: bool) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let state = states.entry(endpoint).or_insert(State::Closed { failures: 0 });
        *state = match (*state, success) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.threshold => {
                State::Closed { failures: failures + 1 }
            }
            (_, false) => State::Open { until: Instant::now() + self.cooldown },
        };
    }

    /// Whether the endpoint's circuit is open (for metrics).
    pub fn is_open(&self, endpoint: EndpointId) -> bool {
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        matches!(states.get(&endpoint), Some(State::Open { .. } | State::HalfOpen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_probes_once_after_the_cooldown() {
        let b = CircuitBreakers::new(3, Duration::from_millis(50));
        let e = EndpointId::new();
        for _ in 0..2 {
            assert!(b.allow(e));
            b.record(e, false);
        }
        assert!(b.allow(e), "two failures: still closed");
        b.record(e, false);
        assert!(!b.allow(e), "three failures: open");
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.allow(e), "cooldown over: one probe");
        assert!(!b.allow(e), "only one probe at a time");
        b.record(e, true);
        assert!(b.allow(e), "probe succeeded: closed");
    }

    #[test]
    fn a_failed_probe_opens_again_and_others_are_unaffected() {
        let b = CircuitBreakers::new(1, Duration::from_millis(30));
        let (e, other) = (EndpointId::new(), EndpointId::new());
        b.record(e, false);
        assert!(!b.allow(e));
        assert!(b.allow(other));
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow(e));
        b.record(e, false);
        assert!(!b.allow(e));
    }
}
