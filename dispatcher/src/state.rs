//! Per-partition bookkeeping shared by the consumer loop, the rebalance callbacks and the
//! endpoint workers: commit offsets, assignment generations, buffered counts, pauses.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hookstream_core::offsets::OffsetTracker;

/// A partition: (topic, partition).
pub type Tp = (String, i32);

/// Everything keyed by partition, behind one lock so the pieces never disagree.
#[derive(Default)]
pub struct Partitions {
    inner: Mutex<Inner>,
    next_generation: AtomicU64,
}

#[derive(Default)]
struct Inner {
    tracker: OffsetTracker,
    generation: HashMap<Tp, u64>,
    buffered: HashMap<Tp, usize>,
    paused: HashSet<Tp>,
}

impl Partitions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A partition was assigned: work read from it from now on carries a new generation.
    pub fn assign(&self, tp: Tp) {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed) + 1;
        let mut inner = self.lock();
        inner.generation.insert(tp.clone(), generation);
        inner.buffered.insert(tp.clone(), 0);
        inner.paused.remove(&tp);
    }

    /// A partition was revoked: returns its committable offset and forgets it, so work still
    /// queued for it is dropped by the workers (its next owner redoes it).
    pub fn revoke(&self, tp: &Tp) -> Option<i64> {
        let mut inner = self.lock();
        inner.generation.remove(tp);
        inner.buffered.remove(tp);
        inner.paused.remove(tp);
        inner.tracker.remove(&tp.0, tp.1).and_then(|o| o.committable())
    }

    /// The current generation of an assigned partition.
    pub fn generation(&self, tp: &Tp) -> Option<u64> {
        self.lock().generation.get(tp).copied()
    }

    /// Records a message with `tasks` deliveries; returns true when the partition should now
    /// be paused (buffered work over `bound`).
    pub fn begin(&self, tp: &Tp, offset: i64, tasks: usize, bound: usize) -> bool {
        let mut inner = self.lock();
        inner.tracker.partition(&tp.0, tp.1).begin(offset, tasks as u32);
        let buffered = inner.buffered.entry(tp.clone()).or_default();
        *buffered += tasks;
        let over = *buffered > bound;
        if over && inner.paused.insert(tp.clone()) {
            return true;
        }
        false
    }

    /// One delivery of the message at `offset` finished; returns true when a paused partition
    /// has drained below half its bound and should be resumed. Work of a revoked (or
    /// re-assigned) partition is ignored.
    pub fn finish(&self, tp: &Tp, generation: u64, offset: i64, bound: usize) -> bool {
        let mut inner = self.lock();
        if inner.generation.get(tp) != Some(&generation) {
            return false;
        }
        inner.tracker.partition(&tp.0, tp.1).finish(offset);
        let buffered = inner.buffered.entry(tp.clone()).or_default();
        *buffered = buffered.saturating_sub(1);
        let drained = *buffered <= bound / 2;
        drained && inner.paused.remove(tp)
    }

    /// Offsets that moved since the last commit.
    pub fn take_commits(&self) -> Vec<(String, i32, i64)> {
        self.lock().tracker.take_commits()
    }

    /// Every partition's committable offset.
    pub fn all_committable(&self) -> Vec<(String, i32, i64)> {
        self.lock().tracker.all_committable()
    }

    /// Buffered deliveries over all partitions, and paused partitions.
    pub fn totals(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.buffered.values().sum(), inner.paused.len())
    }
}
