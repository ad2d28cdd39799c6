//! The store's concurrency-critical statements, straight against each real database.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use authd_store::{backoffs, housekeeping, limits, AnyConnection, Backend, Store, StoreError};
use authd_tests::{both_dbs, Db, TestApp};
use diesel::connection::SimpleConnection;
use diesel::sql_types::BigInt;
use diesel::{QueryableByName, RunQueryDsl};
use futures_util::future::join_all;

both_dbs!(
    a_limit_taken_from_many_threads_at_once_is_granted_exactly_max_times,
    a_limit_taken_many_times_in_one_batch_is_granted_exactly_max_times,
    a_failing_job_of_a_batch_is_undone_alone,
    a_batch_whose_commit_fails_fails_every_job_and_stores_nothing,
    a_job_that_swallows_a_failed_statement_does_not_spoil_its_batch,
    a_window_rolls_over_and_a_given_back_unit_can_be_taken_again,
    housekeeping_removes_only_what_can_no_longer_matter,
    housekeeping_forgets_guessing_streaks_a_day_after_their_last_failure,
    an_attempt_the_account_refuses_is_not_counted_against_the_network,
    a_job_failing_with_an_ordinary_error_runs_once,
);

fn key(limit: &'static str, hash: &'static str) -> backoffs::Key<'static> {
    backoffs::Key { limit, hash }
}

/// One failure for `network` and the account `acct` at `now`; waits: none for the network,
/// and after `ceiling` failures 60 s for the account.
fn fail(
    c: &mut authd_store::AnyConnection,
    network: &'static str,
    acct: &'static str,
    now: i64,
    ceiling: i32,
) -> backoffs::Attempt {
    backoffs::attempt(
        c,
        key("t", network),
        key("t:account", acct),
        now,
        |_| 0,
        |f| if f >= ceiling { 60_000 } else { 0 },
    )
    .unwrap()
}

async fn store_of(db: Db) -> (TestApp, Store) {
    let app = TestApp::spawn(db).await;
    let store = app.store();
    (app, store)
}

async fn a_limit_taken_from_many_threads_at_once_is_granted_exactly_max_times(db: Db) {
    let (_app, store) = store_of(db).await;
    let takes = (0..24).map(|_| {
        let store = store.clone();
        async move {
            store
                .run(|c| limits::take(c, "t", "k", 3, 60_000, 1_000_000))
                .await
                .unwrap()
        }
    });
    let results = join_all(takes).await;
    let granted = results
        .iter()
        .filter(|r| matches!(r, limits::Take::Granted { .. }))
        .count();
    assert_eq!(granted, 3);
    assert!(results.iter().all(|r| match r {
        limits::Take::Granted { window_start_ms } => *window_start_ms == 1_000_000,
        limits::Take::Denied { until_ms } => *until_ms == 1_060_000,
    }));
}

async fn a_window_rolls_over_and_a_given_back_unit_can_be_taken_again(db: Db) {
    let (_app, store) = store_of(db).await;
    let take = |now: i64| {
        let store = store.clone();
        async move {
            store
                .run(move |c| limits::take(c, "t", "k", 1, 1000, now))
                .await
                .unwrap()
        }
    };
    assert_eq!(
        take(10_000).await,
        limits::Take::Granted {
            window_start_ms: 10_000
        }
    );
    assert_eq!(
        take(10_999).await,
        limits::Take::Denied { until_ms: 11_000 }
    );
    assert_eq!(
        take(11_000).await,
        limits::Take::Granted {
            window_start_ms: 11_000
        }
    );
    store
        .run(|c| limits::give_back(c, "t", "k", 11_000))
        .await
        .unwrap();
    assert_eq!(
        take(11_500).await,
        limits::Take::Granted {
            window_start_ms: 11_000
        }
    );
    // Giving back a unit of an older window changes nothing.
    store
        .run(|c| limits::give_back(c, "t", "k", 10_000))
        .await
        .unwrap();
    assert_eq!(
        take(11_600).await,
        limits::Take::Denied { until_ms: 12_000 }
    );
}

