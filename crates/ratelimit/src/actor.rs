//! The RateLimiter actor and its messages: each handler asks one mechanism (windows,
//! backoffs, per-IP budgets) and the database.

use std::time::Duration;

use actix::prelude::*;
use authd_store::{backoffs as stored_backoffs, limits, Store, StoreError};
use authd_telemetry::names;

use crate::backoffs::{Admitted, Backoff, BackoffPolicies, Backoffs, GuessKeys, Guesser};
use crate::gate::Gate;
use crate::ip_budgets::{IpBudgets, IpGroup};
use crate::windows::{Limit, Permit, WindowPolicies, Windows};
use crate::{millis, wait_until, KeyHasher, LimitError};
use authd_domain::Clock;

pub struct RateLimiter {
    store: Store,
    /// The per-IP budgets and the window refusals, shared with the handlers (see `gate.rs`).
    gate: Gate,
    policies: WindowPolicies,
    backoffs: Backoffs,
    clock: Clock,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("policies", &self.policies)
            .field("backoffs", &self.backoffs.policies)
            .field("gate", &self.gate)
            .finish()
    }
}

impl RateLimiter {
    /// Every limit, backoff and per-IP group has its policy by construction; `denied_cap`
    /// bounds each in-memory cache of refusals.
    pub fn new(
        store: Store,
        key: &[u8],
        windows: WindowPolicies,
        backoffs: BackoffPolicies,
        ip: IpBudgets,
        denied_cap: usize,
        clock: Clock,
    ) -> Self {
        Self {
            gate: Gate::new(
                KeyHasher(key.to_vec()),
                clock.clone(),
                ip,
                Windows::new(denied_cap),
            ),
            clock,
            store,
            policies: windows,
            backoffs: Backoffs::new(backoffs, denied_cap),
        }
    }

    /// The handle through which request handlers ask what memory alone can answer.
    pub fn gate(&self) -> Gate {
        self.gate.clone()
    }
}

impl Actor for RateLimiter {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        for limit in Limit::ALL {
            metrics::counter!(names::THROTTLE_HITS_TOTAL, "limit" => limit.as_str()).absolute(0);
        }
        for backoff in Backoff::ALL {
            metrics::counter!(names::THROTTLE_HITS_TOTAL, "limit" => backoff.as_str()).absolute(0);
            metrics::counter!(names::THROTTLE_HITS_TOTAL, "limit" => backoff.ceiling_label())
                .absolute(0);
        }
        for group in IpGroup::ALL {
            metrics::counter!(names::THROTTLE_HITS_TOTAL, "limit" => group.as_str()).absolute(0);
        }
    }
}

/// Counts a refusal under its metric label and answers with the wait.
pub(crate) fn denied(label: &'static str, until_ms: i64, now: i64) -> LimitError {
    metrics::counter!(names::THROTTLE_HITS_TOTAL, "limit" => label).increment(1);
    LimitError::Denied(Duration::from_millis(
        u64::try_from(until_ms - now).unwrap_or(0),
    ))
}

/// Takes one unit of `limit` for `key` (e.g. an email address).
#[derive(Debug, Message)]
#[rtype(result = "Result<Permit, LimitError>")]
pub struct Acquire {
    pub limit: Limit,
    pub key: String,
}

impl Handler<Acquire> for RateLimiter {
    type Result = ResponseActFuture<Self, Result<Permit, LimitError>>;

