//! The store's concurrency-critical statements, straight against each real database.

use authd_store::{housekeeping, limits, Store};
use authd_tests::{both_dbs, Db, TestApp};
use futures_util::future::join_all;

both_dbs!(
    a_limit_taken_from_many_threads_at_once_is_granted_exactly_max_times,
    a_window_rolls_over_and_a_given_back_unit_can_be_taken_again,
    housekeeping_removes_only_what_can_no_longer_matter,
);

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