async fn housekeeping_removes_only_what_can_no_longer_matter(db: Db) {
    let (_app, store) = store_of(db).await;
    store
        .run(|c| limits::take(c, "t", "old", 1, 1000, 1_000))
        .await
        .unwrap();
    store
        .run(|c| limits::take(c, "t", "new", 1, 1000, 9_500))
        .await
        .unwrap();
    let swept = store
        .run(|c| housekeeping::sweep(c, 10_000, 1000, 1000))
        .await
        .unwrap();
    assert_eq!(swept.windows, 1);
    // The live window still refuses.
    let again = store
        .run(|c| limits::take(c, "t", "new", 1, 1000, 9_900))
        .await
        .unwrap();
    assert_eq!(again, limits::Take::Denied { until_ms: 10_500 });
}

async fn housekeeping_forgets_guessing_streaks_a_day_after_their_last_failure(db: Db) {
    let (_app, store) = store_of(db).await;
    const DAY: i64 = 24 * 60 * 60 * 1000;
    // A streak last failing at t = 1 s, one at t = 10 s, and one that waits past the sweep.
    store
        .run(|c| Ok(fail(c, "n1", "a1", 1_000, 100)))
        .await
        .unwrap();
    store
        .run(|c| Ok(fail(c, "n2", "a2", 10_000, 100)))
        .await
        .unwrap();
    store
        .run(|c| Ok(fail(c, "n3", "a3", 1_000, 1)))
        .await
        .unwrap();
    let now = DAY + 5_000;
    let swept = store
        .run(move |c| housekeeping::sweep(c, now, 1000, 1000))
        .await
        .unwrap();
    // n1 and a1 go; n2 and a2 failed less than a day ago and stay; a3's wait ended long ago
    // (60 s after t = 1 s), so n3 and a3 go too.
    assert_eq!(swept.backoffs, 4);
    // The younger streak is still on record: its next failure is its second.
    let next = store
        .run(move |c| Ok(fail(c, "n2", "a2", now, 100)))
        .await
        .unwrap();
    assert!(
        matches!(
            next,
            backoffs::Attempt::Admitted {
                network_failures: 2,
                account_failures: 2,
                ..
            }
        ),
        "{next:?}"
    );
    // A forgotten streak starts again at one.
    let fresh = store
        .run(move |c| Ok(fail(c, "n1", "a1", now, 100)))
        .await
        .unwrap();
    assert!(
        matches!(
            fresh,
            backoffs::Attempt::Admitted {
                network_failures: 1,
                ..
            }
        ),
        "{fresh:?}"
    );
}

