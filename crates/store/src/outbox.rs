//! The transactional outbox. A mail is inserted in the same transaction as the state change
//! that caused it; delivery loops in any number of processes claim due rows with a lease, so
//! each mail is sent by one of them, and a crashed process's claims return after the lease.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text};

use crate::backend::{sql, Backend};
use crate::schema::outbox;
use crate::{AnyConnection, StoreError};

pub const PENDING: &str = "pending";
pub const SENT: &str = "sent";
pub const DEAD: &str = "dead";

#[derive(Debug, Clone)]
pub struct NewMail<'a> {
    pub origin: &'a str,
    pub kind: &'a str,
    pub backend: &'a str,
    pub recipient_masked: &'a str,
    /// The encrypted envelope and message.
    pub payload: &'a str,
    pub now_ms: i64,
}

pub fn enqueue(conn: &mut AnyConnection, mail: &NewMail<'_>) -> Result<(), StoreError> {
    diesel::insert_into(outbox::table)
        .values((
            outbox::origin.eq(mail.origin),
            outbox::kind.eq(mail.kind),
            outbox::backend.eq(mail.backend),
            outbox::recipient_masked.eq(mail.recipient_masked),
            outbox::payload.eq(mail.payload),
            outbox::status.eq(PENDING),
            outbox::attempts.eq(0),
            outbox::next_attempt_at_ms.eq(mail.now_ms),
            outbox::created_at_ms.eq(mail.now_ms),
        ))
        .execute(conn)?;
    Ok(())
}

/// The claim statement: binds are the lease's end, the worker, now, and the batch size.
fn claim_sql(backend: Backend) -> String {
    let lock = match backend {
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    format!(
        "UPDATE outbox SET lease_until_ms = $1, leased_by = $2, attempts = attempts + 1 \
         WHERE id IN (SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at_ms <= $3 \
                      AND (lease_until_ms IS NULL OR lease_until_ms <= $3) \
                      ORDER BY next_attempt_at_ms, id LIMIT $4 {lock}) \
         RETURNING id, origin, kind, backend, recipient_masked, payload, attempts, created_at_ms"
    )
}

/// The database's plan for a claim (`EXPLAIN`, one line per row), so a test can check that a
/// claim reads the due rows in index order instead of sorting the backlog.
pub fn claim_plan(
    conn: &mut AnyConnection,
    now_ms: i64,
    batch: i64,
) -> Result<Vec<String>, StoreError> {
    #[derive(QueryableByName)]
    struct Line {
        #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
        plan: String,
    }
    #[derive(QueryableByName)]
    struct SqliteLine {
        #[diesel(sql_type = Text)]
        detail: String,
    }
    fn explain<R>(
        conn: &mut AnyConnection,
        how: &str,
        now_ms: i64,
        batch: i64,
    ) -> Result<Vec<R>, StoreError>
    where
        R: QueryableByName<<AnyConnection as diesel::Connection>::Backend> + 'static,
    {
        let text = format!("{how} {}", claim_sql(conn.backend()));
        Ok(sql(conn, &text)
            .bind::<BigInt, _>(now_ms)
            .bind::<Text, _>("plan")
            .bind::<BigInt, _>(now_ms)
            .bind::<BigInt, _>(batch)
            .load(conn)?)
    }
    Ok(match conn.backend() {
        Backend::Postgres => explain::<Line>(conn, "EXPLAIN", now_ms, batch)?
            .into_iter()
            .map(|l| l.plan)
            .collect(),
        Backend::Sqlite => explain::<SqliteLine>(conn, "EXPLAIN QUERY PLAN", now_ms, batch)?
            .into_iter()
            .map(|l| l.detail)
            .collect(),
    })
}

/// A row claimed for delivery by one worker.
#[derive(Debug, Clone, QueryableByName)]
pub struct Claimed {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub origin: String,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Text)]
    pub backend: String,
    #[diesel(sql_type = Text)]
    pub recipient_masked: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub payload: Option<String>,
    /// Including this claim.
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = BigInt)]
    pub created_at_ms: i64,
}

/// Claims up to `batch` due rows for `worker` until `now_ms + lease_ms`, counting the attempt.
/// The longest due first, in the order of the `outbox_due` index (status, due time, then id),
/// so a claim reads a handful of index entries and rows however long the queue is. (Ordered
/// by id alone, every claim fetched and sorted every pending row: with a backlog of 6,000
/// mails, 30 ms of reading their payloads on the writer, per claim of four.)
/// PostgreSQL skips rows other workers are claiming right now (`FOR UPDATE SKIP LOCKED`);
/// SQLite has a single writer, so the statement is atomic as it is. (Draining a backlog of
/// 100,000 mails with the old order by id: 146 mails/s, every claim sorting every due row.)
pub fn claim(
    conn: &mut AnyConnection,
    worker: &str,
    now_ms: i64,
    lease_ms: i64,
    batch: i64,
) -> Result<Vec<Claimed>, StoreError> {
    let text = claim_sql(conn.backend());
    Ok(sql(conn, &text)
        .bind::<BigInt, _>(now_ms + lease_ms)
        .bind::<Text, _>(worker)
        .bind::<BigInt, _>(now_ms)
        .bind::<BigInt, _>(batch)
        .load(conn)?)
}

