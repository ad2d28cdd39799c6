//! The one mapping from failures to the contract's error body
//! `{"statusCode", "error", "message", "retryAfter"?}`.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ErrorCode;

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// The HTTP status code, repeated.
    #[schema(example = 429)]
    pub status_code: u16,
    /// The reason phrase for the status.
    #[schema(example = "Too many requests")]
    pub error: String,
    /// A stable UPPER_SNAKE code, or for 400 validation errors one sentence naming the first
    /// problem found.
    #[schema(example = "TOO_MANY_RESET_MAIL_ATTEMPTS")]
    pub message: String,
    /// Present on every 429: whole seconds until the same call can succeed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 42, minimum = 0)]
    pub retry_after: Option<u64>,
}

/// Marks a response whose body already has the contract's shape, so the middleware leaves it
/// alone; any other error response is rewritten into that shape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ContractBody;

/// The reason phrases of the contract (note the lower-case "Too many requests" and
/// "Internal server error").
pub fn reason_phrase(status: StatusCode) -> &'static str {
    match status.as_u16() {
        429 => "Too many requests",
        500 => "Internal server error",
        _ => status.canonical_reason().unwrap_or("Error"),
    }
}

/// The stable code used when the framework itself refuses a request.
pub(crate) fn generic_code(status: StatusCode) -> &'static str {
    let code = match status.as_u16() {
        400 => return "Bad request",
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        408 => ErrorCode::RequestTimeout,
        413 => ErrorCode::PayloadTooLarge,
        414 => ErrorCode::UriTooLong,
        415 => ErrorCode::UnsupportedMediaType,
        431 => ErrorCode::RequestHeaderFieldsTooLarge,
        503 => ErrorCode::ServiceUnavailable,
        _ if status.is_server_error() => ErrorCode::InternalServerError,
        _ => return "REQUEST_REFUSED",
    };
    code.as_str()
}

/// Every code answers with its status and text.
impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        Self::with_status(code.status(), code.as_str())
    }
}

/// An error answer. Build it with the constructors; internal causes are logged, never sent.
pub struct ApiError {
    status: StatusCode,
    message: Cow<'static, str>,
    retry_after: Option<u64>,
    allow: Option<&'static str>,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl ApiError {
    /// A message for a status; every code goes through [`ErrorCode`] (`From`).
    fn with_status(status: StatusCode, message: &'static str) -> Self {
        Self {
            status,
            message: Cow::Borrowed(message),
            retry_after: None,
            allow: None,
            source: None,
        }
    }

    /// A 400 with one sentence naming the first problem found.
    pub fn bad_request(sentence: impl Into<Cow<'static, str>>) -> Self {
        Self {
            message: sentence.into(),
            ..Self::with_status(StatusCode::BAD_REQUEST, "")
        }
    }

    /// A 429; the wait is rounded up to whole seconds by the caller's `Duration`.
    pub fn too_many(code: ErrorCode, retry_after: std::time::Duration) -> Self {
        // The same rounding as the `next-*` calls, so the two always agree.
        let secs = whole_seconds(retry_after);
        Self {
            retry_after: Some(secs.max(1)),
            ..Self::from(code)
        }
    }

    /// A 500 whose cause goes to the log (with the request id of the current span), never to
    /// the client.
    pub fn internal(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self {
            source: Some(source.into()),
            ..Self::from(ErrorCode::InternalServerError)
        }
    }

    /// A 500 with a stable code of the contract (`UNABLE_TO_FIND_MAIL_TEMPLATE`), cause logged.
    pub fn internal_code(
        code: ErrorCode,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Self {
            source: Some(source.into()),
            ..Self::from(code)
        }
    }

    pub fn not_found() -> Self {
        Self::from(ErrorCode::NotFound)
    }

