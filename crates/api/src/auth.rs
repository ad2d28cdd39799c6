//! Token extractors, one per kind the contract names. A missing or malformed
//! `Authorization: Bearer` header is 401 `NO_TOKEN_PROVIDED`; a token that is expired,
//! revoked, of the wrong kind or badly signed is 401 `INVALID_TOKEN`. A refresh token may
//! also come in the cookie of cookie mode (see [`crate::browser`]) when no `Authorization`
//! header is given.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use authd_domain::tokens::{refresh_token_hash, Claims, TokenKind};
use authd_store::{refresh_tokens, users};

use crate::ErrorCode;
use crate::{ApiError, AppState};

pub fn no_token() -> ApiError {
    ApiError::from(ErrorCode::NoTokenProvided)
}

pub fn invalid_token() -> ApiError {
    ApiError::from(ErrorCode::InvalidToken)
}

/// The bearer token of a request.
fn bearer(req: &HttpRequest) -> Result<String, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(no_token)?;
    let value = value.to_str().map_err(|_| no_token())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(no_token)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.len() > 4096 {
        return Err(no_token());
    }
    Ok(token.to_owned())
}

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::internal("no application state"))
}

fn verify(state: &AppState, token: &str, kind: TokenKind) -> Result<Claims, ApiError> {
    state
        .signer
        .verify(token, kind, state.clock.now_secs())
        .map_err(|_| invalid_token())
}

/// The bearer token and the application state, read before the async part of an extractor.
fn bearer_and_state(req: &HttpRequest) -> Result<(String, web::Data<AppState>), ApiError> {
    Ok((bearer(req)?, state(req)?))
}

type Fut<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

/// A presented refresh token: from `Authorization: Bearer` when that header is there at all
/// (the header wins over the cookie), else from the `authd_refresh` cookie, which is accepted
/// only from an allowed origin (403 `ORIGIN_NOT_ALLOWED`).
#[derive(Clone)]
pub struct PresentedRefresh {
    pub token: String,
    /// The token came in the cookie: the answer keeps it there.
    pub via_cookie: bool,
}

impl std::fmt::Debug for PresentedRefresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedRefresh")
            .field("token", &"<redacted>")
            .field("via_cookie", &self.via_cookie)
            .finish()
    }
}

fn presented_refresh(req: &HttpRequest) -> Result<PresentedRefresh, ApiError> {
    if req.headers().contains_key(header::AUTHORIZATION) {
        return Ok(PresentedRefresh {
            token: bearer(req)?,
            via_cookie: false,
        });
    }
    let token = crate::browser::refresh_cookie(req).ok_or_else(no_token)?;
    crate::browser::check_origin(req, state(req)?.get_ref())?;
    Ok(PresentedRefresh {
        token,
        via_cookie: true,
    })
}

impl FromRequest for PresentedRefresh {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(presented_refresh(req))
    }
}

/// A live refresh token: the login it belongs to.
#[derive(Debug, Clone)]
pub struct RefreshAuth {
    pub user_id: i64,
    pub family_id: String,
    pub token_hash: String,
    /// The token came in the cookie of cookie mode.
    pub via_cookie: bool,
}

impl FromRequest for RefreshAuth {
    type Error = ApiError;
    type Future = Fut<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let parts = presented_refresh(req).and_then(|p| Ok((p, state(req)?)));
        Box::pin(async move {
            let (PresentedRefresh { token, via_cookie }, state) = parts?;
            let hash = refresh_token_hash(&token);
            let lookup = hash.clone();
            let clock = state.clock.clone();
            let live = state
                .store
                .read(move |c| {
                    let Some(t) = refresh_tokens::find_live(c, &lookup, clock.now_ms())? else {
                        return Ok(None);
                    };
                    let active = users::find_by_id(c, t.user_id)?.is_some_and(|u| !u.disabled);
                    Ok(active.then_some(t))
                })
                .await?
                .ok_or_else(invalid_token)?;
            Ok(Self {
                user_id: live.user_id,
                family_id: live.family_id,
                token_hash: hash,
                via_cookie,
            })
        })
    }
}

macro_rules! signed_token_extractor {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            pub user_id: i64,
            pub claims: Claims,
        }

        impl FromRequest for $name {
            type Error = ApiError;
            type Future = std::future::Ready<Result<Self, ApiError>>;

            fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
                std::future::ready((|| {
                    let token = bearer(req)?;
                    let claims = verify(state(req)?.get_ref(), &token, $kind)?;
                    let user_id = claims.user_id().ok_or_else(invalid_token)?;
                    Ok(Self { user_id, claims })
                })())
            }
        }
    };
}

signed_token_extractor!(
    /// An access token: proves identity.
    AccessAuth,
    TokenKind::Access
);
signed_token_extractor!(
    /// A sudo token: proves recent presence (step-up).
    SudoAuth,
    TokenKind::Sudo
);
signed_token_extractor!(
    /// A partial token: the password was right, a second factor is pending.
    PartialAuth,
    TokenKind::Partial
);

/// A sudo token, or an access token while the user has no second factor on.
#[derive(Debug, Clone)]
pub struct SudoOrAccessWithout2fa {
    pub user_id: i64,
    /// The login of an access token (absent for sudo tokens).
    pub sid: Option<String>,
}

impl FromRequest for SudoOrAccessWithout2fa {
    type Error = ApiError;
    type Future = Fut<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let parts = bearer_and_state(req);
        let req_path = req.path().to_owned();
        Box::pin(async move {
            let (token, state) = parts?;
            let now = state.clock.now_secs();
            if let Ok(c) = state.signer.verify(&token, TokenKind::Sudo, now) {
                let user_id = c.user_id().ok_or_else(invalid_token)?;
                return Ok(Self {
                    user_id,
                    sid: c.sid,
                });
            }
            let c = state
                .signer
                .verify(&token, TokenKind::Access, now)
                .map_err(|_| invalid_token())?;
            let user_id = c.user_id().ok_or_else(invalid_token)?;
            // With security.strict_sudo every account steps up (POST /auth/sudo for accounts
            // without a second factor); otherwise only accounts with a second factor must.
            let refused = state.settings.security.strict_sudo
                || state
                    .store
                    .read(move |conn| authd_store::two_factor::enabled(conn, user_id))
                    .await?;
            if refused {
                tracing::warn!(
                    security_event = "sudo_refused",
                    user_id,
                    path = req_path,
                    "an access token where a sudo token is required"
                );
                return Err(invalid_token());
            }
            Ok(Self {
                user_id,
                sid: c.sid,
            })
        })
    }
}

/// An access token (proves identity) or a partial token (password right, second factor
/// pending): what the `authenticate` calls and the email-OTP challenge take.
#[derive(Debug, Clone)]
pub struct AccessOrPartial {
    pub user_id: i64,
    /// True for a partial token: a successful second factor completes a login.
    pub partial: bool,
    /// The login of an access token.
    pub sid: Option<String>,
}

impl FromRequest for AccessOrPartial {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready((|| {
            let token = bearer(req)?;
            let state = state(req)?;
            let now = state.clock.now_secs();
            let (claims, partial) = match state.signer.verify(&token, TokenKind::Access, now) {
                Ok(c) => (c, false),
                Err(_) => (verify(&state, &token, TokenKind::Partial)?, true),
            };
            let user_id = claims.user_id().ok_or_else(invalid_token)?;
            Ok(Self {
                user_id,
                partial,
                sid: claims.sid,
            })
        })())
    }
}
