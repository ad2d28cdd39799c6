//! The OpenAPI 3.1 document, generated from the route annotations, and the offline docs page.

use crate::ErrorCode;
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
            Every response carries `X-Request-Id`.\n\n\
            **Browser apps.** The origins listed in `http.cors.allowed_origins` may call the API \
            cross-origin with credentials (CORS; methods GET, POST, PUT, DELETE; headers \
            `Authorization`, `Content-Type`, `X-Request-Id`; `Retry-After` and `X-Request-Id` \
            readable by scripts). A refused preflight answers 403 `ORIGIN_NOT_ALLOWED`, \
            `CORS_METHOD_NOT_ALLOWED` or `CORS_HEADERS_NOT_ALLOWED`. In cookie mode \
            (`cookie=true` on login, refresh and the `authenticate` calls) the refresh token is \
            kept in the `HttpOnly` cookie `authd_refresh` (`Secure; SameSite=Strict; \
            Path=/auth`) instead of the body; the four calls that take a refresh token accept \
            that cookie when no `Authorization` header is given (the header wins when both are \
            there), only from an allowed `Origin`.",
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
        routes::auth::sudo,
        routes::auth::jwks,
        routes::email::initiate,
        routes::email::complete,
        routes::two_factor::overview,
        routes::two_factor::email_otp::setup,
        routes::two_factor::email_otp::enable,
        routes::two_factor::email_otp::challenge,
        routes::two_factor::email_otp::authenticate,
        routes::two_factor::email_otp::next_email,
        routes::two_factor::email_otp::deactivate,
        routes::two_factor::totp::setup,
        routes::two_factor::totp::enable,
        routes::two_factor::totp::authenticate,
        routes::two_factor::totp::next_guess,
        routes::two_factor::totp::deactivate,
        routes::two_factor::recovery_codes::authenticate,
        routes::two_factor::recovery_codes::reset,
        routes::two_factor::recovery_codes::next_guess,
        routes::ops::healthz,
        routes::ops::readyz,
    ),
    components(schemas(ErrorBody, routes::ops::Status)),
    modifiers(&SecuritySchemes, &BodyRefusals, &CookieModeDocs),
    tags(
        (name = "authentication", description = "Login, refresh, access and signing keys"),
        (name = "password", description = "Change the password"),
        (name = "password reset", description = "Reset a forgotten password with an emailed one-time code"),
        (name = "two-factor", description = "The second factors of an account. A login of an account with a second factor on answers `401 TWO_FACTOR_REQUIRED` with a partial token; any `authenticate` call with it completes the login. With an access token, `authenticate` gives a sudo token (step-up)."),
        (name = "two-factor: email OTP", description = "Codes mailed to a confirmed address. One code mail per account per window (setup and challenge together)."),
        (name = "two-factor: TOTP", description = "RFC 6238 codes (SHA-1, 6 digits, 30 s) from an authenticator app. A code counts for the current or the previous step, and never twice. After 3 wrong codes in a row guesses must wait (2 s, doubling, up to 15 min)."),
        (name = "two-factor: recovery codes", description = "10 single-use codes of 16 characters (alphabet `23456789ABCDEFGHJKMNPQRSTUVWXYZ`), created when the first method is turned on and deleted when the last is turned off. Case, spaces and dashes are ignored. Wrong codes back off as TOTP codes do."),
        (name = "email address", description = "Change the login address: a code mailed to the new address confirms it; the old address is told."),
        (name = "operations", description = "Health and readiness"),
    ),
)]
pub struct ApiDoc;

pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    with_message_enums(&mut doc);
    doc
}

/// The message codes each error answer of an operation can carry, read from its description
/// (the codes it names in backticks, each of which must be an [`ErrorCode`] of that status;
/// `message_codes_are_codes_of_their_status` checks this) and written into the schema as an
/// enum, so client generators and schema checks know them. 400s are left free text: their
/// message is most often a sentence. Every 500 may also be `INTERNAL_SERVER_ERROR`.
fn with_message_enums(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Type};
    use utoipa::openapi::RefOr;
    for item in doc.paths.paths.values_mut() {
        for op in operations_mut(item) {
            for (status, response) in op.responses.responses.iter_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                let mut codes = documented_codes(status, &response.description);
                if codes.is_empty() || status == "400" {
                    continue;
                }
                if status == "500" && !codes.contains(&ErrorCode::InternalServerError) {
                    codes.push(ErrorCode::InternalServerError);
                }
                for content in response.content.values_mut() {
                    let Some(RefOr::Ref(body)) = &content.schema else {
                        continue;
                    };
                    let message = ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(codes.iter().map(|c| c.as_str())))
                        .description(Some("The message code of this answer"));
                    let narrowed = ObjectBuilder::new().property("message", message);
                    content.schema = Some(RefOr::T(
                        AllOfBuilder::new()
                            .item(RefOr::Ref(body.clone()))
                            .item(narrowed)
                            .into(),
                    ));
                }
            }
        }
    }
}

