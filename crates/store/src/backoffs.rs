//! Guessing backoffs: consecutive failures per key, and until when the next attempt waits.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text};

use crate::backend::sql;

use crate::schema::backoffs as b;
use crate::{AnyConnection, StoreError};

/// Until when (ms since the epoch) attempts for this key are refused; `None` when they are
/// not.
pub fn blocked_until(
    conn: &mut AnyConnection,
    limit: &str,
    key_hash: &str,
    now_ms: i64,
) -> Result<Option<i64>, StoreError> {
    Ok(b::table
        .filter(b::limit_name.eq(limit))
        .filter(b::key_hash.eq(key_hash))
        .filter(b::blocked_until_ms.gt(now_ms))
        .select(b::blocked_until_ms)
        .first(conn)
        .optional()?)
}

#[derive(QueryableByName)]
struct UntilRow {
    #[diesel(sql_type = BigInt)]
    blocked_until_ms: i64,
}

#[derive(QueryableByName)]
struct FailuresRow {
    #[diesel(sql_type = Integer)]
    failures: i32,
}

/// Counts a failure and sets the wait `wait_ms(failures)` computes (0 for none); a wait never
/// shortens one already set. Returns the consecutive failures now recorded and until when
/// attempts wait (ms since the epoch; in the past when they do not). The count is one upsert, so parallel failures, in this
/// process or another, all count (a plain insert racing another would abort a PostgreSQL
/// transaction).
pub fn record_failure(
    conn: &mut AnyConnection,
    limit: &str,
    key_hash: &str,
    now_ms: i64,
    wait_ms: impl Fn(i32) -> i64,
) -> Result<(i32, i64), StoreError> {
    conn.transaction(|conn| {
        let rows: Vec<FailuresRow> = sql(
            conn,
            "INSERT INTO backoffs (limit_name, key_hash, failures, blocked_until_ms) \
             VALUES ($1, $2, 1, 0) \
             ON CONFLICT (limit_name, key_hash) DO UPDATE SET failures = backoffs.failures + 1 \
             RETURNING failures",
        )
        .bind::<Text, _>(limit)
        .bind::<Text, _>(key_hash)
        .load(conn)?;
        let failures = rows.first().map_or(1, |r| r.failures);
        let wait = wait_ms(failures);
        if wait <= 0 {
            return Ok((failures, 0));
        }
        let until: Vec<UntilRow> = sql(
            conn,
            "UPDATE backoffs SET blocked_until_ms = \
               CASE WHEN blocked_until_ms > $3 THEN blocked_until_ms ELSE $3 END \
             WHERE limit_name = $1 AND key_hash = $2 RETURNING blocked_until_ms",
        )
        .bind::<Text, _>(limit)
        .bind::<Text, _>(key_hash)
        .bind::<BigInt, _>(now_ms + wait)
        .load(conn)?;
        Ok((
            failures,
            until.first().map_or(now_ms + wait, |r| r.blocked_until_ms),
        ))
    })
}

/// A success ends the streak.
pub fn clear(conn: &mut AnyConnection, limit: &str, key_hash: &str) -> Result<(), StoreError> {
    diesel::delete(
        b::table
            .filter(b::limit_name.eq(limit))
            .filter(b::key_hash.eq(key_hash)),
    )
    .execute(conn)?;
    Ok(())
}
