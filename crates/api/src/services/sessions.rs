//! Sessions: refresh-token families, and the tokens a passed second factor earns.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse};
use authd_domain::tokens::{new_refresh_token, refresh_token_hash, TokenKind};
use authd_domain::Email;
use authd_store::{refresh_tokens, users};
use authd_telemetry::names;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{invalid_token, AccessAuth, AccessOrPartial};
use crate::browser::{set_refresh_cookie, CookieMode};
use crate::services::accounts::{confirm_password, guarded_password_check, password_incorrect};
use crate::ErrorCode;
use crate::{json_ok, ApiError, AppState};

/// What a right password earns at login.
pub(crate) enum LoginOutcome {
    /// A new login: its refresh token.
    SignedIn { refresh: String },
    /// The account has a second factor: a partial token and the methods it can use.
    SecondFactorRequired {
        partial: String,
        methods: Vec<&'static str>,
    },
}

/// Checks an email and password under the password backoff. Unknown and disabled accounts
/// verify against a dummy hash: same work, same answer (401 `PASSWORD_INCORRECT`).
pub(crate) async fn login(
    state: &AppState,
    username: &str,
    password: String,
    ip: std::net::IpAddr,
) -> Result<LoginOutcome, ApiError> {
    let key = username.trim().to_lowercase();
    let user = match Email::parse(&key).ok() {
        Some(e) => {
            state
                .store
                .read(move |c| users::find_by_email(c, &e))
                .await?
        }
        None => None,
    }
    .filter(|u| !u.disabled);
    let stored = match &user {
        Some(u) => u.password_hash()?,
        None => None,
    };
    if user.is_some() && stored.is_none() {
        return Err(ErrorCode::NoPasswordInfo.into());
    }
    let hash = stored
        .clone()
        .unwrap_or_else(|| state.hasher.dummy().clone());
    let hasher = state.hasher.clone();
    let candidate = password.clone();
    let known = user.is_some();
    let user_id = user.as_ref().map(|u| u.id);
    let ok = guarded_password_check(state, &key, user_id, ip, async move {
        let matches = hasher.verify(hash, candidate).await?;
        Ok(matches && known)
    })
    .await?;
    let Some(user) = user.filter(|_| ok) else {
        metrics::counter!(names::LOGINS_TOTAL, "outcome" => "failure").increment(1);
        return Err(password_incorrect());
    };
    if stored
        .as_ref()
        .is_some_and(|h| h.needs_rehash(state.hasher.params()))
    {
        rehash(state, user.id, password).await;
    }
    let user_id = user.id;
    let second = state
        .store
        .read(move |c| authd_store::two_factor::status(c, user_id))
        .await?;
    if second.enabled() {
        let partial = sign(
            state,
            TokenKind::Partial,
            user_id,
            None,
            state.settings.tokens.partial_lifetime_secs,
        )?;
        metrics::counter!(names::LOGINS_TOTAL, "outcome" => "two_factor_required").increment(1);
        return Ok(LoginOutcome::SecondFactorRequired {
            partial,
            methods: crate::services::two_factor::login_methods(&second),
        });
    }
    let (refresh, _) = issue_refresh_in_family(state, user_id).await?;
    metrics::counter!(names::LOGINS_TOTAL, "outcome" => "success").increment(1);
    Ok(LoginOutcome::SignedIn { refresh })
}

/// Replaces a hash made with weaker parameters than configured, after a successful login.
async fn rehash(state: &AppState, user_id: i64, password: String) {
    // The password just verified; it may predate the policy, so it is not checked again.
    let pw = authd_domain::Password::verified(&password);
    match state.hasher.hash(pw).await {
        Ok(hash) => {
            if let Err(e) = state
                .store
                .run(move |c| users::set_password(c, user_id, &hash))
                .await
            {
                tracing::warn!(cause = %e, "could not store the stronger password hash");
            }
        }
        Err(e) => tracing::warn!(?e, "could not rehash the password"),
    }
}

/// Signs a token of `kind` for `user_id`, living `secs` from now on the service's clock.
pub(crate) fn sign(
    state: &AppState,
    kind: TokenKind,
    user_id: i64,
    sid: Option<&str>,
    secs: u64,
) -> Result<String, ApiError> {
    state
        .signer
        .sign(
            kind,
            user_id,
            sid,
            Duration::from_secs(secs),
            state.clock.now_secs(),
        )
        .map_err(ApiError::internal)
}

/// Rotates a refresh token in one transaction: the presented one is revoked and a new one of
/// the same family returned. Presenting an already rotated token revokes the whole family
/// (theft detection) and answers 401 `INVALID_TOKEN`, as does any token not live.
pub(crate) async fn rotate(
    state: &AppState,
    presented: &str,
    ip: std::net::IpAddr,
) -> Result<String, ApiError> {
    let old = refresh_token_hash(presented);
    let new = new_refresh_token();
    let new_hash = refresh_token_hash(&new);
    let lifetime = ms(Duration::from_secs(
        state.settings.tokens.refresh_lifetime_secs,
    ));
    let clock = state.clock.clone();
    let rotated = state
        .store
        // The job's savepoint makes the rotation all-or-nothing.
        .run(move |c| {
            let now = clock.now_ms();
            if let Some(live) = refresh_tokens::find_live(c, &old, now)? {
                let active = users::find_by_id(c, live.user_id)?.is_some_and(|u| !u.disabled);
                if active && refresh_tokens::revoke(c, &old, now)? {
                    refresh_tokens::insert(
                        c,
                        live.user_id,
                        &new_hash,
                        &live.family_id,
                        now,
                        now + lifetime,
                    )?;
                    return Ok(true);
                }
            }
            if let Some((family, user_id)) = refresh_tokens::revoked_family(c, &old)? {
                let n = refresh_tokens::revoke_family(c, &family, now)?;
                tracing::warn!(
                    security_event = "refresh_token_reuse",
                    user_id,
                    client_ip = %ip,
                    revoked = n,
                    "a rotated refresh token was presented again: its login is revoked"
                );
            }
            Ok(false)
        })
        .await?;
    if rotated {
        Ok(new)
    } else {
        Err(invalid_token())
    }
}

