//! Email address transfer: a code mailed to the new address proves it is the user's; with it,
//! the login address changes, the old address is told, and the other logins end.

use actix_web::{web, HttpResponse};
use authd_mail::CodeKind;
use authd_otp::Purpose;
use authd_ratelimit::Limit;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::{AccessAuth, SudoOrAccessWithout2fa};
use crate::error::ErrorBody;
use crate::input::{self, MailQuery};
use crate::services::codes::{confirm_address, AddressCode};
use crate::ErrorCode;
use crate::{json_ok, ApiError, AppState, JsonBody};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/user/email/initiate", "POST").route(web::post().to(initiate)))
        .service(super::resource("/user/email", "PUT").route(web::put().to(complete)));
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct InitiateTransferBody {
    /// The new login address. Whether another account has it is not revealed here.
    #[schema(max_length = 256, example = "ann.new@example.org")]
    pub email: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CompleteTransferBody {
    /// The 6-digit code mailed to the new address.
    #[schema(pattern = "^[0-9]{6}$", example = "042917")]
    pub otp: String,
}

/// Mails a code to the new address. The answer is the same whether or not another account
/// has that address; completing the transfer tells.
#[utoipa::path(post, path = "/user/email/initiate", operation_id = "initiateEmailChange", tag = "email address",
    params(MailQuery), request_body = InitiateTransferBody, security(("sudo" = []), ("access" = [])),
    responses(
        (status = 200, description = "A code was mailed to the new address", body = Option<String>, example = json!(null)),
        (status = 400, description = "Invalid input (a sentence), or `UNKNOWN_ORIGIN`", body = ErrorBody),
        (status = 401, description = "`NO_TOKEN_PROVIDED` or `INVALID_TOKEN` (an access token while two-factor authentication is on)", body = ErrorBody),
        (status = 403, description = "`FORBIDDEN_MAIL_PROVIDER`", body = ErrorBody),
        (status = 429, description = "`TOO_MANY_TRANSFER_ATTEMPTS`: one transfer mail per account per window", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the same call can succeed"))),
        (status = 500, description = "`UNABLE_TO_FIND_MAIL_TEMPLATE`", body = ErrorBody),
    ))]
pub async fn initiate(
    state: web::Data<AppState>,
    auth: SudoOrAccessWithout2fa,
    query: web::Query<MailQuery>,
    body: JsonBody<InitiateTransferBody>,
) -> Result<HttpResponse, ApiError> {
    let code = AddressCode {
        limit: Limit::TransferMail,
        too_many: ErrorCode::TooManyTransferAttempts,
        purpose: Purpose::EmailTransfer,
        kind: CodeKind::EmailTransferVerify,
    };
    let nothing_before = async { Ok(()) };
    confirm_address(
        &state,
        auth.user_id,
        &query,
        &body.0.email,
        code,
        nothing_before,
    )
    .await?;
    Ok(json_ok(&()))
}

/// Completes the transfer with the code: the login address changes, the old address gets a
/// notice naming the new one (masked), and every other login of the user ends.
#[utoipa::path(put, path = "/user/email", operation_id = "updateEmailViaOtp", tag = "email address",
    request_body = CompleteTransferBody, security(("access" = [])),
    responses(
        (status = 200, description = "The login address changed", body = Option<String>, example = json!(null)),
        (status = 400, description = "Invalid input (a sentence)", body = ErrorBody),
        (status = 401, description = "`OTP_INVALID_EXPIRED`, `NO_TOKEN_PROVIDED` or `INVALID_TOKEN`", body = ErrorBody),
        (status = 409, description = "`NEW_EMAIL_ALREADY_IN_USE`: another account has the address (the code stays usable)", body = ErrorBody),
        (status = 429, description = "`TOO_MANY_OTP_CHECKS`: wrong codes for this account made the next guess wait", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the same call can succeed"))),
    ))]
pub async fn complete(
    state: web::Data<AppState>,
    auth: AccessAuth,
    ip: crate::client_ip::ClientIp,
    body: JsonBody<CompleteTransferBody>,
) -> Result<HttpResponse, ApiError> {
    let code = input::otp("otp", &body.0.otp)?;
    crate::services::addresses::change_with_code(&state, &auth, ip.0, code).await?;
    Ok(json_ok(&()))
}
