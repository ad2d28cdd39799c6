//! Login and tokens: refresh tokens (opaque, stored as hashes, rotated, grouped in families),
//! and signed access tokens verifiable offline with the keys at `/.well-known/jwks.json`.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{AccessAuth, PresentedRefresh, RefreshAuth};
use crate::browser::{clear_refresh_cookie, set_refresh_cookie, CookieMode, CookieQuery};
use crate::error::ErrorBody;
use crate::services::sessions::{self, LoginOutcome};
use crate::ErrorCode;
use crate::{json_ok, ApiError, AppState, JsonBody};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/auth/login", "POST").route(web::post().to(login)))
        .service(super::resource("/auth/accesstoken", "GET").route(web::get().to(access_token)))
        .service(
            super::resource("/auth/accesstoken/validate", "GET")
                .route(web::get().to(validate_access)),
        )
        .service(super::resource("/auth/refreshtoken", "GET").route(web::get().to(rotate_refresh)))
        .service(
            super::resource("/auth/refreshtoken/validate", "GET")
                .route(web::get().to(validate_refresh)),
        )
        .service(super::resource("/auth/logout", "POST").route(web::post().to(logout)))
        .service(super::resource("/auth/sudo", "POST").route(web::post().to(sudo)))
        .service(super::resource("/.well-known/jwks.json", "GET").route(web::get().to(jwks)));
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginBody {
    /// The account's email address.
    #[schema(max_length = 256, example = "ann@example.org")]
    pub username: String,
    #[schema(max_length = 256, example = "Correct1horse")]
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserIdBody {
    pub user_id: i64,
}

fn text(token: String) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        ))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .body(token)
}

/// A 200 answer carrying a new refresh token: `text/plain` in the body, or in cookie mode the
/// JSON body `null` and the token in the cookie.
fn refresh_answer(
    req: &actix_web::HttpRequest,
    state: &AppState,
    cookie_mode: bool,
    token: String,
) -> HttpResponse {
    if !cookie_mode {
        return text(token);
    }
    let mut res = json_ok(&());
    set_refresh_cookie(&mut res, req, state, &token);
    res
}

/// Exchanges an email and password for a refresh token (`text/plain`). Unknown accounts,
/// disabled accounts and wrong passwords get the same answer in the same time. With
/// `cookie=true` the token is set as the `authd_refresh` cookie and the body is `null`.
#[utoipa::path(post, path = "/auth/login", operation_id = "login", tag = "authentication", request_body = LoginBody,
    params(CookieQuery),
    responses(
        (status = 200, description = "A refresh token (`text/plain`); with `cookie=true` the JSON body `null`, the token in the `authd_refresh` cookie",
            content((String = "text/plain"), (Option<String> = "application/json", example = json!(null)))),
        (status = 400, description = "Invalid input (a sentence), e.g. `cookie must be true or false`", body = ErrorBody),
        (status = 401, description = "`PASSWORD_INCORRECT`; or `TWO_FACTOR_REQUIRED` (the password was right, the account has a second factor): the body then also has `partialToken` and `methods`", body = TwoFactorRequiredBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody),
        (status = 415, description = "`UNSUPPORTED_MEDIA_TYPE`", body = ErrorBody),
        (status = 429, description = "`TOO_MANY_FAILED_PASSWORD_CHECKS`, or `TOO_MANY_REQUESTS` from this client IP", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the next attempt may be made"))),
        (status = 500, description = "`NO_PASSWORD_INFO`: the account has no password", body = ErrorBody),
    ))]
pub async fn login(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    cookie: CookieMode,
    body: JsonBody<LoginBody>,
) -> Result<HttpResponse, ApiError> {
    crate::client_ip::ip_budget(&state, &req, authd_ratelimit::IpGroup::Login).await?;
    let LoginBody { username, password } = body.0;
    if username.chars().count() > 256 {
        return Err(ApiError::bad_request(
            "username must be at most 256 characters long",
        ));
    }
    if password.chars().count() > 256 {
        return Err(ApiError::bad_request(
            "password must be at most 256 characters long",
        ));
    }
    let ip = crate::client_ip::client_ip(&state, &req);
    match sessions::login(&state, &username, password, ip).await? {
        LoginOutcome::SignedIn { refresh } => Ok(refresh_answer(&req, &state, cookie.0, refresh)),
        LoginOutcome::SecondFactorRequired { partial, methods } => {
            Ok(two_factor_required(partial, methods))
        }
    }
}

