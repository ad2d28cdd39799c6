//! Recovery codes: using one (once, under the recovery-code backoff, with a notice to the
//! owner) and replacing the set.

use authd_domain::two_factor::recovery;
use authd_mail::{Changed, Mail, RecoveryCodeUse};
use authd_ratelimit::Backoff;
use authd_store::{two_factor, users};

use crate::input::MailQuery;
use crate::services::accounts::{active_user, user_guess};
use crate::services::two_factor::{conflict, count_check, new_recovery_set, status};
use crate::ErrorCode;
use crate::{ApiError, AppState};

pub(crate) const TOO_MANY: ErrorCode = ErrorCode::TooManyRecoveryCodeChecks;

/// The caller's account while it has recovery codes (else 409).
async fn with_codes(
    state: &AppState,
    user_id: i64,
) -> Result<(users::User, two_factor::Status), ApiError> {
    let user = active_user(state, user_id).await?;
    let status = status(state, user.id).await?;
    if status.recovery_created_at_ms.is_none() {
        return Err(conflict(ErrorCode::RecoveryCodesUninitialized));
    }
    Ok((user, status))
}

/// Uses a typed recovery code: one conditional update, so a code passes once however many
/// requests race, and the owner's notice commits with it. 401 `RECOVERY_CODE_INVALID` when
/// wrong; counted in the recovery-code backoff.
pub(crate) async fn authenticate(
    state: &AppState,
    user_id: i64,
    ip: std::net::IpAddr,
    typed: String,
    query: &MailQuery,
) -> Result<(), ApiError> {
    let (user, before) = with_codes(state, user_id).await?;
    let user_id = user.id;
    let target = crate::input::notice_target(state, &user, Some(query))?;
    let ok = crate::throttle::guarded(
        state,
        &user_guess(Backoff::RecoveryCode, TOO_MANY, user_id, ip),
        async {
            let Some(code) = recovery::normalize(&typed) else {
                return Ok(false);
            };
            let hash = recovery::hash(&state.two_factor.recovery, user_id, &code);
            // The owner hears of every use: a used code means a lost device, or a leaked set.
            let mail = Mail::RecoveryCodeUsed(RecoveryCodeUse {
                remaining: (before.recovery_unused - 1).max(0),
                changed: Changed::now(&state.clock),
            });
            let to = user.email.clone();
            let notice =
                crate::notices::render(state, mail, target.origin, target.language, to).await?;
            let used = crate::notices::commit(state, vec![notice], move |c, now| {
                let used = two_factor::recovery_use(c, user_id, &hash, now)?;
                Ok((used, used.then_some(0)))
            })
            .await?;
            Ok(used)
        },
    )
    .await?;
    count_check("recovery_code", ok);
    if !ok {
        return Err(ApiError::from(ErrorCode::RecoveryCodeInvalid));
    }
    tracing::info!(user_id, "a recovery code was used");
    Ok(())
}

/// Replaces the recovery codes of an account with a second factor; returns the new set.
pub(crate) async fn reset(
    state: &AppState,
    user_id: i64,
    query: &MailQuery,
) -> Result<Vec<String>, ApiError> {
    let user = active_user(state, user_id).await?;
    let user_id = user.id;
    let target = crate::input::notice_target(state, &user, Some(query))?;
    let to = user.email.clone();
    let mail = Mail::RecoveryCodesReset(Changed::now(&state.clock));
    let notice = crate::notices::render(state, mail, target.origin, target.language, to).await?;
    let (codes, hashes) = new_recovery_set(state, user_id);
    let done = crate::notices::commit(state, vec![notice], move |c, now| {
        two_factor::lock_user(c, user_id)?;
        if !two_factor::enabled(c, user_id)? {
            return Ok((false, None));
        }
        two_factor::recovery_replace(c, user_id, &hashes, now)?;
        Ok((true, Some(0)))
    })
    .await?;
    if !done {
        return Err(conflict(ErrorCode::TwoFactorIsDisabled));
    }
    tracing::info!(user_id, "recovery codes replaced");
    Ok(codes)
}

/// Seconds until the caller's next recovery-code guess from this network may be made.
pub(crate) async fn next_guess(
    state: &AppState,
    user_id: i64,
    ip: std::net::IpAddr,
) -> Result<u64, ApiError> {
    let (user, _) = with_codes(state, user_id).await?;
    let guess = user_guess(Backoff::RecoveryCode, TOO_MANY, user.id, ip);
    crate::throttle::next_attempt(state, &guess).await
}