    fn handle(&mut self, msg: Acquire, _: &mut Self::Context) -> Self::Result {
        let limit = msg.limit;
        let key_hash = self.gate.hash(limit.as_str(), &msg.key);
        let now = self.clock.now_ms();
        let refused = self.gate.windows().refused_until(limit, &key_hash, now);
        if let Some(until) = refused {
            return Box::pin(fut::ready(Err(denied(limit.as_str(), until, now))));
        }
        let policy = self.policies.get(limit);
        let store = self.store.clone();
        let hash = key_hash.clone();
        let max = i32::try_from(policy.max).unwrap_or(i32::MAX);
        let window = millis(policy.window);
        Box::pin(
            async move {
                store
                    .run(move |c| limits::take(c, limit.as_str(), &hash, max, window, now))
                    .await
            }
            .into_actor(self)
            .map(move |res, act, _| match res? {
                limits::Take::Granted { window_start_ms } => Ok(Permit {
                    limit,
                    key_hash,
                    window_start_ms,
                }),
                limits::Take::Denied { until_ms } => {
                    // The wait counts from the answer, not from the request: a window opened
                    // by a request that read the clock after this one must not make the wait
                    // longer than the window (a `retryAfter` of 61 for a 60 s window). The
                    // clamp keeps that true across replicas whose clocks differ a little.
                    let answered = act.clock.now_ms();
                    let until_ms = until_ms.min(answered + window);
                    act.gate
                        .windows()
                        .remember_denied(limit, key_hash, until_ms, answered);
                    Err(denied(limit.as_str(), until_ms, answered))
                }
            }),
        )
    }
}

/// Returns a unit taken with [`Acquire`].
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct GiveBack(pub Permit);

impl Handler<GiveBack> for RateLimiter {
    type Result = ResponseFuture<Result<(), StoreError>>;

    fn handle(&mut self, msg: GiveBack, _: &mut Self::Context) -> Self::Result {
        let p = msg.0;
        self.gate.windows().forget(p.limit, &p.key_hash);
        let store = self.store.clone();
        Box::pin(async move {
            store
                .run(move |c| {
                    limits::give_back(c, p.limit.as_str(), &p.key_hash, p.window_start_ms)
                })
                .await
        })
    }
}

/// How long until one more unit of a window limit can be taken (zero: now), for the
/// `next-email` call. Takes nothing.
#[derive(Debug, Message)]
#[rtype(result = "Result<Duration, StoreError>")]
pub struct NextTake {
    pub limit: Limit,
    pub key: String,
}

impl Handler<NextTake> for RateLimiter {
    type Result = ResponseFuture<Result<Duration, StoreError>>;

    fn handle(&mut self, msg: NextTake, _: &mut Self::Context) -> Self::Result {
        let (limit, now) = (msg.limit, self.clock.now_ms());
        let key_hash = self.gate.hash(limit.as_str(), &msg.key);
        let policy = self.policies.get(limit);
        let store = self.store.clone();
        Box::pin(async move {
            let max = i32::try_from(policy.max).unwrap_or(i32::MAX);
            let window = millis(policy.window);
            let until = store
                .read(move |c| {
                    limits::refused_until(c, limit.as_str(), &key_hash, max, window, now)
                })
                .await?;
            Ok(wait_until(until, now))
        })
    }
}

/// Asks to make one guess under a backoff: `Err(Denied(wait))` while the guesser's network
/// or the whole account waits; otherwise the guess is admitted and already counted as a
/// failure under both (send [`Success`] when it was right). Counting before checking is what
/// keeps parallel guesses from all slipping in before the first failure is on record.
#[derive(Debug, Message)]
#[rtype(result = "Result<Admitted, LimitError>")]
pub struct BeginAttempt(pub Guesser);

impl Handler<BeginAttempt> for RateLimiter {
    type Result = ResponseActFuture<Self, Result<Admitted, LimitError>>;