/// The message codes a response's description names in backticks, when every one of them is
/// a code of the response's status; empty otherwise (texts that are no codes, like the older
/// clients' sentences).
pub fn documented_codes(status: &str, description: &str) -> Vec<ErrorCode> {
    let named = backticked_codes(description);
    let codes: Vec<ErrorCode> = named.iter().filter_map(|n| ErrorCode::parse(n)).collect();
    if codes.len() != named.len() || codes.iter().any(|c| c.status().as_str() != status) {
        return Vec::new();
    }
    codes
}

/// The UPPER_SNAKE words a description puts in backticks.
pub fn backticked_codes(description: &str) -> Vec<String> {
    description
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| {
            w.len() > 3
                && w.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .map(str::to_owned)
        .collect()
}

fn operations_mut(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
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
        use utoipa::openapi::security::{ApiKey, ApiKeyValue};
        components.add_security_scheme(
            "refreshCookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::browser::REFRESH_COOKIE,
                "A refresh token in the cookie set by cookie mode (`cookie=true`). Used only \
                 when no `Authorization` header is given, and only from an `Origin` listed in \
                 `http.cors.allowed_origins` (else 403 `ORIGIN_NOT_ALLOWED`).",
            ))),
        );
    }
}

/// The calls that accept the refresh cookie.
const COOKIE_CALLS: [&str; 4] = [
    "/auth/accesstoken",
    "/auth/refreshtoken",
    "/auth/refreshtoken/validate",
    "/auth/logout",
];

/// Cookie mode, documented once: the `Set-Cookie` of every 200 of an operation with the
/// `cookie` parameter, and the 403 of every call that accepts the refresh cookie.
#[derive(Debug)]
struct CookieModeDocs;

impl utoipa::Modify for CookieModeDocs {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::header::HeaderBuilder;
        use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, RefOr, ResponseBuilder, Type};
        let set_cookie = HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(
                "In cookie mode only: `authd_refresh=<refresh token>; Max-Age=<the token's \
                 remaining lifetime in seconds>; Path=/auth; HttpOnly; Secure; SameSite=Strict`. \
                 `Secure` is left off only by a server with `AUTHD_ENV=development` reached as \
                 `localhost` or `127.0.0.1`.",
            ))
            .build();
        for (path, item) in openapi.paths.paths.iter_mut() {
            for op in [&mut item.get, &mut item.post].into_iter().flatten() {
                let has_cookie_param = op
                    .parameters
                    .as_ref()
                    .is_some_and(|ps| ps.iter().any(|p| p.name == "cookie"));
                if has_cookie_param {
                    if let Some(RefOr::T(ok)) = op.responses.responses.get_mut("200") {
                        ok.headers
                            .insert("Set-Cookie".to_owned(), set_cookie.clone());
                    }
                }
                if COOKIE_CALLS.contains(&path.as_str()) {
                    let forbidden = ResponseBuilder::new()
                        .description(
                            "`ORIGIN_NOT_ALLOWED`: the refresh token came in the `authd_refresh` \
                             cookie (no `Authorization` header) and the request's `Origin` is \
                             not one of `http.cors.allowed_origins`. A request without `Origin` \
                             is refused too: the check is the protection against cross-site \
                             request forgery.",
                        )
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ErrorBody")))
                                .build(),
                        )
                        .build();
                    op.responses
                        .responses
                        .insert("403".to_owned(), RefOr::T(forbidden));
                }
            }
        }
    }
}

/// Every operation that reads a JSON body may answer 413 (over the body limit) and 415 (not
/// `application/json`): documented here once, so no route can forget them.
#[derive(Debug)]
struct BodyRefusals;

impl utoipa::Modify for BodyRefusals {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let refusal = |what: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(what)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            )
        };
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                if op.request_body.is_none() {
                    continue;
                }
                let responses = &mut op.responses.responses;
                responses
                    .entry("413".to_owned())
                    .or_insert_with(|| refusal("`PAYLOAD_TOO_LARGE`: the body is over the limit"));
                responses.entry("415".to_owned()).or_insert_with(|| {
                    refusal("`UNSUPPORTED_MEDIA_TYPE`: the body is not `application/json`")
                });
            }
        }
    }
}
