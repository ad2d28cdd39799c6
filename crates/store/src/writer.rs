//! Group commit. Every write job of the process ([`crate::Store::run`]) goes to a writer
//! thread that owns one connection: it takes a job, drains whatever else is queued (up to a
//! cap), runs them all in ONE transaction with each job in its own savepoint, commits once,
//! and only then answers each caller. SQLite has exactly one writer per process (its single
//! write lock would serialise more anyway); PostgreSQL has `database.writers`.
//!
//! What a job sees is what it saw with a transaction of its own: its statements read its own
//! writes and those of the jobs before it in the batch, which are exactly the ones committed
//! with it; a statement that admits (a limit's conditional upsert) still admits in one atomic
//! statement, so two jobs counting the same key in one batch each see the other's count.
//!
//! - A job that fails (returns `Err`, panics, or leaves PostgreSQL's transaction aborted by a
//!   failed statement it swallowed) is rolled back to its savepoint and gets its error; the
//!   other jobs of the batch are not affected.
//! - If the batch cannot commit, every job of it gets the error: nothing is answered before
//!   the commit.
//! - Jobs run in the order they were queued (but see the retries below).
//! - `Connection::transaction` inside a job nests as a savepoint and works as before; a job
//!   needs none for atomicity, its savepoint already gives it that.
//!
//! Deadlocks and serialization failures (PostgreSQL). With several writers (more than one
//! `database.writers`, or several replicas on one database) two batches can lock hot rows in
//! opposite orders, and PostgreSQL aborts a statement of one of them with a deadlock (SQLSTATE
//! 40P01) or a serialization failure (40001); see [`StoreError::is_conflict`]. Such a job is
//! rolled back to its savepoint and set aside, not answered; the rest of its batch goes on and
//! commits as usual. It is not retried inside the same transaction: rolling back to its
//! savepoint releases only its own locks, not those the jobs before it in the batch took, so
//! the other transaction would still wait for them and the retry would deadlock again. The
//! jobs set aside run again at the head of the writer's next batch (alone when nothing else
//! is queued), that is after their own batch committed and released its locks, and before
//! anything queued since. Rather than a transaction of their own first: they share the next
//! commit with whatever is queued instead of adding one, and since they run first they still
//! hold no lock of another job when they run (only those of the retried jobs before them).
//! A job runs at
//! most [`MAX_RUNS`] times; after that it is answered with its error. A batch whose COMMIT
//! fails with one of those two errors has its jobs run again the same way (all but those that
//! failed on their own). Every retry is logged (a warning with the number of jobs, nothing
//! about their content).
//!
//! So a job's work is `FnMut`: it may run more than once, each time on a clean slate (its
//! earlier run was rolled back), and must only re-issue its statements, with nothing of an
//! earlier run kept outside the database. A retried job runs after jobs queued behind it that
//! committed with its first batch, and sees their writes.
//!
//! A job must never wait for the store itself (call `Store::run`/`read` and block on it):
//! it runs on the writer thread, holding the write transaction, so that wait never ends.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::r2d2::{Pool, PooledConnection};
use tokio::sync::oneshot;

use crate::backend::AnyConnection;
use crate::pool::Manager;
use crate::StoreError;

/// The most jobs committed together. Large enough that a flood's queue drains in a few
/// batches; small enough that PostgreSQL's per-transaction savepoint bookkeeping stays cheap
/// and one batch does not hold its row locks for long.
pub(crate) const MAX_BATCH: usize = 128;

/// How many times a job runs at most when PostgreSQL aborts it for a deadlock or a
/// serialization failure (see the module docs).
pub(crate) const MAX_RUNS: u32 = 3;

/// The work of one [`crate::Store::run`] call, type-erased for the queue.
pub(crate) trait Task: Send {
    /// Runs the work on the writer's connection; true when it succeeded.
    fn run(&mut self, conn: &mut AnyConnection) -> bool;
    /// Marks a job that reported success as failed after all (its savepoint was undone).
    fn fail(&mut self, error: StoreError);
    /// How many times the work ran.
    fn runs(&self) -> u32;
    /// The last run failed (on its own, not by its batch).
    fn failed(&self) -> bool;
    /// The last run failed with a deadlock or a serialization failure.
    fn conflicted(&self) -> bool;
    /// No one waits for the answer any more (the caller went away).
    fn abandoned(&self) -> bool;
    /// Answers the caller: with the job's own outcome when the batch committed, else with
    /// `batch`'s error (a job that failed on its own keeps its own error).
    fn answer(self: Box<Self>, batch: Result<(), &Arc<StoreError>>);
}

