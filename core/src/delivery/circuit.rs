//! Per-endpoint circuit breaker: after `threshold` consecutive failures an endpoint's tasks go
//! straight to the retry path without a request. After `cooldown` it is probed, one request at
//! a time: the first success closes it, and only [`PROBES`] failed probes in a row open it for
//! another cooldown, so a receiver that fails a share of requests at random is not shut out
//! for a whole cooldown by one unlucky probe.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::ids::EndpointId;

/// Probes after a cooldown before the circuit opens again. At a receiver failing a fifth of
/// its requests, one probe reopened the circuit in 1 of 5 cooldowns; three do in 1 of 125.
pub const PROBES: u32 = 3;

#[derive(Debug, Clone, Copy)]
enum State {
    Closed {
        failures: u32,
    },
    /// No request before `until`; then probes, `failed` of them failed already.
    Open {
        until: Instant,
        failed: u32,
    },
    /// One probe in flight.
    Probing {
        failed: u32,
    },
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

    /// Whether a request to `endpoint` may be made now (at most one probe at a time).
    pub fn allow(&self, endpoint: EndpointId) -> bool {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let state = states.entry(endpoint).or_insert(State::Closed { failures: 0 });
        match *state {
            State::Closed { .. } => true,
            State::Open { until, failed } if Instant::now() >= until => {
                *state = State::Probing { failed };
                true
            }
            State::Open { .. } | State::Probing { .. } => false,
        }
    }

    /// Records an attempt's result.
    pub fn record(&self, endpoint: EndpointId, success: bool) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let state = states.entry(endpoint).or_insert(State::Closed { failures: 0 });
        let now = Instant::now();
        *state = match (*state, success) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.threshold => {
                State::Closed { failures: failures + 1 }
            }
            (State::Closed { .. }, false) => State::Open { until: now + self.cooldown, failed: 0 },
            // A request sent before the circuit opened failed late: the cooldown stands.
            (open @ State::Open { .. }, false) => open,
            (State::Probing { failed }, false) if failed + 1 < PROBES => {
                State::Open { until: now, failed: failed + 1 }
            }
            (State::Probing { .. }, false) => State::Open { until: now + self.cooldown, failed: 0 },
        };
    }

    /// How long until an open circuit lets a probe through (`None` when it is closed; zero
    /// while a probe is in flight).
    pub fn reopens_in(&self, endpoint: EndpointId) -> Option<Duration> {
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        match states.get(&endpoint)? {
            State::Open { until, .. } => Some(until.saturating_duration_since(Instant::now())),
            State::Probing { .. } => Some(Duration::ZERO),
            State::Closed { .. } => None,
        }
    }

    /// Whether the endpoint's circuit is open (for metrics).
    pub fn is_open(&self, endpoint: EndpointId) -> bool {
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        matches!(states.get(&endpoint), Some(State::Open { .. } | State::Probing { .. }))
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
    fn only_failed_probes_in_a_row_open_it_again_and_others_are_unaffected() {
        let b = CircuitBreakers::new(1, Duration::from_millis(30));
        let (e, other) = (EndpointId::new(), EndpointId::new());
        b.record(e, false);
        assert!(!b.allow(e));
        assert!(b.allow(other));
        std::thread::sleep(Duration::from_millis(40));
        for probe in 1..PROBES {
            assert!(b.allow(e), "probe {probe}");
            assert!(!b.allow(e), "one probe at a time");
            b.record(e, false);
        }
        assert!(b.allow(e), "the last probe");
        b.record(e, false);
        assert!(!b.allow(e), "{PROBES} failed probes: open for another cooldown");
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow(e), "probing again after the cooldown");
        b.record(e, true);
        assert!(b.allow(e) && b.allow(e), "a probe succeeded: closed");
    }

    #[test]
    fn a_late_failure_does_not_extend_the_cooldown() {
        let b = CircuitBreakers::new(1, Duration::from_millis(50));
        let e = EndpointId::new();
        b.record(e, false);
        std::thread::sleep(Duration::from_millis(30));
        // A request that was in flight when the circuit opened fails now.
        b.record(e, false);
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.allow(e), "probed 50 ms after opening, not 50 ms after the late failure");
    }
}
