//! The RateLimiter seen from a handler: window limits that pay for a piece of work (and are
//! given back when the work could not be done), and guessing backoffs around a check.

use std::future::Future;
use std::time::Duration;

use authd_ratelimit::{
    Acquire, Backoff, BeginAttempt, GiveBack, Limit, LimitError, NextAttempt, NextTake, Success,
};

use crate::{ApiError, AppState};

/// Takes one unit of `limit` for `key` (429 `code` when none is left), runs `work`, and gives
/// the unit back when `work` fails: nothing was sent, so a retry must be able to succeed.
pub async fn with_permit<T>(
    state: &AppState,
    limit: Limit,
    code: &'static str,
    key: String,
    work: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let permit = match state.limiter.send(Acquire { limit, key }).await {
        Ok(Ok(p)) => p,
        Ok(Err(LimitError::Denied(wait))) => return Err(ApiError::too_many(code, wait)),
        Ok(Err(LimitError::Store(e))) => return Err(e.into()),
        Err(e) => return Err(ApiError::internal(e)),
    };
    let result = work.await;
    if result.is_err() {
        if let Err(e) = state
            .limiter
            .send(GiveBack(permit))
            .await
            .map_err(ApiError::internal)
            .and_then(|r| r.map_err(ApiError::from))
        {
            tracing::warn!(?e, "could not give the throttle window back");
        }
    }
    result
}

/// Runs a guess under a backoff: 429 `code` while the key waits. The guess counts as a failure
/// from the moment it is admitted (so parallel guesses cannot outrun the backoff) until a
/// success clears the streak. Errors of `check` (not a wrong guess) leave it counted.
pub async fn guarded(
    state: &AppState,
    backoff: Backoff,
    code: &'static str,
    key: &str,
    check: impl Future<Output = Result<bool, ApiError>>,
) -> Result<bool, ApiError> {
    match state
        .limiter
        .send(BeginAttempt {
            backoff,
            key: key.to_owned(),
        })
        .await
    {
        Ok(Ok(())) => {}
        Ok(Err(LimitError::Denied(wait))) => return Err(ApiError::too_many(code, wait)),
        Ok(Err(LimitError::Store(e))) => return Err(e.into()),
        Err(e) => return Err(ApiError::internal(e)),
    }
    let ok = check.await?;
    if ok {
        let key = key.to_owned();
        state
            .limiter
            .send(Success { backoff, key })
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::from)?;
    }
    Ok(ok)
}

/// Whole seconds, rounded up, as the `next-*` calls and `retryAfter` report them.
pub fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Seconds until the next guess under `backoff` may be made (0: now).
pub async fn next_attempt(
    state: &AppState,
    backoff: Backoff,
    key: String,
) -> Result<u64, ApiError> {
    let wait = state
        .limiter
        .send(NextAttempt { backoff, key })
        .await
        .map_err(ApiError::internal)??;
    Ok(whole_seconds(wait))
}

/// Seconds until one more unit of `limit` can be taken (0: now).
pub async fn next_take(state: &AppState, limit: Limit, key: String) -> Result<u64, ApiError> {
    let wait = state
        .limiter
        .send(NextTake { limit, key })
        .await
        .map_err(ApiError::internal)??;
    Ok(whole_seconds(wait))
}
