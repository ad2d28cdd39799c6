//! Browser apps: CORS for the origins of `http.cors.allowed_origins`, and cookie mode, where
//! the refresh token travels in an `HttpOnly` cookie that scripts cannot read instead of in
//! the body. A call authenticated by that cookie is accepted only from those origins (the
//! cookie is sent by the browser on its own, so the origin check is what stops cross-site
//! request forgery). The cookie's value is a credential: it is never logged.

use std::future::{ready, Ready};

use actix_cors::{Cors, CorsError};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError};
use authd_settings::{CorsSettings, Environment};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::middleware::REQUEST_ID;
use crate::ErrorCode;
use crate::{ApiError, AppState};

/// The name of the cookie that carries the refresh token in cookie mode.
pub const REFRESH_COOKIE: &str = "authd_refresh";

/// The path the cookie is scoped to: every call that takes a refresh token is under it.
const COOKIE_PATH: &str = "/auth";

/// The CORS middleware for the configured origins. Credentials are allowed (cookie mode needs
/// them), so every origin is listed exactly; the settings refuse a wildcard. Requests from other
/// origins are served as before but without `Access-Control-*` headers, so a browser keeps the
/// answer from the script; a refused preflight is answered by [`cors_refusals`].
pub fn cors(settings: &CorsSettings) -> Cors {
    let max_age = usize::try_from(settings.max_age_secs).unwrap_or(usize::MAX);
    settings
        .allowed_origins
        .iter()
        .fold(Cors::default(), |cors, origin| cors.allowed_origin(origin))
        .allowed_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE, REQUEST_ID])
        .expose_headers([header::RETRY_AFTER, REQUEST_ID])
        .supports_credentials()
        .max_age(max_age)
        .block_on_origin_mismatch(false)
}

/// Puts actix-cors's refusals (a plain-text 400) into the contract's error shape: 403
/// `ORIGIN_NOT_ALLOWED`, `CORS_METHOD_NOT_ALLOWED` or `CORS_HEADERS_NOT_ALLOWED`, or a 400
/// sentence for a malformed `Access-Control-Request-Headers`. An answer that allows no origin
/// carries no other `Access-Control-*` header either (actix-cors adds the credentials and
/// exposed headers to every answer).
pub async fn cors_refusals(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    if !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        headers.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
        headers.remove(header::ACCESS_CONTROL_EXPOSE_HEADERS);
    }
    let refusal = res
        .response()
        .error()
        .and_then(|e| e.as_error::<CorsError>())
        .map(refusal);
    Ok(match refusal {
        Some(err) => {
            let (req, _) = res.into_parts();
            ServiceResponse::new(req, err.error_response())
        }
        None => res.map_into_boxed_body(),
    })
}

fn refusal(e: &CorsError) -> ApiError {
    let forbidden = ApiError::from;
    match e {
        CorsError::OriginNotAllowed | CorsError::MissingOrigin => {
            forbidden(ErrorCode::OriginNotAllowed)
        }
        CorsError::MethodNotAllowed
        | CorsError::MissingRequestMethod
        | CorsError::BadRequestMethod => forbidden(ErrorCode::CorsMethodNotAllowed),
        CorsError::HeadersNotAllowed => forbidden(ErrorCode::CorsHeadersNotAllowed),
        CorsError::BadRequestHeaders => ApiError::bad_request(
            "Access-Control-Request-Headers must be a comma-separated list of header names",
        ),
        _ => forbidden(ErrorCode::CorsRequestNotAllowed),
    }
}

/// The `cookie` query parameter, for the OpenAPI document; [`CookieMode`] reads it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CookieQuery {
    /// `true`: the refresh token is not in the answer but set as the `authd_refresh` cookie
    /// (`HttpOnly; Secure; SameSite=Strict; Path=/auth`, living as long as the token). Default
    /// `false`; anything but `true` or `false` is 400.
    pub cookie: Option<bool>,
}

/// `?cookie=true|false` (default false): whether a new refresh token goes into the cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieMode(pub bool);

impl CookieMode {
    fn parse(query: &str) -> Result<Self, ApiError> {
        let mut values = url_pairs(query)
            .filter(|(k, _)| k == "cookie")
            .map(|(_, v)| v);
        match (values.next().as_deref(), values.next()) {
            (None, _) | (Some("false"), None) => Ok(Self(false)),
            (Some("true"), None) => Ok(Self(true)),
            _ => Err(ApiError::bad_request("cookie must be true or false")),
        }
    }
}

