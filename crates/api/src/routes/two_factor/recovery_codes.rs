//! Recovery codes: single-use codes that pass the second factor when the others are out of
//! reach.

use actix_web::{web, HttpResponse};
use authd_domain::two_factor::recovery;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::{AccessAuth, AccessOrPartial, SudoAuth};
use crate::error::ErrorBody;
use crate::input::MailQuery;
use crate::services::recovery_codes;
use crate::services::sessions::{tokens_for, SecondFactorTokens};
use crate::services::two_factor::{DurationBody, EmptyBody, RecoveryCodesBody};
use crate::{json_ok, ApiError, AppState, JsonBody};

pub fn configure(cfg: &mut web::ServiceConfig) {
    use crate::routes::resource;
    cfg.service(
        resource("/user/2fa/recovery-code/authenticate", "POST")
            .route(web::post().to(authenticate)),
    )
    .service(resource("/user/2fa/recovery-code/reset", "POST").route(web::post().to(reset)))
    .service(
        resource("/user/2fa/recovery-code/next-guess", "GET").route(web::get().to(next_guess)),
    );
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryCodeBody {
    /// One of the recovery codes; case, spaces and dashes are ignored.
    #[schema(max_length = 64, example = "7KQ2-M9XH-RT4W-NC3D")]
    pub recovery_code: String,
}

/// Passes the second factor with a recovery code, which is used up; the login address gets a
/// notice saying how many codes are left.
#[utoipa::path(post, path = "/user/2fa/recovery-code/authenticate", operation_id = "authenticateRecoveryCode", tag = "two-factor: recovery codes",
    params(MailQuery, crate::browser::CookieQuery), request_body = RecoveryCodeBody, security(("access" = []), ("partial" = [])),
    responses(
        (status = 200, description = "With a partial token: a new login (all three tokens). With an access token: `sudoToken` only. With `cookie=true` and a partial token, `refreshToken` is `null` and the refresh token is in the `authd_refresh` cookie", body = SecondFactorTokens),
        (status = 400, description = "Invalid input (a sentence), e.g. `cookie must be true or false`", body = ErrorBody),
        (status = 401, description = "`RECOVERY_CODE_INVALID`, `NO_TOKEN_PROVIDED` or `INVALID_TOKEN`", body = ErrorBody),
        (status = 409, description = "`RECOVERY_CODES_UNINITIALIZED`: the account has no recovery codes", body = ErrorBody),
        (status = 429, description = "`TOO_MANY_RECOVERY_CODE_CHECKS`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the next guess may be made"))),
    ))]
pub async fn authenticate(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    cookie: crate::browser::CookieMode,
    auth: AccessOrPartial,
    ip: crate::client_ip::ClientIp,
    query: web::Query<MailQuery>,
    body: JsonBody<RecoveryCodeBody>,
) -> Result<HttpResponse, ApiError> {
    let typed = body.0.recovery_code;
    if typed.chars().count() > recovery::MAX_INPUT_LEN {
        return Err(ApiError::bad_request(
            "recoveryCode must be at most 64 characters long",
        ));
    }
    recovery_codes::authenticate(&state, auth.user_id, ip.0, typed, &query).await?;
    tokens_for(&state, &auth, "recovery_code", &req, cookie).await
}

/// Replaces the recovery codes with a new set; every older code stops working.
#[utoipa::path(post, path = "/user/2fa/recovery-code/reset", operation_id = "resetRecoveryCodes", tag = "two-factor: recovery codes",
    params(MailQuery), request_body = EmptyBody, security(("sudo" = [])),
    responses(
        (status = 200, description = "The new codes, shown this once", body = RecoveryCodesBody),
        (status = 400, description = "Invalid input (a sentence)", body = ErrorBody),
        (status = 401, description = "`NO_TOKEN_PROVIDED` or `INVALID_TOKEN`", body = ErrorBody),
        (status = 409, description = "`2FA_IS_DISABLED`: no second factor is on", body = ErrorBody),
    ))]
pub async fn reset(
    state: web::Data<AppState>,
    auth: SudoAuth,
    query: web::Query<MailQuery>,
    _body: JsonBody<EmptyBody>,
) -> Result<HttpResponse, ApiError> {
    let codes = recovery_codes::reset(&state, auth.user_id, &query).await?;
    Ok(json_ok(&RecoveryCodesBody {
        recovery_codes: codes,
    }))
}

/// Seconds until the next recovery-code guess may be made: the wait a 429 would report.
#[utoipa::path(get, path = "/user/2fa/recovery-code/next-guess", operation_id = "recoveryCodeNextGuess", tag = "two-factor: recovery codes",
    security(("access" = [])),
    responses(
        (status = 200, description = "The wait; 0 means now", body = DurationBody),
        (status = 401, description = "`NO_TOKEN_PROVIDED` or `INVALID_TOKEN`", body = ErrorBody),
        (status = 409, description = "`RECOVERY_CODES_UNINITIALIZED`", body = ErrorBody),
    ))]
pub async fn next_guess(
    state: web::Data<AppState>,
    auth: AccessAuth,
    ip: crate::client_ip::ClientIp,
) -> Result<HttpResponse, ApiError> {
    let duration = recovery_codes::next_guess(&state, auth.user_id, ip.0).await?;
    Ok(json_ok(&DurationBody { duration }))
}
