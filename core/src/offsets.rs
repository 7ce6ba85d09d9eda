//! Which offset of a partition may be committed.
//!
//! Work on a partition finishes out of order (keys run in parallel), but a commit says "every
//! message below this offset is done". The tracker keeps the offsets still in flight and
//! answers with the lowest of them, or one past the highest seen when none is.

use std::collections::{BTreeMap, HashMap};

/// The commit tracker of one partition.
#[derive(Debug, Default, Clone)]
pub struct PartitionOffsets {
    /// Offset → tasks of that message still unfinished.
    in_flight: BTreeMap<i64, u32>,
    /// Highest offset handed out so far.
    highest_seen: Option<i64>,
    /// Last offset reported committable, to tell whether anything changed.
    last_committable: Option<i64>,
}

impl PartitionOffsets {
    /// Records a message at `offset` with `tasks` units of work (0 = nothing to do).
    pub fn begin(&mut self, offset: i64, tasks: u32) {
        self.highest_seen = Some(self.highest_seen.map_or(offset, |h| h.max(offset)));
        if tasks > 0 {
            *self.in_flight.entry(offset).or_default() += tasks;
        }
    }

    /// Marks one unit of work of the message at `offset` finished.
    pub fn finish(&mut self, offset: i64) {
        if let Some(left) = self.in_flight.get_mut(&offset) {
            *left -= 1;
            if *left == 0 {
                self.in_flight.remove(&offset);
            }
        }
    }

    /// The offset to commit (the next one to read after a restart), if any message was seen.
    pub fn committable(&self) -> Option<i64> {
        match self.in_flight.keys().next() {
            Some(lowest) => Some(*lowest),
            None => self.highest_seen.map(|h| h + 1),
        }
    }

    /// The committable offset if it moved since the last call.
    pub fn take_new_committable(&mut self) -> Option<i64> {
        let now = self.committable();
        if now.is_some() && now != self.last_committable {
            self.last_committable = now;
            now
        } else {
            None
        }
    }

    /// A commit of `offset` failed: report it again at the next [`Self::take_new_committable`]
    /// unless the offset has moved on meanwhile (then the newer one is reported anyway).
    pub fn commit_failed(&mut self, offset: i64) {
        if self.last_committable == Some(offset) {
            self.last_committable = None;
        }
    }

    /// Messages with unfinished work.
    pub fn pending_messages(&self) -> usize {
        self.in_flight.len()
    }
}

/// Trackers for every assigned partition, by (topic, partition).
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<(String, i32), PartitionOffsets>,
}

impl OffsetTracker {
    /// The tracker of a partition, created on first use.
    pub fn partition(&mut self, topic: &str, partition: i32) -> &mut PartitionOffsets {
        self.partitions.entry((topic.to_owned(), partition)).or_default()
    }

    /// Forgets a revoked partition.
    pub fn remove(&mut self, topic: &str, partition: i32) -> Option<PartitionOffsets> {
        self.partitions.remove(&(topic.to_owned(), partition))
    }

    /// A commit of `offset` on a partition failed: it is reported again (if still tracked).
    pub fn commit_failed(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(p) = self.partitions.get_mut(&(topic.to_owned(), partition)) {
            p.commit_failed(offset);
        }
    }

    /// Partitions whose committable offset moved since last asked.
    pub fn take_commits(&mut self) -> Vec<(String, i32, i64)> {
        let mut out = Vec::new();
        for ((topic, partition), offsets) in &mut self.partitions {
            if let Some(o) = offsets.take_new_committable() {
                out.push((topic.clone(), *partition, o));
            }
        }
        out
    }

    /// Every partition's committable offset (for the final commit).
    pub fn all_committable(&self) -> Vec<(String, i32, i64)> {
        self.partitions
            .iter()
            .filter_map(|((t, p), o)| o.committable().map(|c| (t.clone(), *p, c)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_stop_at_the_lowest_unfinished_message() {
        let mut p = PartitionOffsets::default();
        p.begin(10, 2); // two endpoints
        p.begin(11, 1);
        p.begin(12, 0); // no endpoint subscribed
        assert_eq!(p.committable(), Some(10));
        p.finish(11);
        assert_eq!(p.committable(), Some(10), "11 done, 10 not: still 10");
        p.finish(10);
        assert_eq!(p.committable(), Some(10), "one of two tasks of 10 left");
        p.finish(10);
        assert_eq!(p.committable(), Some(13), "all done: one past the highest seen");
    }

    #[test]
    fn nothing_seen_means_nothing_to_commit() {
        let p = PartitionOffsets::default();
        assert_eq!(p.committable(), None);
    }

    #[test]
    fn only_moved_offsets_are_reported() {
        let mut t = OffsetTracker::default();
        t.partition("a", 0).begin(5, 1);
        assert_eq!(t.take_commits(), vec![("a".to_owned(), 0, 5)]);
        assert_eq!(t.take_commits(), vec![]);
        t.partition("a", 0).finish(5);
        assert_eq!(t.take_commits(), vec![("a".to_owned(), 0, 6)]);
    }

    #[test]
    fn a_failed_commit_is_reported_again_unless_a_newer_offset_is() {
        let mut t = OffsetTracker::default();
        t.partition("a", 0).begin(5, 0);
        assert_eq!(t.take_commits(), vec![("a".to_owned(), 0, 6)]);
        t.commit_failed("a", 0, 6);
        assert_eq!(t.take_commits(), vec![("a".to_owned(), 0, 6)], "retried");
        assert_eq!(t.take_commits(), vec![]);
        t.partition("a", 0).begin(6, 0);
        t.commit_failed("a", 0, 6); // an older commit's failure arrives late
        assert_eq!(t.take_commits(), vec![("a".to_owned(), 0, 7)]);
        t.commit_failed("b", 3, 1); // a partition no longer tracked: nothing
        assert_eq!(t.take_commits(), vec![]);
    }

    #[test]
    fn out_of_order_completion_never_commits_past_a_gap() {
        let mut p = PartitionOffsets::default();
        for o in 0..100 {
            p.begin(o, 1);
        }
        for o in (1..100).rev() {
            p.finish(o);
            assert_eq!(p.committable(), Some(0));
        }
        p.finish(0);
        assert_eq!(p.committable(), Some(100));
    }
}
