//! The in-flight bound, shared fairly. Every request holds a permit of one pool (`in_flight`);
//! each class of work (an account in a priority lane) is entitled to a share of the pool by
//! its weight among the classes that hold or want permits now. A class may use more than its
//! share while nobody else wants it (work-conserving: a lane or an account alone gets all of
//! the pool but the last [`reserve`] permits). Those are kept for classes that hold fewer
//! than the reserve and are under their share: a newcomer never waits behind another class's
//! slow requests. A freed permit goes to the waiting class furthest below its share.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The permits kept for classes under their share: a tenth of the pool (none of a pool of one).
pub fn reserve(capacity: usize) -> usize {
    capacity / 10
}

/// A pool of `capacity` permits shared by classes `K`.
pub struct InFlight<K: Hash + Eq + Clone> {
    state: Mutex<State<K>>,
    capacity: usize,
    reserve: usize,
}

struct State<K: Hash + Eq + Clone> {
    free: usize,
    /// Sum of the weights of the classes present (holding or waiting).
    total_weight: u64,
    classes: HashMap<K, Class<K>>,
    /// The classes with waiters: what a release looks at, not every class holding permits.
    waiting: HashSet<K>,
}

struct Class<K: Hash + Eq + Clone> {
    in_flight: usize,
    weight: u64,
    waiters: VecDeque<oneshot::Sender<Permit<K>>>,
}

/// One permit; given back when dropped.
pub struct Permit<K: Hash + Eq + Clone> {
    pool: Arc<InFlight<K>>,
    class: K,
}

impl<K: Hash + Eq + Clone> Drop for Permit<K> {
    fn drop(&mut self) {
        self.pool.release(&self.class);
    }
}

impl<K: Hash + Eq + Clone> InFlight<K> {
    /// A pool of `capacity` permits (at least one).
    pub fn new(capacity: usize) -> Arc<Self> {
        let capacity = capacity.max(1);
        Arc::new(Self {
            state: Mutex::new(State {
                free: capacity,
                total_weight: 0,
                classes: HashMap::new(),
                waiting: HashSet::new(),
            }),
            capacity,
            reserve: reserve(capacity),
        })
    }

    /// Permits in use.
    pub fn in_use(&self) -> usize {
        self.capacity - self.lock().free
    }

    /// Permits `class` holds.
    pub fn held_by(&self, class: &K) -> usize {
        self.lock().classes.get(class).map_or(0, |c| c.in_flight)
    }

    /// Each class present: permits held and requests waiting.
    pub fn classes(&self) -> Vec<(K, usize, usize)> {
        let s = self.lock();
        s.classes.iter().map(|(k, c)| (k.clone(), c.in_flight, c.waiters.len())).collect()
    }

    /// Waits for a permit for `class` of weight `weight` (at least 1).
    pub async fn acquire(self: &Arc<Self>, class: K, weight: u32) -> Permit<K> {
        loop {
            if let Ok(permit) = self.try_or_wait(&class, weight).await {
                return permit;
            }
            // Not reached: a waiter's sender is only dropped once it has sent.
        }
    }

