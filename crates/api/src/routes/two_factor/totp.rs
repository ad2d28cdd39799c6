//! TOTP (RFC 6238: SHA-1, 6 digits, 30 s) with secrets encrypted at rest.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{AccessAuth, AccessOrPartial, SudoAuth, SudoOrAccessWithout2fa};
use crate::error::ErrorBody;
use crate::input::{self, MailQuery};
use crate::services::sessions::{tokens_for, SecondFactorTokens};
use crate::services::totp;
use crate::services::two_factor::{
    deactivate_method, DurationBody, EmptyBody, Method, RecoveryCodesBody,
};
use crate::{json_ok, ApiError, AppState, JsonBody};

pub fn configure(cfg: &mut web::ServiceConfig) {
    use crate::routes::resource;
    cfg.service(resource("/user/2fa/totp/setup", "POST").route(web::post().to(setup)))
        .service(resource("/user/2fa/totp/enable", "POST").route(web::post().to(enable)))
        .service(
            resource("/user/2fa/totp/authenticate", "POST").route(web::post().to(authenticate)),
        )
        .service(resource("/user/2fa/totp/next-guess", "GET").route(web::get().to(next_guess)))
        .service(resource("/user/2fa/totp", "DELETE").route(web::delete().to(deactivate)));
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TotpSetupQuery {
    /// The origin whose product name is the issuer shown in authenticator apps; the default
    /// origin when absent.
    #[param(max_length = 256)]
    pub origin: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TotpSetupResponse {
    /// The key URI to show as a QR code (or to open on the device).
    #[schema(
        example = "otpauth://totp/authd:ann%40example%2Eorg?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=authd&algorithm=SHA1&digits=6&period=30"
    )]
    pub url: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TotpBody {
    /// The 6-digit code the authenticator app shows.
    #[schema(pattern = "^[0-9]{6}$", example = "492039")]
    pub totp: String,
}

#[utoipa::path(post, path = "/user/2fa/totp/setup", operation_id = "setupTotp", tag = "two-factor: TOTP",
    params(TotpSetupQuery), request_body = EmptyBody, security(("sudo" = []), ("access" = [])),
    responses(
        (status = 200, description = "The key URI of the new secret", body = TotpSetupResponse),
        (status = 400, description = "Invalid input (a sentence), or `UNKNOWN_ORIGIN`", body = ErrorBody),
        (status = 401, description = "`NO_TOKEN_PROVIDED` or `INVALID_TOKEN` (an access token while two-factor authentication is on)", body = ErrorBody),
    ))]
pub async fn setup(
    state: web::Data<AppState>,
    auth: SudoOrAccessWithout2fa,
    query: web::Query<TotpSetupQuery>,
    _body: JsonBody<EmptyBody>,
) -> Result<HttpResponse, ApiError> {
    let target = input::MailQuery {
        origin: query.0.origin,
        language: None,
    };
    let origin = target.resolve(&state)?.origin;
    let url = totp::setup(&state, auth.user_id, &origin).await?;
    Ok(json_ok(&TotpSetupResponse { url }))
}

/// Turns TOTP on with a code of the pending secret.
#[utoipa::path(post, path = "/user/2fa/totp/enable", operation_id = "activateTotp", tag = "two-factor: TOTP",
    params(MailQuery), request_body = TotpBody, security(("access" = [])),
    responses(
        (status = 200, description = "TOTP is on. The first method on returns 10 new recovery codes; a further method returns `[]`", body = RecoveryCodesBody),
        (status = 400, description = "Invalid input (a sentence)", body = ErrorBody),
        (status = 401, description = "`TOTP_INVALID`, `NO_TOKEN_PROVIDED` or `INVALID_TOKEN`", body = ErrorBody),
        (status = 409, description = "`TOTP_UNINITIALIZED`: no setup is pending", body = ErrorBody),
        (status = 429, description = "`TOO_MANY_TOTP_CHECKS`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the next guess may be made"))),
        (status = 500, description = "`TOTP_CORRUPT`: the stored secret cannot be decrypted", body = ErrorBody),
    ))]
