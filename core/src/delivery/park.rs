//! When an endpoint's work is parked, and until when each parked task waits (DESIGN.md,
//! "Fairness").
//!
//! Each endpoint keeps in memory only what it drains in `park_after` (at its rate limit, or
//! slower when its receiver answers slowly). Work beyond that is parked on the park topic,
//! each task due at the endpoint's next free slot, so a partition is never paused for one
//! endpoint and its commits move on. Parking is sticky: once an endpoint parks, all its tasks
//! park while its parked work lies ahead, so its events keep their order: the queue in memory
//! drains before the first parked task is due, and parked tasks come back in the order they
//! were parked. Once the endpoint's next free slot has come (it has caught up), parking ends:
//! the next tasks stay in memory, held until the cooldown (`park_after`) has passed so that
//! none overtakes a parked task still on its way back. Without that end, an endpoint with a
//! steady stream of events would park each one "due now", for ever, after one short stall.
//!
//! A slot is the latest a parked task waits, not the earliest: the slots are spaced at the
//! pace the endpoint had when its work was parked, and a receiver that was slow for a minute
//! may be fast again long before its last slot. Each parked task also carries the slot of the
//! first task of its run ([`Slot::ready`]); from then on the queue in memory has drained and the
//! dispatcher sends nothing of that endpoint's, so the retrier may pass the task as soon as
//! the endpoint has room, in order, at the pace it has now.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{AccountId, EndpointId};

/// The fewest tasks an endpoint may queue in memory, however slowly it drains: a burst of a
/// few events is never parked.
pub const MIN_QUEUE: usize = 4;

/// How much longer than estimated an endpoint's queue in memory may take to drain before its
/// first parked task is due.
pub const DRAIN_MARGIN: f64 = 1.25;

/// Where an endpoint's next task goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The queue in memory.
    Memory,
    /// The queue in memory, sent no earlier than this: the endpoint has just caught up with
    /// its parked work, and the tasks parked last may still be on their way back.
    MemoryAfter(DateTime<Utc>),
    /// The park topic, at this slot.
    Park(Slot),
}

/// When a parked task may be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Sent then at the latest: the endpoint's next free slot at its pace when parked.
    pub due: DateTime<Utc>,
    /// Sent from then on once its endpoint has room: the slot of the first task of its run,
    /// when the endpoint's queue in memory has drained (at most `due`).
    pub ready: DateTime<Utc>,
}

/// The parking state of every endpoint that parked recently.
#[derive(Debug)]
pub struct Parking {
    after: Duration,
    /// How long an endpoint stays parked after its last slot: `after`.
    cooldown: chrono::Duration,
    max_queue: usize,
    /// The furthest ahead a task is parked: well within the park topic's retention, so no
    /// parked task is deleted before it is due. One due later waits in the retrier instead.
    horizon: chrono::Duration,
    /// Each parked endpoint's account, next free slot and the first slot of its run.
    next: HashMap<EndpointId, Run>,
}

impl Parking {
    /// Endpoints queue in memory what they drain in `after`, between [`MIN_QUEUE`] and
    /// `max_queue` tasks; no task is parked further ahead than `horizon`.
    pub fn new(after: Duration, max_queue: usize, horizon: Duration) -> Self {
        Self {
            after,
            cooldown: chrono::Duration::from_std(after).unwrap_or_default(),
            max_queue: max_queue.max(MIN_QUEUE),
            horizon: chrono::Duration::from_std(horizon).unwrap_or(chrono::Duration::MAX),
            next: HashMap::new(),
        }
    }

    /// How many tasks an endpoint draining `drain` tasks a second may queue in memory.
    pub fn bound(&self, drain: f64) -> usize {
        let fits = (drain * self.after.as_secs_f64()).ceil();
        (fits.clamp(0.0, self.max_queue as f64) as usize).max(MIN_QUEUE)
    }