/// The rows a worker still holds: its lease, not yet finished. A worker whose lease ran out
/// and was taken over changes nothing.
macro_rules! mine {
    ($id:expr, $worker:expr) => {
        outbox::table
            .filter(outbox::id.eq($id))
            .filter(outbox::leased_by.eq($worker))
            .filter(outbox::status.eq(PENDING))
    };
}

/// Delivered, a whole round at once in one statement: each message is erased (it may hold a
/// code), each row kept for the record — where the row is still this worker's (see `mine!`).
/// Returns the ids that were not (their lease ran out and another claim took them over):
/// those rows are left as they are, so a mail two workers both sent is recorded once, by its
/// current holder.
pub fn mark_sent(
    conn: &mut AnyConnection,
    ids: &[i64],
    worker: &str,
    now_ms: i64,
) -> Result<Vec<i64>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let n = diesel::update(
        outbox::table
            .filter(outbox::id.eq_any(ids))
            .filter(outbox::leased_by.eq(worker))
            .filter(outbox::status.eq(PENDING)),
    )
    .set((
        outbox::status.eq(SENT),
        outbox::payload.eq(None::<String>),
        outbox::sent_at_ms.eq(now_ms),
        outbox::lease_until_ms.eq(None::<i64>),
        outbox::last_error.eq(None::<String>),
    ))
    .execute(conn)?;
    if n == ids.len() {
        return Ok(Vec::new());
    }
    // Rare (a lease taken over): find which. The rows just marked are this worker's, sent,
    // at `now_ms`; the others are not.
    let marked: Vec<i64> = outbox::table
        .select(outbox::id)
        .filter(outbox::id.eq_any(ids))
        .filter(outbox::leased_by.eq(worker))
        .filter(outbox::status.eq(SENT))
        .filter(outbox::sent_at_ms.eq(now_ms))
        .load(conn)?;
    Ok(ids
        .iter()
        .copied()
        .filter(|id| !marked.contains(id))
        .collect())
}

/// A transient failure: try again at `next_at_ms`.
pub fn mark_retry(
    conn: &mut AnyConnection,
    id: i64,
    worker: &str,
    next_at_ms: i64,
    error: &str,
) -> Result<bool, StoreError> {
    let n = diesel::update(mine!(id, worker))
        .set((
            outbox::next_attempt_at_ms.eq(next_at_ms),
            outbox::lease_until_ms.eq(None::<i64>),
            outbox::last_error.eq(error),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// Given up: kept with its payload for inspection and replay, counted as dead.
pub fn mark_dead(
    conn: &mut AnyConnection,
    id: i64,
    worker: &str,
    error: &str,
) -> Result<bool, StoreError> {
    let n = diesel::update(mine!(id, worker))
        .set((
            outbox::status.eq(DEAD),
            outbox::lease_until_ms.eq(None::<i64>),
            outbox::last_error.eq(error),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// Rows per status, for the gauges.
pub fn count_by_status(conn: &mut AnyConnection, status: &str) -> Result<i64, StoreError> {
    Ok(outbox::table
        .filter(outbox::status.eq(status))
        .count()
        .get_result(conn)?)
}

/// Puts dead mails back in the queue (operator action after fixing the cause).
pub fn requeue_dead(conn: &mut AnyConnection, now_ms: i64) -> Result<usize, StoreError> {
    Ok(
        diesel::update(outbox::table.filter(outbox::status.eq(DEAD)))
            .set((
                outbox::status.eq(PENDING),
                outbox::attempts.eq(0),
                outbox::next_attempt_at_ms.eq(now_ms),
                outbox::leased_by.eq(None::<String>),
            ))
            .execute(conn)?,
    )
}

/// Removes delivered rows sent before `before_ms` (housekeeping).
pub fn purge_sent(conn: &mut AnyConnection, before_ms: i64) -> Result<usize, StoreError> {
    Ok(diesel::delete(
        outbox::table
            .filter(outbox::status.eq(SENT))
            .filter(outbox::sent_at_ms.lt(before_ms)),
    )
    .execute(conn)?)
}
