//! The batcher against a real SQLite file: what each job of a batch sees and gets. The same
//! properties are checked on both databases, through the real queue, in `tests/api/store.rs`.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

use super::*;

type Answer<T> = oneshot::Receiver<Result<T, StoreError>>;

fn job<T, F>(work: F) -> (Box<dyn Task>, Answer<T>)
where
    T: Send + 'static,
    F: FnMut(&mut AnyConnection) -> Result<T, StoreError> + Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    let task: Box<dyn Task> = Box::new(Job::new(work, reply));
    (task, answer)
}

/// Runs `batch` as the writer does and answers every job.
fn commit(conn: &mut AnyConnection, mut batch: Vec<Box<dyn Task>>) -> Result<(), Arc<StoreError>> {
    let outcome = run_batch(conn, &mut batch).map_err(Arc::new);
    for task in batch {
        task.answer(outcome.as_ref().map(|_| ()));
    }
    outcome
}

fn answer<T>(mut a: Answer<T>) -> Result<T, StoreError> {
    a.try_recv().expect("every job is answered")
}

struct Scratch {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let mut c = AnyConnection::open_sqlite(&path, Duration::from_secs(5), 1024).unwrap();
        c.batch_execute(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE t (n BIGINT NOT NULL UNIQUE,
                 parent BIGINT REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .unwrap();
        Self { _dir: dir, path }
    }

    fn conn(&self) -> AnyConnection {
        AnyConnection::open_sqlite(&self.path, Duration::from_secs(5), 1024).unwrap()
    }
}

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn insert(c: &mut AnyConnection, n: i64) -> Result<(), StoreError> {
    diesel::sql_query(format!("INSERT INTO t (n) VALUES ({n})")).execute(c)?;
    Ok(())
}

fn stored(c: &mut AnyConnection) -> Vec<i64> {
    diesel::sql_query("SELECT n FROM t ORDER BY rowid")
        .load::<N>(c)
        .unwrap()
        .into_iter()
        .map(|r| r.n)
        .collect()
}

#[test]
fn a_failing_job_is_undone_alone_and_the_others_commit() {
    let db = Scratch::new();
    let mut c = db.conn();
    let (a, ra) = job(|c| insert(c, 1));
    let (b, rb) = job(|c| {
        insert(c, 2)?;
        Err::<(), _>(StoreError::NotFound)
    });
    let (d, rd) = job(|c| insert(c, 1)); // a duplicate of the first job's row: its own error
    let (e, re) = job(|c| insert(c, 3));
    commit(&mut c, vec![a, b, d, e]).unwrap();
    assert!(answer(ra).is_ok());
    assert!(matches!(answer(rb), Err(StoreError::NotFound)));
    assert!(matches!(answer(rd), Err(StoreError::Duplicate)));
    assert!(answer(re).is_ok());
    assert_eq!(stored(&mut db.conn()), vec![1, 3]);
}

#[test]
fn jobs_run_in_queue_order_and_see_the_writes_of_the_jobs_before_them() {
    let db = Scratch::new();
    let mut c = db.conn();
    let mut batch = Vec::new();
    let mut answers = Vec::new();
    for n in 0..10 {
        let (t, r) = job(move |c| {
            let seen = stored(c);
            insert(c, n)?;
            Ok(seen)
        });
        batch.push(t);
        answers.push(r);
    }
    commit(&mut c, batch).unwrap();
    for (n, r) in answers.into_iter().enumerate() {
        assert_eq!(answer(r).unwrap(), (0..n as i64).collect::<Vec<_>>());
    }
    assert_eq!(stored(&mut db.conn()), (0..10).collect::<Vec<_>>());
}

#[test]
fn a_failed_commit_fails_every_job_and_stores_nothing() {
    let db = Scratch::new();
    let mut c = db.conn();
    let (a, ra) = job(|c| insert(c, 1));
    // A deferred foreign key is checked at COMMIT: this job succeeds, the commit does not.
    let (b, rb) = job(|c| {
        diesel::sql_query("INSERT INTO t (n, parent) VALUES (2, 99)").execute(c)?;
        Ok(())
    });
    let (d, rd) = job(|c| insert(c, 3));
    assert!(commit(&mut c, vec![a, b, d]).is_err());
    for r in [ra, rb, rd] {
        assert!(matches!(answer(r), Err(StoreError::Batch(_))));
    }
    assert!(stored(&mut db.conn()).is_empty());
    // The connection is usable for the next batch.
    let (e, re) = job(|c| insert(c, 4));
    commit(&mut c, vec![e]).unwrap();
    assert!(answer(re).is_ok());
    assert_eq!(stored(&mut db.conn()), vec![4]);
}

#[test]
fn a_transaction_inside_a_job_nests_as_a_savepoint() {
    let db = Scratch::new();
    let mut c = db.conn();
    let (a, ra) = job(|c| {
        c.transaction(|c| {
            insert(c, 1)?;
            // An inner transaction that fails undoes only itself.
            let inner = c.transaction(|c| {
                insert(c, 2)?;
                Err::<(), _>(StoreError::NotFound)
            });
            assert!(inner.is_err());
            insert(c, 3)
        })
    });
    let (b, rb) = job(|c| c.transaction(|c| insert(c, 4)));
    commit(&mut c, vec![a, b]).unwrap();
    assert!(answer(ra).is_ok());
    assert!(answer(rb).is_ok());
    assert_eq!(stored(&mut db.conn()), vec![1, 3, 4]);
}

#[test]
fn a_job_that_panics_fails_alone() {
    let db = Scratch::new();
    let mut c = db.conn();
    let (a, ra) = job(|c| insert(c, 1));
    let (b, rb) = job(|c| -> Result<(), StoreError> {
        insert(c, 2)?;
        panic!("a bug in a job");
    });
    let (d, rd) = job(|c| insert(c, 3));
    commit(&mut c, vec![a, b, d]).unwrap();
    assert!(answer(ra).is_ok());
    assert!(matches!(answer(rb), Err(StoreError::Panicked)));
    assert!(answer(rd).is_ok());
    assert_eq!(stored(&mut db.conn()), vec![1, 3]);
}

/// Through the queue: jobs queued while the writer is busy are committed together, so a
/// commit failure caused by one of them reaches all of them, and the next batch is fine.
#[tokio::test]
async fn jobs_queued_while_the_writer_is_busy_share_one_commit() {
    let db = Scratch::new();
    let pool = Pool::builder()
        .max_size(1)
        .build_unchecked(Manager::sqlite(&db.path, Duration::from_secs(5)));
    let writers = Writers::start(pool, 1, MAX_BATCH);
    let (open, gate) = std::sync::mpsc::channel::<()>();
    let busy = tokio::spawn({
        let w = writers.clone();
        async move {
            w.submit(move |_| {
                gate.recv().ok();
                Ok(())
            })
            .await
        }
    });
    // Wait until the writer holds the gate job (the queue is empty again).
    while writers.queued() > 0 || !busy_started(&writers).await {}
    let queued: Vec<_> = (0..5)
        .map(|n| {
            let w = writers.clone();
            tokio::spawn(async move {
                w.submit(move |c| {
                    if n == 2 {
                        diesel::sql_query("INSERT INTO t (n, parent) VALUES (2, 99)").execute(c)?;
                        Ok(())
                    } else {
                        insert(c, n)
                    }
                })
                .await
            })
        })
        .collect();
    while writers.queued() < 5 {
        tokio::task::yield_now().await;
    }
    open.send(()).unwrap();
    busy.await.unwrap().unwrap();
    for q in queued {
        assert!(matches!(q.await.unwrap(), Err(StoreError::Batch(_))));
    }
    assert!(stored(&mut db.conn()).is_empty());
    writers.submit(|c| insert(c, 7)).await.unwrap();
    assert_eq!(stored(&mut db.conn()), vec![7]);
}

/// True once the writer has taken the first job (nothing left in the queue for a moment).
async fn busy_started(writers: &Writers) -> bool {
    tokio::time::sleep(Duration::from_millis(20)).await;
    writers.queued() == 0
}

// ---------------------------------------------------------------------------------------
// Deadlocks and serialization failures: set aside, run again in a later batch.

/// What PostgreSQL's deadlock looks like through diesel (SQLSTATE 40P01 has no kind).
fn deadlock() -> StoreError {
    diesel::result::Error::DatabaseError(
        diesel::result::DatabaseErrorKind::Unknown,
        Box::new("deadlock detected".to_owned()),
    )
    .into()
}

fn serialization_failure() -> StoreError {
    diesel::result::Error::DatabaseError(
        diesel::result::DatabaseErrorKind::SerializationFailure,
        Box::new("could not serialize access due to concurrent update".to_owned()),
    )
    .into()
}

#[test]
fn conflicts_are_recognised_and_ordinary_errors_are_not() {
    assert!(deadlock().is_conflict());
    assert!(serialization_failure().is_conflict());
    assert!(StoreError::Batch(Arc::new(deadlock())).is_conflict());
    assert!(!StoreError::NotFound.is_conflict());
    assert!(!StoreError::Duplicate.is_conflict());
    assert!(!StoreError::Panicked.is_conflict());
    let other = diesel::result::Error::DatabaseError(
        diesel::result::DatabaseErrorKind::Unknown,
        Box::new("division by zero".to_owned()),
    );
    assert!(!StoreError::from(other).is_conflict());
}

/// A writer on `db` whose first job is held until the returned sender is used, so that
/// everything queued meanwhile makes one batch.
async fn held_writer(db: &Scratch) -> (Writers, std::sync::mpsc::Sender<()>) {
    let pool = Pool::builder()
        .max_size(1)
        .build_unchecked(Manager::sqlite(&db.path, Duration::from_secs(5)));
    let writers = Writers::start(pool, 1, MAX_BATCH);
    let (open, gate) = std::sync::mpsc::channel::<()>();
    let (held_tx, held) = std::sync::mpsc::channel::<()>();
    tokio::spawn({
        let w = writers.clone();
        async move {
            w.submit(move |_| {
                held_tx.send(()).ok();
                gate.recv().ok();
                Ok(())
            })
            .await
        }
    });
    while held.try_recv().is_err() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    (writers, open)
}

fn counted(runs: &Arc<std::sync::atomic::AtomicUsize>) -> usize {
    runs.load(std::sync::atomic::Ordering::SeqCst)
}

/// Queues a job that inserts `n` and answers what it sees, but whose first `conflicts` runs
/// are aborted as PostgreSQL would abort them (after their insert); with its run counter.
fn queue_conflicting(
    writers: &Writers,
    n: i64,
    conflicts: usize,
) -> (
    tokio::task::JoinHandle<Result<Vec<i64>, StoreError>>,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let runs = Arc::new(AtomicUsize::new(0));
    let w = writers.clone();
    let counter = runs.clone();
    let task = tokio::spawn(async move {
        w.submit(move |c| {
            let run = counter.fetch_add(1, Ordering::SeqCst);
            // Written, then aborted: the savepoint must undo it.
            insert(c, n)?;
            match run {
                r if r >= conflicts => Ok(stored(c)),
                0 => Err(deadlock()),
                _ => Err(serialization_failure()),
            }
        })
        .await
    });
    (task, runs)
}

#[tokio::test]
async fn a_job_aborted_by_a_conflict_runs_again_after_its_batch_committed() {
    let db = Scratch::new();
    let (writers, open) = held_writer(&db).await;
    let mut jobs = Vec::new();
    for (n, conflicts) in [(1, 0), (2, 2), (3, 0)] {
        jobs.push(queue_conflicting(&writers, n, conflicts));
        while writers.queued() < jobs.len() {
            tokio::task::yield_now().await;
        }
    }
    open.send(()).unwrap();
    let mut answers = Vec::new();
    for (task, runs) in jobs {
        answers.push((task.await.unwrap().unwrap(), counted(&runs)));
    }
    // The other jobs committed without the conflicting one; it then headed the next batch
    // (twice: its second run failed too), and was stored once.
    assert_eq!(answers[0], (vec![1], 1));
    assert_eq!(answers[2], (vec![1, 3], 1));
    assert_eq!(answers[1], (vec![1, 3, 2], 3));
    assert_eq!(stored(&mut db.conn()), vec![1, 3, 2]);
}

#[tokio::test]
async fn a_job_that_keeps_conflicting_is_answered_with_its_error_after_max_runs() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let db = Scratch::new();
    let (writers, open) = held_writer(&db).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let job = tokio::spawn({
        let w = writers.clone();
        let runs = runs.clone();
        async move {
            w.submit(move |c| -> Result<(), StoreError> {
                runs.fetch_add(1, Ordering::SeqCst);
                insert(c, 1)?;
                Err(deadlock())
            })
            .await
        }
    });
    while writers.queued() < 1 {
        tokio::task::yield_now().await;
    }
    open.send(()).unwrap();
    let answer = job.await.unwrap();
    assert!(matches!(&answer, Err(e) if e.is_conflict()), "{answer:?}");
    assert_eq!(counted(&runs), MAX_RUNS as usize);
    assert!(stored(&mut db.conn()).is_empty());
    // The writer goes on.
    writers.submit(|c| insert(c, 2)).await.unwrap();
    assert_eq!(stored(&mut db.conn()), vec![2]);
}

