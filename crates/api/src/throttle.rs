//! The RateLimiter seen from a handler: window limits that pay for a piece of work (and are
//! given back when the work could not be done), and guessing backoffs around a check.

use std::future::Future;

use std::net::IpAddr;

use authd_ratelimit::{
    Acquire, Backoff, BeginAttempt, GiveBack, Guesser, Limit, NextAttempt, NextTake, Success,
};

use crate::error::limited;
use crate::ErrorCode;
use crate::{ApiError, AppState};

/// Takes one unit of `limit` for `key` (429 `code` when none is left), runs `work`, and gives
/// the unit back when `work` fails: nothing was sent, so a retry must be able to succeed.
pub async fn with_permit<T>(
    state: &AppState,
    limit: Limit,
    code: ErrorCode,
    key: String,
    work: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    // A key just refused is answered from memory, without a message to the RateLimiter.
    limited(Ok(state.gate.refused(limit, &key)), code)?;
    let permit = limited(state.limiter.send(Acquire { limit, key }).await, code)?;
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

/// One guess at a secret (a password, a TOTP, a recovery or emailed code) by a client.
#[derive(Debug, Clone)]
pub struct Guess {
    pub backoff: Backoff,
    /// The account key: the user id, or the normalised name guessed at when there may be no
    /// account; emailed codes put their purpose in it.
    pub account: String,
    /// For the security log only (never the address).
    pub user_id: Option<i64>,
    pub ip: IpAddr,
    /// The 429 code while the guesser waits.
    pub too_many: ErrorCode,
}

impl Guess {
    fn guesser(&self) -> Guesser {
        Guesser {
            backoff: self.backoff,
            account: self.account.clone(),
            ip: self.ip,
        }
    }
}

/// What a check found: whether it was right, for the backoff.
pub trait Outcome {
    fn right(&self) -> bool;
}

impl Outcome for bool {
    fn right(&self) -> bool {
        *self
    }
}

impl<T> Outcome for Option<T> {
    fn right(&self) -> bool {
        self.is_some()
    }
}

/// Runs a guess under a backoff: 429 `too_many` while the guesser's network or the whole
/// account waits. The guess counts as a failure from the moment it is admitted (so parallel
/// guesses cannot outrun the backoff) until a success clears the streak. Errors of `check`
/// (not a wrong guess) leave it counted. Wrong guesses and the waits they start are security
/// events: one warn line each, with the user id and client IP, never the address or the
/// guess.
pub async fn guarded<T: Outcome>(
    state: &AppState,
    guess: &Guess,
    check: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let kind = guess.backoff.as_str();
    let admitted = limited(
        state.limiter.send(BeginAttempt(guess.guesser())).await,
        guess.too_many,
    )?;
    let outcome = check.await?;
    if outcome.right() {
        state.limiter.send(Success(guess.guesser())).await??;
        return Ok(outcome);
    }
    tracing::warn!(
        security_event = "wrong_guess",
        kind,
        user_id = guess.user_id,
        client_ip = %guess.ip,
        "wrong {kind}"
    );
    if admitted.account_waits {
        tracing::warn!(
            security_event = "lockout",
            scope = "account",
            kind,
            user_id = guess.user_id,
            client_ip = %guess.ip,
            "consecutive failures from all networks reached the account ceiling: the whole account waits"
        );
    } else if admitted.network_waits {
        tracing::warn!(
            security_event = "lockout",
            scope = "network",
            kind,
            user_id = guess.user_id,
            client_ip = %guess.ip,
            "consecutive failures from this client network: its next guess waits"
        );
    }
    Ok(outcome)
}

/// Seconds until this guesser's next guess may be made (0: now).
pub async fn next_attempt(state: &AppState, guess: &Guess) -> Result<u64, ApiError> {
    let wait = state.limiter.send(NextAttempt(guess.guesser())).await??;
    Ok(crate::error::whole_seconds(wait))
}

/// Seconds until one more unit of `limit` can be taken (0: now).
pub async fn next_take(state: &AppState, limit: Limit, key: String) -> Result<u64, ApiError> {
    let wait = state.limiter.send(NextTake { limit, key }).await??;
    Ok(crate::error::whole_seconds(wait))
}
