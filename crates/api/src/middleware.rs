//! The request middleware: every response, whatever produced it, leaves here with an
//! `X-Request-Id` and `Cache-Control: no-store`, in the contract's error shape when it is an
//! error, counted in the HTTP metrics and logged as one line. A panicking handler becomes a 500 and the worker goes on.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError};
use authd_telemetry::names;
use futures_util::FutureExt;
use tracing::Instrument;

use crate::error::{
    contract_response, generic_code, reason_phrase, ApiError, ContractBody, ErrorBody,
};
use crate::ErrorCode;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Accepts a caller's id when it is short and plain (so it cannot forge log lines);
/// otherwise makes a new one.
fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
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
    p.downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic")
}

pub async fn observe(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id(&req);
    let method = method_label(req.method());
    // Computed from the route table, not from the routing result, so it is known even when
    // the handler panics. Unknown paths share one label.
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!("request", request_id = %id);

    // No clone of the request may be held across this call: routing needs sole ownership.
    let outcome = AssertUnwindSafe(next.call(req))
        .catch_unwind()
        .instrument(span.clone())
        .await;
    let (status, result) = match outcome {
        Ok(Ok(res)) => {
            let (http_req, response) = res.into_parts();
            let response = finish(response, &id);
            (
                response.status(),
                Ok(ServiceResponse::new(http_req, response)),
            )
        }
        // Errors that escaped the app (and panics) have no request left to pair a response
        // with; actix sends the response carried inside the error instead.
        Ok(Err(err)) => {
            let response = finish(err.error_response(), &id);
            (
                response.status(),
                Err(InternalError::from_response(err, response).into()),
            )
        }
        Err(panic) => {
            metrics::counter!(names::HTTP_PANICS_TOTAL).increment(1);
            span.in_scope(|| {
                tracing::error!(panic = panic_message(panic.as_ref()), "handler panicked")
            });
            let err = ApiError::from(ErrorCode::InternalServerError);
            let response = finish(err.error_response(), &id);
            (
                response.status(),
                Err(InternalError::from_response(err, response).into()),
            )
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
/// request id and `Cache-Control: no-store`: answers carry tokens, TOTP secrets and recovery
/// codes, and no shared or browser cache may keep any answer of this API.
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
            if name != header::CONTENT_TYPE
                && name != header::CONTENT_LENGTH
                && !fresh.headers().contains_key(name)
            {
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
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

#[cfg(test)]
mod tests {
    //! The middleware and the body extractor inside a real actix service, with fixture
    //! handlers for what no production route should do (panic).

    use actix_web::middleware::from_fn;
    use actix_web::{test, web, App, HttpResponse};
    use serde::Deserialize;

    use crate::{BodyLimit, JsonBody};

    #[derive(Debug, Deserialize)]
    struct Body {
        #[allow(dead_code)]
        email: String,
    }

    async fn boom() -> HttpResponse {
        panic!("fixture panic");
    }

    async fn echo(_body: JsonBody<Body>) -> HttpResponse {
        HttpResponse::Ok().json(serde_json::Value::Null)
    }

    async fn body_of(res: actix_web::dev::ServiceResponse) -> serde_json::Value {
        serde_json::from_slice(&test::read_body(res).await).expect("json")
    }

    #[actix_web::test]
    async fn a_panicking_handler_answers_500_in_the_contract_shape_and_the_next_request_is_served()
    {
        let app = test::init_service(
            App::new()
                .wrap(from_fn(super::observe))
                .route("/boom", web::get().to(boom))
                .route("/ok", web::get().to(HttpResponse::Ok)),
        )
        .await;
        // A panic leaves no request to pair a response with, so the middleware hands actix an
        // error that carries the finished response; actix sends exactly that response.
        let err = test::try_call_service(&app, test::TestRequest::get().uri("/boom").to_request())
            .await
            .expect_err("the panic surfaces as an error carrying the response");
        let res = err.error_response();
        assert_eq!(res.status(), 500);
        assert!(res.headers().contains_key("x-request-id"));
        let bytes = actix_web::body::to_bytes(res.into_body())
            .await
            .expect("body");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&bytes).expect("json"),
            serde_json::json!({"statusCode": 500, "error": "Internal server error", "message": "INTERNAL_SERVER_ERROR"})
        );
        let res = test::call_service(&app, test::TestRequest::get().uri("/ok").to_request()).await;
        assert_eq!(res.status(), 200);
    }

    #[actix_web::test]
    async fn json_bodies_are_checked_for_type_size_and_shape() {
        let app = test::init_service(
            App::new()
                .app_data(web::Data::new(BodyLimit(64)))
                .wrap(from_fn(super::observe))
                .route("/echo", web::post().to(echo)),
        )
        .await;
        let call = |ct: Option<&'static str>, body: &'static str| {
            let mut req = test::TestRequest::post().uri("/echo").set_payload(body);
            if let Some(ct) = ct {
                req = req.insert_header(("content-type", ct));
            }
            req.to_request()
        };
        let cases: [(Option<&'static str>, &'static str, u16, &str); 6] = [
            (None, r#"{"email":"a"}"#, 415, "UNSUPPORTED_MEDIA_TYPE"),
            (
                Some("text/plain"),
                r#"{"email":"a"}"#,
                415,
                "UNSUPPORTED_MEDIA_TYPE",
            ),
            (
                Some("application/json"),
                "{}",
                400,
                "body must have required property 'email'",
            ),
            (
                Some("application/json"),
                r#"{"email": 1}"#,
                400,
                "body/email has the wrong type: integer `1`, expected a string",
            ),
            (
                Some("application/json; charset=utf-8"),
                r#"{"email":"a"}"#,
                200,
                "",
            ),
            (
                Some("application/json"),
                r#"{"email":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#,
                413,
                "PAYLOAD_TOO_LARGE",
            ),
        ];
        for (ct, body, status, message) in cases {
            let res = test::call_service(&app, call(ct, body)).await;
            assert_eq!(res.status().as_u16(), status, "{ct:?} {body}");
            if status != 200 {
                assert_eq!(body_of(res).await["message"], message, "{ct:?} {body}");
            }
        }
    }
}
