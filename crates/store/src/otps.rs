//! One-time codes. Only a keyed hash of the code is stored; one live code per (user, purpose).

use authd_domain::Purpose;
use diesel::prelude::*;

use crate::schema::otps;
use crate::{AnyConnection, StoreError};

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
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
    pub purpose: Purpose,
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
            .filter(otps::purpose.eq(new.purpose.as_str())),
    )
    .execute(conn)?;
    diesel::insert_into(otps::table)
        .values((
            otps::user_id.eq(new.user_id),
            otps::purpose.eq(new.purpose.as_str()),
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

/// Admits one guess against the live code of a user for a purpose: one conditional
/// statement counts the guess (`attempts + 1` where `attempts < max_attempts`) and returns the
/// row, so of any number of parallel guesses at most `max_attempts` are ever compared. `None`
/// when there is no live code (none, expired, or burnt). A right guess gives its count back
/// with [`give_back_attempt`]; a wrong one that reaches the maximum burns the code with
/// [`burn_if_spent`].
pub fn admit_guess(
    conn: &mut AnyConnection,
    user_id: i64,
    purpose: Purpose,
    max_attempts: i32,
    now_ms: i64,
) -> Result<Option<OtpRow>, StoreError> {
    use diesel::sql_types::{BigInt, Integer, Text};
    let rows: Vec<OtpRow> = crate::backend::sql(
        conn,
        "UPDATE otps SET attempts = attempts + 1 \
         WHERE user_id = $1 AND purpose = $2 AND expires_at_ms > $3 AND attempts < $4 \
         RETURNING id, user_id, purpose, code_hash, attempts, expires_at_ms, created_at_ms, \
         origin, language, target",
    )
    .bind::<BigInt, _>(user_id)
    .bind::<Text, _>(purpose.as_str())
    .bind::<BigInt, _>(now_ms)
    .bind::<Integer, _>(max_attempts)
    .load(conn)?;
    Ok(rows.into_iter().next())
}

/// A guess admitted by [`admit_guess`] was right: it does not count against the code.
pub fn give_back_attempt(conn: &mut AnyConnection, id: i64) -> Result<(), StoreError> {
    diesel::update(otps::table.find(id).filter(otps::attempts.gt(0)))
        .set(otps::attempts.eq(otps::attempts - 1))
        .execute(conn)?;
    Ok(())
}

/// Deletes a code whose wrong guesses reached the maximum; true when it was burnt now.
pub fn burn_if_spent(
    conn: &mut AnyConnection,
    id: i64,
    max_attempts: i32,
) -> Result<bool, StoreError> {
    Ok(
        diesel::delete(otps::table.find(id).filter(otps::attempts.ge(max_attempts)))
            .execute(conn)?
            == 1,
    )
}

/// Deletes every outstanding code of a user, of every purpose: call inside the transaction
/// that changes the user's address or password, so a code mailed before the change (to an
/// address that may no longer be the owner's) stops working.
pub fn delete_all_for_user(conn: &mut AnyConnection, user_id: i64) -> Result<usize, StoreError> {
    Ok(diesel::delete(otps::table.filter(otps::user_id.eq(user_id))).execute(conn)?)
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

/// What issuing a code costs, stored nowhere: the statements of [`replace`] and the outbox
/// insert of its mail run in a savepoint that is rolled back (in `Store::run`, inside the
/// writer's batch, as an issue is). For addresses without an account, so their answer takes
/// as long as a real one.
pub fn rehearse_issue(
    conn: &mut AnyConnection,
    mail: &crate::outbox::NewMail<'_>,
) -> Result<(), StoreError> {
    use diesel::result::Error as DieselError;
    let rehearsal = conn.transaction::<(), DieselError, _>(|c| {
        diesel::delete(otps::table.filter(otps::user_id.eq(-1))).execute(c)?;
        crate::outbox::enqueue(c, mail).map_err(|_| DieselError::RollbackTransaction)?;
        Err(DieselError::RollbackTransaction)
    });
    match rehearsal {
        Ok(()) | Err(DieselError::RollbackTransaction) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