    pub fn method_not_allowed(allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::from(ErrorCode::MethodNotAllowed)
        }
    }

    /// The same answer (status, `retryAfter`, logged cause) with another message: for the
    /// older clients' alias, which speaks its own texts.
    pub(crate) fn with_message(self, message: &'static str) -> Self {
        Self {
            message: Cow::Borrowed(message),
            ..self
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn body(&self) -> ErrorBody {
        ErrorBody {
            status_code: self.status.as_u16(),
            error: reason_phrase(self.status).to_owned(),
            message: self.message.clone().into_owned(),
            retry_after: self.retry_after,
        }
    }
}

/// Formats an error with its whole `source()` chain, for logs.
pub fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(cause) = cur {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        cur = cause.source();
    }
    out
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)?;
        if let Some(src) = &self.source {
            write!(f, " caused by: {}", error_chain(src.as_ref()))?;
        }
        Ok(())
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl StdError for ApiError {}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if let Some(src) = &self.source {
            tracing::error!(status = self.status.as_u16(), code = %self.message, cause = %error_chain(src.as_ref()), "internal error");
        }
        contract_response(self.status, &self.body(), self.allow)
    }
}

/// Builds an error response in the contract's shape, with `Retry-After` on 429s.
pub(crate) fn contract_response(
    status: StatusCode,
    body: &ErrorBody,
    allow: Option<&'static str>,
) -> HttpResponse {
    contract_response_with(status, body, body.retry_after, allow)
}

/// An error answer whose body extends the contract's shape with extra fields (the login's
/// `TWO_FACTOR_REQUIRED` carries `partialToken` and `methods`).
pub(crate) fn contract_response_with(
    status: StatusCode,
    body: &impl Serialize,
    retry_after: Option<u64>,
    allow: Option<&'static str>,
) -> HttpResponse {
    let mut res = HttpResponse::build(status);
    if let Some(secs) = retry_after {
        res.insert_header((header::RETRY_AFTER, secs));
    }
    if let Some(allow) = allow {
        res.insert_header((header::ALLOW, HeaderValue::from_static(allow)));
    }
    res.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    res.insert_header((
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    ));
    // Serialising this plain struct cannot fail; an empty object would still be JSON.
    let mut res = res.body(serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec()));
    res.extensions_mut().insert(ContractBody);
    res
}

impl From<authd_store::StoreError> for ApiError {
    fn from(e: authd_store::StoreError) -> Self {
        if e.is_unavailable() {
            // The database is away: the client may retry, and the operator sees the cause.
            Self {
                source: Some(Box::new(e)),
                ..Self::from(ErrorCode::ServiceUnavailable)
            }
        } else {
            Self::internal(e)
        }
    }
}

// Mappings of the actors' errors into API errors.

use authd_mail::RenderError;
use authd_otp::IssueError;

pub(crate) fn otp_invalid() -> ApiError {
    ApiError::from(ErrorCode::OtpInvalidExpired)
}

impl From<RenderError> for ApiError {
    fn from(e: RenderError) -> Self {
        match e {
            RenderError::Template(t) => {
                ApiError::internal_code(ErrorCode::UnableToFindMailTemplate, t)
            }
            // Origins are checked where a request names them (400 UNKNOWN_ORIGIN); the Mailer not
            // knowing a checked one is the server's fault.
            e @ RenderError::UnknownOrigin => ApiError::internal(e),
            // An address our parser accepts but the mail library refuses: refuse it as input.
            RenderError::Compose(c) => {
                tracing::warn!(cause = %c, "address accepted by validation but refused by the mail composer");
                ApiError::bad_request("Invalid email address")
            }
        }
    }
}

impl From<IssueError> for ApiError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Render(r) => r.into(),
            IssueError::Store(s) => s.into(),
            IssueError::Mailer(m) => ApiError::internal(m),
        }
    }
}

/// An actor that did not answer (stopped, or its mailbox closed): the server's failure.
impl From<actix::MailboxError> for ApiError {
    fn from(e: actix::MailboxError) -> Self {
        ApiError::internal(e)
    }
}

/// The one mapping of a RateLimiter answer: a refusal is 429 `code` with the wait (its
/// `retryAfter` and `Retry-After`), a store failure or an actor that did not answer is a 500.
pub(crate) fn limited<T>(
    answer: Result<Result<T, authd_ratelimit::LimitError>, actix::MailboxError>,
    code: ErrorCode,
) -> Result<T, ApiError> {
    match answer? {
        Ok(v) => Ok(v),
        Err(authd_ratelimit::LimitError::Denied(wait)) => Err(ApiError::too_many(code, wait)),
        Err(authd_ratelimit::LimitError::Store(e)) => Err(e.into()),
    }
}

/// Whole seconds, rounded up, as the `next-*` calls and `retryAfter` report them.
pub fn whole_seconds(d: std::time::Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
