//! Which records may be redeliveries, so that the "delivered before?" lookup in the log is
//! made only for them and not once per delivery.
//!
//! A record is read again after a crash or a rebalance: what was read after the last commit
//! comes back. Its attempt can be in the log only if its offset is at or below its
//! partition's progress mark (`log_marks`, raised in the transaction that writes the
//! attempts). So each partition's mark is read once per assignment, and only the records at or
//! below it are looked up. Right after an assignment the previous owner may still be writing
//! its last attempts (and raising the mark), so for `settle` every record is looked up, and
//! the mark is read once that has passed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::OnceCell;
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

/// One assignment of a partition.
struct Mark {
    generation: u64,
    /// When the engine first saw work of this assignment.
    since: Instant,
    /// The partition's progress mark, read once `settle` has passed.
    offset: OnceCell<Option<i64>>,
}

impl Redeliveries {
    /// Looks up every record for `settle` after an assignment, then only those at or below
    /// the partition's mark.
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
        if mark.since.elapsed() < self.settle {
            return true;
        }
        let read = mark.offset.get_or_try_init(|| record::log_mark(&self.pool, &source.tp)).await;
        match read {
            Ok(Some(last)) => source.offset <= *last,
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the delivery log's progress mark; looking the record up");
                true
            }
        }
    }
}

impl Mark {
    fn new(generation: u64) -> Arc<Self> {
        Arc::new(Self { generation, since: Instant::now(), offset: OnceCell::new() })
    }
}
