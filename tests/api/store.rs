//! The store's concurrency-critical statements, straight against each real database.

use authd_store::{backoffs, housekeeping, limits, Store};
use authd_tests::{both_dbs, Db, TestApp};
use futures_util::future::join_all;

both_dbs!(
    a_limit_taken_from_many_threads_at_once_is_granted_exactly_max_times,
    a_window_rolls_over_and_a_given_back_unit_can_be_taken_again,
    housekeeping_removes_only_what_can_no_longer_matter,
    housekeeping_forgets_guessing_streaks_a_day_after_their_last_failure,
    an_attempt_the_account_refuses_is_not_counted_against_the_network,
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
