//! Passwords: the reset by an emailed code (send, check, reset) and the change by the old
//! password. Each ends in one transaction that makes the change, ends what the old password
//! opened, and queues the "password changed" notice.

use authd_domain::{Email, Password};
use authd_mail::{Changed, CodeKind, Mail, Origin};
use authd_otp::{Decoy, Issue, Purpose};
use authd_ratelimit::Limit;
use authd_store::{refresh_tokens, users};

use crate::auth::SudoOrAccessWithout2fa;
use crate::error::otp_invalid;
use crate::input::{self, MailQuery, MailTarget};
use crate::ErrorCode;
use crate::{json_ok, ApiError, AppState};
use actix_web::HttpResponse;

/// Sends a reset code to an address, or does the same work for an address with no account
/// (the decoy), under the address's window.
pub(crate) async fn send_reset(
    state: &AppState,
    query: &MailQuery,
    raw_email: &str,
) -> Result<HttpResponse, ApiError> {
    let email = input::email(raw_email)?;
    input::allowed_provider(state, &email)?;
    let MailTarget {
        origin,
        language,
        explicit,
    } = query.resolve(state)?;

    let lookup = email.clone();
    let key = email.as_str().to_owned();
    crate::throttle::with_permit(
        state,
        Limit::ResetMail,
        ErrorCode::TooManyResetMailAttempts,
        key,
        async move {
            let user = state
                .store
                .read(move |c| users::find_by_email(c, &lookup))
                .await?
                .filter(|u| !u.disabled);
            let link = state
                .settings
                .origin(origin.as_str())
                .map(|o| o.reset_url.clone());
            let kind = CodeKind::PasswordReset;
            let outcome = match user {
                Some(user) => {
                    let msg = Issue {
                        user_id: user.id,
                        purpose: Purpose::PasswordReset,
                        to: email.clone(),
                        origin,
                        language,
                        kind,
                        link,
                        target: None,
                        remember: explicit,
                    };
                    state.otp.send(msg).await
                }
                None => {
                    state
                        .otp
                        .send(Decoy {
                            to: email.clone(),
                            origin,
                            language,
                            kind,
                            link,
                        })
                        .await
                }
            };
            outcome??;
            Ok(json_ok(&()))
        },
    )
    .await
}

/// Replaces the password using the mailed code: the code is used up, every refresh token of
/// the user is revoked, and a "password changed" notice is mailed.
pub(crate) async fn reset_with_code(
    state: &AppState,
    ip: std::net::IpAddr,
    email: Email,
    code: String,
    password: Password,
) -> Result<(), ApiError> {
    let (user, verified) = check_reset_code(state, ip, email, code).await?;
    let hash = state.hasher.hash(password).await?;

    // The notice goes out in the brand and language the code was requested in.
    let origin = Origin::configured_or_default(&state.settings, verified.origin());
    let to = user.email.clone();
    let notice =
        password_changed_notice(state, origin, Some(verified.language().to_owned()), to).await?;

    let user_id = user.id;
    let done = crate::notices::commit(state, vec![notice], move |c, now| {
        if !verified.consume(c, now)? {
            return Ok((false, None));
        }
        users::set_password(c, user_id, &hash)?;
        // Codes of other purposes mailed before the reset stop working.
        authd_otp::revoke_all(c, user_id)?;
        // Whoever knew the old password may hold a login: end them all.
        refresh_tokens::revoke_all_for_user(c, user_id, None, now)?;
        Ok((true, Some(0)))
    })
    .await?;
    if !done {
        return Err(otp_invalid());
    }
    tracing::info!(user_id, "password reset with an emailed code");
    Ok(())
}

/// Changes the caller's password after checking the old one; every other login of the user
/// ends (the caller's stays).
pub(crate) async fn change(
    state: &AppState,
    auth: &SudoOrAccessWithout2fa,
    ip: std::net::IpAddr,
    old_password: String,
    password: Password,
    query: &MailQuery,
) -> Result<(), ApiError> {
    let user_id = auth.user_id;
    let user = crate::services::accounts::active_user(state, user_id).await?;
    crate::services::accounts::confirm_password(state, &user, old_password, ip).await?;
    let hash = state.hasher.hash(password).await?;
    let to = user.email.clone();
    let target = input::notice_target(state, &user, Some(query))?;
    let notice = password_changed_notice(state, target.origin, target.language, to).await?;
    let keep = auth.sid.clone();
    crate::notices::commit(state, vec![notice], move |c, now| {
        users::set_password(c, user_id, &hash)?;
        // Codes mailed before the change stop working.
        authd_otp::revoke_all(c, user_id)?;
        refresh_tokens::revoke_all_for_user(c, user_id, keep.as_deref(), now)?;
        Ok(((), Some(0)))
    })
    .await?;
    Ok(())
}

/// Checks a reset code for an address. Unknown and disabled addresses do the same work (the
/// lookup, the backoff, the code statement) and get the same 401.
pub(crate) async fn check_reset_code(
    state: &AppState,
    ip: std::net::IpAddr,
    email: authd_domain::Email,
    code: String,
) -> Result<(users::User, authd_otp::VerifiedOtp), ApiError> {
    let account = format!("address:{}", email.as_str());
    let user = state
        .store
        .read(move |c| users::find_by_email(c, &email))
        .await?
        .filter(|u| !u.disabled);
    let guesser = crate::services::codes::CodeGuesser {
        user_id: user.as_ref().map(|u| u.id),
        account,
        ip,
    };
    let verified =
        crate::services::codes::check(state, guesser, Purpose::PasswordReset, code).await?;
    let user = user.ok_or_else(otp_invalid)?;
    Ok((user, verified))
}

/// Renders the "password changed" notice for the outbox.
async fn password_changed_notice(
    state: &AppState,
    origin: Origin,
    language: Option<String>,
    to: authd_domain::Email,
) -> Result<Option<authd_mail::PreparedMail>, ApiError> {
    let mail = Mail::PasswordChanged(Changed::now(&state.clock));
    crate::notices::render(state, mail, origin, language, to).await
}