/// The body of the login's 401: the contract's error fields, and with `TWO_FACTOR_REQUIRED`
/// how to go on.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwoFactorRequiredBody {
    #[schema(example = 401)]
    pub status_code: u16,
    #[schema(example = "Unauthorized")]
    pub error: String,
    #[schema(example = "TWO_FACTOR_REQUIRED")]
    pub message: String,
    /// With `TWO_FACTOR_REQUIRED` only: a partial token for the `authenticate` calls and the
    /// email-OTP challenge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial_token: Option<String>,
    /// With `TWO_FACTOR_REQUIRED` only: the second factors the account can use, of
    /// `emailOtp`, `totp`, `recoveryCode`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = json!(["totp", "recoveryCode"]))]
    pub methods: Option<Vec<String>>,
}

/// The login's 401 `TWO_FACTOR_REQUIRED`, with the partial token and the methods.
fn two_factor_required(partial: String, methods: Vec<&'static str>) -> HttpResponse {
    let body = TwoFactorRequiredBody {
        status_code: 401,
        error: crate::error::reason_phrase(StatusCode::UNAUTHORIZED).to_owned(),
        message: ErrorCode::TwoFactorRequired.as_str().to_owned(),
        partial_token: Some(partial),
        methods: Some(methods.into_iter().map(str::to_owned).collect()),
    };
    crate::error::contract_response_with(StatusCode::UNAUTHORIZED, &body, None, None)
}

/// Makes an access token from a refresh token (`text/plain`), given as a bearer token or
/// as the `authd_refresh` cookie.
#[utoipa::path(get, path = "/auth/accesstoken", operation_id = "accesstoken", tag = "authentication", security(("refresh" = []), ("refreshCookie" = [])),
    responses(
        (status = 200, description = "An access token (JWT)", content_type = "text/plain", body = String),
        (status = 401, description = "`NO_TOKEN_PROVIDED` or `INVALID_TOKEN`", body = ErrorBody),
    ))]
pub async fn access_token(
    state: web::Data<AppState>,
    auth: RefreshAuth,
) -> Result<HttpResponse, ApiError> {
    let token = sessions::access_token(&state, auth.user_id, &auth.family_id)?;
    Ok(text(token))
}

#[utoipa::path(get, path = "/auth/accesstoken/validate", operation_id = "validateAccesstoken", tag = "authentication", security(("access" = [])),
    responses(
        (status = 200, description = "The token is valid", body = UserIdBody),
        (status = 401, description = "`NO_TOKEN_PROVIDED` or `INVALID_TOKEN`", body = ErrorBody),
    ))]
pub async fn validate_access(auth: AccessAuth) -> HttpResponse {
    json_ok(&UserIdBody {
        user_id: auth.user_id,
    })
}

/// Rotates a refresh token: the presented one is revoked and a new one of the same login
/// returned. Presenting an already rotated token revokes the whole login (theft detection).
/// A token presented in the `authd_refresh` cookie is answered in cookie mode whatever the
/// `cookie` parameter says (a token a script could not read stays out of its reach); a bearer
/// token is answered in cookie mode with `cookie=true`.
#[utoipa::path(get, path = "/auth/refreshtoken", operation_id = "refreshtoken", tag = "authentication", security(("refresh" = []), ("refreshCookie" = [])),
    params(CookieQuery),
    responses(
        (status = 200, description = "A new refresh token (`text/plain`); in cookie mode the JSON body `null`, the token in the `authd_refresh` cookie",
            content((String = "text/plain"), (Option<String> = "application/json", example = json!(null)))),
        (status = 400, description = "`cookie must be true or false`", body = ErrorBody),
        (status = 401, description = "`NO_TOKEN_PROVIDED` or `INVALID_TOKEN`", body = ErrorBody),
    ))]