/// Ends the login of a refresh token (by its hash).
pub(crate) async fn logout(state: &AppState, token_hash: String) -> Result<(), ApiError> {
    let clock = state.clock.clone();
    state
        .store
        .run(move |c| refresh_tokens::revoke(c, &token_hash, clock.now_ms()))
        .await?;
    Ok(())
}

/// Step-up by password for an account without a second factor: a sudo token for the same
/// login. 409 `2FA_IS_ENABLED` when the account has one; a wrong password counts in the
/// password backoff.
pub(crate) async fn sudo_by_password(
    state: &AppState,
    auth: &AccessAuth,
    password: String,
    ip: std::net::IpAddr,
) -> Result<String, ApiError> {
    let user_id = auth.user_id;
    let user = crate::services::accounts::active_user(state, user_id).await?;
    if state
        .store
        .read(move |c| authd_store::two_factor::enabled(c, user_id))
        .await?
    {
        tracing::warn!(
            security_event = "sudo_refused",
            user_id,
            client_ip = %ip,
            "sudo by password refused: the account has a second factor"
        );
        return Err(ErrorCode::TwoFactorIsEnabled.into());
    }
    if let Err(e) = confirm_password(state, &user, password, ip).await {
        tracing::warn!(
            security_event = "sudo_refused",
            user_id,
            client_ip = %ip,
            "sudo by password refused: wrong password"
        );
        return Err(e);
    }
    let token = sign(
        state,
        TokenKind::Sudo,
        user_id,
        auth.claims.sid.as_deref(),
        state.settings.tokens.sudo_lifetime_secs,
    )?;
    tracing::info!(user_id, "sudo token by password");
    Ok(token)
}

/// An access token for the login of a refresh token.
pub(crate) fn access_token(
    state: &AppState,
    user_id: i64,
    family_id: &str,
) -> Result<String, ApiError> {
    sign(
        state,
        TokenKind::Access,
        user_id,
        Some(family_id),
        state.settings.tokens.access_lifetime_secs,
    )
}

/// Milliseconds of a duration, saturating far in the future.
pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// Starts a login: a new refresh token in a new family. Returns the raw token and the family
/// (the `sid` of the login's signed tokens).
pub(crate) async fn issue_refresh_in_family(
    state: &AppState,
    user_id: i64,
) -> Result<(String, String), ApiError> {
    let token = new_refresh_token();
    let hash = refresh_token_hash(&token);
    let family = uuid::Uuid::new_v4().simple().to_string();
    let sid = family.clone();
    let lifetime = ms(Duration::from_secs(
        state.settings.tokens.refresh_lifetime_secs,
    ));
    let clock = state.clock.clone();
    state
        .store
        .run(move |c| {
            let now = clock.now_ms();
            refresh_tokens::insert(c, user_id, &hash, &family, now, now + lifetime)
        })
        .await?;
    Ok((token, sid))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecondFactorTokens {
    /// A new access token when the call completed a login (partial token), else `null`.
    pub access_token: Option<String>,
    /// A new refresh token when the call completed a login (partial token), else `null`. Also
    /// `null` with `cookie=true`: the token is then in the `authd_refresh` cookie.
    pub refresh_token: Option<String>,
    /// A sudo token: proof of recent presence for the calls that need it.
    pub sudo_token: String,
}

/// What a passed second factor earns: with a partial token, a whole new login (refresh,
/// access and sudo tokens); with an access token, a sudo token for the same login. In cookie
/// mode a new refresh token goes into the cookie instead of the body.
pub(crate) async fn tokens_for(
    state: &AppState,
    auth: &AccessOrPartial,
    method: &'static str,
    req: &HttpRequest,
    cookie: CookieMode,
) -> Result<HttpResponse, ApiError> {
    let tokens = &state.settings.tokens;
    let sign = |kind, sid: Option<&str>, secs| sign(state, kind, auth.user_id, sid, secs);
    let mut set_cookie = None;
    let body = if auth.partial {
        let (refresh, family) = issue_refresh_in_family(state, auth.user_id).await?;
        let in_body = if cookie.0 {
            set_cookie = Some(refresh);
            None
        } else {
            Some(refresh)
        };
        metrics::counter!(authd_telemetry::names::LOGINS_TOTAL, "outcome" => "success")
            .increment(1);
        SecondFactorTokens {
            access_token: Some(sign(
                TokenKind::Access,
                Some(&family),
                tokens.access_lifetime_secs,
            )?),
            refresh_token: in_body,
            sudo_token: sign(TokenKind::Sudo, Some(&family), tokens.sudo_lifetime_secs)?,
        }
    } else {
        SecondFactorTokens {
            access_token: None,
            refresh_token: None,
            sudo_token: sign(
                TokenKind::Sudo,
                auth.sid.as_deref(),
                tokens.sudo_lifetime_secs,
            )?,
        }
    };
    tracing::info!(
        user_id = auth.user_id,
        method,
        login = auth.partial,
        "second factor passed"
    );
    let mut res = json_ok(&body);
    if let Some(token) = set_cookie {
        set_refresh_cookie(&mut res, req, state, &token);
    }
    Ok(res)
}