pub async fn enable(
    state: web::Data<AppState>,
    auth: AccessAuth,
    ip: crate::client_ip::ClientIp,
    query: web::Query<MailQuery>,
    body: JsonBody<TotpBody>,
) -> Result<HttpResponse, ApiError> {
    let code = input::otp("totp", &body.0.totp)?;
    let recovery_codes = totp::enable(&state, auth.user_id, ip.0, code, &query).await?;
    Ok(json_ok(&RecoveryCodesBody { recovery_codes }))
}

#[utoipa::path(post, path = "/user/2fa/totp/authenticate", operation_id = "authenticateTotp", tag = "two-factor: TOTP",
    params(crate::browser::CookieQuery), request_body = TotpBody, security(("access" = []), ("partial" = [])),
    responses(
        (status = 200, description = "With a partial token: a new login (all three tokens). With an access token: `sudoToken` only. With `cookie=true` and a partial token, `refreshToken` is `null` and the refresh token is in the `authd_refresh` cookie", body = SecondFactorTokens),
        (status = 400, description = "Invalid input (a sentence), e.g. `cookie must be true or false`", body = ErrorBody),
        (status = 401, description = "`TOTP_INVALID`, `NO_TOKEN_PROVIDED` or `INVALID_TOKEN`", body = ErrorBody),
        (status = 409, description = "`TOTP_UNINITIALIZED`: TOTP is not on", body = ErrorBody),
        (status = 429, description = "`TOO_MANY_TOTP_CHECKS`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the next guess may be made"))),
        (status = 500, description = "`TOTP_CORRUPT`: the stored secret cannot be decrypted", body = ErrorBody),
    ))]
pub async fn authenticate(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    cookie: crate::browser::CookieMode,
    auth: AccessOrPartial,
    ip: crate::client_ip::ClientIp,
    body: JsonBody<TotpBody>,
) -> Result<HttpResponse, ApiError> {
    let code = input::otp("totp", &body.0.totp)?;
    totp::authenticate(&state, auth.user_id, ip.0, code).await?;
    tokens_for(&state, &auth, "totp", &req, cookie).await
}

/// A right code for a step already used: someone else saw it (a shoulder, a phishing page).
#[utoipa::path(get, path = "/user/2fa/totp/next-guess", operation_id = "totpNextGuess", tag = "two-factor: TOTP",
    security(("access" = [])),
    responses(
        (status = 200, description = "The wait; 0 means now", body = DurationBody),
        (status = 401, description = "`NO_TOKEN_PROVIDED` or `INVALID_TOKEN`", body = ErrorBody),
        (status = 409, description = "`TOTP_UNINITIALIZED`: TOTP was never set up", body = ErrorBody),
    ))]
pub async fn next_guess(
    state: web::Data<AppState>,
    auth: AccessAuth,
    ip: crate::client_ip::ClientIp,
) -> Result<HttpResponse, ApiError> {
    let duration = totp::next_guess(&state, auth.user_id, ip.0).await?;
    Ok(json_ok(&DurationBody { duration }))
}

/// Turns TOTP off (a pending setup is dropped too). When it was the last method, two-factor
/// authentication is off and the recovery codes are deleted.
#[utoipa::path(delete, path = "/user/2fa/totp", operation_id = "deactivateTotp", tag = "two-factor: TOTP",
    params(MailQuery), security(("sudo" = [])),
    responses(
        (status = 200, description = "TOTP is off", body = Option<String>, example = json!(null)),
        (status = 401, description = "`NO_TOKEN_PROVIDED` or `INVALID_TOKEN`", body = ErrorBody),
        (status = 409, description = "`TOTP_ALREADY_INACTIVE`", body = ErrorBody),
    ))]
pub async fn deactivate(
    state: web::Data<AppState>,
    auth: SudoAuth,
    query: web::Query<MailQuery>,
) -> Result<HttpResponse, ApiError> {
    deactivate_method(&state, &auth, &query, Method::Totp).await
}
