//! Second factors: their keys, turning methods on and off together with the recovery codes
//! and the notice mail, the state a login needs, and the bodies the 2FA calls share.

use std::sync::Arc;

use actix_web::HttpResponse;
use authd_domain::sealed::SecretBox;
use authd_domain::two_factor::recovery;
use authd_mail::{Changed, Mail, Origin, TwoFactorChange};
use authd_store::{two_factor, users, AnyConnection, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::services::accounts::active_user;
use crate::ErrorCode;
use crate::{json_ok, ApiError, AppState};

/// Key material of the second factors.
#[derive(Clone)]
pub struct TwoFactorKeys {
    /// Encrypts TOTP secrets at rest.
    pub totp: SecretBox,
    /// Keys the hashes of recovery codes.
    pub recovery: Arc<[u8]>,
}

impl std::fmt::Debug for TwoFactorKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TwoFactorKeys(<redacted>)")
    }
}

impl TwoFactorKeys {
    pub fn new(totp_key: &[u8], recovery_key: &[u8]) -> Self {
        Self {
            totp: SecretBox::new(totp_key, b"authd/totp/v1"),
            recovery: Arc::from(recovery_key),
        }
    }
}

/// A method that can be turned on and off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    EmailOtp,
    Totp,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Self::EmailOtp => "email_otp",
            Self::Totp => "totp",
        }
    }
}