    /// A permit now, or a place in the class's queue.
    async fn try_or_wait(
        self: &Arc<Self>,
        class: &K,
        weight: u32,
    ) -> Result<Permit<K>, oneshot::error::RecvError> {
        let waiting = {
            let mut s = self.lock();
            let weight = u64::from(weight.max(1));
            let entry = s.classes.entry(class.clone()).or_insert_with(|| Class {
                in_flight: 0,
                weight: 0,
                waiters: VecDeque::new(),
            });
            let old = std::mem::replace(&mut entry.weight, weight);
            s.total_weight = s.total_weight - old + weight;
            if self.admissible(&s, class) {
                self.take(&mut s, class);
                return Ok(Permit { pool: Arc::clone(self), class: class.clone() });
            }
            let (tx, rx) = oneshot::channel();
            if let Some(entry) = s.classes.get_mut(class) {
                entry.waiters.push_back(tx);
                s.waiting.insert(class.clone());
            }
            rx
        };
        waiting.await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A free permit may go to `class`: above the reserve to anyone, the reserve only to a
    /// class that holds fewer than the reserve and is under its share.
    fn admissible(&self, s: &State<K>, class: &K) -> bool {
        let Some(c) = s.classes.get(class) else { return false };
        s.free > self.reserve
            || (s.free > 0 && c.in_flight < self.reserve && self.under_share(s, c))
    }

    /// in_flight / capacity < weight / total_weight, in integers.
    fn under_share(&self, s: &State<K>, c: &Class<K>) -> bool {
        (c.in_flight as u64) * s.total_weight < (self.capacity as u64) * c.weight
    }

    fn take(&self, s: &mut State<K>, class: &K) {
        if let Some(c) = s.classes.get_mut(class) {
            c.in_flight += 1;
            s.free -= 1;
        }
    }

    fn release(self: &Arc<Self>, class: &K) {
        let mut s = self.lock();
        if let Some(c) = s.classes.get_mut(class) {
            c.in_flight = c.in_flight.saturating_sub(1);
        }
        s.free += 1;
        self.forget_if_idle(&mut s, class);
        self.grant(&mut s);
    }

    /// Hands free permits to waiters, the class furthest below its share first, while one
    /// may take them.
    fn grant(self: &Arc<Self>, s: &mut State<K>) {
        // Waiters whose task ended (a shutdown) leave first, so they count for nothing.
        let waiting: Vec<K> = s.waiting.iter().cloned().collect();
        for class in waiting {
            let left = s.classes.get_mut(&class).map_or(0, |c| {
                c.waiters.retain(|tx| !tx.is_closed());
                c.waiters.len()
            });
            if left == 0 {
                s.waiting.remove(&class);
                self.forget_if_idle(s, &class);
            }
        }
        loop {
            let best = s
                .waiting
                .iter()
                .filter_map(|k| s.classes.get(k).map(|c| (k, c)))
                .min_by(|(_, a), (_, b)| {
                    // a.in_flight / a.weight < b.in_flight / b.weight
                    ((a.in_flight as u64) * b.weight).cmp(&((b.in_flight as u64) * a.weight))
                })
                .map(|(k, _)| k.clone());
            let Some(class) = best else { return };
            // The least served waiting class: if it may not take a permit, nobody may.
            if !self.admissible(s, &class) {
                return;
            }
            let Some(c) = s.classes.get_mut(&class) else { return };
            let Some(tx) = c.waiters.pop_front() else { return };
            if c.waiters.is_empty() {
                s.waiting.remove(&class);
            }
            self.take(s, &class);
            if let Err(permit) = tx.send(Permit { pool: Arc::clone(self), class: class.clone() }) {
                // The waiter gave up (its task ended): the permit goes back without a
                // `release`, which would take the lock this function holds.
                std::mem::forget(permit);
                if let Some(c) = s.classes.get_mut(&class) {
                    c.in_flight -= 1;
                }
                s.free += 1;
                self.forget_if_idle(s, &class);
            }
        }
    }

    fn forget_if_idle(&self, s: &mut State<K>, class: &K) {
        if s.classes.get(class).is_some_and(|c| c.in_flight == 0 && c.waiters.is_empty()) {
            if let Some(c) = s.classes.remove(class) {
                s.total_weight -= c.weight;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn quickly<T>(f: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::time::timeout(Duration::from_millis(50), f).await.ok()
    }

    #[tokio::test]
    async fn a_class_alone_gets_all_but_the_reserve_which_a_newcomer_gets_at_once() {
        let pool = InFlight::new(20);
        let mut slow = Vec::new();
        for _ in 0..18 {
            let permit = quickly(pool.acquire("slow", 1)).await;
            slow.push(permit.expect("lent while nobody else wants it"));
        }
        assert!(quickly(pool.acquire("slow", 1)).await.is_none(), "the reserve is not lent");
        // The slow class's requests take their time; newcomers do not wait for them.
        let fast: Vec<_> = futures::future::join_all((0..2).map(|_| pool.acquire("fast", 1))).await;
        assert_eq!((pool.held_by(&"slow"), pool.held_by(&"fast"), pool.in_use()), (18, 2, 20));
        drop(fast);
        drop(slow);
        assert_eq!(pool.in_use(), 0);
    }

    #[tokio::test]
    async fn a_freed_permit_goes_to_the_waiting_class_furthest_below_its_share() {
        let pool = InFlight::new(4);
        let mut a = Vec::new();
        for _ in 0..3 {
            a.push(pool.acquire("a", 1).await);
        }
        let _b = pool.acquire("b", 1).await;
        // Full: a holds 3, b holds 1; both wait for more.
        let more_a = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move { pool.acquire("a", 1).await }
        });
        let more_b = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move { pool.acquire("b", 1).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(a.pop());
        let got_b = quickly(more_b).await.expect("b, the least served, gets it").expect("task");
        assert_eq!((pool.held_by(&"a"), pool.held_by(&"b")), (2, 2));
        assert!(!more_a.is_finished(), "a, at its share, still waits");
        drop(got_b);
        let got_a = quickly(more_a).await.expect("then a").expect("task");
        drop(got_a);
    }

    #[tokio::test]
    async fn under_contention_weights_divide_the_pool() {
        let pool = InFlight::new(10);
        let blocker: Vec<_> = futures::future::join_all((0..9).map(|_| pool.acquire("x", 1))).await;
        let (tx, mut held) = tokio::sync::mpsc::unbounded_channel();
        for (class, weight) in [("heavy", 4), ("light", 1)] {
            for _ in 0..10 {
                let (pool, tx) = (Arc::clone(&pool), tx.clone());
                tokio::spawn(async move {
                    let _ = tx.send(pool.acquire(class, weight).await);
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(blocker);
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Nine granted (the last permit is the reserve, and both hold more than it), by
        // weight: heavy 7 (7/4 = 1.75 each), light 2.
        assert_eq!((pool.held_by(&"heavy"), pool.held_by(&"light")), (7, 2), "about 4:1");
        held.close();
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_leaves_nothing_behind() {
        let pool = InFlight::new(1);
        let held = pool.acquire("a", 1).await;
        assert!(quickly(pool.acquire("b", 1)).await.is_none(), "b gives up waiting");
        drop(held);
        assert_eq!(pool.in_use(), 0, "the permit is free, not granted to the waiter that left");
        assert!(quickly(pool.acquire("c", 1)).await.is_some());
    }
}
