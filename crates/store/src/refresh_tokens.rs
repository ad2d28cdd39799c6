//! Refresh tokens, stored as hashes, grouped in families (one login = one family).

use diesel::prelude::*;

use crate::schema::refresh_tokens as rt;
use crate::{AnyConnection, StoreError};

/// A live token's owner and family.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct LiveToken {
    pub user_id: i64,
    pub family_id: String,
}

pub fn insert(
    conn: &mut AnyConnection,
    user_id: i64,
    token_hash: &str,
    family_id: &str,
    now_ms: i64,
    expires_at_ms: i64,
) -> Result<(), StoreError> {
    diesel::insert_into(rt::table)
        .values((
            rt::user_id.eq(user_id),
            rt::token_hash.eq(token_hash),
            rt::family_id.eq(family_id),
            rt::created_at_ms.eq(now_ms),
            rt::expires_at_ms.eq(expires_at_ms),
        ))
        .execute(conn)?;
    Ok(())
}

/// The token if it is live: not revoked, not expired.
pub fn find_live(
    conn: &mut AnyConnection,
    token_hash: &str,
    now_ms: i64,
) -> Result<Option<LiveToken>, StoreError> {
    Ok(rt::table
        .filter(rt::token_hash.eq(token_hash))
        .filter(rt::revoked_at_ms.is_null())
        .filter(rt::expires_at_ms.gt(now_ms))
        .select((rt::user_id, rt::family_id))
        .first(conn)
        .optional()?)
}

/// Revokes one live token; true if this call did it (of parallel calls, exactly one).
pub fn revoke(conn: &mut AnyConnection, token_hash: &str, now_ms: i64) -> Result<bool, StoreError> {
    let n = diesel::update(
        rt::table
            .filter(rt::token_hash.eq(token_hash))
            .filter(rt::revoked_at_ms.is_null()),
    )
    .set(rt::revoked_at_ms.eq(now_ms))
    .execute(conn)?;
    Ok(n == 1)
}

/// The family of a token that exists but is revoked: a rotated token presented again.
/// The family (login) and user of a revoked token, when `token_hash` is one.
pub fn revoked_family(
    conn: &mut AnyConnection,
    token_hash: &str,
) -> Result<Option<(String, i64)>, StoreError> {
    Ok(rt::table
        .filter(rt::token_hash.eq(token_hash))
        .filter(rt::revoked_at_ms.is_not_null())
        .select((rt::family_id, rt::user_id))
        .first(conn)
        .optional()?)
}

pub fn revoke_family(
    conn: &mut AnyConnection,
    family_id: &str,
    now_ms: i64,
) -> Result<usize, StoreError> {
    Ok(diesel::update(
        rt::table
            .filter(rt::family_id.eq(family_id))
            .filter(rt::revoked_at_ms.is_null()),
    )
    .set(rt::revoked_at_ms.eq(now_ms))
    .execute(conn)?)
}

/// Revokes every live token of a user, except those of `keep_family` (the caller's login).
pub fn revoke_all_for_user(
    conn: &mut AnyConnection,
    user_id: i64,
    keep_family: Option<&str>,
    now_ms: i64,
) -> Result<usize, StoreError> {
    let keep = keep_family.unwrap_or("");
    Ok(diesel::update(
        rt::table
            .filter(rt::user_id.eq(user_id))
            .filter(rt::revoked_at_ms.is_null())
            .filter(rt::family_id.ne(keep)),
    )
    .set(rt::revoked_at_ms.eq(now_ms))
    .execute(conn)?)
}

/// Removes tokens that expired before `before_ms` (housekeeping).
pub fn purge_expired(conn: &mut AnyConnection, before_ms: i64) -> Result<usize, StoreError> {
    Ok(diesel::delete(rt::table.filter(rt::expires_at_ms.lt(before_ms))).execute(conn)?)
}
