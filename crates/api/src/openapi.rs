//! The OpenAPI 3.1 document, generated from the route annotations, and the offline docs page.

use utoipa::OpenApi;

use crate::error::ErrorBody;
use crate::routes;

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "authd",
        description = "Password reset by emailed one-time codes, two-factor authentication, email \
            changes, login and tokens.\n\nEvery error answer, of every route, has the body \
            `{statusCode, error, message, retryAfter?}`. `message` is a stable UPPER_SNAKE code, \
            except for 400 validation errors where it is one sentence naming the first problem. \
            Framework refusals use `NOT_FOUND` (404), `METHOD_NOT_ALLOWED` (405, with `Allow`), \
            `PAYLOAD_TOO_LARGE` (413, bodies over 16 KiB), `UNSUPPORTED_MEDIA_TYPE` (415, a JSON \
            body without `Content-Type: application/json`) and `INTERNAL_SERVER_ERROR` (500). \
            Every response carries `X-Request-Id`.",
    ),
    paths(
        routes::password::reset_send,
        routes::password::forgot_password,
        routes::password::reset_validate,
        routes::password::reset_with_otp,
        routes::password::change_password,
        routes::auth::login,
        routes::auth::access_token,
        routes::auth::validate_access,
        routes::auth::rotate_refresh,
        routes::auth::validate_refresh,
        routes::auth::logout,
        routes::auth::jwks,
        routes::ops::healthz,
        routes::ops::readyz,
    ),
    components(schemas(ErrorBody, routes::ops::Status)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "authentication", description = "Login, refresh, access and signing keys"),
        (name = "password", description = "Change the password"),
        (name = "password reset", description = "Reset a forgotten password with an emailed one-time code"),
        (name = "operations", description = "Health and readiness"),
    ),
)]
pub struct ApiDoc;

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The bearer token kinds, as security schemes.
#[derive(Debug)]
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, what) in [
            ("refresh", "A refresh token (opaque)"),
            ("access", "An access token (JWT)"),
            ("sudo", "A sudo token (JWT)"),
            ("partial", "A partial token (JWT)"),
        ] {
            let scheme = HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(what))
                .build();
            components.add_security_scheme(name, SecurityScheme::Http(scheme));
        }
    }
}
