//! One-time codes. Only a keyed hash of the code is stored; one live code per (user, purpose).

use diesel::prelude::*;

use crate::schema::otps;
use crate::{AnyConnection, StoreError};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = otps)]
pub struct OtpRow {
    pub id: i64,
    pub user_id: i64,
    pub purpose: String,
    pub code_hash: String,
    pub attempts: i32,
    pub expires_at_ms: i64,
    pub created_at_ms: i64,
    pub origin: String,
    pub language: String,
    pub target: Option<String>,
}

/// What to store for a freshly issued code.
#[derive(Debug, Clone)]
pub struct NewOtp<'a> {
    pub user_id: i64,
    pub purpose: &'a str,
    pub code_hash: &'a str,
    pub expires_at_ms: i64,
    pub now_ms: i64,
    pub origin: &'a str,
    pub language: &'a str,
    pub target: Option<&'a str>,
}

/// Stores a code, replacing any older one for the same user and purpose. Call inside the
/// transaction that also queues its mail.
pub fn replace(conn: &mut AnyConnection, new: &NewOtp<'_>) -> Result<(), StoreError> {
    diesel::delete(
        otps::table
            .filter(otps::user_id.eq(new.user_id))
            .filter(otps::purpose.eq(new.purpose)),
    )
    .execute(conn)?;
    diesel::insert_into(otps::table)
        .values((
            otps::user_id.eq(new.user_id),
            otps::purpose.eq(new.purpose),
            otps::code_hash.eq(new.code_hash),
            otps::attempts.eq(0),
            otps::expires_at_ms.eq(new.expires_at_ms),
            otps::created_at_ms.eq(new.now_ms),
            otps::origin.eq(new.origin),
            otps::language.eq(new.language),
            otps::target.eq(new.target),
        ))
        .execute(conn)?;
    Ok(())
}

/// The live code of a user for a purpose: not expired and not burnt by wrong guesses.
pub fn find_live(
    conn: &mut AnyConnection,
    user_id: i64,
    purpose: &str,
    max_attempts: i32,
    now_ms: i64,
) -> Result<Option<OtpRow>, StoreError> {
    Ok(otps::table
        .filter(otps::user_id.eq(user_id))
        .filter(otps::purpose.eq(purpose))
        .filter(otps::expires_at_ms.gt(now_ms))
        .filter(otps::attempts.lt(max_attempts))
        .select(OtpRow::as_select())
        .first(conn)
        .optional()?)
}

/// Counts a wrong guess against a code. Returns the attempts now recorded (0 when the code is
/// gone). A code that reaches `max_attempts` is deleted: burnt.
pub fn record_failure(
    conn: &mut AnyConnection,
    id: i64,
    max_attempts: i32,
) -> Result<i32, StoreError> {
    conn.transaction(|conn| {
        let n = diesel::update(otps::table.find(id).filter(otps::attempts.lt(max_attempts)))
            .set(otps::attempts.eq(otps::attempts + 1))
            .execute(conn)?;
        if n == 0 {
            return Ok(0);
        }
        let attempts: i32 = otps::table.find(id).select(otps::attempts).first(conn)?;
        if attempts >= max_attempts {
            diesel::delete(otps::table.find(id)).execute(conn)?;
        }
        Ok(attempts)
    })
}

/// Uses a code up: one conditional delete, so of many parallel uses exactly one returns true.
/// The caller has already compared the code (in constant time) against `code_hash`.
pub fn consume(
    conn: &mut AnyConnection,
    id: i64,
    code_hash: &str,
    max_attempts: i32,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n = diesel::delete(
        otps::table
            .find(id)
            .filter(otps::code_hash.eq(code_hash))
            .filter(otps::expires_at_ms.gt(now_ms))
            .filter(otps::attempts.lt(max_attempts)),
    )
    .execute(conn)?;
    Ok(n == 1)
}

/// Removes expired codes (housekeeping).
pub fn purge_expired(conn: &mut AnyConnection, now_ms: i64) -> Result<usize, StoreError> {
    Ok(diesel::delete(otps::table.filter(otps::expires_at_ms.le(now_ms))).execute(conn)?)
}
