#![doc = include_str!("../README.md")]

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpResponse};
use authd_settings::Settings;
use authd_store::Store;
use serde::Serialize;

pub mod auth;
pub mod browser;
pub mod client_ip;
pub mod error;
pub mod error_code;
pub mod hashing;
pub mod input;
pub mod json;
pub mod middleware;
#[cfg(test)]
mod module_graph;
pub mod notices;
pub mod openapi;
pub mod routes;
pub mod services;
pub mod throttle;

pub use error::{ApiError, ErrorBody};
pub use error_code::ErrorCode;
pub use hashing::Hasher;
pub use json::{BodyLimit, JsonBody};

/// What every handler may reach. Built once at start and shared by all workers.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub settings: Arc<Settings>,
    /// `AUTHD_ENV`: development servers reached as localhost may set cookies without `Secure`.
    pub environment: authd_settings::Environment,
    pub readiness_timeout: Duration,
    pub limiter: actix::Addr<authd_ratelimit::RateLimiter>,
    /// What the RateLimiter answers from memory, asked on the handler's own thread.
    pub gate: authd_ratelimit::Gate,
    pub otp: actix::Addr<authd_otp::OtpIssuer>,
    pub mailer: actix::Addr<authd_mail::Mailer>,
    pub forbidden: authd_mail::ForbiddenDomains,
    pub hasher: Hasher,
    pub signer: Arc<authd_domain::tokens::TokenSigner>,
    pub trusted_proxies: client_ip::TrustedProxies,
    pub two_factor: services::two_factor::TwoFactorKeys,
    /// The one clock of every stored or compared instant (see [`authd_domain::clock`]).
    pub clock: authd_domain::Clock,
}

/// A 200 with a JSON body, typed `application/json; charset=utf-8` as the contract says.
pub fn json_ok<T: Serialize>(body: &T) -> HttpResponse {
    match serde_json::to_vec(body) {
        Ok(bytes) => HttpResponse::Ok()
            .insert_header((
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            ))
            .body(bytes),
        Err(e) => actix_web::ResponseError::error_response(&ApiError::internal(e)),
    }
}

/// Registers the public API, the OpenAPI document and the docs page on an app.
pub fn configure(cfg: &mut web::ServiceConfig) {
    routes::configure(cfg);
    cfg.service(
        routes::resource("/docs", "GET").route(web::get().to(|| async {
            HttpResponse::Found()
                .insert_header((header::LOCATION, "/docs/"))
                .finish()
        })),
    );
    cfg.service(
        utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", openapi::document()),
    );
}
