//! Rate-limit windows. The row is the authority: taking a limit is one conditional upsert,
//! correct under concurrent requests, across processes and replicas, and after restarts.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text};

use crate::backend::sql;
use crate::schema::rate_limits;
use crate::{AnyConnection, StoreError};

/// The outcome of taking one unit of a window limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Taken; `window_start_ms` identifies the window, for giving the unit back.
    Granted { window_start_ms: i64 },
    /// Refused until this instant (milliseconds since the epoch).
    Denied { until_ms: i64 },
}

#[derive(QueryableByName)]
struct WindowRow {
    #[diesel(sql_type = BigInt)]
    window_start_ms: i64,
}

/// Takes one unit of `limit` for `key_hash`: at most `max` per `window_ms`. The insert, the
/// window roll-over and the count check happen in one statement.
pub fn take(
    conn: &mut AnyConnection,
    limit: &str,
    key_hash: &str,
    max: i32,
    window_ms: i64,
    now_ms: i64,
) -> Result<Take, StoreError> {
    let granted: Vec<WindowRow> = sql(
        conn,
        "INSERT INTO rate_limits (limit_name, key_hash, window_start_ms, count) VALUES ($1, $2, $3, 1) \
         ON CONFLICT (limit_name, key_hash) DO UPDATE SET \
           window_start_ms = CASE WHEN rate_limits.window_start_ms + $4 <= $3 THEN $3 ELSE rate_limits.window_start_ms END, \
           count = CASE WHEN rate_limits.window_start_ms + $4 <= $3 THEN 1 ELSE rate_limits.count + 1 END \
         WHERE rate_limits.window_start_ms + $4 <= $3 OR rate_limits.count < $5 \
         RETURNING window_start_ms",
    )
    .bind::<Text, _>(limit)
    .bind::<Text, _>(key_hash)
    .bind::<BigInt, _>(now_ms)
    .bind::<BigInt, _>(window_ms)
    .bind::<Integer, _>(max)
    .load(conn)?;
    if let Some(row) = granted.first() {
        return Ok(Take::Granted {
            window_start_ms: row.window_start_ms,
        });
    }
    let start: i64 = rate_limits::table
        .filter(rate_limits::limit_name.eq(limit))
        .filter(rate_limits::key_hash.eq(key_hash))
        .select(rate_limits::window_start_ms)
        .first(conn)?;
    Ok(Take::Denied {
        until_ms: start + window_ms,
    })
}

/// Gives back a unit taken in the window that started at `window_start_ms` (used when the
/// work the unit paid for could not be done). A later window is left alone.
pub fn give_back(
    conn: &mut AnyConnection,
    limit: &str,
    key_hash: &str,
    window_start_ms: i64,
) -> Result<(), StoreError> {
    diesel::update(
        rate_limits::table
            .filter(rate_limits::limit_name.eq(limit))
            .filter(rate_limits::key_hash.eq(key_hash))
            .filter(rate_limits::window_start_ms.eq(window_start_ms))
            .filter(rate_limits::count.gt(0)),
    )
    .set(rate_limits::count.eq(rate_limits::count - 1))
    .execute(conn)?;
    Ok(())
}

/// Until when taking one more unit would be refused; `None` when it would be granted now.
pub fn refused_until(
    conn: &mut AnyConnection,
    limit: &str,
    key_hash: &str,
    max: i32,
    window_ms: i64,
    now_ms: i64,
) -> Result<Option<i64>, StoreError> {
    let row: Option<(i64, i32)> = rate_limits::table
        .filter(rate_limits::limit_name.eq(limit))
        .filter(rate_limits::key_hash.eq(key_hash))
        .select((rate_limits::window_start_ms, rate_limits::count))
        .first(conn)
        .optional()?;
    Ok(row.and_then(|(start, count)| {
        (start + window_ms > now_ms && count >= max).then_some(start + window_ms)
    }))
}
