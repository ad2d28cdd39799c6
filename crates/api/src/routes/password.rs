//! Password reset by an emailed one-time code (no token): send, validate, reset; and the
//! older clients' alias `POST /v1/auth/forgot-password`.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::SudoOrAccessWithout2fa;
use crate::error::ErrorBody;
use crate::input::{self, MailQuery};
use crate::{json_ok, ApiError, AppState, JsonBody};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        super::resource("/user/password/reset/send", "POST").route(web::post().to(reset_send)),
    )
    .service(
        super::resource("/v1/auth/forgot-password", "POST").route(web::post().to(forgot_password)),
    )
    .service(
        super::resource("/user/password/reset/validate", "POST")
            .route(web::post().to(reset_validate)),
    )
    .service(super::resource("/user/password/otp", "PUT").route(web::put().to(reset_with_otp)))
    .service(
        super::resource("/user/password/old-password", "PUT").route(web::put().to(change_password)),
    );
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ResetSendBody {
    /// The account's address. The answer is the same whether or not an account has it.
    #[schema(max_length = 256, example = "ann@example.com")]
    pub email: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ForgotPasswordBody {
    #[schema(min_length = 5, max_length = 100, example = "ann@example.com")]
    pub email: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ResetValidateBody {
    #[schema(max_length = 256, example = "ann@example.com")]
    pub email: String,
    /// The 6-digit code from the mail.
    #[schema(pattern = "^[0-9]{6}$", example = "042917")]
    pub otp: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResetWithOtpBody {
    #[schema(max_length = 256, example = "ann@example.com")]
    pub user_email: String,
    #[schema(pattern = "^[0-9]{6}$", example = "042917")]
    pub otp: String,
    /// 8 to 256 characters with a lower-case letter, an upper-case letter and a digit.
    #[schema(min_length = 8, max_length = 256, example = "Correct1horse")]
    pub new_password: String,
}

/// Sends a reset code and link to `email` if an account has it. Unknown addresses get the same
/// answer, cost and throttling, and no mail.
#[utoipa::path(post, path = "/user/password/reset/send", operation_id = "sendPasswordReset", tag = "password reset",
    params(MailQuery), request_body = ResetSendBody,
    responses(
        (status = 200, description = "Accepted: a mail is queued if an account has this address", body = Option<String>, example = json!(null)),
        (status = 400, description = "Invalid input (a sentence), or `UNKNOWN_ORIGIN`", body = ErrorBody),
        (status = 403, description = "`FORBIDDEN_MAIL_PROVIDER`", body = ErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody),
        (status = 415, description = "`UNSUPPORTED_MEDIA_TYPE`", body = ErrorBody),
        (status = 429, description = "`TOO_MANY_RESET_MAIL_ATTEMPTS` (one mail per address per window), or `TOO_MANY_REQUESTS` from this client IP", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the same call can succeed"))),
        (status = 500, description = "`UNABLE_TO_FIND_MAIL_TEMPLATE`", body = ErrorBody),
    ))]
pub async fn reset_send(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    query: web::Query<MailQuery>,
    body: JsonBody<ResetSendBody>,
) -> Result<HttpResponse, ApiError> {
    crate::client_ip::ip_budget(&state, &req, authd_ratelimit::IpGroup::Reset).await?;
    query.check()?;
    crate::services::passwords::send_reset(&state, &query, &body.0.email).await
}

/// The older clients' alias of `POST /user/password/reset/send` (email of 5 to 100 characters).
/// It answers like `reset/send` except for the `message` of its errors, which the older
/// clients match on: every 400 (body, email, `origin`, `language`, `UNKNOWN_ORIGIN`) is
/// `Missing or misformatted query parameter or body`, the 403 is `Forbidden email provider`,
/// every 429 is `Last password forgot call was too recent` (with `retryAfter` and
/// `Retry-After`); 413, 415 and 500 are as on `reset/send`.
#[utoipa::path(post, path = "/v1/auth/forgot-password", operation_id = "forgotPasswordLegacy", tag = "password reset",
    params(MailQuery), request_body = ForgotPasswordBody,
    responses(
        (status = 200, description = "Accepted", body = Option<String>, example = json!(null)),
        (status = 400, description = "`Missing or misformatted query parameter or body` (any invalid input, an unknown origin included)", body = ErrorBody),
        (status = 403, description = "`Forbidden email provider`", body = ErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody),
        (status = 415, description = "`UNSUPPORTED_MEDIA_TYPE`", body = ErrorBody),
        (status = 429, description = "`Last password forgot call was too recent` (one mail per address per window, or too many calls from this client IP)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the same call can succeed"))),
        (status = 500, description = "`UNABLE_TO_FIND_MAIL_TEMPLATE`", body = ErrorBody),
    ))]
pub async fn forgot_password(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    query: Result<web::Query<MailQuery>, actix_web::Error>,
    body: Result<JsonBody<ForgotPasswordBody>, ApiError>,
) -> Result<HttpResponse, ApiError> {
    forgot_password_answer(&state, &req, query, body)
        .await
        .map_err(legacy_text)
}

async fn forgot_password_answer(
    state: &AppState,
    req: &actix_web::HttpRequest,
    query: Result<web::Query<MailQuery>, actix_web::Error>,
    body: Result<JsonBody<ForgotPasswordBody>, ApiError>,
) -> Result<HttpResponse, ApiError> {
    // In the order of `reset/send`: the extractors' refusals, the IP budget, then the input.
    // The query's own refusal is a 400 sentence; the alias replaces it anyway.
    let query = query.map_err(|_| ApiError::bad_request("query string is invalid"))?;
    let body = body?;
    crate::client_ip::ip_budget(state, req, authd_ratelimit::IpGroup::Reset).await?;
    query.check()?;
    let len = body.0.email.chars().count();
    if !(5..=100).contains(&len) {
        return Err(ApiError::bad_request(
            "email must be 5 to 100 characters long",
        ));
    }
    crate::services::passwords::send_reset(state, &query, &body.0.email).await
}

