//! Heartbeats of live processes.

use diesel::prelude::*;

use crate::schema::replicas as r;
use crate::{AnyConnection, StoreError};

/// Records that `id` is alive now.
pub fn heartbeat(conn: &mut AnyConnection, id: &str, now_ms: i64) -> Result<(), StoreError> {
    let n = diesel::update(r::table.find(id))
        .set(r::last_seen_ms.eq(now_ms))
        .execute(conn)?;
    if n == 0 {
        diesel::insert_into(r::table)
            .values((r::id.eq(id), r::last_seen_ms.eq(now_ms)))
            .execute(conn)?;
    }
    Ok(())
}

/// Processes seen since `since_ms` (at least 1: the caller).
pub fn count_live(conn: &mut AnyConnection, since_ms: i64) -> Result<i64, StoreError> {
    let n: i64 = r::table
        .filter(r::last_seen_ms.ge(since_ms))
        .count()
        .get_result(conn)?;
    Ok(n.max(1))
}

/// Forgets a process (clean shutdown) and any not seen since `stale_before_ms`.
pub fn remove(conn: &mut AnyConnection, id: &str, stale_before_ms: i64) -> Result<(), StoreError> {
    diesel::delete(r::table.filter(r::id.eq(id).or(r::last_seen_ms.lt(stale_before_ms))))
        .execute(conn)?;
    Ok(())
}
