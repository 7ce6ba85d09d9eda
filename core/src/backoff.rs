//! The one retry pace of every "until it heals" loop (a hand-off to a broker that is down,
//! the delivery log or DLQ index to a database that is down, a schema registry that is down):
//! 100 ms, doubling, at most 5 s, so a long outage costs one attempt every 5 s and a short one
//! heals within a fraction of a second.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

const FIRST: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(5);

/// Exponential backoff, 100 ms to 5 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: FIRST }
    }
}

impl Backoff {
    /// The wait before the next attempt (then doubles, up to 5 s).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(MAX);
        delay
    }

    /// Sleeps the next delay.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// Sleeps the next delay unless `stop` is cancelled first; false if it was (now or before).
    pub async fn wait_or(&mut self, stop: &CancellationToken) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(self.next_delay()) => !stop.is_cancelled(),
            _ = stop.cancelled() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_100ms_up_to_5s() {
        let mut b = Backoff::default();
        let delays: Vec<u128> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    }

    #[tokio::test]
    async fn a_cancelled_stop_ends_the_wait() {
        let stop = CancellationToken::new();
        stop.cancel();
        assert!(!Backoff::default().wait_or(&stop).await);
    }
}
