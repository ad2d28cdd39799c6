//! Second factors: email OTP, TOTP and recovery codes. Every change to a user's methods runs
//! in one transaction that first calls [`lock_user`], so two changes of one account never
//! interleave (PostgreSQL row lock; SQLite has one writer).

use authd_domain::Email;
use diesel::prelude::*;

use crate::schema::{email_otp_methods as eo, recovery_codes as rc, totp_secrets as ts, users};
use crate::{AnyConnection, StoreError};

/// Serialises the two-factor changes of one account for the rest of the transaction.
pub fn lock_user(conn: &mut AnyConnection, user_id: i64) -> Result<bool, StoreError> {
    let n = diesel::update(users::table.find(user_id))
        .set(users::updated_at.eq(users::updated_at))
        .execute(conn)?;
    Ok(n == 1)
}

/// An active email OTP method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailOtp {
    pub email: Email,
    pub enabled_at_ms: i64,
}

/// The state of a user's second factors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Active email OTP.
    pub email_otp: Option<EmailOtp>,
    /// Email OTP was set up (a setup awaits its code) or is active.
    pub email_otp_known: bool,
    /// When TOTP was enabled, if it is active.
    pub totp_enabled_at_ms: Option<i64>,
    /// A TOTP secret exists, active or pending.
    pub totp_known: bool,
    /// When the current recovery code set was made, if there is one.
    pub recovery_created_at_ms: Option<i64>,
    /// Unused codes in the current set.
    pub recovery_unused: i64,
}

impl Status {
    /// Two-factor authentication is on while any method is.
    pub fn enabled(&self) -> bool {
        self.email_otp.is_some() || self.totp_enabled_at_ms.is_some()
    }
}

pub fn status(conn: &mut AnyConnection, user_id: i64) -> Result<Status, StoreError> {
    let email: Option<(Option<String>, bool, Option<i64>)> = eo::table
        .find(user_id)
        .select((eo::email, eo::setup_pending, eo::enabled_at_ms))
        .first(conn)
        .optional()?;
    let totp: Option<Option<i64>> = ts::table
        .find(user_id)
        .select(ts::enabled_at_ms)
        .first(conn)
        .optional()?;
    let codes: Vec<(i64, Option<i64>)> = rc::table
        .filter(rc::user_id.eq(user_id))
        .select((rc::created_at_ms, rc::used_at_ms))
        .load(conn)?;
    let email_otp = match &email {
        Some((Some(address), _, Some(at))) => Some(EmailOtp {
            email: Email::parse(address).map_err(|e| {
                StoreError::Corrupt(format!("email_otp address of user {user_id}: {e}"))
            })?,
            enabled_at_ms: *at,
        }),
        _ => None,
    };
    Ok(Status {
        email_otp_known: email
            .as_ref()
            .is_some_and(|(_, pending, at)| *pending || at.is_some()),
        email_otp,
        totp_enabled_at_ms: totp.flatten(),
        totp_known: totp.is_some(),
        recovery_created_at_ms: codes.iter().map(|(c, _)| *c).min(),
        recovery_unused: i64::try_from(codes.iter().filter(|(_, u)| u.is_none()).count())
            .unwrap_or(i64::MAX),
    })
}

pub fn enabled(conn: &mut AnyConnection, user_id: i64) -> Result<bool, StoreError> {
    let email: i64 = eo::table
        .filter(eo::user_id.eq(user_id))
        .filter(eo::enabled_at_ms.is_not_null())
        .count()
        .get_result(conn)?;
    if email > 0 {
        return Ok(true);
    }
    let totp: i64 = ts::table
        .filter(ts::user_id.eq(user_id))
        .filter(ts::enabled_at_ms.is_not_null())
        .count()
        .get_result(conn)?;
    Ok(totp > 0)
}

// ---- email OTP ----

