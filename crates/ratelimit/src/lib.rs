#![doc = include_str!("../README.md")]

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use authd_store::{backoffs, limits, Store, StoreError};
use authd_telemetry::names;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The named limits. The name is the metric label and the database key prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Password-reset mails per address.
    ResetMail,
    /// Two-factor code mails (email OTP setup and challenge) per account.
    OtpMail,
    /// Email-transfer code mails per account.
    TransferMail,
}

impl Limit {
    pub const ALL: &'static [Limit] = &[Limit::ResetMail, Limit::OtpMail, Limit::TransferMail];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ResetMail => "reset_mail",
            Self::OtpMail => "otp_mail",
            Self::TransferMail => "transfer_mail",
        }
    }
}

/// The guessing backoffs. The name is the metric label and the database key prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backoff {
    /// Wrong passwords per account (login and password change).
    Password,
    /// Wrong TOTP codes per account.
    Totp,
    /// Wrong recovery codes per account.
    RecoveryCode,
}

impl Backoff {
    pub const ALL: &'static [Backoff] = &[Backoff::Password, Backoff::Totp, Backoff::RecoveryCode];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Totp => "totp",
            Self::RecoveryCode => "recovery_code",
        }
    }
}

/// After `free_failures` consecutive failures the next attempt waits `initial`, doubling per
/// further failure up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub free_failures: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl BackoffPolicy {
    /// The wait after `failures` consecutive failures, in milliseconds.
    pub fn wait_ms(&self, failures: i32) -> i64 {
        let free = i32::try_from(self.free_failures).unwrap_or(i32::MAX);
        if failures < free {
            return 0;
        }
        let doublings = u32::try_from(failures - free).unwrap_or(0).min(40);
        let wait = self
            .initial
            .saturating_mul(2u32.saturating_pow(doublings.min(31)))
            .min(self.max);
        millis(wait)
    }
}

/// At most `max` per key per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub max: u32,
    pub window: Duration,
}

