//! Sessions: refresh-token families, and the tokens a passed second factor earns.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse};
use authd_domain::tokens::{new_refresh_token, refresh_token_hash, TokenKind};
use authd_store::refresh_tokens;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::AccessOrPartial;
use crate::browser::{set_refresh_cookie, CookieMode};
use crate::{json_ok, ApiError, AppState};

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
    let now = state.clock.now_secs();
    let tokens = &state.settings.tokens;
    let sign = |kind, sid: Option<&str>, secs| {
        state
            .signer
            .sign(kind, auth.user_id, sid, Duration::from_secs(secs), now)
            .map_err(ApiError::internal)
    };
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
