//! Emailed one-time codes seen from a handler: mailing one (paid for by a window limit) and
//! checking one through the OtpIssuer.

use authd_mail::CodeKind;
use authd_otp::{Check, CheckError, Issue, Purpose, VerifiedOtp};
use authd_ratelimit::{Backoff, Limit};

use crate::error::otp_invalid;
use crate::input::{self, MailQuery, MailTarget};
use crate::ErrorCode;
use crate::{ApiError, AppState};

/// A code mail to send.
#[derive(Debug)]
pub struct CodeMail {
    pub purpose: Purpose,
    pub kind: CodeKind,
    pub to: authd_domain::Email,
    pub target: MailTarget,
    /// What the code confirms (an address being set up or moved to).
    pub confirms: Option<String>,
}

/// Mails a code to a user, paid for by one unit of `limit` on the account (429 `too_many`
/// when none is left). `before` runs once the unit is taken; any failure gives it back.
pub async fn send_code(
    state: &AppState,
    limit: Limit,
    too_many: ErrorCode,
    user_id: i64,
    mail: CodeMail,
    before: impl std::future::Future<Output = Result<(), ApiError>>,
) -> Result<(), ApiError> {
    let key = crate::services::accounts::user_key(user_id);
    crate::throttle::with_permit(state, limit, too_many, key, async {
        before.await?;
        let issued = state
            .otp
            .send(Issue {
                user_id,
                purpose: mail.purpose,
                to: mail.to,
                origin: mail.target.origin.clone(),
                language: mail.target.language.clone(),
                kind: mail.kind,
                link: None,
                target: mail.confirms,
                remember: mail.target.explicit,
            })
            .await;
        Ok(issued??)
    })
    .await
}

/// Who guesses at an emailed code: the account (a user id, or for the password reset the
/// address, which may have no account) and the client's IP address.
#[derive(Debug, Clone)]
pub struct CodeGuesser {
    pub user_id: Option<i64>,
    /// The account key of the backoff; the purpose is added to it.
    pub account: String,
    pub ip: std::net::IpAddr,
}

impl CodeGuesser {
    /// A signed-in user guessing.
    pub fn user(user_id: i64, ip: std::net::IpAddr) -> Self {
        Self {
            user_id: Some(user_id),
            account: crate::services::accounts::user_key(user_id),
            ip,
        }
    }
}

/// Checks a code without using it up: 401 `OTP_INVALID_EXPIRED` when wrong, expired or used
/// up. The guess runs under the emailed-code backoff of the account and purpose (429
/// `TOO_MANY_OTP_CHECKS` while the guesser's network or the whole account waits), across
/// codes; besides, `otp.max_attempts` wrong guesses burn one code. A guesser without an
/// account does the same work and is always wrong.
pub async fn check(
    state: &AppState,
    guesser: CodeGuesser,
    purpose: Purpose,
    code: String,
) -> Result<VerifiedOtp, ApiError> {
    let guess = crate::throttle::Guess {
        backoff: Backoff::EmailedCode,
        account: format!("{}\0{}", purpose.as_str(), guesser.account),
        user_id: guesser.user_id,
        ip: guesser.ip,
        too_many: ErrorCode::TooManyOtpChecks,
    };
    let user_id = guesser.user_id;
    let verified = crate::throttle::guarded(state, &guess, async {
        match state
            .otp
            .send(Check {
                user_id,
                purpose,
                code,
            })
            .await
        {
            Ok(Ok(v)) => Ok(Some(v)),
            Ok(Err(CheckError::Invalid)) => Ok(None),
            Ok(Err(CheckError::Store(e))) => Err(e.into()),
            Err(e) => Err(ApiError::internal(e)),
        }
    })
    .await?;
    verified.ok_or_else(otp_invalid)
}

/// A code that confirms an address the user names (an email OTP address, a new login address).
#[derive(Debug, Clone, Copy)]
pub struct AddressCode {
    pub limit: Limit,
    pub too_many: ErrorCode,
    pub purpose: Purpose,
    pub kind: CodeKind,
}

/// Mails a code to an address the user names, after the checks every such call makes: the
/// query (400), the address (400), the provider (403 `FORBIDDEN_MAIL_PROVIDER`), the origin
/// (400 `UNKNOWN_ORIGIN`). The code carries the address it confirms.
pub async fn confirm_address(
    state: &AppState,
    user_id: i64,
    query: &MailQuery,
    raw_email: &str,
    code: AddressCode,
    before: impl std::future::Future<Output = Result<(), ApiError>>,
) -> Result<(), ApiError> {
    query.check()?;
    let email = input::email(raw_email)?;
    input::allowed_provider(state, &email)?;
    let target = query.resolve(state)?;
    crate::services::accounts::active_user(state, user_id).await?;
    let mail = CodeMail {
        purpose: code.purpose,
        kind: code.kind,
        confirms: Some(email.as_str().to_owned()),
        to: email,
        target,
    };
    send_code(state, code.limit, code.too_many, user_id, mail, before).await
}
