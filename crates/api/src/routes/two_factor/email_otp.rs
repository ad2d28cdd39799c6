//! Email OTP: codes mailed to a confirmed address as a second factor.

use actix_web::{web, HttpResponse};
use authd_mail::CodeKind;
use authd_otp::Purpose;
use authd_ratelimit::Limit;
use authd_store::two_factor;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::{AccessAuth, AccessOrPartial, SudoAuth, SudoOrAccessWithout2fa};
use crate::error::ErrorBody;
use crate::input::{self, MailQuery};
use crate::services::codes::{confirm_address, AddressCode};
use crate::services::sessions::{tokens_for, SecondFactorTokens};
use crate::services::two_factor::{
    deactivate_method, DurationBody, EmptyBody, Method, RecoveryCodesBody,
};
use crate::{json_ok, ApiError, AppState, JsonBody};

pub fn configure(cfg: &mut web::ServiceConfig) {
    use crate::routes::resource;
    cfg.service(resource("/user/2fa/email-otp/setup", "POST").route(web::post().to(setup)))
        .service(resource("/user/2fa/email-otp/enable", "POST").route(web::post().to(enable)))
        .service(resource("/user/2fa/email-otp/challenge", "POST").route(web::post().to(challenge)))
        .service(
            resource("/user/2fa/email-otp/authenticate", "POST")
                .route(web::post().to(authenticate)),
        )
        .service(resource("/user/2fa/email-otp/next-email", "GET").route(web::get().to(next_email)))
        .service(resource("/user/2fa/email-otp", "DELETE").route(web::delete().to(deactivate)));
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct EmailOtpSetupBody {
    /// The address to receive codes; it may differ from the login address.
    #[schema(max_length = 256, example = "ann.phone@example.com")]
    pub email: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct OtpBody {
    /// The 6-digit code from the mail.
    #[schema(pattern = "^[0-9]{6}$", example = "042917")]
    pub otp: String,
}

use crate::services::email_otp::{self, TOO_MANY};

/// Mails a code to the address the caller wants to use for email OTP; enabling with that
/// code makes it the second factor (an active method keeps its address until then).
#[utoipa::path(post, path = "/user/2fa/email-otp/setup", operation_id = "setupEmailOtp", tag = "two-factor: email OTP",
    params(MailQuery), request_body = EmailOtpSetupBody, security(("sudo" = []), ("access" = [])),
    responses(
        (status = 200, description = "A code was mailed to the address", body = Option<String>, example = json!(null)),
        (status = 400, description = "Invalid input (a sentence), or `UNKNOWN_ORIGIN`", body = ErrorBody),
        (status = 401, description = "`NO_TOKEN_PROVIDED` or `INVALID_TOKEN` (an access token while two-factor authentication is on)", body = ErrorBody),
        (status = 403, description = "`FORBIDDEN_MAIL_PROVIDER`", body = ErrorBody),
        (status = 429, description = "`TOO_MANY_OTP_EMAILS`: one code mail per account per window, setup and challenge together", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the same call can succeed"))),
        (status = 500, description = "`UNABLE_TO_FIND_MAIL_TEMPLATE`", body = ErrorBody),
    ))]
pub async fn setup(
    state: web::Data<AppState>,
    auth: SudoOrAccessWithout2fa,
    query: web::Query<MailQuery>,
    body: JsonBody<EmailOtpSetupBody>,
) -> Result<HttpResponse, ApiError> {
    let user_id = auth.user_id;
    let mark = async {
        state
            .store
            .run(move |c| two_factor::email_otp_setup(c, user_id))
            .await
            .map_err(ApiError::from)
    };
    let code = AddressCode {
        limit: Limit::OtpMail,
        too_many: TOO_MANY,
        purpose: Purpose::EmailOtpSetup,
        kind: CodeKind::EmailOtpSetup,
    };
    confirm_address(&state, user_id, &query, &body.0.email, code, mark).await?;
    Ok(json_ok(&()))
}

/// Confirms the address with the mailed code and turns email OTP on.
#[utoipa::path(post, path = "/user/2fa/email-otp/enable", operation_id = "activateEmailOtp", tag = "two-factor: email OTP",
    request_body = OtpBody, security(("access" = [])),
    responses(
        (status = 200, description = "Email OTP is on. The first method on returns 10 new recovery codes; a further method returns `[]`", body = RecoveryCodesBody),
        (status = 400, description = "Invalid input (a sentence)", body = ErrorBody),
        (status = 401, description = "`OTP_INVALID_EXPIRED`, `NO_TOKEN_PROVIDED` or `INVALID_TOKEN`", body = ErrorBody),
        (status = 409, description = "`EMAIL_OTP_UNINITIALIZED`: no setup was started", body = ErrorBody),
        (status = 429, description = "`TOO_MANY_OTP_CHECKS`: wrong codes for this account made the next guess wait", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the same call can succeed"))),
    ))]
