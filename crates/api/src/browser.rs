//! Browser apps: CORS for the origins of `http.cors.allowed_origins`.

use actix_cors::{Cors, CorsError};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::ResponseError;
use authd_settings::CorsSettings;

use crate::middleware::REQUEST_ID;
use crate::ApiError;

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
    let forbidden = |code| ApiError::code(StatusCode::FORBIDDEN, code);
    match e {
        CorsError::OriginNotAllowed | CorsError::MissingOrigin => forbidden("ORIGIN_NOT_ALLOWED"),
        CorsError::MethodNotAllowed
        | CorsError::MissingRequestMethod
        | CorsError::BadRequestMethod => forbidden("CORS_METHOD_NOT_ALLOWED"),
        CorsError::HeadersNotAllowed => forbidden("CORS_HEADERS_NOT_ALLOWED"),
        CorsError::BadRequestHeaders => ApiError::bad_request(
            "Access-Control-Request-Headers must be a comma-separated list of header names",
        ),
        _ => forbidden("CORS_REQUEST_NOT_ALLOWED"),
    }
}
