//! The outbox's marking statements straight against each real database: a delivery round
//! records its sent mails in one statement, and a row whose lease another worker took over is
//! left to that worker, so no mail is ever recorded as sent twice.

use authd_store::{outbox, Store};
use authd_tests::{both_dbs, Db, TestApp};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};

both_dbs!(
    outbox_two_workers_whose_leases_overlap_record_each_mail_sent_once,
    outbox_a_round_marks_all_its_mails_sent_in_one_call_and_retries_stay_pending,
    outbox_a_claim_reads_a_backlog_due_at_one_instant_in_index_order,
);

/// Far beyond the test server's clock, so its own delivery loop never finds these rows due.
const T0: i64 = 4_000_000_000_000_000;
const LEASE: i64 = 100;

async fn store_of(db: Db) -> (TestApp, Store) {
    let app = TestApp::spawn(db).await;
    let store = app.store();
    (app, store)
}

fn enqueue(store: &Store, n: usize) {
    let mut c = store.conn().unwrap();
    for _ in 0..n {
        outbox::enqueue(
            &mut c,
            &outbox::NewMail {
                origin: "default",
                kind: "password_reset",
                backend: "file",
                recipient_masked: "a***@example.org",
                payload: "sealed",
                now_ms: T0,
            },
        )
        .unwrap();
    }
}

#[derive(Debug, PartialEq, Eq, QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<Text>)]
    leased_by: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    sent_at_ms: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    payload: Option<String>,
}

fn rows(store: &Store) -> Vec<Row> {
    let mut c = store.conn().unwrap();
    diesel::sql_query("SELECT id, status, leased_by, sent_at_ms, payload FROM outbox ORDER BY id")
        .load(&mut *c)
        .unwrap()
}

fn ids(claimed: &[outbox::Claimed]) -> Vec<i64> {
    claimed.iter().map(|r| r.id).collect()
}

async fn outbox_two_workers_whose_leases_overlap_record_each_mail_sent_once(db: Db) {
    let (_app, store) = store_of(db).await;
    enqueue(&store, 4);
    let mut c = store.conn().unwrap();

    // A claims all four; its lease runs out while it is still sending, and B takes over the
    // first two.
    let a = ids(&outbox::claim(&mut c, "a", T0, LEASE, 10).unwrap());
    assert_eq!(a.len(), 4);
    assert!(outbox::claim(&mut c, "b", T0 + LEASE - 1, LEASE, 10)
        .unwrap()
        .is_empty());
    let mut b = ids(&outbox::claim(&mut c, "b", T0 + LEASE, LEASE, 2).unwrap());
    b.sort_unstable();
    assert_eq!(b.len(), 2);
    assert!(b.iter().all(|id| a.contains(id)));

    // A records its whole round: only the two it still holds are marked, by A.
    let mut lost = outbox::mark_sent(&mut c, &a, "a", T0 + LEASE + 10).unwrap();
    lost.sort_unstable();
    assert_eq!(lost, b);
    // B records its two.
    assert!(outbox::mark_sent(&mut c, &b, "b", T0 + LEASE + 20)
        .unwrap()
        .is_empty());
    // Either recording again, late, changes nothing.
    assert_eq!(
        outbox::mark_sent(&mut c, &a, "a", T0 + LEASE + 30).unwrap(),
        a
    );
    assert_eq!(
        outbox::mark_sent(&mut c, &b, "b", T0 + LEASE + 30).unwrap(),
        b
    );

    // Each row is recorded once, by the worker that held it last.
    for row in rows(&store) {
        let (worker, at) = if b.contains(&row.id) {
            ("b", T0 + LEASE + 20)
        } else {
            ("a", T0 + LEASE + 10)
        };
        assert_eq!(
            (
                row.status.as_str(),
                row.leased_by.as_deref(),
                row.sent_at_ms,
                row.payload.as_deref()
            ),
            (outbox::SENT, Some(worker), Some(at), None),
            "{row:?}"
        );
    }
    // Nothing is left to claim.
    assert!(outbox::claim(&mut c, "c", T0 + 10 * LEASE, LEASE, 10)
        .unwrap()
        .is_empty());
}