/// The alias's texts, in place of the codes and sentences of `reset/send`.
fn legacy_text(e: ApiError) -> ApiError {
    match e.status().as_u16() {
        400 => e.with_message("Missing or misformatted query parameter or body"),
        403 => e.with_message("Forbidden email provider"),
        429 => e.with_message("Last password forgot call was too recent"),
        _ => e,
    }
}

/// Answers 200 when the code is currently valid for the address, without using it up. A wrong
/// code counts as a guess.
#[utoipa::path(post, path = "/user/password/reset/validate", operation_id = "checkPasswordResetOtp", tag = "password reset",
    request_body = ResetValidateBody,
    responses(
        (status = 200, description = "The code is valid (and still usable)", body = Option<String>, example = json!(null)),
        (status = 400, description = "Invalid input (a sentence)", body = ErrorBody),
        (status = 401, description = "`OTP_INVALID_EXPIRED`", body = ErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody),
        (status = 415, description = "`UNSUPPORTED_MEDIA_TYPE`", body = ErrorBody),
        (status = 429, description = "`TOO_MANY_OTP_CHECKS`: wrong codes for this account made the next guess wait (from this client network, or from all networks once the account ceiling is reached); or `TOO_MANY_REQUESTS` from this client IP", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the same call can succeed"))),
    ))]
pub async fn reset_validate(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    body: JsonBody<ResetValidateBody>,
) -> Result<HttpResponse, ApiError> {
    crate::client_ip::ip_budget(&state, &req, authd_ratelimit::IpGroup::Reset).await?;
    let email = input::email(&body.0.email)?;
    let code = input::otp("otp", &body.0.otp)?;
    crate::services::passwords::check_reset_code(
        &state,
        crate::client_ip::client_ip(&state, &req),
        email,
        code,
    )
    .await
    .map(|_| json_ok(&()))
}

/// Replaces the password using the mailed code: the code is used up, every refresh token of
/// the user is revoked, and a "password changed" notice is mailed.
#[utoipa::path(put, path = "/user/password/otp", operation_id = "updatePasswordViaOtp", tag = "password reset",
    request_body = ResetWithOtpBody,
    responses(
        (status = 200, description = "Password replaced", body = Option<String>, example = json!(null)),
        (status = 400, description = "Invalid input or password policy (a sentence)", body = ErrorBody),
        (status = 401, description = "`OTP_INVALID_EXPIRED`", body = ErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody),
        (status = 415, description = "`UNSUPPORTED_MEDIA_TYPE`", body = ErrorBody),
        (status = 429, description = "`TOO_MANY_OTP_CHECKS`: wrong codes for this account made the next guess wait (from this client network, or from all networks once the account ceiling is reached); or `TOO_MANY_REQUESTS` from this client IP", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the same call can succeed"))),
    ))]
pub async fn reset_with_otp(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    body: JsonBody<ResetWithOtpBody>,
) -> Result<HttpResponse, ApiError> {
    crate::client_ip::ip_budget(&state, &req, authd_ratelimit::IpGroup::Reset).await?;
    let email = input::email(&body.0.user_email)?;
    let code = input::otp("otp", &body.0.otp)?;
    let password = input::new_password(&state, &body.0.new_password).await?;

    crate::services::passwords::reset_with_code(
        &state,
        crate::client_ip::client_ip(&state, &req),
        email,
        code,
        password,
    )
    .await?;
    Ok(json_ok(&()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangePasswordBody {
    #[schema(max_length = 256, example = "Correct1horse")]
    pub old_password: String,
    /// 8 to 256 characters with a lower-case letter, an upper-case letter and a digit.
    #[schema(min_length = 8, max_length = 256, example = "Brand2newpass")]
    pub new_password: String,
}

/// Changes the password of the caller. Every other login of the user is ended (the caller's
/// stays) and a notice is mailed.
#[utoipa::path(put, path = "/user/password/old-password", operation_id = "updatePasswordViaOldPassword", tag = "password",
    params(MailQuery), request_body = ChangePasswordBody, security(("sudo" = []), ("access" = [])),
    responses(
        (status = 200, description = "Password changed", body = Option<String>, example = json!(null)),
        (status = 400, description = "Invalid input or password policy (a sentence)", body = ErrorBody),
        (status = 401, description = "`PASSWORD_INCORRECT`, `NO_TOKEN_PROVIDED` or `INVALID_TOKEN`", body = ErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody),
        (status = 415, description = "`UNSUPPORTED_MEDIA_TYPE`", body = ErrorBody),
        (status = 429, description = "`TOO_MANY_FAILED_PASSWORD_CHECKS`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the next attempt may be made"))),
        (status = 500, description = "`NO_PASSWORD_INFO`: the account has no password", body = ErrorBody),
    ))]
pub async fn change_password(
    state: web::Data<AppState>,
    auth: SudoOrAccessWithout2fa,
    ip: crate::client_ip::ClientIp,
    query: web::Query<MailQuery>,
    body: JsonBody<ChangePasswordBody>,
) -> Result<HttpResponse, ApiError> {
    query.check()?;
    if body.0.old_password.chars().count() > 256 {
        return Err(ApiError::bad_request(
            "oldPassword must be at most 256 characters long",
        ));
    }
    let password = input::new_password(&state, &body.0.new_password).await?;
    crate::services::passwords::change(
        &state,
        &auth,
        ip.0,
        body.0.old_password.clone(),
        password,
        &query,
    )
    .await?;
    Ok(json_ok(&()))
}
