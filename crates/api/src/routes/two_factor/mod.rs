//! Two-factor authentication: the overview, email OTP, TOTP and recovery codes, and what they
//! share: the tokens a passed second factor earns, and turning methods on and off together
//! with the recovery codes and the notice mail.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::AccessAuth;
use crate::error::ErrorBody;
use crate::services::accounts::active_user;
use crate::services::two_factor::status;
use crate::{json_ok, ApiError, AppState};

pub mod email_otp;
pub mod recovery_codes;
pub mod totp;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/user/2fa", "GET").route(web::get().to(overview)));
    email_otp::configure(cfg);
    totp::configure(cfg);
    recovery_codes::configure(cfg);
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmailOtpState {
    /// The address codes are mailed to.
    pub email: String,
    /// When the method was turned on (RFC 3339).
    pub completed_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompletedState {
    /// When this was turned on or created (RFC 3339).
    pub completed_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwoFactorOverview {
    /// True while any method is on.
    pub enabled: bool,
    /// The active email OTP method, or `null`.
    pub email_otp: Option<EmailOtpState>,
    /// The active TOTP method, or `null`.
    pub totp: Option<CompletedState>,
    /// The current recovery code set, or `null`.
    pub recovery_codes: Option<CompletedState>,
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The second factors of the caller.
#[utoipa::path(get, path = "/user/2fa", operation_id = "twoFactorOverview", tag = "two-factor", security(("access" = [])),
    responses(
        (status = 200, description = "The caller's second factors", body = TwoFactorOverview),
        (status = 401, description = "`NO_TOKEN_PROVIDED` or `INVALID_TOKEN`", body = ErrorBody),
    ))]
pub async fn overview(
    state: web::Data<AppState>,
    auth: AccessAuth,
) -> Result<HttpResponse, ApiError> {
    active_user(&state, auth.user_id).await?;
    let s = status(&state, auth.user_id).await?;
    Ok(json_ok(&TwoFactorOverview {
        enabled: s.enabled(),
        email_otp: s.email_otp.as_ref().map(|e| EmailOtpState {
            email: e.email.to_string(),
            completed_at: rfc3339(e.enabled_at_ms),
        }),
        totp: s.totp_enabled_at_ms.map(|at| CompletedState {
            completed_at: rfc3339(at),
        }),
        recovery_codes: s.recovery_created_at_ms.map(|at| CompletedState {
            completed_at: rfc3339(at),
        }),
    }))
}