pub async fn rotate_refresh(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    cookie: CookieMode,
    presented: PresentedRefresh,
    ip: crate::client_ip::ClientIp,
) -> Result<HttpResponse, ApiError> {
    let new = sessions::rotate(&state, &presented.token, ip.0).await?;
    Ok(refresh_answer(
        &req,
        &state,
        cookie.0 || presented.via_cookie,
        new,
    ))
}

#[utoipa::path(get, path = "/auth/refreshtoken/validate", operation_id = "validateRefreshtoken", tag = "authentication", security(("refresh" = []), ("refreshCookie" = [])),
    responses(
        (status = 200, description = "The token is valid", body = UserIdBody),
        (status = 401, description = "`NO_TOKEN_PROVIDED` or `INVALID_TOKEN`", body = ErrorBody),
    ))]
pub async fn validate_refresh(auth: RefreshAuth) -> HttpResponse {
    json_ok(&UserIdBody {
        user_id: auth.user_id,
    })
}

/// Revokes the presented refresh token. When it came in the `authd_refresh` cookie, the
/// answer also clears the cookie.
#[utoipa::path(post, path = "/auth/logout", operation_id = "logout", tag = "authentication", security(("refresh" = []), ("refreshCookie" = [])),
    responses(
        (status = 204, description = "Logged out",
            headers(("Set-Cookie" = String, description = "When the token came in the cookie: `authd_refresh=; Max-Age=0` with the cookie's attributes, which removes it"))),
        (status = 401, description = "`NO_TOKEN_PROVIDED` or `INVALID_TOKEN`", body = ErrorBody),
    ))]
pub async fn logout(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    auth: RefreshAuth,
) -> Result<HttpResponse, ApiError> {
    sessions::logout(&state, auth.token_hash).await?;
    let mut res = HttpResponse::NoContent().finish();
    if auth.via_cookie {
        clear_refresh_cookie(&mut res, &req, &state);
    }
    Ok(res)
}

/// The public keys that verify access tokens (RFC 7517; Ed25519 keys as OKP, RFC 8037).
#[utoipa::path(get, path = "/.well-known/jwks.json", operation_id = "jwks", tag = "authentication",
    responses((status = 200, description = "The JWK set", body = Object)))]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    json_ok(&state.signer.jwks())
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SudoBody {
    #[schema(max_length = 256, example = "Correct1horse")]
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SudoTokenBody {
    /// A sudo token for the caller's login, living `tokens.sudo_lifetime_secs`.
    pub sudo_token: String,
}

/// Re-authentication for an account without a second factor: the password again, with an
/// access token, gives a sudo token for the same login (OWASP ASVS 7.5.1). Accounts with a
/// second factor step up with an `authenticate` call instead. Wrong passwords count in the
/// same backoff as at login.
#[utoipa::path(post, path = "/auth/sudo", operation_id = "sudo", tag = "authentication", request_body = SudoBody,
    security(("access" = [])),
    responses(
        (status = 200, description = "A sudo token", body = SudoTokenBody),
        (status = 400, description = "Invalid input (a sentence)", body = ErrorBody),
        (status = 401, description = "`PASSWORD_INCORRECT`, `NO_TOKEN_PROVIDED` or `INVALID_TOKEN`", body = ErrorBody),
        (status = 409, description = "`2FA_IS_ENABLED`: the account has a second factor; step up with an `authenticate` call", body = ErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody),
        (status = 415, description = "`UNSUPPORTED_MEDIA_TYPE`", body = ErrorBody),
        (status = 429, description = "`TOO_MANY_FAILED_PASSWORD_CHECKS`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the next attempt may be made"))),
        (status = 500, description = "`NO_PASSWORD_INFO`: the account has no password", body = ErrorBody),
    ))]
pub async fn sudo(
    state: web::Data<AppState>,
    auth: AccessAuth,
    ip: crate::client_ip::ClientIp,
    body: JsonBody<SudoBody>,
) -> Result<HttpResponse, ApiError> {
    if body.0.password.chars().count() > 256 {
        return Err(ApiError::bad_request(
            "password must be at most 256 characters long",
        ));
    }
    let token = sessions::sudo_by_password(&state, &auth, body.0.password, ip.0).await?;
    Ok(json_ok(&SudoTokenBody { sudo_token: token }))
}