#[tokio::test]
async fn a_job_failing_with_an_ordinary_error_runs_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let db = Scratch::new();
    let (writers, open) = held_writer(&db).await;
    open.send(()).unwrap();
    writers.submit(|c| insert(c, 1)).await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let duplicate = writers
        .submit(move |c| {
            r.fetch_add(1, Ordering::SeqCst);
            insert(c, 1)
        })
        .await;
    assert!(matches!(duplicate, Err(StoreError::Duplicate)));
    let r = runs.clone();
    let not_found = writers
        .submit(move |_| -> Result<(), StoreError> {
            r.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::NotFound)
        })
        .await;
    assert!(matches!(not_found, Err(StoreError::NotFound)));
    assert_eq!(counted(&runs), 2);
}

/// A COMMIT that fails with a conflict sends its jobs round again, except those that failed
/// on their own; a job out of runs is answered.
#[test]
fn a_commit_failed_by_a_conflict_runs_its_jobs_again() {
    let db = Scratch::new();
    let mut c = db.conn();
    let (mut ok, _ra) = job(|c| insert(c, 1));
    let (mut own, _rb) = job(|_| Err::<(), _>(StoreError::NotFound));
    let (mut conflicted, _rc) = job(|_| Err::<(), _>(deadlock()));
    for t in [&mut ok, &mut own, &mut conflicted] {
        t.run(&mut c);
    }
    let conflict = Arc::new(serialization_failure());
    let other = Arc::new(StoreError::Corrupt("x".into()));
    assert!(runs_again(&*ok, Err(&conflict)));
    assert!(!runs_again(&*own, Err(&conflict)));
    assert!(runs_again(&*conflicted, Err(&conflict)));
    assert!(!runs_again(&*ok, Err(&other)));
    assert!(!runs_again(&*conflicted, Err(&other)));
    assert!(!runs_again(&*ok, Ok(())));
    assert!(runs_again(&*conflicted, Ok(())));
    for _ in 1..MAX_RUNS {
        ok.run(&mut c);
        conflicted.run(&mut c);
    }
    assert!(!runs_again(&*ok, Err(&conflict)));
    assert!(!runs_again(&*conflicted, Ok(())));
}

