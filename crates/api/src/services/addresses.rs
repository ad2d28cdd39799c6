//! Changing the login address with a code mailed to the new one: the address changes, the
//! old one is told, and the other logins end, in one transaction.

use authd_mail::{Changed, EmailChange, Mail, Origin};
use authd_otp::Purpose;
use authd_store::{refresh_tokens, users, StoreError};

use crate::auth::AccessAuth;
use crate::error::otp_invalid;
use crate::input;
use crate::services::accounts::active_user;
use crate::services::codes::check;
use crate::ErrorCode;
use crate::{ApiError, AppState};

/// Completes a transfer with the code the new address received: 401 when the code is wrong,
/// 409 `NEW_EMAIL_ALREADY_IN_USE` when another account took the address meanwhile (the code
/// stays usable).
pub(crate) async fn change_with_code(
    state: &AppState,
    auth: &AccessAuth,
    ip: std::net::IpAddr,
    code: String,
) -> Result<(), ApiError> {
    let user = active_user(state, auth.user_id).await?;
    let guesser = crate::services::codes::CodeGuesser::user(user.id, ip);
    let verified = check(state, guesser, Purpose::EmailTransfer, code).await?;
    let new = input::email(verified.target().unwrap_or_default())?;
    let old = user.email.clone();
    let mail = Mail::EmailChanged(EmailChange {
        new_email_masked: new.masked(),
        changed: Changed::now(&state.clock),
    });
    // The brand and language the code was requested in.
    let notice = crate::notices::render(
        state,
        mail,
        Origin::configured_or_default(&state.settings, verified.origin()),
        Some(verified.language().to_owned()),
        old,
    )
    .await?;
    let (user_id, keep) = (user.id, auth.claims.sid.clone());
    let changed = crate::notices::commit(state, vec![notice], move |c, now| {
        if !verified.consume(c, now)? {
            return Ok((false, None));
        }
        // The unique index decides: of two accounts racing for one address, one wins.
        users::set_email(c, user_id, &new)?;
        // Codes mailed before the change (a reset code to the old address) stop working.
        authd_otp::revoke_all(c, user_id)?;
        refresh_tokens::revoke_all_for_user(c, user_id, keep.as_deref(), now)?;
        Ok((true, Some(0)))
    })
    .await;
    match changed {
        Ok(true) => {}
        Ok(false) => return Err(otp_invalid()),
        Err(StoreError::Duplicate) => return Err(ApiError::from(ErrorCode::NewEmailAlreadyInUse)),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(user_id, "login address changed");
    Ok(())
}
