//! Guessing backoffs: consecutive failures per key, and until when the next attempt waits.

use diesel::prelude::*;

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

/// Counts a failure and sets the wait `wait_ms(failures)` computes (0 for none). Returns the
/// consecutive failures now recorded. One transaction, so parallel failures all count.
pub fn record_failure(
    conn: &mut AnyConnection,
    limit: &str,
    key_hash: &str,
    now_ms: i64,
    wait_ms: impl Fn(i32) -> i64,
) -> Result<i32, StoreError> {
    conn.transaction(|conn| {
        let updated = diesel::update(
            b::table
                .filter(b::limit_name.eq(limit))
                .filter(b::key_hash.eq(key_hash)),
        )
        .set(b::failures.eq(b::failures + 1))
        .execute(conn)?;
        if updated == 0 {
            let inserted = diesel::insert_into(b::table)
                .values((
                    b::limit_name.eq(limit),
                    b::key_hash.eq(key_hash),
                    b::failures.eq(1),
                    b::blocked_until_ms.eq(0),
                ))
                .execute(conn);
            match inserted {
                Ok(_) => {}
                // Another process inserted it first: count on its row.
                Err(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _,
                )) => {
                    diesel::update(
                        b::table
                            .filter(b::limit_name.eq(limit))
                            .filter(b::key_hash.eq(key_hash)),
                    )
                    .set(b::failures.eq(b::failures + 1))
                    .execute(conn)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let failures: i32 = b::table
            .filter(b::limit_name.eq(limit))
            .filter(b::key_hash.eq(key_hash))
            .select(b::failures)
            .first(conn)?;
        let wait = wait_ms(failures);
        if wait > 0 {
            diesel::update(
                b::table
                    .filter(b::limit_name.eq(limit))
                    .filter(b::key_hash.eq(key_hash)),
            )
            .set(b::blocked_until_ms.eq(now_ms + wait))
            .execute(conn)?;
        }
        Ok(failures)
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