struct Job<T, F> {
    work: F,
    runs: u32,
    outcome: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job<T, F> {
    fn new(work: F, reply: oneshot::Sender<Result<T, StoreError>>) -> Self {
        Self {
            work,
            runs: 0,
            outcome: None,
            reply,
        }
    }
}

impl<T, F> Task for Job<T, F>
where
    T: Send,
    F: FnMut(&mut AnyConnection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &mut AnyConnection) -> bool {
        self.runs += 1;
        let work = &mut self.work;
        let outcome =
            catch_unwind(AssertUnwindSafe(|| work(conn))).unwrap_or(Err(StoreError::Panicked));
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn fail(&mut self, error: StoreError) {
        self.outcome = Some(Err(error));
    }

    fn runs(&self) -> u32 {
        self.runs
    }

    fn failed(&self) -> bool {
        matches!(self.outcome, Some(Err(_)))
    }

    fn conflicted(&self) -> bool {
        matches!(&self.outcome, Some(Err(e)) if e.is_conflict())
    }

    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    fn answer(self: Box<Self>, batch: Result<(), &Arc<StoreError>>) {
        let outcome = match (self.outcome, batch) {
            (Some(Err(own)), _) => Err(own),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (_, Err(e)) => Err(StoreError::Batch(e.clone())),
            (None, Ok(())) => Err(StoreError::Panicked),
        };
        // The caller may have gone away (its request was dropped): nothing to tell it.
        let _ = self.reply.send(outcome);
    }
}

/// Whether `job`, run in a batch that ended with `batch`, is set aside to run again rather
/// than answered: it (or the batch's COMMIT) met a deadlock or a serialization failure, and
/// it has runs left. A job that failed on its own keeps its error.
fn runs_again(job: &dyn Task, batch: Result<(), &Arc<StoreError>>) -> bool {
    if job.runs() >= MAX_RUNS {
        return false;
    }
    match batch {
        Ok(()) => job.conflicted(),
        Err(e) => e.is_conflict() && (job.conflicted() || !job.failed()),
    }
}

/// The sending side of the writers' queue. Cheap to clone; when the last clone is dropped
/// the writer threads finish their queue and end.
#[derive(Clone)]
pub(crate) struct Writers {
    queue: crossbeam_channel::Sender<Box<dyn Task>>,
}

impl Writers {
    /// Starts `count` writer threads, each holding one connection of `pool` (opened on the
    /// first job, reopened after it broke).
    pub(crate) fn start(pool: Pool<Manager>, count: u32, max_batch: usize) -> Self {
        let (queue, jobs) = crossbeam_channel::unbounded::<Box<dyn Task>>();
        for i in 0..count.max(1) {
            let jobs = jobs.clone();
            let pool = pool.clone();
            std::thread::Builder::new()
                .name(format!("store-writer-{i}"))
                .spawn(move || write_loop(&jobs, &pool, max_batch.max(1)))
                .expect("cannot start a store writer thread");
        }
        Self { queue }
    }

    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Queues `work` and waits for its answer, which comes after its batch committed. `work`
    /// may run more than once (see the module docs).
    pub(crate) async fn submit<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut AnyConnection) -> Result<T, StoreError> + Send + 'static,
    {
        submit(&self.queue, work).await
    }
}

async fn submit<T, F>(
    queue: &crossbeam_channel::Sender<Box<dyn Task>>,
    work: F,
) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnMut(&mut AnyConnection) -> Result<T, StoreError> + Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    let job: Box<dyn Task> = Box::new(Job::new(work, reply));
    queue.send(job).map_err(|_| StoreError::WriterGone)?;
    answer.await.map_err(|_| StoreError::WriterGone)?
}

