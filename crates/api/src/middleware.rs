//! The request middleware: every response, whatever produced it, leaves here with an
//! `X-Request-Id`, in the contract's error shape when it is an error, counted in the HTTP
//! metrics and logged as one line. A panicking handler becomes a 500 and the worker goes on.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::error::InternalError;
use actix_web::{HttpMessage, HttpResponse, ResponseError};
use authd_telemetry::names;
use futures_util::FutureExt;
use tracing::Instrument;

use crate::error::{contract_response, generic_code, reason_phrase, ApiError, ContractBody, ErrorBody};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being served, for handlers that want to log or return it.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Accepts a caller's id when it is short and plain (so it cannot forge log lines);
/// otherwise makes a new one.
fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned)
}

/// Known methods keep their name as a label; anything else is folded so a client cannot
/// create label values at will.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> &str {
    p.downcast_ref::<&str>().copied().or_else(|| p.downcast_ref::<String>().map(String::as_str)).unwrap_or("non-string panic")
}

pub async fn observe(req: ServiceRequest, next: Next<BoxBody>) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id(&req);
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = method_label(req.method());
    // Computed from the route table, not from the routing result, so it is known even when
    // the handler panics. Unknown paths share one label.
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!("request", request_id = %id);

    // No clone of the request may be held across this call: routing needs sole ownership.
    let outcome = AssertUnwindSafe(next.call(req)).catch_unwind().instrument(span.clone()).await;
    let (status, result) = match outcome {
        Ok(Ok(res)) => {
            let (http_req, response) = res.into_parts();
            let response = finish(response, &id);
            (response.status(), Ok(ServiceResponse::new(http_req, response)))
        }
        // Errors that escaped the app (and panics) have no request left to pair a response
        // with; actix sends the response carried inside the error instead.
        Ok(Err(err)) => {
            let response = finish(err.error_response(), &id);
            (response.status(), Err(InternalError::from_response(err, response).into()))
        }
        Err(panic) => {
            metrics::counter!(names::HTTP_PANICS_TOTAL).increment(1);
            span.in_scope(|| tracing::error!(panic = panic_message(panic.as_ref()), "handler panicked"));
            let err = ApiError::code(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_SERVER_ERROR");
            let response = finish(err.error_response(), &id);
            (response.status(), Err(InternalError::from_response(err, response).into()))
        }
    };

    let elapsed = started.elapsed();
    let status_label = status.as_u16().to_string();
    metrics::counter!(names::HTTP_REQUESTS_TOTAL, "method" => method, "route" => route.clone(), "status" => status_label)
        .increment(1);
    metrics::histogram!(names::HTTP_REQUEST_DURATION_SECONDS, "method" => method, "route" => route.clone())
        .record(elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::info!(
            method,
            route = %route,
            status = status.as_u16(),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        );
    });
    result
}

/// Puts any error response into the contract's shape (keeping its headers) and stamps the
/// request id.
fn finish(res: HttpResponse, id: &str) -> HttpResponse {
    let status = res.status();
    let mut res = if (status.is_client_error() || status.is_server_error())
        && res.extensions().get::<ContractBody>().is_none()
    {
        let body = ErrorBody {
            status_code: status.as_u16(),
            error: reason_phrase(status).to_owned(),
            message: generic_code(status).to_owned(),
            retry_after: None,
        };
        let mut fresh = contract_response(status, &body, None);
        for (name, value) in res.headers() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH && !fresh.headers().contains_key(name) {
                fresh.headers_mut().insert(name.clone(), value.clone());
            }
        }
        fresh
    } else {
        res
    };
    if let Ok(v) = HeaderValue::from_str(id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    res
}