pub async fn enable(
    state: web::Data<AppState>,
    auth: AccessAuth,
    ip: crate::client_ip::ClientIp,
    body: JsonBody<OtpBody>,
) -> Result<HttpResponse, ApiError> {
    let code = input::otp("otp", &body.0.otp)?;
    let codes = email_otp::enable(&state, auth.user_id, ip.0, code).await?;
    Ok(json_ok(&RecoveryCodesBody {
        recovery_codes: codes,
    }))
}

/// Mails a sign-in code to the email OTP address.
#[utoipa::path(post, path = "/user/2fa/email-otp/challenge", operation_id = "sendEmailOtpChallenge", tag = "two-factor: email OTP",
    params(MailQuery), request_body = EmptyBody, security(("access" = []), ("partial" = [])),
    responses(
        (status = 200, description = "A code was mailed", body = Option<String>, example = json!(null)),
        (status = 400, description = "Invalid input (a sentence), or `UNKNOWN_ORIGIN`", body = ErrorBody),
        (status = 401, description = "`NO_TOKEN_PROVIDED` or `INVALID_TOKEN`", body = ErrorBody),
        (status = 409, description = "`EMAIL_OTP_UNINITIALIZED`: email OTP is not on", body = ErrorBody),
        (status = 429, description = "`TOO_MANY_OTP_EMAILS`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the same call can succeed"))),
        (status = 500, description = "`UNABLE_TO_FIND_MAIL_TEMPLATE`", body = ErrorBody),
    ))]
pub async fn challenge(
    state: web::Data<AppState>,
    auth: AccessOrPartial,
    query: web::Query<MailQuery>,
    _body: JsonBody<EmptyBody>,
) -> Result<HttpResponse, ApiError> {
    let target = query.resolve(&state)?;
    email_otp::challenge(&state, auth.user_id, target).await?;
    Ok(json_ok(&()))
}

/// Passes the second factor with a mailed code (used up).
#[utoipa::path(post, path = "/user/2fa/email-otp/authenticate", operation_id = "authenticateEmailOtp", tag = "two-factor: email OTP",
    params(crate::browser::CookieQuery), request_body = OtpBody, security(("access" = []), ("partial" = [])),
    responses(
        (status = 200, description = "With a partial token: a new login (all three tokens). With an access token: `sudoToken` only. With `cookie=true` and a partial token, `refreshToken` is `null` and the refresh token is in the `authd_refresh` cookie", body = SecondFactorTokens),
        (status = 400, description = "Invalid input (a sentence), e.g. `cookie must be true or false`", body = ErrorBody),
        (status = 401, description = "`OTP_INVALID_EXPIRED`, `NO_TOKEN_PROVIDED` or `INVALID_TOKEN`", body = ErrorBody),
        (status = 409, description = "`EMAIL_OTP_INACTIVE`", body = ErrorBody),
        (status = 429, description = "`TOO_MANY_OTP_CHECKS`: wrong codes for this account made the next guess wait", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the same call can succeed"))),
    ))]
pub async fn authenticate(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    cookie: crate::browser::CookieMode,
    auth: AccessOrPartial,
    ip: crate::client_ip::ClientIp,
    body: JsonBody<OtpBody>,
) -> Result<HttpResponse, ApiError> {
    let code = input::otp("otp", &body.0.otp)?;
    email_otp::authenticate(&state, auth.user_id, ip.0, code).await?;
    tokens_for(&state, &auth, "email_otp", &req, cookie).await
}

/// Seconds until another code mail (setup or challenge) can be sent.
#[utoipa::path(get, path = "/user/2fa/email-otp/next-email", operation_id = "emailOtpNextEmail", tag = "two-factor: email OTP",
    security(("access" = [])),
    responses(
        (status = 200, description = "The wait; 0 means now", body = DurationBody),
        (status = 401, description = "`NO_TOKEN_PROVIDED` or `INVALID_TOKEN`", body = ErrorBody),
        (status = 409, description = "`EMAIL_OTP_UNINITIALIZED`: email OTP was never set up", body = ErrorBody),
    ))]
pub async fn next_email(
    state: web::Data<AppState>,
    auth: AccessAuth,
) -> Result<HttpResponse, ApiError> {
    let duration = email_otp::next_email(&state, auth.user_id).await?;
    Ok(json_ok(&DurationBody { duration }))
}

/// Turns email OTP off. When it was the last method, two-factor authentication is off and
/// the recovery codes are deleted.
#[utoipa::path(delete, path = "/user/2fa/email-otp", operation_id = "deactivateEmailOtp", tag = "two-factor: email OTP",
    params(MailQuery), security(("sudo" = [])),
    responses(
        (status = 200, description = "Email OTP is off", body = Option<String>, example = json!(null)),
        (status = 401, description = "`NO_TOKEN_PROVIDED` or `INVALID_TOKEN`", body = ErrorBody),
        (status = 409, description = "`EMAIL_OTP_ALREADY_INACTIVE`", body = ErrorBody),
    ))]
pub async fn deactivate(
    state: web::Data<AppState>,
    auth: SudoAuth,
    query: web::Query<MailQuery>,
) -> Result<HttpResponse, ApiError> {
    deactivate_method(&state, &auth, &query, Method::EmailOtp).await
}