async fn outbox_a_round_marks_all_its_mails_sent_in_one_call_and_retries_stay_pending(db: Db) {
    let (_app, store) = store_of(db).await;
    enqueue(&store, 300);
    let mut c = store.conn().unwrap();
    let round = ids(&outbox::claim(&mut c, "w", T0, LEASE, 300).unwrap());
    assert_eq!(round.len(), 300);
    // One mail failed and waits for a retry; the round's others are sent in one call.
    assert!(outbox::mark_retry(&mut c, round[7], "w", T0 + 5_000, "451 try later").unwrap());
    let sent: Vec<i64> = round.iter().copied().filter(|&id| id != round[7]).collect();
    assert!(outbox::mark_sent(&mut c, &sent, "w", T0 + 1)
        .unwrap()
        .is_empty());
    assert_eq!(outbox::count_by_status(&mut c, outbox::SENT).unwrap(), 299);
    let pending: Vec<Row> = rows(&store)
        .into_iter()
        .filter(|r| r.status == outbox::PENDING)
        .collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, round[7]);
    assert_eq!(pending[0].payload.as_deref(), Some("sealed"));
    // The retry comes back when due, to any worker.
    assert!(outbox::claim(&mut c, "v", T0 + 4_999, LEASE, 10)
        .unwrap()
        .is_empty());
    assert_eq!(
        ids(&outbox::claim(&mut c, "v", T0 + 5_000, LEASE, 10).unwrap()),
        vec![round[7]]
    );
}

/// A backlog whose mails all fell due at the same instant (a burst, or a refill after an
/// outage): the claim takes the oldest ids off the `outbox_due` index, as its plan shows,
/// rather than sorting every due row on each claim (38 ms per claim with 100,000 pending on
/// PostgreSQL before the index held the id).
async fn outbox_a_claim_reads_a_backlog_due_at_one_instant_in_index_order(db: Db) {
    let (_app, store) = store_of(db).await;
    let mut c = store.conn().unwrap();
    let fill = match c.backend() {
        authd_store::Backend::Postgres => format!(
            "INSERT INTO outbox (origin, kind, backend, recipient_masked, payload, status, attempts, \
             next_attempt_at_ms, created_at_ms) SELECT 'default', 'password_reset', 'file', \
             'a***@example.org', 'sealed', 'pending', 0, {T0}, {T0} FROM generate_series(1, 20000)"
        ),
        authd_store::Backend::Sqlite => format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) \
             INSERT INTO outbox (origin, kind, backend, recipient_masked, payload, status, attempts, \
             next_attempt_at_ms, created_at_ms) SELECT 'default', 'password_reset', 'file', \
             'a***@example.org', 'sealed', 'pending', 0, {T0}, {T0} FROM n"
        ),
    };
    diesel::sql_query(fill).execute(&mut *c).unwrap();
    diesel::sql_query("ANALYZE outbox")
        .execute(&mut *c)
        .unwrap();

    let plan = outbox::claim_plan(&mut c, T0 + 1, 32).unwrap();
    let text = plan.join("\n");
    assert!(
        text.contains("outbox_due"),
        "the claim uses the index:\n{text}"
    );
    assert!(
        !text.contains("Sort") && !text.contains("TEMP B-TREE"),
        "the claim sorts the backlog:\n{text}"
    );

    let first: i64 = {
        #[derive(QueryableByName)]
        struct Min {
            #[diesel(sql_type = BigInt)]
            id: i64,
        }
        diesel::sql_query("SELECT min(id) AS id FROM outbox")
            .get_result::<Min>(&mut *c)
            .unwrap()
            .id
    };
    let claimed = outbox::claim(&mut c, "w1", T0 + 1, LEASE, 32).unwrap();
    let mut got = ids(&claimed);
    got.sort_unstable();
    assert_eq!(
        got,
        (first..first + 32).collect::<Vec<_>>(),
        "the oldest 32, by id"
    );
}
