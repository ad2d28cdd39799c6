//! Routes, one file per resource, wired in [`configure`].

use actix_web::{web, HttpResponse, Resource};

use crate::error::ApiError;

pub mod auth;
pub mod dev_mail;
pub mod email;
pub mod ops;
pub mod password;
pub mod two_factor;

/// A resource whose unsupported methods answer 405 with an `Allow` header in the contract's
/// shape. `allow` must list the methods routed on it.
pub(crate) fn resource(path: &str, allow: &'static str) -> Resource {
    web::resource(path).default_service(web::to(move || async move {
        Err::<HttpResponse, _>(ApiError::method_not_allowed(allow))
    }))
}

/// Registers every route of the public API (the development mailbox, `dev_mail`, is
/// registered apart, only when `dev.mailbox` turns it on).
pub fn configure(cfg: &mut web::ServiceConfig) {
    auth::configure(cfg);
    email::configure(cfg);
    ops::configure(cfg);
    password::configure(cfg);
    two_factor::configure(cfg);
}
