//! The (event, endpoint) pairs this process delivered lately: a bounded set, oldest out first.
//!
//! The progress marks ([`super::redelivery`]) tell when a *record* may be a redelivery. The
//! same event can also arrive as a second record: two ingest replicas that both accepted one
//! `Idempotency-Key` (each replica remembers its own keys) produce the same event id twice, a
//! few milliseconds apart, on the account's partition, so the same dispatcher reads both. This
//! set catches the second copy without a database lookup (its `received_at` differs, so the
//! log would not find it on the first copy's day anyway).

use std::collections::{HashSet, VecDeque};

use crate::ids::{EndpointId, EventId};

/// Pairs remembered: about half a minute of deliveries at 2,000/s, a few MB.
pub const CAPACITY: usize = 65_536;

/// The set.
pub struct RecentDeliveries {
    capacity: usize,
    set: HashSet<(EventId, EndpointId)>,
    order: VecDeque<(EventId, EndpointId)>,
}

impl RecentDeliveries {
    /// Remembers at most `capacity` pairs.
    pub fn new(capacity: usize) -> Self {
        Self { capacity, set: HashSet::new(), order: VecDeque::new() }
    }

    /// Remembers a delivery, forgetting the oldest when full.
    pub fn insert(&mut self, event: EventId, endpoint: EndpointId) {
        if self.capacity == 0 || !self.set.insert((event.clone(), endpoint)) {
            return;
        }
        self.order.push_back((event, endpoint));
        if self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.set.remove(&oldest);
            }
        }
    }

    /// Whether (event, endpoint) was delivered lately.
    pub fn contains(&self, event: &EventId, endpoint: EndpointId) -> bool {
        self.set.contains(&(event.clone(), endpoint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_pair_goes_first_and_the_size_stays_bounded() {
        let mut recent = RecentDeliveries::new(2);
        let (a, b, c) = (EventId::new(), EventId::new(), EventId::new());
        let ep = EndpointId::new();
        recent.insert(a.clone(), ep);
        recent.insert(b.clone(), ep);
        recent.insert(a.clone(), ep); // already there: not counted twice
        assert!(recent.contains(&a, ep) && recent.contains(&b, ep));
        recent.insert(c.clone(), ep);
        assert!(!recent.contains(&a, ep), "the oldest is forgotten");
        assert!(recent.contains(&b, ep) && recent.contains(&c, ep));
        assert!(!recent.contains(&b, EndpointId::new()), "per endpoint");
        assert_eq!((recent.set.len(), recent.order.len()), (2, 2));
    }
}