/// A request body that carries nothing: `{}`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({}))]
pub struct EmptyBody {}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryCodesBody {
    /// The new recovery codes (16 characters each), shown this once; empty when a further
    /// method was enabled and the existing set was kept.
    #[schema(example = json!(["7KQ2M9XHRT4WNC3D"]))]
    pub recovery_codes: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DurationBody {
    /// Whole seconds (rounded up) until the call may succeed; 0 means now.
    #[schema(minimum = 0, example = 0)]
    pub duration: u64,
}

pub(crate) async fn status(state: &AppState, user_id: i64) -> Result<two_factor::Status, ApiError> {
    Ok(state
        .store
        .read(move |c| two_factor::status(c, user_id))
        .await?)
}

pub(crate) fn conflict(code: ErrorCode) -> ApiError {
    code.into()
}

/// Counts a second-factor check by method and outcome.
pub(crate) fn count_check(method: &'static str, ok: bool) {
    metrics::counter!(
        authd_telemetry::names::TWO_FACTOR_CHECKS_TOTAL,
        "method" => method,
        "outcome" => if ok { "success" } else { "failure" }
    )
    .increment(1);
}

/// The origin and language of a notice about `user` (see [`crate::input::notice_target`]).
pub(crate) fn notice_target(
    state: &AppState,
    user: &users::User,
    query: &crate::input::MailQuery,
) -> Result<(Origin, Option<String>), ApiError> {
    let t = crate::input::notice_target(state, user, Some(query))?;
    Ok((t.origin, t.language))
}

async fn change_notice(
    state: &AppState,
    user: &users::User,
    method: Method,
    enabled: bool,
    two_factor_on: bool,
    (origin, language): (Origin, Option<String>),
) -> Result<Option<authd_mail::PreparedMail>, ApiError> {
    let to = user.email.clone();
    let mail = Mail::TwoFactorChanged(TwoFactorChange {
        method: method.as_str(),
        enabled,
        two_factor_on,
        changed: Changed::now(&state.clock),
    });
    crate::notices::render(state, mail, origin, language, to).await
}

/// Turns a method on in one transaction: `apply` makes the change (false: it could not, e.g.
/// the code was used meanwhile, and nothing is stored). The first method on creates a
/// recovery code set, returned once; a further method keeps the set and returns `[]`. The
/// notice is queued in the same transaction. `Ok(None)` when `apply` declined.
pub(crate) async fn enable_method(
    state: &AppState,
    user: &users::User,
    method: Method,
    target: (Origin, Option<String>),
    mut apply: impl FnMut(&mut AnyConnection, i64) -> Result<bool, StoreError> + Send + 'static,
) -> Result<Option<Vec<String>>, ApiError> {
    let notice = change_notice(state, user, method, true, true, target).await?;
    let user_id = user.id;
    let (codes, hashes) = new_recovery_set(state, user_id);
    let outcome = crate::notices::commit(state, vec![notice], move |c, now| {
        two_factor::lock_user(c, user_id)?;
        let was_on = two_factor::enabled(c, user_id)?;
        if !apply(c, now)? {
            return Ok((None, None));
        }
        if !was_on {
            two_factor::recovery_replace(c, user_id, &hashes, now)?;
        }
        Ok((Some(was_on), Some(0)))
    })
    .await?;
    let Some(was_on) = outcome else {
        return Ok(None);
    };
    tracing::info!(user_id, method = method.as_str(), "second factor enabled");
    Ok(Some(if was_on { Vec::new() } else { codes }))
}

/// Turns a method off in one transaction; when it was the last one, two-factor
/// authentication is off and the recovery codes are deleted. False when it was not on.
pub(crate) async fn disable_method(
    state: &AppState,
    user: &users::User,
    method: Method,
    target: (Origin, Option<String>),
    mut apply: impl FnMut(&mut AnyConnection) -> Result<bool, StoreError> + Send + 'static,
) -> Result<bool, ApiError> {
    // Whether two-factor authentication stays on is known only inside the transaction, so
    // both wordings of the notice are ready.
    let still_on = change_notice(state, user, method, false, true, target.clone()).await?;
    let now_off = change_notice(state, user, method, false, false, target).await?;
    let user_id = user.id;
    let done = crate::notices::commit(state, vec![still_on, now_off], move |c, _now| {
        two_factor::lock_user(c, user_id)?;
        if !apply(c)? {
            return Ok((false, None));
        }
        let on = two_factor::enabled(c, user_id)?;
        if !on {
            two_factor::recovery_delete(c, user_id)?;
        }
        Ok((true, Some(if on { 0 } else { 1 })))
    })
    .await?;
    if done {
        tracing::info!(user_id, method = method.as_str(), "second factor disabled");
    }
    Ok(done)
}

/// `DELETE` of a method (sudo): 409 `<METHOD>_ALREADY_INACTIVE` when it is not on.
pub(crate) async fn deactivate_method(
    state: &AppState,
    auth: &crate::auth::SudoAuth,
    query: &crate::input::MailQuery,
    method: Method,
) -> Result<HttpResponse, ApiError> {
    let user = active_user(state, auth.user_id).await?;
    let target = notice_target(state, &user, query)?;
    let user_id = user.id;
    let apply = move |c: &mut AnyConnection| match method {
        Method::EmailOtp => two_factor::email_otp_disable(c, user_id),
        Method::Totp => two_factor::totp_disable(c, user_id),
    };
    if !disable_method(state, &user, method, target, apply).await? {
        return Err(conflict(match method {
            Method::EmailOtp => ErrorCode::EmailOtpAlreadyInactive,
            Method::Totp => ErrorCode::TotpAlreadyInactive,
        }));
    }
    Ok(json_ok(&()))
}

/// The methods a login with a partial token can continue with, in the contract's order.
pub fn login_methods(s: &two_factor::Status) -> Vec<&'static str> {
    let mut methods = Vec::new();
    if s.email_otp.is_some() {
        methods.push("emailOtp");
    }
    if s.totp_enabled_at_ms.is_some() {
        methods.push("totp");
    }
    if s.recovery_unused > 0 {
        methods.push("recoveryCode");
    }
    methods
}

/// A fresh set of recovery codes for `user_id`: the codes, shown once, and the keyed hashes
/// that are stored.
pub(crate) fn new_recovery_set(state: &AppState, user_id: i64) -> (Vec<String>, Vec<String>) {
    let codes = recovery::generate_set();
    let hashes = codes
        .iter()
        .map(|c| recovery::hash(&state.two_factor.recovery, user_id, c))
        .collect();
    (codes, hashes)
}