    /// Where the next task of endpoint `id` of `account` goes, with `queued` tasks in memory
    /// draining `drain` tasks a second.
    pub fn decide(
        &mut self,
        (account, id): (AccountId, EndpointId),
        queued: usize,
        drain: f64,
        now: DateTime<Utc>,
    ) -> Place {
        let drain = drain.max(1e-3);
        let cooldown = self.cooldown;
        let bound = self.bound(drain);
        let sticky = self.next.get(&id).copied().filter(|r| live(r.next, cooldown, now));
        let due = match sticky {
            // Caught up: parking ends.
            Some(run) if run.next <= now && queued < bound => {
                self.next.remove(&id);
                return Place::MemoryAfter(run.next + cooldown);
            }
            Some(run) => run.next.max(now),
            None if queued < bound => return Place::Memory,
            // The first parked task is due once the queue in memory has drained, with a margin
            // for a drain slower than estimated: the parked task must not overtake the queue.
            None => now + seconds(queued as f64 / drain * DRAIN_MARGIN + 0.1),
        };
        if self.next.len() >= 1024 && sticky.is_none() {
            // Endpoints whose parking ended go as new ones park, so the map follows the
            // endpoints parked now.
            self.next.retain(|_, run| live(run.next, cooldown, now));
        }
        // Past the horizon every task is due at it, in the order parked: it waits in the
        // retrier's memory, where the park partition's buffer bound holds the rest back.
        let due = due.min(now.checked_add_signed(self.horizon).unwrap_or(due));
        let ready = sticky.map_or(due, |run| run.ready.min(due));
        self.next.insert(id, Run { account, next: due + seconds(1.0 / drain), ready });
        Place::Park(Slot { due, ready })
    }

    /// For each account with parked endpoints, how far ahead its last parked slot is.
    pub fn backlog(&self, now: DateTime<Utc>) -> HashMap<AccountId, Duration> {
        let mut backlog: HashMap<AccountId, Duration> = HashMap::new();
        for run in self.next.values().filter(|r| live(r.next, self.cooldown, now)) {
            let ahead = (run.next - now).to_std().unwrap_or_default();
            let entry = backlog.entry(run.account).or_default();
            *entry = (*entry).max(ahead);
        }
        backlog
    }
}

/// An endpoint's parked run.
#[derive(Debug, Clone, Copy)]
struct Run {
    account: AccountId,
    /// The next free slot.
    next: DateTime<Utc>,
    /// The slot of the run's first task.
    ready: DateTime<Utc>,
}

/// Whether an endpoint whose next slot is `next` is still parked at `now`: until that slot
/// has passed, plus the cooldown.
fn live(next: DateTime<Utc>, cooldown: chrono::Duration, now: DateTime<Utc>) -> bool {
    next + cooldown > now
}