async fn an_attempt_the_account_refuses_is_not_counted_against_the_network(db: Db) {
    let (_app, store) = store_of(db).await;
    // Two failures from network n1 reach the account ceiling of 2.
    for t in [1_000, 2_000] {
        store
            .run(move |c| Ok(fail(c, "n1", "acct", t, 2)))
            .await
            .unwrap();
    }
    // Network n2 is refused by the account, and nothing is counted for it.
    let refused = store
        .run(|c| Ok(fail(c, "n2", "acct", 3_000, 2)))
        .await
        .unwrap();
    assert_eq!(
        refused,
        backoffs::Attempt::AccountRefused {
            blocked_until_ms: 62_000
        }
    );
    let after = store
        .run(|c| Ok(fail(c, "n2", "acct", 62_000, 100)))
        .await
        .unwrap();
    assert!(
        matches!(
            after,
            backoffs::Attempt::Admitted {
                network_failures: 1,
                account_failures: 3,
                ..
            }
        ),
        "{after:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Group commit (`Store::run`): jobs queued together share one transaction, a savepoint each.

/// A store with one writer, so that every job queued while it is busy lands in its next
/// batch.
async fn one_writer_store(db: Db) -> (TestApp, Store) {
    let app = TestApp::spawn(db).await;
    let store = app.store_with(|o| o.writers = 1);
    (app, store)
}

/// Runs the jobs `make` builds (in order) as one batch: the writer is held busy until all of
/// them are queued, then answers come after their one commit.
async fn one_batch<T, F, Fut>(store: &Store, n: usize, make: F) -> Vec<Result<T, StoreError>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T, StoreError>> + 'static,
{
    let (open, busy) = hold_writer(store).await;
    let jobs: Vec<_> = (0..n).map(|i| actix_rt::spawn(make(i))).collect();
    while store.queued_writes() < n {
        actix_rt::time::sleep(Duration::from_millis(1)).await;
    }
    open.send(()).unwrap();
    busy.await.unwrap().unwrap();
    let mut answers = Vec::new();
    for j in jobs {
        answers.push(j.await.unwrap());
    }
    answers
}

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// A probe table whose foreign key is checked only at COMMIT.
async fn probe_table(store: &Store) {
    store
        .run(|c| {
            c.batch_execute(
                "CREATE TABLE probe_parent (id BIGINT PRIMARY KEY); \
                 CREATE TABLE probe (n BIGINT NOT NULL UNIQUE, parent BIGINT \
                   REFERENCES probe_parent (id) DEFERRABLE INITIALLY DEFERRED)",
            )?;
            Ok(())
        })
        .await
        .unwrap();
}

fn insert(c: &mut AnyConnection, n: i64) -> Result<(), StoreError> {
    diesel::sql_query(format!("INSERT INTO probe (n) VALUES ({n})")).execute(c)?;
    Ok(())
}

async fn probed(store: &Store) -> Vec<i64> {
    store
        .read(|c| {
            Ok(diesel::sql_query("SELECT n FROM probe ORDER BY n")
                .load::<N>(c)?
                .into_iter()
                .map(|r| r.n)
                .collect())
        })
        .await
        .unwrap()
}

async fn a_limit_taken_many_times_in_one_batch_is_granted_exactly_max_times(db: Db) {
    let (_app, store) = one_writer_store(db).await;
    // Each job's conditional upsert sees the counts of the jobs before it in the batch.
    let results = one_batch(&store, 24, |_| {
        let store = store.clone();
        async move {
            store
                .run(|c| limits::take(c, "t", "k", 3, 60_000, 1_000_000))
                .await
        }
    })
    .await;
    let granted = results
        .iter()
        .filter(|r| matches!(r, Ok(limits::Take::Granted { .. })))
        .count();
    assert_eq!(granted, 3);
    assert!(results.iter().all(|r| r.is_ok()));
}

async fn a_failing_job_of_a_batch_is_undone_alone(db: Db) {
    let (_app, store) = one_writer_store(db).await;
    probe_table(&store).await;
    let results = one_batch(&store, 6, |i| {
        let store = store.clone();
        async move {
            store
                .run(move |c| {
                    let n = i as i64;
                    // Every job reads what the jobs before it wrote: order is kept.
                    let before =
                        diesel::sql_query("SELECT count(*) AS n FROM probe").load::<N>(c)?[0].n;
                    insert(c, n)?;
                    match i {
                        1 => Err(StoreError::NotFound),
                        3 => insert(c, 0).map(|()| before), // a duplicate: fails
                        _ => Ok(before),
                    }
                })
                .await
        }
    })
    .await;
    assert_eq!(results[0].as_ref().unwrap(), &0);
    assert!(matches!(results[1], Err(StoreError::NotFound)));
    assert_eq!(results[2].as_ref().unwrap(), &1);
    assert!(matches!(results[3], Err(StoreError::Duplicate)));
    assert_eq!(results[4].as_ref().unwrap(), &2);
    assert_eq!(results[5].as_ref().unwrap(), &3);
    assert_eq!(probed(&store).await, vec![0, 2, 4, 5]);
}

async fn a_batch_whose_commit_fails_fails_every_job_and_stores_nothing(db: Db) {
    let (_app, store) = one_writer_store(db).await;
    probe_table(&store).await;
    let results = one_batch(&store, 4, |i| {
        let store = store.clone();
        async move {
            store
                .run(move |c| {
                    if i == 2 {
                        // Fine until COMMIT checks the deferred foreign key.
                        diesel::sql_query("INSERT INTO probe (n, parent) VALUES (2, 99)")
                            .execute(c)?;
                        Ok(())
                    } else {
                        insert(c, i as i64)
                    }
                })
                .await
        }
    })
    .await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(StoreError::Batch(_)))),
        "{results:?}"
    );
    assert!(probed(&store).await.is_empty());
    // The writer goes on with the next batch.
    store.run(|c| insert(c, 7)).await.unwrap();
    assert_eq!(probed(&store).await, vec![7]);
}