/// The threads behind [`crate::Store::read`]: as many as the pool has connections, each
/// running one job at a time on a pooled connection, outside any transaction. A fixed set of
/// threads rather than the async runtimes' blocking pools, which grew to 64 threads (one per
/// client connection, each with its stack and malloc arena) during a flood although at most
/// `pool_max_size` of them could hold a connection.
///
/// Under overload the queue is bounded ([`READ_QUEUE_PER_READER`] jobs per thread; a job that
/// finds it full is answered [`StoreError::Busy`] at once), and a job whose caller stopped
/// waiting (answered `Busy` because no thread started it in time, or a dropped request) is
/// skipped, not run for no one.
#[derive(Clone)]
pub(crate) struct Readers {
    queue: crossbeam_channel::Sender<Box<dyn Task>>,
}

/// Read jobs queued per reader thread at most. Each waits for at most the connect timeout
/// anyway; a longer queue would only hold jobs that will be answered `Busy` after waiting.
pub(crate) const READ_QUEUE_PER_READER: usize = 64;

impl Readers {
    pub(crate) fn start(pool: Pool<Manager>, count: u32) -> Self {
        let count = count.max(1);
        Self::start_with_queue(pool, count, READ_QUEUE_PER_READER * count as usize)
    }

    pub(crate) fn start_with_queue(pool: Pool<Manager>, count: u32, queue_len: usize) -> Self {
        let (queue, jobs) = crossbeam_channel::bounded::<Box<dyn Task>>(queue_len.max(1));
        for i in 0..count.max(1) {
            let jobs = jobs.clone();
            let pool = pool.clone();
            std::thread::Builder::new()
                .name(format!("store-reader-{i}"))
                .spawn(move || {
                    while let Ok(mut job) = jobs.recv() {
                        // The caller gave up (or went away): dropping the job answers no one.
                        if job.abandoned() {
                            continue;
                        }
                        match pool.get() {
                            Ok(mut conn) => {
                                job.run(&mut conn);
                            }
                            Err(e) => job.fail(StoreError::Pool(e)),
                        }
                        job.answer(Ok(()));
                    }
                })
                .expect("cannot start a store reader thread");
        }
        Self { queue }
    }

    /// Queues `work` and waits for its answer. A job that no thread started within
    /// `start_within` (all busy, or no free connection) is answered [`StoreError::Busy`], like
    /// a wait that long for a pooled connection, and does not run any more; so is one that
    /// finds the queue full, at once.
    pub(crate) async fn submit<T, F>(
        &self,
        work: F,
        start_within: Duration,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let (start, started) = oneshot::channel::<()>();
        let (reply, answer) = oneshot::channel();
        // A read runs once: the work is taken out on its (only) run.
        let mut once = Some((start, work));
        let job: Box<dyn Task> = Box::new(Job::new(
            move |c: &mut AnyConnection| {
                let (start, work) = once.take().ok_or(StoreError::Panicked)?;
                // The caller stopped waiting since the thread looked: do not run.
                start.send(()).map_err(|()| StoreError::Busy)?;
                work(c)
            },
            reply,
        ));
        self.queue.try_send(job).map_err(|e| match e {
            crossbeam_channel::TrySendError::Full(_) => StoreError::Busy,
            crossbeam_channel::TrySendError::Disconnected(_) => StoreError::WriterGone,
        })?;
        // An error here means the job ended without running (no connection): its answer says
        // why.
        if tokio::time::timeout(start_within, started).await.is_err() {
            return Err(StoreError::Busy);
        }
        answer.await.map_err(|_| StoreError::WriterGone)?
    }
}

