//! DLQ redrives started through the API run as jobs: the request answers at once with the
//! job's id, the job runs here, paced per account (parallel jobs of one account share one
//! pace), and writes its progress to `redrive_jobs` every second, where any replica reads it.
//! At shutdown a job stops between pages and is recorded `interrupted`: nothing is left
//! claimed, and what it did not send stays in the DLQ.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::DefaultDirectRateLimiter;
use hookstream_core::db::redrive_jobs::{self, RedriveJob};
use hookstream_core::db::DbError;
use hookstream_core::delivery::handoff::Handoff;
use hookstream_core::dlq::{self, Filter, RedriveOptions};
use hookstream_core::{AccountId, RedriveJobId};
use moka::sync::Cache;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often a running job writes its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What a job is asked to do.
pub struct JobSpec {
    /// Whose entries.
    pub account: AccountId,
    /// `key:<id>` of the caller.
    pub actor: String,
    /// Which entries (scoped to `account`).
    pub filter: Filter,
    /// The filter as the caller sent it, kept on the job.
    pub filter_json: serde_json::Value,
    /// Entries at most.
    pub limit: u64,
}

/// The jobs of this process.
#[derive(Clone)]
pub struct Redrives {
    tracker: TaskTracker,
    stop: CancellationToken,
    rate: NonZeroU32,
    /// One pace per account that redrove recently.
    paces: Cache<AccountId, Arc<DefaultDirectRateLimiter>>,
}

impl Redrives {
    /// Jobs paced at `rate` entries per second per account.
    pub fn new(rate: NonZeroU32) -> Self {
        Self {
            tracker: TaskTracker::new(),
            stop: CancellationToken::new(),
            rate,
            paces: Cache::builder().time_to_idle(Duration::from_secs(600)).build(),
        }
    }

    /// Records a job and starts it; returns it as first recorded.
    pub async fn start(
        &self,
        pool: &PgPool,
        handoff: Handoff,
        spec: JobSpec,
    ) -> Result<RedriveJob, DbError> {
        let job = redrive_jobs::create(pool, spec.account, &spec.actor, &spec.filter_json).await?;
        let id = job.id;
        let pace = self.paces.get_with(spec.account, || Arc::new(dlq::pace(self.rate)));
        let (pool, stop, rate) = (pool.clone(), self.stop.clone(), self.rate);
        self.tracker.spawn(run(pool, handoff, pace, rate, stop, id, spec));
        Ok(job)
    }

    /// Stops every job between pages and waits up to `within` for them to record it.
    pub async fn shutdown(&self, within: Duration) {
        self.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(within, self.tracker.wait()).await.is_err() {
            tracing::warn!(jobs = self.tracker.len(), "redrive jobs still running at shutdown");
        }
    }
}

async fn run(
    pool: PgPool,
    handoff: Handoff,
    pace: Arc<DefaultDirectRateLimiter>,
    rate: NonZeroU32,
    stop: CancellationToken,
    id: RedriveJobId,
    spec: JobSpec,
) {
    let (done, total) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let options = RedriveOptions {
        handoff: Some(&handoff),
        actor: &spec.actor,
        pace: Some(&pace),
        limit: Some(spec.limit),
        stop: Some(&stop),
        // About a second of work per page: progress is written, and a stop seen, that often.
        page: Some(rate),
    };
    let work = dlq::redrive(&pool, &spec.filter, options, |d, t| {
        done.store(d, Ordering::Relaxed);
        total.store(t, Ordering::Relaxed);
    });
    let mut work = std::pin::pin!(work);
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    let result = loop {
        tokio::select! {
            result = &mut work => break result,
            _ = tick.tick() => {
                let (d, t) = (done.load(Ordering::Relaxed), total.load(Ordering::Relaxed));
                if let Err(e) = redrive_jobs::progress(&pool, id, t, d).await {
                    tracing::warn!(job = %id, error = %e, "cannot record redrive progress");
                }
            }
        }
    };
    let (state, matched, redriven, error) = match result {
        Ok(r) if r.stopped => ("interrupted", r.matched, r.redriven, None),
        Ok(r) => ("done", r.matched, r.redriven, None),
        Err(e) => {
            tracing::error!(job = %id, error = %e, "redrive job failed");
            let redriven = done.load(Ordering::Relaxed);
            ("failed", total.load(Ordering::Relaxed), redriven, Some(e.to_string()))
        }
    };
    if let Err(e) =
        redrive_jobs::finish(&pool, id, state, matched, redriven, error.as_deref()).await
    {
        tracing::error!(job = %id, error = %e, "cannot record the end of a redrive job");
    }
}