async fn a_job_that_swallows_a_failed_statement_does_not_spoil_its_batch(db: Db) {
    let (_app, store) = one_writer_store(db).await;
    probe_table(&store).await;
    store.run(|c| insert(c, 0)).await.unwrap();
    let backend = store.backend();
    let results = one_batch(&store, 3, |i| {
        let store = store.clone();
        async move {
            store
                .run(move |c| {
                    if i == 1 {
                        // A duplicate whose error the job ignores. PostgreSQL refuses every
                        // later statement of the transaction until it is rolled back.
                        let _ = insert(c, 0);
                        Ok(())
                    } else {
                        insert(c, 10 + i as i64)
                    }
                })
                .await
        }
    })
    .await;
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    match backend {
        // The job is told its transaction failed.
        Backend::Postgres => assert!(results[1].is_err()),
        // SQLite undid the one statement; the job's transaction is fine.
        Backend::Sqlite => assert!(results[1].is_ok()),
    }
    assert_eq!(probed(&store).await, vec![0, 10, 12]);
}

async fn a_job_failing_with_an_ordinary_error_runs_once(db: Db) {
    let (_app, store) = one_writer_store(db).await;
    probe_table(&store).await;
    store.run(|c| insert(c, 1)).await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let duplicate = store
        .run(move |c| {
            r.fetch_add(1, Ordering::SeqCst);
            insert(c, 1)
        })
        .await;
    assert!(
        matches!(duplicate, Err(StoreError::Duplicate)),
        "{duplicate:?}"
    );
    let r = runs.clone();
    let refused = store
        .run(move |c| -> Result<(), StoreError> {
            r.fetch_add(1, Ordering::SeqCst);
            insert(c, 2)?;
            Err(StoreError::NotFound)
        })
        .await;
    assert!(matches!(refused, Err(StoreError::NotFound)), "{refused:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(probed(&store).await, vec![1]);
}

// ---------------------------------------------------------------------------------------
// Deadlocks between writers (PostgreSQL only: SQLite has one writer per file at a time).

/// Holds `store`'s (one) writer with a job until the returned sender is used, so that the
/// jobs queued meanwhile make one batch.
async fn hold_writer(
    store: &Store,
) -> (
    std::sync::mpsc::Sender<()>,
    actix_rt::task::JoinHandle<Result<(), StoreError>>,
) {
    let (open, gate) = std::sync::mpsc::channel::<()>();
    let (held_tx, held) = std::sync::mpsc::channel::<()>();
    let busy = actix_rt::spawn({
        let store = store.clone();
        async move {
            store
                .run(move |_| {
                    held_tx.send(()).ok();
                    gate.recv().ok();
                    Ok(())
                })
                .await
        }
    });
    while held.try_recv().is_err() {
        actix_rt::time::sleep(Duration::from_millis(1)).await;
    }
    (open, busy)
}

/// A rendezvous of two writer threads (with a time limit, so a broken test fails instead of
/// hanging).
#[derive(Default)]
struct Meeting {
    arrived: Mutex<usize>,
    all_here: Condvar,
}

impl Meeting {
    fn arrive(&self) {
        let mut n = self.arrived.lock().unwrap();
        *n += 1;
        self.all_here.notify_all();
        let (n, waited) = self
            .all_here
            .wait_timeout_while(n, Duration::from_secs(20), |n| *n < 2)
            .unwrap();
        assert!(!waited.timed_out(), "the other writer never came ({})", *n);
    }
}

fn bump(c: &mut AnyConnection, id: i64) -> Result<(), StoreError> {
    diesel::sql_query(format!("UPDATE hot SET n = n + 1 WHERE id = {id}")).execute(c)?;
    Ok(())
}

/// Two writers (as two replicas have) each commit a batch of two jobs: the first job locks
/// one hot row and waits until the other writer's first job locked the other; the second job
/// updates the other row. The lock cycle is certain and PostgreSQL aborts one second job with
/// a deadlock. That job is set aside (retrying it in the same transaction would wait again
/// for the other writer, which waits for the row its first job holds), its batch commits,
/// and it runs again afterwards: every job is answered Ok and applied exactly once.
#[actix_web::test]
async fn deadlocked_jobs_of_two_writers_run_again_and_are_applied_once() {
    let app = TestApp::spawn(Db::Postgres).await;
    app.store()
        .run(|c| {
            // Deadlocks are detected after deadlock_timeout (1 s by default); new sessions on
            // this test's database wait less.
            c.batch_execute(
                "CREATE TABLE hot (id BIGINT PRIMARY KEY, n BIGINT NOT NULL); \
                 INSERT INTO hot (id, n) VALUES (1, 0), (2, 0); \
                 DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET deadlock_timeout = %L', \
                   current_database(), '100ms'); END $$",
            )?;
            Ok(())
        })
        .await
        .unwrap();
    // Two stores of one writer each, their connections opened from here on.
    let stores = [
        app.store_with(|o| o.writers = 1),
        app.store_with(|o| o.writers = 1),
    ];
    let runs = Arc::new(AtomicUsize::new(0));
    const ROUNDS: usize = 3;
    for _ in 0..ROUNDS {
        let meeting = Arc::new(Meeting::default());
        let mut gates = Vec::new();
        let mut jobs = Vec::new();
        for (store, (first, second)) in stores.iter().zip([(1, 2), (2, 1)]) {
            gates.push(hold_writer(store).await);
            let (runs1, runs2, meeting) = (runs.clone(), runs.clone(), meeting.clone());
            let s = store.clone();
            jobs.push(actix_rt::spawn(async move {
                s.run(move |c| {
                    runs1.fetch_add(1, Ordering::SeqCst);
                    bump(c, first)?;
                    meeting.arrive();
                    Ok(())
                })
                .await
            }));
            let s = store.clone();
            jobs.push(actix_rt::spawn(async move {
                s.run(move |c| {
                    runs2.fetch_add(1, Ordering::SeqCst);
                    bump(c, second)
                })
                .await
            }));
            while store.queued_writes() < 2 {
                actix_rt::time::sleep(Duration::from_millis(1)).await;
            }
        }
        for (open, _) in &gates {
            open.send(()).unwrap();
        }
        for (_, busy) in gates {
            busy.await.unwrap().unwrap();
        }
        for job in jobs {
            job.await.unwrap().unwrap();
        }
    }
    // Four jobs a round, and one of them ran twice: the deadlock happened and was retried.
    assert_eq!(runs.load(Ordering::SeqCst), ROUNDS * 5);
    let counts = stores[0]
        .read(|c| {
            Ok(diesel::sql_query("SELECT n FROM hot ORDER BY id")
                .load::<N>(c)?
                .into_iter()
                .map(|r| r.n)
                .collect::<Vec<_>>())
        })
        .await
        .unwrap();
    assert_eq!(counts, vec![2 * ROUNDS as i64, 2 * ROUNDS as i64]);
}