fn write_loop(
    jobs: &crossbeam_channel::Receiver<Box<dyn Task>>,
    pool: &Pool<Manager>,
    max_batch: usize,
) {
    let mut conn: Option<PooledConnection<Manager>> = None;
    let mut batch: Vec<Box<dyn Task>> = Vec::with_capacity(max_batch);
    let mut again: Vec<Box<dyn Task>> = Vec::new();
    loop {
        // Jobs set aside by the last batch (a deadlock, a serialization failure) head this one.
        if batch.is_empty() {
            match jobs.recv() {
                Ok(first) => batch.push(first),
                Err(_) => return,
            }
        }
        while batch.len() < max_batch {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let outcome = match conn.as_mut() {
            Some(c) => Ok(c),
            None => pool.get().map(|c| &mut *conn.insert(c)),
        };
        let outcome = match outcome {
            Ok(c) => {
                let committed = run_batch(c, &mut batch);
                if committed.is_err() && c.broken() {
                    // Dropped back into the pool, which discards a broken connection.
                    conn = None;
                }
                committed
            }
            Err(e) => Err(StoreError::Pool(e)),
        };
        let outcome = outcome.map_err(Arc::new);
        for job in batch.drain(..) {
            let batch_outcome = outcome.as_ref().map(|_| ());
            if runs_again(&*job, batch_outcome) {
                again.push(job);
            } else {
                job.answer(batch_outcome);
            }
        }
        if !again.is_empty() {
            tracing::warn!(
                jobs = again.len(),
                commit_failed = outcome.is_err(),
                "write jobs met a deadlock or a serialization failure; they run again"
            );
        }
        std::mem::swap(&mut batch, &mut again);
    }
}

const SAVEPOINT: &str = "SAVEPOINT authd_job";
const RELEASE: &str = "RELEASE SAVEPOINT authd_job";
const NEXT: &str = "RELEASE SAVEPOINT authd_job; SAVEPOINT authd_job";
const UNDO: &str = "ROLLBACK TO SAVEPOINT authd_job";

/// Runs `batch` in one transaction, each job in its own savepoint, and commits. `Ok` when
/// the transaction committed; the jobs hold their own outcomes.
pub(crate) fn run_batch(
    conn: &mut AnyConnection,
    batch: &mut [Box<dyn Task>],
) -> Result<(), StoreError> {
    // SQLite: take the write lock now (waiting up to the busy timeout for other processes),
    // rather than at the first write, where a stale read snapshot would fail at once.
    match conn {
        AnyConnection::Sqlite(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
        }
        AnyConnection::Postgresql(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN"),
    }?;
    match run_jobs(conn, batch) {
        Ok(()) => {
            <AnyConnection as TransactionManager<AnyConnection>>::commit_transaction(conn)?;
            Ok(())
        }
        Err(e) => {
            // The original error says more than a failed rollback would; a connection whose
            // rollback failed reports itself broken and is replaced.
            let _ =
                <AnyConnection as TransactionManager<AnyConnection>>::rollback_transaction(conn);
            Err(e)
        }
    }
}

/// The savepoints of a batch. The release of one job's savepoint and the start of the next
/// go to the server together (one round trip on PostgreSQL). A release that fails means the
/// job before it left the transaction aborted (PostgreSQL refuses every statement after a
/// failed one until a rollback): that job is undone and answered with the error.
fn run_jobs(conn: &mut AnyConnection, batch: &mut [Box<dyn Task>]) -> Result<(), StoreError> {
    let mut previous: Option<usize> = None;
    for i in 0..batch.len() {
        let opened = match previous {
            None => conn.batch_execute(SAVEPOINT),
            Some(_) => conn.batch_execute(NEXT),
        };
        if let Err(e) = opened {
            let p = previous.expect("the first savepoint has no previous job");
            undo_after_release_failed(conn, &mut *batch[p], e)?;
            conn.batch_execute(SAVEPOINT)?;
        }
        if !batch[i].run(conn) {
            conn.batch_execute(UNDO)?;
        }
        previous = Some(i);
    }
    if let Some(p) = previous {
        if let Err(e) = conn.batch_execute(RELEASE) {
            undo_after_release_failed(conn, &mut *batch[p], e)?;
        }
    }
    Ok(())
}

/// The release of job `job`'s savepoint failed: undo it, and the job fails with `error`.
/// When even the undo fails, the transaction is lost and so is the batch.
fn undo_after_release_failed(
    conn: &mut AnyConnection,
    job: &mut dyn Task,
    error: diesel::result::Error,
) -> Result<(), StoreError> {
    conn.batch_execute(UNDO)?;
    conn.batch_execute(RELEASE)?;
    job.fail(error.into());
    Ok(())
}

#[cfg(test)]
mod tests;
