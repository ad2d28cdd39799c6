//! Email OTP as a second factor: confirming the address, enabling it, and the codes mailed
//! for each login, under the mail window and the emailed-code backoff.

use authd_mail::{CodeKind, Origin};
use authd_otp::Purpose;
use authd_ratelimit::Limit;
use authd_store::{two_factor, users};

use crate::error::otp_invalid;
use crate::input::MailTarget;
use crate::services::accounts::{active_user, user_key};
use crate::services::codes::{check, send_code, CodeGuesser, CodeMail};
use crate::services::two_factor::{conflict, count_check, enable_method, status, Method};
use crate::ErrorCode;
use crate::{ApiError, AppState};

pub(crate) const TOO_MANY: ErrorCode = ErrorCode::TooManyOtpEmails;

/// Enables email OTP with the code mailed to the address of the setup. Returns the new
/// recovery codes (empty when a further method kept the existing set).
pub(crate) async fn enable(
    state: &AppState,
    user_id: i64,
    ip: std::net::IpAddr,
    code: String,
) -> Result<Vec<String>, ApiError> {
    let user = active_user(state, user_id).await?;
    if !status(state, user.id).await?.email_otp_known {
        return Err(conflict(ErrorCode::EmailOtpUninitialized));
    }
    let verified = check(
        state,
        CodeGuesser::user(user.id, ip),
        Purpose::EmailOtpSetup,
        code,
    )
    .await?;
    let Some(address) = verified.target().map(str::to_owned) else {
        return Err(otp_invalid());
    };
    let notice = (
        Origin::configured_or_default(&state.settings, verified.origin()),
        Some(verified.language().to_owned()),
    );
    let user_id = user.id;
    enable_method(state, &user, Method::EmailOtp, notice, move |c, now| {
        if !verified.consume(c, now)? {
            return Ok(false);
        }
        two_factor::email_otp_enable(c, user_id, &address, now)?;
        Ok(true)
    })
    .await?
    .ok_or_else(otp_invalid)
}

/// Mails a login code to the confirmed address, under the account's mail window.
pub(crate) async fn challenge(
    state: &AppState,
    user_id: i64,
    target: MailTarget,
) -> Result<(), ApiError> {
    let user: users::User = active_user(state, user_id).await?;
    let Some(method) = status(state, user.id).await?.email_otp else {
        return Err(conflict(ErrorCode::EmailOtpUninitialized));
    };
    let mail = CodeMail {
        purpose: Purpose::EmailOtpChallenge,
        kind: CodeKind::EmailOtpChallenge,
        to: method.email.clone(),
        target,
        confirms: None,
    };
    send_code(state, Limit::OtpMail, TOO_MANY, user.id, mail, async {
        Ok(())
    })
    .await
}

/// Checks and uses up a mailed login code under the emailed-code backoff.
pub(crate) async fn authenticate(
    state: &AppState,
    user_id: i64,
    ip: std::net::IpAddr,
    code: String,
) -> Result<(), ApiError> {
    let user = active_user(state, user_id).await?;
    if status(state, user.id).await?.email_otp.is_none() {
        return Err(conflict(ErrorCode::EmailOtpInactive));
    }
    let guesser = CodeGuesser::user(user.id, ip);
    let verified = match check(state, guesser, Purpose::EmailOtpChallenge, code).await {
        Ok(v) => v,
        Err(e) => {
            count_check("email_otp", false);
            return Err(e);
        }
    };
    let clock = state.clock.clone();
    let used = state
        .store
        .run(move |c| verified.consume(c, clock.now_ms()))
        .await?;
    count_check("email_otp", used);
    if used {
        Ok(())
    } else {
        Err(otp_invalid())
    }
}

/// Seconds until the next login code may be mailed to the caller.
pub(crate) async fn next_email(state: &AppState, user_id: i64) -> Result<u64, ApiError> {
    let user = active_user(state, user_id).await?;
    if !status(state, user.id).await?.email_otp_known {
        return Err(conflict(ErrorCode::EmailOtpUninitialized));
    }
    crate::throttle::next_take(state, Limit::OtpMail, user_key(user.id)).await
}