/// Marks that a setup code was sent; the active address, if any, stays in use until the new
/// one is confirmed.
pub fn email_otp_setup(conn: &mut AnyConnection, user_id: i64) -> Result<(), StoreError> {
    let n = diesel::update(eo::table.find(user_id))
        .set(eo::setup_pending.eq(true))
        .execute(conn)?;
    if n == 0 {
        diesel::insert_into(eo::table)
            .values((
                eo::user_id.eq(user_id),
                eo::email.eq(None::<String>),
                eo::setup_pending.eq(true),
                eo::enabled_at_ms.eq(None::<i64>),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Activates email OTP with a confirmed address.
pub fn email_otp_enable(
    conn: &mut AnyConnection,
    user_id: i64,
    email: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    diesel::delete(eo::table.find(user_id)).execute(conn)?;
    diesel::insert_into(eo::table)
        .values((
            eo::user_id.eq(user_id),
            eo::email.eq(Some(email)),
            eo::setup_pending.eq(false),
            eo::enabled_at_ms.eq(Some(now_ms)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Turns email OTP off. False when it was not on.
pub fn email_otp_disable(conn: &mut AnyConnection, user_id: i64) -> Result<bool, StoreError> {
    let n = diesel::delete(
        eo::table
            .filter(eo::user_id.eq(user_id))
            .filter(eo::enabled_at_ms.is_not_null()),
    )
    .execute(conn)?;
    Ok(n == 1)
}

// ---- TOTP ----

#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct TotpRow {
    pub secret_enc: Option<String>,
    pub pending_secret_enc: Option<String>,
    pub enabled_at_ms: Option<i64>,
    pub last_step: Option<i64>,
}

pub fn totp_find(conn: &mut AnyConnection, user_id: i64) -> Result<Option<TotpRow>, StoreError> {
    Ok(ts::table
        .find(user_id)
        .select((
            ts::secret_enc,
            ts::pending_secret_enc,
            ts::enabled_at_ms,
            ts::last_step,
        ))
        .first(conn)
        .optional()?)
}

/// Stores a new pending secret, replacing any pending one; an active secret stays.
pub fn totp_set_pending(
    conn: &mut AnyConnection,
    user_id: i64,
    secret_enc: &str,
) -> Result<(), StoreError> {
    let n = diesel::update(ts::table.find(user_id))
        .set(ts::pending_secret_enc.eq(Some(secret_enc)))
        .execute(conn)?;
    if n == 0 {
        diesel::insert_into(ts::table)
            .values((
                ts::user_id.eq(user_id),
                ts::secret_enc.eq(None::<String>),
                ts::pending_secret_enc.eq(Some(secret_enc)),
                ts::enabled_at_ms.eq(None::<i64>),
                ts::last_step.eq(None::<i64>),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Makes the pending secret the active one, accepting `step`. False when the pending secret
/// is no longer `pending_enc` (another request enabled or replaced it first).
pub fn totp_enable(
    conn: &mut AnyConnection,
    user_id: i64,
    pending_enc: &str,
    step: i64,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n = diesel::update(
        ts::table
            .filter(ts::user_id.eq(user_id))
            .filter(ts::pending_secret_enc.eq(pending_enc)),
    )
    .set((
        ts::secret_enc.eq(Some(pending_enc)),
        ts::pending_secret_enc.eq(None::<String>),
        ts::enabled_at_ms.eq(Some(now_ms)),
        ts::last_step.eq(Some(step)),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Records `step` as accepted for the active secret `secret_enc`, only if it is later than the
/// last accepted one. One conditional update: of parallel requests with the same code, exactly
/// one gets true.
pub fn totp_accept_step(
    conn: &mut AnyConnection,
    user_id: i64,
    secret_enc: &str,
    step: i64,
) -> Result<bool, StoreError> {
    let n = diesel::update(
        ts::table
            .filter(ts::user_id.eq(user_id))
            .filter(ts::secret_enc.eq(secret_enc))
            .filter(ts::enabled_at_ms.is_not_null())
            .filter(ts::last_step.is_null().or(ts::last_step.lt(step))),
    )
    .set(ts::last_step.eq(Some(step)))
    .execute(conn)?;
    Ok(n == 1)
}

/// Turns TOTP off (and forgets any pending secret). False when it was not on.
pub fn totp_disable(conn: &mut AnyConnection, user_id: i64) -> Result<bool, StoreError> {
    let n = diesel::delete(
        ts::table
            .filter(ts::user_id.eq(user_id))
            .filter(ts::enabled_at_ms.is_not_null()),
    )
    .execute(conn)?;
    Ok(n == 1)
}

// ---- recovery codes ----

/// Replaces the user's recovery codes with a new set (keyed hashes).
pub fn recovery_replace(
    conn: &mut AnyConnection,
    user_id: i64,
    hashes: &[String],
    now_ms: i64,
) -> Result<(), StoreError> {
    recovery_delete(conn, user_id)?;
    for hash in hashes {
        diesel::insert_into(rc::table)
            .values((
                rc::user_id.eq(user_id),
                rc::code_hash.eq(hash),
                rc::created_at_ms.eq(now_ms),
                rc::used_at_ms.eq(None::<i64>),
            ))
            .execute(conn)?;
    }
    Ok(())
}

pub fn recovery_delete(conn: &mut AnyConnection, user_id: i64) -> Result<usize, StoreError> {
    Ok(diesel::delete(rc::table.filter(rc::user_id.eq(user_id))).execute(conn)?)
}

/// Uses up the code with this hash. True for exactly one caller, however many race.
pub fn recovery_use(
    conn: &mut AnyConnection,
    user_id: i64,
    hash: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n = diesel::update(
        rc::table
            .filter(rc::user_id.eq(user_id))
            .filter(rc::code_hash.eq(hash))
            .filter(rc::used_at_ms.is_null()),
    )
    .set(rc::used_at_ms.eq(Some(now_ms)))
    .execute(conn)?;
    Ok(n == 1)
}

/// Removes every second factor of a user and the recovery codes, in one transaction (the
/// operator's way out for an owner who lost them all). Returns the rows removed. Called by
/// the CLI on a pooled connection, outside any write batch: the transaction is needed there.
pub fn remove_all(conn: &mut AnyConnection, user_id: i64) -> Result<usize, StoreError> {
    conn.transaction(|conn| {
        lock_user(conn, user_id)?;
        let mut n = diesel::delete(eo::table.find(user_id)).execute(conn)?;
        n += diesel::delete(ts::table.find(user_id)).execute(conn)?;
        n += recovery_delete(conn, user_id)?;
        Ok(n)
    })
}