// ---------------------------------------------------------------------------------------
// Readers under overload.

/// Readers on `db` with `queue_len` places, whose one thread is held by a job until the
/// returned sender is used.
async fn held_reader(
    db: &Scratch,
    queue_len: usize,
) -> (
    Readers,
    std::sync::mpsc::Sender<()>,
    tokio::task::JoinHandle<Result<(), StoreError>>,
) {
    let pool = Pool::builder()
        .max_size(1)
        .build_unchecked(Manager::sqlite(&db.path, Duration::from_secs(5)));
    let readers = Readers::start_with_queue(pool, 1, queue_len);
    let (open, gate) = std::sync::mpsc::channel::<()>();
    let (held_tx, held) = std::sync::mpsc::channel::<()>();
    let busy = tokio::spawn({
        let r = readers.clone();
        async move {
            r.submit(
                move |_| {
                    held_tx.send(()).ok();
                    gate.recv().ok();
                    Ok(())
                },
                Duration::from_secs(30),
            )
            .await
        }
    });
    while held.try_recv().is_err() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    (readers, open, busy)
}

#[tokio::test]
async fn a_read_answered_busy_because_no_reader_started_it_never_runs() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let db = Scratch::new();
    let (readers, open, busy) = held_reader(&db, 64).await;
    let ran = Arc::new(AtomicUsize::new(0));
    let late: Vec<_> = (0..5)
        .map(|_| {
            let r = readers.clone();
            let ran = ran.clone();
            tokio::spawn(async move {
                r.submit(
                    move |_| {
                        ran.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    },
                    Duration::from_millis(20),
                )
                .await
            })
        })
        .collect();
    for l in late {
        assert!(matches!(l.await.unwrap(), Err(StoreError::Busy)));
    }
    open.send(()).unwrap();
    busy.await.unwrap().unwrap();
    // Queued behind the abandoned jobs on the one thread: when it ran, they were passed.
    let after = ran.clone();
    let seen = readers
        .submit(
            move |_| Ok(after.load(Ordering::SeqCst)),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(seen, 0);
    assert_eq!(counted(&ran), 0);
}

#[tokio::test]
async fn a_read_that_finds_the_queue_full_is_answered_busy_at_once() {
    let db = Scratch::new();
    let (readers, open, busy) = held_reader(&db, 2).await;
    let queued: Vec<_> = (0..2i64)
        .map(|i| {
            let r = readers.clone();
            tokio::spawn(async move { r.submit(move |_| Ok(i), Duration::from_secs(30)).await })
        })
        .collect();
    while readers.queue.len() < 2 {
        tokio::task::yield_now().await;
    }
    let asked = std::time::Instant::now();
    let refused = readers.submit(|_| Ok(()), Duration::from_secs(30)).await;
    assert!(matches!(refused, Err(StoreError::Busy)), "{refused:?}");
    assert!(asked.elapsed() < Duration::from_secs(5));
    open.send(()).unwrap();
    busy.await.unwrap().unwrap();
    for (i, q) in queued.into_iter().enumerate() {
        assert_eq!(q.await.unwrap().unwrap(), i as i64);
    }
}
