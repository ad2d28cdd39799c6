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
struct FailuresRow {
    #[diesel(sql_type = Integer)]
    failures: i32,
}

/// The outcome of asking to make an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The attempt may be made. It is already counted as the `failures`-th consecutive
    /// failure (a success clears the count), and later attempts wait until `blocked_until_ms`
    /// (in the past when they need not).
    Admitted {
        failures: i32,
        blocked_until_ms: i64,
    },
    /// The key waits until this instant.
    Refused { blocked_until_ms: i64 },
}

/// Admits one attempt for `key_hash`, counting it as a failure before it is checked, or
/// refuses it while the key waits. One statement decides, under the row's lock, so parallel
/// attempts cannot all slip in before the first failure is on record: with the wait set by
/// the admitting statement, a flood of parallel guesses gets no more tries than a sequence.
pub fn attempt(
    conn: &mut AnyConnection,
    limit: &str,
    key_hash: &str,
    now_ms: i64,
    wait_ms: impl Fn(i32) -> i64,
) -> Result<Attempt, StoreError> {
    conn.transaction(|conn| {
        let rows: Vec<FailuresRow> = sql(
            conn,
            "INSERT INTO backoffs (limit_name, key_hash, failures, blocked_until_ms) \
             VALUES ($1, $2, 1, 0) \
             ON CONFLICT (limit_name, key_hash) DO UPDATE SET failures = backoffs.failures + 1 \
             WHERE backoffs.blocked_until_ms <= $3 \
             RETURNING failures",
        )
        .bind::<Text, _>(limit)
        .bind::<Text, _>(key_hash)
        .bind::<BigInt, _>(now_ms)
        .load(conn)?;
        let Some(failures) = rows.first().map(|r| r.failures) else {
            let until: i64 = b::table
                .filter(b::limit_name.eq(limit))
                .filter(b::key_hash.eq(key_hash))
                .select(b::blocked_until_ms)
                .first(conn)?;
            return Ok(Attempt::Refused {
                blocked_until_ms: until,
            });
        };
        let wait = wait_ms(failures);
        if wait <= 0 {
            return Ok(Attempt::Admitted {
                failures,
                blocked_until_ms: 0,
            });
        }
        diesel::update(
            b::table
                .filter(b::limit_name.eq(limit))
                .filter(b::key_hash.eq(key_hash)),
        )
        .set(b::blocked_until_ms.eq(now_ms + wait))
        .execute(conn)?;
        Ok(Attempt::Admitted {
            failures,
            blocked_until_ms: now_ms + wait,
        })
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