    fn handle(&mut self, msg: BeginAttempt, _: &mut Self::Context) -> Self::Result {
        let (backoff, now) = (msg.0.backoff, self.clock.now_ms());
        let keys = GuessKeys::of(self.gate.hasher(), &msg.0);
        // Refused from memory while a wait this process knows of runs.
        // The longer wait is the one reported: the attempt cannot succeed before it ends.
        let account = self.backoffs.known_block(&keys.account, now);
        let network = self.backoffs.known_block(&keys.network, now);
        match (account, network) {
            (Some(a), n) if n.is_none_or(|n| a >= n) => {
                return Box::pin(fut::ready(Err(denied(backoff.ceiling_label(), a, now))));
            }
            (_, Some(n)) => {
                return Box::pin(fut::ready(Err(denied(backoff.as_str(), n, now))));
            }
            _ => {}
        }
        let policy = self.backoffs.policies.network(backoff);
        let ceiling = self.backoffs.policies.account_ceiling;
        let store = self.store.clone();
        let seen = self.backoffs.seen();
        Box::pin(
            async move {
                // The job may run more than once (a deadlock between writers): it keeps its
                // own copy of the keys.
                let for_job = keys.clone();
                let outcome = store
                    .run(move |c| {
                        let [network, account] = for_job.both();
                        stored_backoffs::attempt(
                            c,
                            network,
                            account,
                            now,
                            |f| policy.wait_ms(f),
                            |f| ceiling.wait_ms(f),
                        )
                    })
                    .await?;
                Ok((keys, outcome))
            }
            .into_actor(self)
            .map(
                move |res: Result<(GuessKeys, stored_backoffs::Attempt), StoreError>, act, _| {
                    let (keys, outcome) = res?;
                    let answered = act.clock.now_ms();
                    match outcome {
                        stored_backoffs::Attempt::Admitted {
                            network_until_ms,
                            account_until_ms,
                            ..
                        } => {
                            act.backoffs.remember_blocked(
                                keys.network,
                                network_until_ms,
                                seen,
                                answered,
                            );
                            act.backoffs.remember_blocked(
                                keys.account,
                                account_until_ms,
                                seen,
                                answered,
                            );
                            Ok(Admitted {
                                network_waits: network_until_ms > now,
                                account_waits: account_until_ms > now,
                            })
                        }
                        stored_backoffs::Attempt::NetworkRefused { blocked_until_ms } => {
                            act.backoffs.remember_blocked(
                                keys.network,
                                blocked_until_ms,
                                seen,
                                answered,
                            );
                            Err(denied(backoff.as_str(), blocked_until_ms, now))
                        }
                        stored_backoffs::Attempt::AccountRefused { blocked_until_ms } => {
                            act.backoffs.remember_blocked(
                                keys.account,
                                blocked_until_ms,
                                seen,
                                answered,
                            );
                            Err(denied(backoff.ceiling_label(), blocked_until_ms, now))
                        }
                    }
                },
            ),
        )
    }
}

/// How long until a guesser may make an attempt (zero: now), for the `next-guess` calls: the
/// longer of its network's and its account's waits. Reads the database, the authority, so
/// every replica reports the wait a 429 would.
#[derive(Debug, Message)]
#[rtype(result = "Result<Duration, StoreError>")]
pub struct NextAttempt(pub Guesser);

impl Handler<NextAttempt> for RateLimiter {
    type Result = ResponseFuture<Result<Duration, StoreError>>;

    fn handle(&mut self, msg: NextAttempt, _: &mut Self::Context) -> Self::Result {
        let now = self.clock.now_ms();
        let keys = GuessKeys::of(self.gate.hasher(), &msg.0);
        let store = self.store.clone();
        Box::pin(async move {
            let until = store
                .read(move |c| stored_backoffs::blocked_until(c, &keys.both(), now))
                .await?;
            Ok(wait_until(until, now))
        })
    }
}

/// A successful attempt ends the streak of the guesser's network and of the account (a right
/// answer proves the owner); other networks' waits stay.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Success(pub Guesser);

impl Handler<Success> for RateLimiter {
    type Result = ResponseActFuture<Self, Result<(), StoreError>>;

    fn handle(&mut self, msg: Success, _: &mut Self::Context) -> Self::Result {
        let keys = GuessKeys::of(self.gate.hasher(), &msg.0);
        // Before and after the clear commits: a read that overlapped it is not cached.
        self.backoffs.success_begins(&keys);
        let store = self.store.clone();
        Box::pin(
            async move {
                store
                    .run(move |c| stored_backoffs::clear(c, &keys.both()))
                    .await
            }
            .into_actor(self)
            .map(|res, act, _| {
                act.backoffs.success_written();
                res
            }),
        )
    }
}

/// The number of live replicas changed (from the heartbeat task).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetReplicas(pub u32);

impl Handler<SetReplicas> for RateLimiter {
    type Result = ();

    fn handle(&mut self, msg: SetReplicas, _: &mut Self::Context) {
        self.gate.ip().set_replicas(msg.0);
    }
}
