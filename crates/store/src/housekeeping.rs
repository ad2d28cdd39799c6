//! Removal of rows that no longer mean anything: ended throttle windows, expired codes,
//! delivered mails past their keeping time, guessing streaks a day after their last failure.

use diesel::prelude::*;

use crate::schema::rate_limits;
use crate::{backoffs, otps, outbox, refresh_tokens, AnyConnection, StoreError};

/// How long a guessing streak is remembered after its last failure.
pub const BACKOFF_MEMORY_MS: i64 = 24 * 60 * 60 * 1000;

/// What one sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub windows: usize,
    pub codes: usize,
    pub mails: usize,
    pub refresh_tokens: usize,
    pub backoffs: usize,
}

/// One sweep. `longest_window_ms` is the longest configured throttle window: a row whose
/// window started before `now - longest` can no longer refuse anything.
pub fn sweep(
    conn: &mut AnyConnection,
    now_ms: i64,
    longest_window_ms: i64,
    keep_sent_ms: i64,
) -> Result<Swept, StoreError> {
    let windows = diesel::delete(
        rate_limits::table.filter(rate_limits::window_start_ms.lt(now_ms - longest_window_ms)),
    )
    .execute(conn)?;
    let codes = otps::purge_expired(conn, now_ms)?;
    let mails = outbox::purge_sent(conn, now_ms - keep_sent_ms)?;
    let refresh_tokens = refresh_tokens::purge_expired(conn, now_ms)?;
    // A guessing streak is forgotten a day after its last failure, once it refuses nothing.
    let backoffs = backoffs::purge_stale(conn, now_ms - BACKOFF_MEMORY_MS, now_ms)?;
    Ok(Swept {
        windows,
        codes,
        mails,
        refresh_tokens,
        backoffs,
    })
}