impl FromRequest for CookieMode {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Self::parse(req.query_string()))
    }
}

/// The decoded `key=value` pairs of a query string (`+` is a space, `%XX` a byte).
fn url_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k), decode(v))
    })
}

fn decode(s: &str) -> String {
    let spaced = s.replace('+', " ");
    let bytes = spaced.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let byte = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(u8::try_from(byte).unwrap_or(0));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The refresh token of the `authd_refresh` cookie, if the request carries a non-empty one.
pub(crate) fn refresh_cookie(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == REFRESH_COOKIE)
        .map(|(_, value)| value.trim_matches('"').to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 4096)
}

/// 403 `ORIGIN_NOT_ALLOWED` unless the request's `Origin` is one of the configured CORS
/// origins. A missing `Origin` is refused too: browsers send it on every cross-origin call,
/// and a call without one cannot show where it comes from.
pub(crate) fn check_origin(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    let allowed = &state.settings.http.cors.allowed_origins;
    if origin.is_some_and(|o| allowed.iter().any(|a| a == o)) {
        return Ok(());
    }
    tracing::warn!(
        security_event = "cookie_origin_refused",
        path = req.path(),
        origin = ?origin.map(|o| o.chars().take(100).collect::<String>()),
        "a call authenticated by the refresh cookie came from an origin not allowed"
    );
    Err(ApiError::from(ErrorCode::OriginNotAllowed))
}

/// `Secure` is left off only for a development server reached as `localhost` or `127.0.0.1`,
/// where there is no TLS and some browsers (Safari) would drop a `Secure` cookie.
fn secure(req: &HttpRequest, state: &AppState) -> bool {
    if state.environment != Environment::Development {
        return true;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or_default();
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    !(name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1")
}

fn cookie(req: &HttpRequest, state: &AppState, value: &str, max_age_secs: u64) -> HeaderValue {
    let secure = if secure(req, state) { "; Secure" } else { "" };
    let text = format!(
        "{REFRESH_COOKIE}={value}; Max-Age={max_age_secs}; Path={COOKIE_PATH}; HttpOnly{secure}; SameSite=Strict"
    );
    // Refresh tokens are base64url, always a valid header value; an empty cookie otherwise.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Sets a refresh token just issued (living `tokens.refresh_lifetime_secs`) as the cookie.
pub(crate) fn set_refresh_cookie(
    res: &mut HttpResponse,
    req: &HttpRequest,
    state: &AppState,
    token: &str,
) {
    let max_age = state.settings.tokens.refresh_lifetime_secs;
    res.headers_mut()
        .append(header::SET_COOKIE, cookie(req, state, token, max_age));
}

/// Tells the browser to drop the cookie (same attributes, `Max-Age=0`).
pub(crate) fn clear_refresh_cookie(res: &mut HttpResponse, req: &HttpRequest, state: &AppState) {
    res.headers_mut()
        .append(header::SET_COOKIE, cookie(req, state, "", 0));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_parameter_is_true_or_false_once() {
        for (query, want) in [
            ("", Some(false)),
            ("origin=x", Some(false)),
            ("cookie=false", Some(false)),
            ("cookie=true", Some(true)),
            ("language=nl&cookie=true", Some(true)),
            ("cookie=%74rue", Some(true)),
            ("cookie=maybe", None),
            ("cookie=", None),
            ("cookie", None),
            ("cookie=True", None),
            ("cookie=1", None),
            ("cookie=true&cookie=true", None),
        ] {
            let got = CookieMode::parse(query).ok().map(|m| m.0);
            assert_eq!(got, want, "{query:?}");
        }
    }

    #[test]
    fn the_refresh_cookie_is_found_among_others() {
        let req = actix_web::test::TestRequest::default()
            .insert_header((header::COOKIE, "a=1; authd_refresh=tok-en_1; b=2"))
            .to_http_request();
        assert_eq!(refresh_cookie(&req).as_deref(), Some("tok-en_1"));
        let req = actix_web::test::TestRequest::default()
            .insert_header((header::COOKIE, "authd_refresh=; x_authd_refresh=no"))
            .to_http_request();
        assert_eq!(refresh_cookie(&req), None);
    }
}
