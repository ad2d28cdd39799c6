//! Every message code of the contract, with its status: the one place a code's text and
//! status are written. Handlers return `ErrorCode::X.into()` (or `?` on it); the OpenAPI
//! document lists per operation and status the codes it can answer, as an enum checked
//! against this one (see `openapi.rs`).

use actix_web::http::StatusCode;

macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = ($status:ident, $text:literal),)*) => {
        /// A message code of the contract and its HTTP status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(Self::$variant,)*];

            /// The wire text, the body's `message`.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text,)* }
            }

            /// The HTTP status every answer with this code has.
            pub fn status(self) -> StatusCode {
                match self { $(Self::$variant => StatusCode::$status,)* }
            }
        }
    };
}

error_codes! {
    /// The `origin` query parameter names no configured, enabled origin.
    UnknownOrigin = (BAD_REQUEST, "UNKNOWN_ORIGIN"),
    /// Refused by the framework before a handler ran.
    Unauthorized = (UNAUTHORIZED, "UNAUTHORIZED"),
    /// A wrong password, or an account that does not exist (the same answer).
    PasswordIncorrect = (UNAUTHORIZED, "PASSWORD_INCORRECT"),
    /// The password was right; a second factor must follow (`partialToken`, `methods`).
    TwoFactorRequired = (UNAUTHORIZED, "TWO_FACTOR_REQUIRED"),
    /// No bearer token (nor refresh cookie) came with the call.
    NoTokenProvided = (UNAUTHORIZED, "NO_TOKEN_PROVIDED"),
    /// The token is malformed, expired, revoked, of the wrong kind, or its account is disabled.
    InvalidToken = (UNAUTHORIZED, "INVALID_TOKEN"),
    /// The emailed code is wrong, expired, used up or burnt.
    OtpInvalidExpired = (UNAUTHORIZED, "OTP_INVALID_EXPIRED"),
    /// The TOTP code is wrong or was already used.
    TotpInvalid = (UNAUTHORIZED, "TOTP_INVALID"),
    /// The recovery code is wrong or used.
    RecoveryCodeInvalid = (UNAUTHORIZED, "RECOVERY_CODE_INVALID"),
    /// Refused by the framework before a handler ran.
    Forbidden = (FORBIDDEN, "FORBIDDEN"),
    /// The address is at a disposable or refused mail domain.
    ForbiddenMailProvider = (FORBIDDEN, "FORBIDDEN_MAIL_PROVIDER"),
    /// The request's `Origin` is not one of `http.cors.allowed_origins` (CORS, cookie mode).
    OriginNotAllowed = (FORBIDDEN, "ORIGIN_NOT_ALLOWED"),
    /// A preflight asked for a method the API does not allow from browsers.
    CorsMethodNotAllowed = (FORBIDDEN, "CORS_METHOD_NOT_ALLOWED"),
    /// A preflight asked for a header the API does not allow from browsers.
    CorsHeadersNotAllowed = (FORBIDDEN, "CORS_HEADERS_NOT_ALLOWED"),
    /// A preflight the CORS layer refused for another reason.
    CorsRequestNotAllowed = (FORBIDDEN, "CORS_REQUEST_NOT_ALLOWED"),
    /// The development mailbox refused a change that did not come from its own page.
    CrossOriginRequest = (FORBIDDEN, "CROSS_ORIGIN_REQUEST"),
    /// The development mailbox answers only when reached as localhost or at an IP address
    /// (a DNS-rebinding page of another site reaches it under its own name).
    MailboxHostNotAllowed = (FORBIDDEN, "MAILBOX_HOST_NOT_ALLOWED"),
    /// No such route.
    NotFound = (NOT_FOUND, "NOT_FOUND"),
    /// The route exists with other methods (see `Allow`).
    MethodNotAllowed = (METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
    /// The request was not received in time.
    RequestTimeout = (REQUEST_TIMEOUT, "REQUEST_TIMEOUT"),
    /// TOTP is not set up (or not on, for the calls that need it on).
    TotpUninitialized = (CONFLICT, "TOTP_UNINITIALIZED"),
    /// TOTP is already off.
    TotpAlreadyInactive = (CONFLICT, "TOTP_ALREADY_INACTIVE"),
    /// Email OTP is not set up.
    EmailOtpUninitialized = (CONFLICT, "EMAIL_OTP_UNINITIALIZED"),
    /// Email OTP is not on.
    EmailOtpInactive = (CONFLICT, "EMAIL_OTP_INACTIVE"),
    /// Email OTP is already off.
    EmailOtpAlreadyInactive = (CONFLICT, "EMAIL_OTP_ALREADY_INACTIVE"),
    /// The account has no recovery codes (two-factor authentication is off).
    RecoveryCodesUninitialized = (CONFLICT, "RECOVERY_CODES_UNINITIALIZED"),
    /// The account has a second factor: use an `authenticate` call instead.
    TwoFactorIsEnabled = (CONFLICT, "2FA_IS_ENABLED"),
    /// No second factor is on.
    TwoFactorIsDisabled = (CONFLICT, "2FA_IS_DISABLED"),
    /// Another account has the address.
    NewEmailAlreadyInUse = (CONFLICT, "NEW_EMAIL_ALREADY_IN_USE"),
    /// The body is larger than `http.body_limit_bytes`.
    PayloadTooLarge = (PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
    /// The request line is too long.
    UriTooLong = (URI_TOO_LONG, "URI_TOO_LONG"),
    /// The body is not `application/json`.
    UnsupportedMediaType = (UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE"),
    /// The headers are too large.
    RequestHeaderFieldsTooLarge = (REQUEST_HEADER_FIELDS_TOO_LARGE, "REQUEST_HEADER_FIELDS_TOO_LARGE"),
    /// The client address spent its budget for this kind of call.
    TooManyRequests = (TOO_MANY_REQUESTS, "TOO_MANY_REQUESTS"),
    /// One reset mail per address per window.
    TooManyResetMailAttempts = (TOO_MANY_REQUESTS, "TOO_MANY_RESET_MAIL_ATTEMPTS"),
    /// One two-factor code mail per account per window.
    TooManyOtpEmails = (TOO_MANY_REQUESTS, "TOO_MANY_OTP_EMAILS"),
    /// One address-change mail per account per window.
    TooManyTransferAttempts = (TOO_MANY_REQUESTS, "TOO_MANY_TRANSFER_ATTEMPTS"),
    /// Wrong passwords: wait before the next try.
    TooManyFailedPasswordChecks = (TOO_MANY_REQUESTS, "TOO_MANY_FAILED_PASSWORD_CHECKS"),
    /// Wrong emailed codes: wait before the next guess.
    TooManyOtpChecks = (TOO_MANY_REQUESTS, "TOO_MANY_OTP_CHECKS"),
    /// Wrong TOTP codes: wait before the next guess.
    TooManyTotpChecks = (TOO_MANY_REQUESTS, "TOO_MANY_TOTP_CHECKS"),
    /// Wrong recovery codes: wait before the next guess.
    TooManyRecoveryCodeChecks = (TOO_MANY_REQUESTS, "TOO_MANY_RECOVERY_CODE_CHECKS"),
    /// A failure of the server; the cause is in its log under the request id.
    InternalServerError = (INTERNAL_SERVER_ERROR, "INTERNAL_SERVER_ERROR"),
    /// No template for the mail in any language of the fallback chain, or it failed to render.
    UnableToFindMailTemplate = (INTERNAL_SERVER_ERROR, "UNABLE_TO_FIND_MAIL_TEMPLATE"),
    /// The account has no password set.
    NoPasswordInfo = (INTERNAL_SERVER_ERROR, "NO_PASSWORD_INFO"),
    /// The stored TOTP secret cannot be decrypted with the configured key.
    TotpCorrupt = (INTERNAL_SERVER_ERROR, "TOTP_CORRUPT"),
    /// The database is out of reach; retry.
    ServiceUnavailable = (SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE"),
    /// Readiness: the database does not answer.
    DatabaseUnavailable = (SERVICE_UNAVAILABLE, "DATABASE_UNAVAILABLE"),
    /// Readiness: the database schema is older than this release.
    MigrationsPending = (SERVICE_UNAVAILABLE, "MIGRATIONS_PENDING"),
}

impl ErrorCode {
    /// The code of a wire text, if it is one.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == text)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_upper_snake_unique_and_an_error_status() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
                "{text}"
            );
            assert!(seen.insert(text), "{text} twice");
            assert!(code.status().is_client_error() || code.status().is_server_error());
            assert_eq!(ErrorCode::parse(text), Some(*code));
            // What an answer with the code looks like on the wire.
            let res = actix_web::ResponseError::error_response(&crate::ApiError::from(*code));
            assert_eq!(res.status(), code.status(), "{text}");
        }
        assert_eq!(ErrorCode::parse("Bad request"), None);
    }
}
