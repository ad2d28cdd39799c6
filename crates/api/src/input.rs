//! Parsing request input into domain types, with the contract's 400 sentences.

use authd_domain::{Email, Password};
use authd_mail::Origin;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::{ApiError, AppState};

/// Query parameters of every mail-sending call.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MailQuery {
    /// The mail configuration to use (at most 256 characters); the default origin when absent.
    #[param(max_length = 256)]
    pub origin: Option<String>,
    /// The mail language: exactly two letters (e.g. `nl`); the origin's default when absent.
    #[param(pattern = "^[A-Za-z]{2}$")]
    pub language: Option<String>,
}

/// A configured origin and a checked language.
#[derive(Debug, Clone)]
pub struct MailTarget {
    pub origin: Origin,
    pub language: Option<String>,
    /// The request named the origin or the language (worth remembering for the user).
    pub explicit: bool,
}

impl MailQuery {
    /// Syntax only (400); whether the origin exists is checked by [`MailQuery::resolve`].
    pub fn check(&self) -> Result<(), ApiError> {
        if self
            .origin
            .as_ref()
            .is_some_and(|o| o.chars().count() > 256 || o.is_empty())
        {
            return Err(ApiError::bad_request(
                "origin must be 1 to 256 characters long",
            ));
        }
        if self
            .language
            .as_ref()
            .is_some_and(|l| l.len() != 2 || !l.bytes().all(|b| b.is_ascii_alphabetic()))
        {
            return Err(ApiError::bad_request("language must be exactly 2 letters"));
        }
        Ok(())
    }

    /// The origin to use: 400 `UNKNOWN_ORIGIN` when it is not configured (or disabled). Checks
    /// the syntax too, so it is safe on its own; calls that validate the query before other
    /// input call [`MailQuery::check`] first (an idempotent check).
    pub fn resolve(&self, state: &AppState) -> Result<MailTarget, ApiError> {
        self.check()?;
        let origin = match &self.origin {
            Some(name) => {
                Origin::configured(&state.settings, name).ok_or(crate::ErrorCode::UnknownOrigin)?
            }
            None => Origin::default_of(&state.settings),
        };
        Ok(MailTarget {
            origin,
            language: self.language.as_ref().map(|l| l.to_ascii_lowercase()),
            explicit: self.origin.is_some() || self.language.is_some(),
        })
    }
}

/// Where a notice about `user` goes: the origin and language the request named, else the
/// ones the user last asked mails in, else the default origin in its default language.
pub fn notice_target(
    state: &AppState,
    user: &authd_store::User,
    query: Option<&MailQuery>,
) -> Result<MailTarget, ApiError> {
    if let Some(q) = query {
        let target = q.resolve(state)?;
        if target.explicit {
            return Ok(target);
        }
    }
    if let Some(origin) = user
        .last_origin
        .as_deref()
        .and_then(|o| Origin::configured(&state.settings, o))
    {
        return Ok(MailTarget {
            origin,
            language: user.last_language.clone(),
            explicit: false,
        });
    }
    Ok(MailTarget {
        origin: Origin::default_of(&state.settings),
        language: None,
        explicit: false,
    })
}

pub fn email(raw: &str) -> Result<Email, ApiError> {
    Email::parse(raw).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// OTP fields: exactly 6 ASCII digits.
pub fn otp(field: &str, raw: &str) -> Result<String, ApiError> {
    if raw.len() == 6 && raw.bytes().all(|b| b.is_ascii_digit()) {
        Ok(raw.to_owned())
    } else {
        Err(ApiError::bad_request(format!(
            "{field} must be exactly 6 digits"
        )))
    }
}

/// A new password, checked against the policy (400 with the first rule it breaks) off the
/// async workers.
pub async fn new_password(state: &AppState, raw: &str) -> Result<Password, ApiError> {
    state.hasher.check_policy(raw.to_owned()).await
}

/// 403 `FORBIDDEN_MAIL_PROVIDER` for disposable or configured-forbidden domains.
pub fn allowed_provider(state: &AppState, email: &Email) -> Result<(), ApiError> {
    if state.forbidden.is_forbidden(email.domain()) {
        return Err(crate::ErrorCode::ForbiddenMailProvider.into());
    }
    Ok(())
}
