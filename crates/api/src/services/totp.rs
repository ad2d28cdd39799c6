//! TOTP as a second factor: the pending secret of a setup, enabling it with a first code,
//! and checking codes under the TOTP backoff, each step usable once.

use authd_domain::two_factor::totp;
use authd_mail::Origin;
use authd_ratelimit::Backoff;
use authd_store::two_factor;

use crate::input::MailQuery;
use crate::services::accounts::{active_user, user_guess};
use crate::services::two_factor::{conflict, count_check, enable_method, notice_target, Method};
use crate::ErrorCode;
use crate::{ApiError, AppState};

const TOO_MANY: ErrorCode = ErrorCode::TooManyTotpChecks;

fn invalid() -> ApiError {
    ApiError::from(ErrorCode::TotpInvalid)
}

fn context(user_id: i64) -> Vec<u8> {
    format!("user:{user_id}").into_bytes()
}

fn open_secret(state: &AppState, user_id: i64, sealed: &str) -> Result<totp::Secret, ApiError> {
    state
        .two_factor
        .totp
        .open(sealed, &context(user_id))
        .ok()
        .and_then(totp::Secret::from_bytes)
        .ok_or_else(|| {
            ApiError::internal_code(
                ErrorCode::TotpCorrupt,
                format!(
                    "the TOTP secret of user {user_id} cannot be decrypted with the configured key"
                ),
            )
        })
}

/// Starts a setup: a new secret, stored encrypted as pending, and its `otpauth://` URL
/// named after the origin's product.
pub(crate) async fn setup(
    state: &AppState,
    user_id: i64,
    origin: &Origin,
) -> Result<String, ApiError> {
    let issuer = state.settings.origin(origin.as_str()).map_or_else(
        || state.settings.tokens.issuer.clone(),
        |o| o.product_name.clone(),
    );
    let user = active_user(state, user_id).await?;
    let secret = totp::Secret::generate();
    let sealed = state
        .two_factor
        .totp
        .seal(secret.as_bytes(), &context(user.id));
    state
        .store
        .run(move |c| two_factor::totp_set_pending(c, user_id, &sealed))
        .await?;
    Ok(totp::otpauth_url(&secret, &issuer, user.email.as_str()))
}

/// Enables the pending secret with a code of it, under the TOTP backoff. Returns the new
/// recovery codes (empty when a further method kept the existing set).
pub(crate) async fn enable(
    state: &AppState,
    user_id: i64,
    ip: std::net::IpAddr,
    code: String,
    query: &MailQuery,
) -> Result<Vec<String>, ApiError> {
    let user = &active_user(state, user_id).await?;
    let notice = notice_target(state, user, query)?;
    let user_id = user.id;
    let row = state
        .store
        .read(move |c| two_factor::totp_find(c, user_id))
        .await?;
    let Some(pending) = row.and_then(|r| r.pending_secret_enc) else {
        return Err(conflict(ErrorCode::TotpUninitialized));
    };
    let mut codes = None;
    let ok = crate::throttle::guarded(
        state,
        &user_guess(Backoff::Totp, TOO_MANY, user_id, ip),
        async {
            let secret = open_secret(state, user_id, &pending)?;
            let Some(step) = secret.accepts(&code, state.clock.now_secs(), None) else {
                return Ok(false);
            };
            codes = enable_method(state, user, Method::Totp, notice, move |c, now| {
                two_factor::totp_enable(c, user_id, &pending, step, now)
            })
            .await?;
            Ok(codes.is_some())
        },
    )
    .await?;
    count_check("totp", ok);
    match codes {
        Some(recovery_codes) if ok => Ok(recovery_codes),
        _ => Err(invalid()),
    }
}

/// Checks a code of the enabled secret under the TOTP backoff; a step already used is
/// refused (and logged as a replay). 401 `TOTP_INVALID` when wrong.
pub(crate) async fn authenticate(
    state: &AppState,
    user_id: i64,
    ip: std::net::IpAddr,
    code: String,
) -> Result<(), ApiError> {
    let user = active_user(state, user_id).await?;
    let user_id = user.id;
    let row = state
        .store
        .read(move |c| two_factor::totp_find(c, user_id))
        .await?;
    let Some((sealed, last_step)) = row
        .filter(|r| r.enabled_at_ms.is_some())
        .and_then(|r| r.secret_enc.map(|s| (s, r.last_step)))
    else {
        return Err(conflict(ErrorCode::TotpUninitialized));
    };
    let ok = crate::throttle::guarded(
        state,
        &user_guess(Backoff::Totp, TOO_MANY, user_id, ip),
        async {
            let secret = open_secret(state, user_id, &sealed)?;
            let now = state.clock.now_secs();
            let Some(step) = secret.accepts(&code, now, last_step) else {
                if secret.accepts(&code, now, None).is_some() {
                    replayed(user_id, ip);
                }
                return Ok(false);
            };
            // The database decides which of parallel requests with one code wins.
            let won = state
                .store
                .run(move |c| two_factor::totp_accept_step(c, user_id, &sealed, step))
                .await?;
            if !won {
                replayed(user_id, ip);
            }
            Ok(won)
        },
    )
    .await?;
    count_check("totp", ok);
    if ok {
        Ok(())
    } else {
        Err(invalid())
    }
}

fn replayed(user_id: i64, ip: std::net::IpAddr) {
    tracing::warn!(
        security_event = "totp_replay",
        user_id,
        client_ip = %ip,
        "a TOTP code for a step already used was presented again"
    );
}

/// Seconds until the next TOTP guess of the caller from this network may be made.
pub(crate) async fn next_guess(
    state: &AppState,
    user_id: i64,
    ip: std::net::IpAddr,
) -> Result<u64, ApiError> {
    let user = active_user(state, user_id).await?;
    let user_id = user.id;
    if state
        .store
        .read(move |c| two_factor::totp_find(c, user_id))
        .await?
        .is_none()
    {
        return Err(conflict(ErrorCode::TotpUninitialized));
    }
    crate::throttle::next_attempt(state, &user_guess(Backoff::Totp, TOO_MANY, user_id, ip)).await
}