/// Proof that one unit of a limit was taken; hand it back with [`GiveBack`] when the work it
/// paid for could not be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit {
    limit: Limit,
    key_hash: String,
    window_start_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("limit reached; retry after {0:?}")]
    Denied(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct RateLimiter {
    store: Store,
    key: Vec<u8>,
    policies: HashMap<Limit, Policy>,
    backoffs: HashMap<Backoff, BackoffPolicy>,
    /// (backoff, key hash) → refused until (ms since the epoch).
    blocked: HashMap<(Backoff, String), i64>,
    /// Bumped by every success: a database answer obtained before a success must not put a
    /// block back into `blocked` after the success cleared it.
    successes: u64,
    ip: IpBudgets,
    /// (limit, key hash) → refused until (ms since the epoch).
    denied: HashMap<(Limit, String), i64>,
    denied_cap: usize,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("policies", &self.policies)
            .field("denied", &self.denied.len())
            .finish()
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl RateLimiter {
    pub fn new(
        store: Store,
        key: &[u8],
        policies: HashMap<Limit, Policy>,
        backoffs: HashMap<Backoff, BackoffPolicy>,
        ip: IpBudgets,
        denied_cap: usize,
    ) -> Self {
        Self {
            store,
            key: key.to_vec(),
            policies,
            backoffs,
            ip,
            blocked: HashMap::new(),
            successes: 0,
            denied: HashMap::new(),
            denied_cap,
        }
    }

    /// A keyed hash of the key, so neither the database nor memory holds raw addresses.
    fn key_hash(&self, name: &str, key: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(key.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Caches a block read from or written to the database, unless a success happened since
    /// the database was asked (`seen` is `successes` at that time). Answers of parallel
    /// requests may finish in any order: the latest wait wins, as in the database.
    fn remember_blocked(&mut self, backoff: Backoff, key_hash: String, until: i64, seen: u64) {
        if seen != self.successes || until <= now_ms() {
            return;
        }
        let key = (backoff, key_hash);
        if let Some(known) = self.blocked.get_mut(&key) {
            *known = (*known).max(until);
        } else if self.blocked.len() < self.denied_cap {
            self.blocked.insert(key, until);
        }
    }

    fn remember_denied(&mut self, limit: Limit, key_hash: String, until_ms: i64) {
        if self.denied.len() >= self.denied_cap {
            let now = now_ms();
            self.denied.retain(|_, until| *until > now);
        }
        if self.denied.len() < self.denied_cap {
            self.denied.insert((limit, key_hash), until_ms);
        }
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
        }
        for group in IpGroup::ALL {
            metrics::counter!(names::THROTTLE_HITS_TOTAL, "limit" => group.as_str()).absolute(0);
        }
    }
}

fn denied(limit: Limit, until_ms: i64, now: i64) -> LimitError {
    metrics::counter!(names::THROTTLE_HITS_TOTAL, "limit" => limit.as_str()).increment(1);
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
        let key_hash = self.key_hash(limit.as_str(), &msg.key);
        let now = now_ms();
        if let Some(&until) = self.denied.get(&(limit, key_hash.clone())) {
            if until > now {
                return Box::pin(fut::ready(Err(denied(limit, until, now))));
            }
            self.denied.remove(&(limit, key_hash.clone()));
        }
        let Some(policy) = self.policies.get(&limit).copied() else {
            tracing::error!(limit = limit.as_str(), "no policy configured; refusing");
            return Box::pin(fut::ready(Err(LimitError::Denied(Duration::from_secs(60)))));
        };
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
                    act.remember_denied(limit, key_hash, until_ms);
                    Err(denied(limit, until_ms, now))
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
        self.denied.remove(&(p.limit, p.key_hash.clone()));
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

fn backoff_denied(backoff: Backoff, until_ms: i64, now: i64) -> LimitError {
    metrics::counter!(names::THROTTLE_HITS_TOTAL, "limit" => backoff.as_str()).increment(1);
    LimitError::Denied(Duration::from_millis(
        u64::try_from(until_ms - now).unwrap_or(0),
    ))
}

/// Asks to make one guess under a backoff: `Err(Denied(wait))` while the key waits; otherwise
/// the guess is admitted and already counted as a failure (send [`Success`] when it was
/// right). Counting before checking is what keeps parallel guesses from all slipping in
/// before the first failure is on record.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), LimitError>")]
pub struct BeginAttempt {
    pub backoff: Backoff,
    pub key: String,
}

impl RateLimiter {
    fn policy(&self, backoff: Backoff) -> BackoffPolicy {
        self.backoffs
            .get(&backoff)
            .copied()
            .unwrap_or(BackoffPolicy {
                free_failures: 3,
                initial: Duration::from_secs(2),
                max: Duration::from_secs(900),
            })
    }
}

impl Handler<BeginAttempt> for RateLimiter {
    type Result = ResponseActFuture<Self, Result<(), LimitError>>;

    fn handle(&mut self, msg: BeginAttempt, _: &mut Self::Context) -> Self::Result {
        let (backoff, now) = (msg.backoff, now_ms());
        let key_hash = self.key_hash(backoff.as_str(), &msg.key);
        // Refused from memory while a wait this process knows of runs.
        if let Some(&until) = self.blocked.get(&(backoff, key_hash.clone())) {
            if until > now {
                return Box::pin(fut::ready(Err(backoff_denied(backoff, until, now))));
            }
            self.blocked.remove(&(backoff, key_hash.clone()));
        }
        let policy = self.policy(backoff);
        let store = self.store.clone();
        let seen = self.successes;
        Box::pin(
            async move {
                let hash = key_hash.clone();
                let outcome = store
                    .run(move |c| {
                        backoffs::attempt(c, backoff.as_str(), &hash, now, |f| policy.wait_ms(f))
                    })
                    .await?;
                Ok((key_hash, outcome))
            }
            .into_actor(self)
            .map(
                move |res: Result<(String, backoffs::Attempt), StoreError>, act, _| {
                    let (key_hash, outcome) = res?;
                    match outcome {
                        backoffs::Attempt::Admitted {
                            blocked_until_ms, ..
                        } => {
                            act.remember_blocked(backoff, key_hash, blocked_until_ms, seen);
                            Ok(())
                        }
                        backoffs::Attempt::Refused { blocked_until_ms } => {
                            act.remember_blocked(backoff, key_hash, blocked_until_ms, seen);
                            Err(backoff_denied(backoff, blocked_until_ms, now))
                        }
                    }
                },
            ),
        )
    }
}

/// How long until an attempt may be made (zero: now), for the `next-guess` calls. Reads the
/// database, the authority, so every replica reports the wait a 429 would.
#[derive(Debug, Message)]
#[rtype(result = "Result<Duration, StoreError>")]
pub struct NextAttempt {
    pub backoff: Backoff,
    pub key: String,
}

impl Handler<NextAttempt> for RateLimiter {
    type Result = ResponseFuture<Result<Duration, StoreError>>;

    fn handle(&mut self, msg: NextAttempt, _: &mut Self::Context) -> Self::Result {
        let (backoff, now) = (msg.backoff, now_ms());
        let key_hash = self.key_hash(backoff.as_str(), &msg.key);
        let store = self.store.clone();
        Box::pin(async move {
            let until = store
                .read(move |c| backoffs::blocked_until(c, backoff.as_str(), &key_hash, now))
                .await?;
            Ok(wait_until(until, now))
        })
    }
}

fn wait_until(until_ms: Option<i64>, now_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(until_ms.map_or(0, |u| u - now_ms)).unwrap_or(0))
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
        let (limit, now) = (msg.limit, now_ms());
        let key_hash = self.key_hash(limit.as_str(), &msg.key);
        let policy = self.policies.get(&limit).copied();
        let store = self.store.clone();
        Box::pin(async move {
            let Some(policy) = policy else {
                return Ok(Duration::ZERO);
            };
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

/// A successful attempt ends the streak.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Success {
    pub backoff: Backoff,
    pub key: String,
}

impl Handler<Success> for RateLimiter {
    type Result = ResponseActFuture<Self, Result<(), StoreError>>;

    fn handle(&mut self, msg: Success, _: &mut Self::Context) -> Self::Result {
        let backoff = msg.backoff;
        let key_hash = self.key_hash(backoff.as_str(), &msg.key);
        self.blocked.remove(&(backoff, key_hash.clone()));
        // Before and after the clear commits: a read that overlapped it is not cached.
        self.successes += 1;
        let store = self.store.clone();
        Box::pin(
            async move {
                store
                    .run(move |c| backoffs::clear(c, backoff.as_str(), &key_hash))
                    .await
            }
            .into_actor(self)
            .map(|res, act, _| {
                act.successes += 1;
                res
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_backoff_starts_after_three_failures_doubles_and_is_capped() {
        let p = BackoffPolicy {
            free_failures: 3,
            initial: Duration::from_secs(2),
            max: Duration::from_secs(900),
        };
        let waits: Vec<i64> = (1..=13).map(|f| p.wait_ms(f) / 1000).collect();
        assert_eq!(waits, [0, 0, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]);
        assert_eq!(p.wait_ms(1_000) / 1000, 900);
    }
}

/// Per-client-IP budgets, one per group of unauthenticated routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpGroup {
    Login,
    Reset,
}

impl IpGroup {
    pub const ALL: &'static [IpGroup] = &[IpGroup::Login, IpGroup::Reset];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "ip_login",
            Self::Reset => "ip_reset",
        }
    }
}

/// A token bucket: `capacity` requests, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketPolicy {
    pub capacity: f64,
    pub per_second: f64,
}

/// One client's bucket. Buckets live in memory; each of N live replicas enforces 1/N of the
/// configured budget, so the total across replicas is the budget (a client pinned to one
/// replica gets less, never more).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: std::time::Instant,
}

impl Bucket {
    /// Takes one token; `Err(wait)` when the bucket is empty.
    fn take(&mut self, p: BucketPolicy, now: std::time::Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * p.per_second).min(p.capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else if p.per_second > 0.0 {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / p.per_second))
        } else {
            Err(Duration::from_secs(3600))
        }
    }
}

/// The per-IP state of the RateLimiter, kept apart from the database-backed limits.
#[derive(Debug, Default)]
pub struct IpBudgets {
    policies: HashMap<IpGroup, BucketPolicy>,
    buckets: HashMap<(IpGroup, std::net::IpAddr), Bucket>,
    replicas: u32,
    cap: usize,
}

impl IpBudgets {
    pub fn new(policies: HashMap<IpGroup, BucketPolicy>, cap: usize) -> Self {
        Self {
            policies,
            buckets: HashMap::new(),
            replicas: 1,
            cap,
        }
    }

    fn take(
        &mut self,
        group: IpGroup,
        ip: std::net::IpAddr,
        now: std::time::Instant,
    ) -> Result<(), Duration> {
        let Some(p) = self.policies.get(&group).copied() else {
            return Ok(());
        };
        let n = f64::from(self.replicas.max(1));
        let share = BucketPolicy {
            capacity: (p.capacity / n).max(1.0),
            per_second: p.per_second / n,
        };
        if self.buckets.len() >= self.cap && !self.buckets.contains_key(&(group, ip)) {
            // Full buckets hold no information: drop them first.
            self.buckets.retain(|(g, _), b| {
                let pol = self.policies.get(g).copied().unwrap_or(share);
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * pol.per_second / n
                    < pol.capacity / n
            });
        }
        self.buckets
            .entry((group, ip))
            .or_insert(Bucket {
                tokens: share.capacity,
                at: now,
            })
            .take(share, now)
    }
}

/// Takes one request from a client IP's budget for a group of routes.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), LimitError>")]
pub struct IpBudget {
    pub group: IpGroup,
    pub ip: std::net::IpAddr,
}

impl Handler<IpBudget> for RateLimiter {
    type Result = Result<(), LimitError>;

    fn handle(&mut self, msg: IpBudget, _: &mut Self::Context) -> Self::Result {
        self.ip
            .take(msg.group, msg.ip, std::time::Instant::now())
            .map_err(|wait| {
                metrics::counter!(names::THROTTLE_HITS_TOTAL, "limit" => msg.group.as_str())
                    .increment(1);
                LimitError::Denied(wait)
            })
    }
}

/// The number of live replicas changed (from the heartbeat task).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetReplicas(pub u32);

impl Handler<SetReplicas> for RateLimiter {
    type Result = ();

    fn handle(&mut self, msg: SetReplicas, _: &mut Self::Context) {
        self.ip.replicas = msg.0.max(1);
    }
}

#[cfg(test)]
mod ip_tests {
    use super::*;
    use std::net::IpAddr;
    use std::time::Instant;

    #[test]
    fn a_bucket_allows_its_capacity_then_refills_and_is_shared_among_replicas() {
        let p = BucketPolicy {
            capacity: 4.0,
            per_second: 2.0,
        };
        let mut b = IpBudgets::new(HashMap::from([(IpGroup::Login, p)]), 100);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..4 {
            assert!(b.take(IpGroup::Login, ip, t0).is_ok());
        }
        let wait = b.take(IpGroup::Login, ip, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(b
            .take(IpGroup::Login, ip, t0 + Duration::from_millis(500))
            .is_ok());
        // Another IP and another group have their own buckets.
        assert!(b
            .take(IpGroup::Login, "192.0.2.2".parse().unwrap(), t0)
            .is_ok());
        assert!(
            b.take(IpGroup::Reset, ip, t0).is_ok(),
            "no policy, no limit"
        );

        let mut two = IpBudgets::new(HashMap::from([(IpGroup::Login, p)]), 100);
        two.replicas = 2;
        assert!(two.take(IpGroup::Login, ip, t0).is_ok());
        assert!(two.take(IpGroup::Login, ip, t0).is_ok());
        assert!(
            two.take(IpGroup::Login, ip, t0).is_err(),
            "half of the capacity per replica"
        );
    }
}