fn seconds(s: f64) -> chrono::Duration {
    chrono::Duration::microseconds((s * 1e6).min(i64::MAX as f64 / 2.0) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn id() -> (AccountId, EndpointId) {
        (AccountId::new(), EndpointId::new())
    }

    impl Place {
        fn parked(self) -> Option<DateTime<Utc>> {
            self.slot().map(|s| s.due)
        }

        fn slot(self) -> Option<Slot> {
            match self {
                Place::Park(slot) => Some(slot),
                _ => None,
            }
        }
    }

    #[test]
    fn the_bound_is_what_the_endpoint_drains_in_park_after() {
        let p = Parking::new(Duration::from_secs(2), 1000, DAY);
        assert_eq!(p.bound(50.0), 100);
        assert_eq!(p.bound(0.1), MIN_QUEUE, "a slow receiver still queues a few");
        assert_eq!(p.bound(10_000.0), 1000, "never more than max_queue");
    }

    #[test]
    fn below_the_bound_nothing_parks() {
        let mut p = Parking::new(Duration::from_secs(2), 1000, DAY);
        let now = Utc::now();
        assert_eq!(p.decide(id(), 99, 50.0, now), Place::Memory);
        assert_eq!(p.backlog(now).len(), 0);
    }

    #[test]
    fn parked_tasks_take_the_next_free_slots_after_the_queue_drains() {
        let mut p = Parking::new(Duration::from_secs(2), 1000, DAY);
        let (e, now) = (id(), Utc::now());
        let first = p.decide(e, 100, 50.0, now).parked().expect("parked at the bound");
        let drained = now + chrono::Duration::milliseconds(2600);
        assert_eq!(first, drained, "after the 100 queued drain (2 s, with the margin)");
        let second = p.decide(e, 100, 50.0, now).parked().expect("still parked");
        assert_eq!(second - first, chrono::Duration::milliseconds(20), "one slot at 50/s");
    }

    #[test]
    fn parking_is_sticky_until_the_last_slot_and_the_cooldown_pass() {
        let mut p = Parking::new(Duration::from_secs(2), 1000, DAY);
        let (e, now) = (id(), Utc::now());
        let first = p.decide(e, 100, 50.0, now).parked().expect("parked");
        // The queue in memory has drained, but the parked task is not yet delivered: later
        // tasks must park behind it, or they would overtake it.
        let later =
            p.decide(e, 0, 50.0, now + chrono::Duration::seconds(1)).parked().expect("sticky");
        assert!(later > first);
        assert_eq!(p.decide(id(), 0, 50.0, now), Place::Memory, "only that endpoint parks");
        assert_eq!(p.backlog(now).len(), 1);
        let backlog = p.backlog(now);
        assert_eq!(backlog.len(), 1);
        assert!(backlog[&e.0] > Duration::from_secs(2), "{backlog:?}");
        let after = later + chrono::Duration::seconds(3);
        assert_eq!(p.decide(e, 0, 50.0, after), Place::Memory, "back in memory once it all passed");
        assert_eq!(p.backlog(after).len(), 0);
    }

    #[test]
    fn every_task_of_a_run_may_pass_from_the_first_ones_slot() {
        let mut p = Parking::new(Duration::from_secs(2), 1000, DAY);
        let (e, now) = (id(), Utc::now());
        let ms = chrono::Duration::milliseconds;
        let first = p.decide(e, 100, 50.0, now).slot().expect("parked");
        assert_eq!(first.ready, first.due, "the first task of a run waits for the queue to drain");
        let later: Vec<Slot> =
            (1..50).filter_map(|i| p.decide(e, 0, 50.0, now + ms(10 * i)).slot()).collect();
        assert_eq!(later.len(), 49, "sticky");
        assert!(later.iter().all(|s| s.ready == first.due && s.due > first.due), "{later:?}");
        // Once caught up and past the cooldown, a new run starts from its own first slot.
        let after = later[48].due + ms(3000);
        assert_eq!(p.decide(e, 0, 50.0, after), Place::Memory);
        let again = p.decide(e, 100, 50.0, after).slot().expect("a new run");
        assert_eq!(again.ready, again.due);
    }

    #[test]
    fn no_task_is_parked_beyond_the_horizon() {
        let mut p = Parking::new(Duration::from_secs(2), 1000, Duration::from_secs(60));
        let (e, now) = (id(), Utc::now());
        let horizon = now + chrono::Duration::seconds(60);
        // At 1 a second, the 100th parked task would be due in about 100 s.
        let dues: Vec<_> = (0..100).filter_map(|_| p.decide(e, 10, 1.0, now).parked()).collect();
        assert_eq!(dues.len(), 100);
        assert!(dues.iter().all(|d| *d <= horizon), "parked past the horizon");
        assert!(dues.windows(2).all(|w| w[0] <= w[1]), "in the order parked");
    }

    #[test]
    fn a_slot_is_never_in_the_past() {
        let mut p = Parking::new(Duration::from_secs(2), 1000, DAY);
        let (e, now) = (id(), Utc::now());
        let due = p.decide(e, 100, 50.0, now).parked().expect("parked");
        // A burst while the parked work is still ahead: parked behind it, never before now.
        let at = due - chrono::Duration::milliseconds(100);
        let burst = p.decide(e, 200, 50.0, at).parked().expect("sticky");
        assert!(burst >= at && burst > due, "{burst} vs {due}");
    }

    #[test]
    fn a_steady_stream_leaves_parking_once_the_endpoint_has_caught_up() {
        // The 2,000/s soak's case: a 2 s stall parks an endpoint that receives 100 events a
        // second and drains 200; its parked work is soon behind it. Each of its events parked
        // "due now" kept it parked for ever, and all its traffic went through the retrier.
        let mut p = Parking::new(Duration::from_secs(2), 1000, DAY);
        let (e, start) = (id(), Utc::now());
        let ms = chrono::Duration::milliseconds;
        assert!(p.decide(e, 400, 200.0, start).parked().is_some());
        let places: Vec<Place> =
            (1..=1000).map(|i| p.decide(e, 2, 200.0, start + ms(10 * i))).collect();
        let last = places.iter().rposition(|pl| pl.parked().is_some()).expect("parked a while");
        // The backlog (2.6 s ahead) shrinks by half of real time: caught up at 5.2 s.
        assert!((500..530).contains(&last), "parking ended at step {last}");
        let Place::MemoryAfter(hold) = places[last + 1] else {
            panic!("the first task after parking is held: {:?}", places[last + 1]);
        };
        let caught_up = start + ms(10 * (last as i64 + 2));
        assert!(hold > caught_up && hold <= caught_up + ms(2000), "held for the cooldown");
        assert!(places[last + 2..].iter().all(|pl| *pl == Place::Memory));
        assert_eq!(p.backlog(start + ms(10_000)).len(), 0);
        // A new backlog parks again.
        assert!(p.decide(e, 400, 200.0, start + ms(10_010)).parked().is_some());
    }
}
