//! Accounts: the account a token names, its throttle key, and password confirmation under
//! the password backoff.

use std::future::Future;

use authd_ratelimit::Backoff;
use authd_store::users;

use crate::auth::invalid_token;
use crate::ErrorCode;
use crate::{ApiError, AppState};

pub(crate) fn password_incorrect() -> ApiError {
    ApiError::from(ErrorCode::PasswordIncorrect)
}

/// Runs the password backoff around a check. `key` is the normalised username (also for
/// unknown accounts); the wait counts per account and client network.
pub(crate) async fn guarded_password_check(
    state: &AppState,
    key: &str,
    user_id: Option<i64>,
    ip: std::net::IpAddr,
    check: impl Future<Output = Result<bool, ApiError>>,
) -> Result<bool, ApiError> {
    let guess = crate::throttle::Guess {
        backoff: Backoff::Password,
        account: key.to_owned(),
        user_id,
        ip,
        too_many: ErrorCode::TooManyFailedPasswordChecks,
    };
    crate::throttle::guarded(state, &guess, check).await
}

/// A signed-in user types their password again (a password change, a step-up): checked under
/// the password backoff of the account and client network. 401 `PASSWORD_INCORRECT` when
/// wrong, 500 `NO_PASSWORD_INFO` for an account without one.
pub(crate) async fn confirm_password(
    state: &AppState,
    user: &users::User,
    password: String,
    ip: std::net::IpAddr,
) -> Result<(), ApiError> {
    let stored = user
        .password_hash()
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::from(ErrorCode::NoPasswordInfo))?;
    let hasher = state.hasher.clone();
    let ok = guarded_password_check(state, user.email.as_str(), Some(user.id), ip, async move {
        hasher.verify(stored, password).await
    })
    .await?;
    if ok {
        Ok(())
    } else {
        Err(password_incorrect())
    }
}

/// The throttle key of an account.
pub(crate) fn user_key(user_id: i64) -> String {
    format!("user:{user_id}")
}

/// A signed-in user's guess under a backoff, from the client's IP address.
pub(crate) fn user_guess(
    backoff: authd_ratelimit::Backoff,
    too_many: ErrorCode,
    user_id: i64,
    ip: std::net::IpAddr,
) -> crate::throttle::Guess {
    crate::throttle::Guess {
        backoff,
        account: user_key(user_id),
        user_id: Some(user_id),
        ip,
        too_many,
    }
}

/// The account a token names, while it exists and is not disabled (else 401 `INVALID_TOKEN`).
pub(crate) async fn active_user(state: &AppState, user_id: i64) -> Result<users::User, ApiError> {
    state
        .store
        .read(move |c| users::find_by_id(c, user_id))
        .await?
        .filter(|u| !u.disabled)
        .ok_or_else(invalid_token)
}
