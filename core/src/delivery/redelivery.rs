//! Which records may be redeliveries, so that the "delivered before?" lookup in the log is
//! made only for them and not once per delivery.
//!
//! A record is read again after a crash or a rebalance: what was read after the last commit
//! comes back. Its attempt can be in the log only if its offset is at or below its
//! partition's progress mark (`log_marks`, raised in the transaction that writes the
//! attempts). So only the records at or below their partition's mark are looked up. Right
//! after an assignment the previous owner may still be finishing requests and writing their
//! attempts (raising the mark), so for `settle` the mark is read again whenever the copy in
//! hand is older than [`REFRESH`] (a record is then checked against a mark at most that old,
//! where the log lookup it replaces would have been as fresh as the send); once `settle` has
//! passed it is read a last time and kept for the assignment.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::time::Instant;

use super::engine::Source;
use super::record;
use crate::partitions::Tp;

/// The marks of the partitions this process has read, by partition (bounded by the topics'
/// partition counts).
pub struct Redeliveries {
    pool: PgPool,
    settle: Duration,
    marks: Mutex<HashMap<Tp, Arc<Mark>>>,
}

/// How stale the mark may be while an assignment settles.
pub const REFRESH: Duration = Duration::from_millis(250);

/// One assignment of a partition.
struct Mark {
    generation: u64,
    /// When the engine first saw work of this assignment.
    since: Instant,
    /// The partition's progress mark and when it was read; one reader at a time, the others
    /// wait for its answer.
    read: tokio::sync::Mutex<Option<Read>>,
}

/// A read of a mark.
#[derive(Clone, Copy)]
struct Read {
    at: Instant,
    /// Read after the assignment settled: kept for its life.
    settled: bool,
    /// `None`: the partition has no attempt in the log.
    offset: Option<i64>,
}

impl Redeliveries {
    /// Reads the marks again every [`REFRESH`] for `settle` after an assignment, then keeps
    /// the last read.
    pub fn new(pool: PgPool, settle: Duration) -> Self {
        Self { pool, settle, marks: Mutex::new(HashMap::new()) }
    }

    /// Whether the record at `source` may have been attempted before (then the log must be
    /// asked). When the mark cannot be read (database down), it may.
    pub async fn possible(&self, source: &Source) -> bool {
        let mark = {
            let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
            let entry =
                marks.entry(source.tp.clone()).or_insert_with(|| Mark::new(source.generation));
            if entry.generation != source.generation {
                *entry = Mark::new(source.generation);
            }
            entry.clone()
        };
        let mut read = mark.read.lock().await;
        let fresh = read.is_some_and(|r| r.settled || r.at.elapsed() < REFRESH);
        if !fresh {
            let at = Instant::now();
            let settled = at.duration_since(mark.since) >= self.settle;
            match record::log_mark(&self.pool, &source.tp).await {
                Ok(offset) => *read = Some(Read { at, settled, offset }),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the delivery log's progress mark; looking the record up");
                    return true;
                }
            }
        }
        read.and_then(|r| r.offset).is_some_and(|last| source.offset <= last)
    }
}

impl Mark {
    fn new(generation: u64) -> Arc<Self> {
        Arc::new(Self { generation, since: Instant::now(), read: tokio::sync::Mutex::new(None) })
    }
}
