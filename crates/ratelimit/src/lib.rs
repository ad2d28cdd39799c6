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
    /// Wrong emailed codes (password reset, email OTP, email transfer) per account and
    /// purpose, across codes: the callers put the purpose in the key.
    EmailedCode,
}

impl Backoff {
    pub const ALL: &'static [Backoff] = &[
        Backoff::Password,
        Backoff::Totp,
        Backoff::RecoveryCode,
        Backoff::EmailedCode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Totp => "totp",
            Self::RecoveryCode => "recovery_code",
            Self::EmailedCode => "emailed_code",
        }
    }

    /// The database name of the account-wide ceiling of this backoff.
    fn account_str(self) -> &'static str {
        match self {
            Self::Password => "password:account",
            Self::Totp => "totp:account",
            Self::RecoveryCode => "recovery_code:account",
            Self::EmailedCode => "emailed_code:account",
        }
    }

    /// The metric label of a refusal by the account-wide ceiling.
    fn ceiling_label(self) -> &'static str {
        self.account_str()
    }
}

/// The client network an attempt comes from: an IPv4 address, or the /64 of an IPv6 address
/// (one subscriber usually holds a whole /64, so single IPv6 addresses would be free to
/// rotate). IPv4-mapped IPv6 addresses count as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Network(std::net::IpAddr);

impl Network {
    pub fn of(ip: std::net::IpAddr) -> Self {
        match ip {
            std::net::IpAddr::V4(v4) => Self(v4.into()),
            std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(v4.into()),
                None => {
                    let bits = u128::from(v6) & (u128::MAX << 64);
                    Self(std::net::Ipv6Addr::from(bits).into())
                }
            },
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            std::net::IpAddr::V4(v4) => write!(f, "{v4}"),
            std::net::IpAddr::V6(v6) => write!(f, "{v6}/64"),
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
    /// The account-wide ceiling shared by every backoff.
    ceiling: BackoffPolicy,
    /// (database limit name, key hash) → refused until (ms since the epoch); network and
    /// account keys alike.
    blocked: HashMap<(&'static str, String), i64>,
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
        ceiling: BackoffPolicy,
        ip: IpBudgets,
        denied_cap: usize,
    ) -> Self {
        Self {
            store,
            key: key.to_vec(),
            policies,
            backoffs,
            ceiling,
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
    fn remember_blocked(&mut self, limit: &'static str, key_hash: String, until: i64, seen: u64) {
        if seen != self.successes || until <= now_ms() {
            return;
        }
        let key = (limit, key_hash);
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
            metrics::counter!(names::THROTTLE_HITS_TOTAL, "limit" => backoff.ceiling_label())
                .absolute(0);
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

fn backoff_denied(label: &'static str, until_ms: i64, now: i64) -> LimitError {
    metrics::counter!(names::THROTTLE_HITS_TOTAL, "limit" => label).increment(1);
    LimitError::Denied(Duration::from_millis(
        u64::try_from(until_ms - now).unwrap_or(0),
    ))
}

/// Who is guessing: the account (or, for calls without one, the name guessed at) and the
/// client's IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guesser {
    pub backoff: Backoff,
    /// The account key, e.g. a user id or a normalised address; callers put the purpose of an
    /// emailed code in it.
    pub account: String,
    pub ip: std::net::IpAddr,
}

/// The hashed database keys of a guesser: (limit, hash) for its network and its account.
struct GuessKeys {
    network: (&'static str, String),
    account: (&'static str, String),
}

impl GuessKeys {
    fn both(&self) -> [backoffs::Key<'_>; 2] {
        [
            backoffs::Key {
                limit: self.network.0,
                hash: &self.network.1,
            },
            backoffs::Key {
                limit: self.account.0,
                hash: &self.account.1,
            },
        ]
    }
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

    fn guess_keys(&self, g: &Guesser) -> GuessKeys {
        let network = Network::of(g.ip);
        let net_name = g.backoff.as_str();
        let acct_name = g.backoff.account_str();
        GuessKeys {
            network: (
                net_name,
                self.key_hash(net_name, &format!("{}\0{network}", g.account)),
            ),
            account: (acct_name, self.key_hash(acct_name, &g.account)),
        }
    }

    /// The wait this process already knows of for a key, dropping ended ones.
    fn known_block(&mut self, key: &(&'static str, String), now: i64) -> Option<i64> {
        match self.blocked.get(key) {
            Some(&until) if until > now => Some(until),
            Some(_) => {
                self.blocked.remove(key);
                None
            }
            None => None,
        }
    }
}

/// Asks to make one guess under a backoff: `Err(Denied(wait))` while the guesser's network
/// or the whole account waits; otherwise the guess is admitted and already counted as a
/// failure under both (send [`Success`] when it was right). Counting before checking is what
/// keeps parallel guesses from all slipping in before the first failure is on record.
#[derive(Debug, Message)]
#[rtype(result = "Result<Admitted, LimitError>")]
pub struct BeginAttempt(pub Guesser);

/// An admitted attempt, and whether counting it started a wait (worth a security log line:
/// a lockout of the guesser's network, or of the whole account).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub network_waits: bool,
    pub account_waits: bool,
}

impl Handler<BeginAttempt> for RateLimiter {
    type Result = ResponseActFuture<Self, Result<Admitted, LimitError>>;

    fn handle(&mut self, msg: BeginAttempt, _: &mut Self::Context) -> Self::Result {
        let (backoff, now) = (msg.0.backoff, now_ms());
        let keys = self.guess_keys(&msg.0);
        // Refused from memory while a wait this process knows of runs.
        // The longer wait is the one reported: the attempt cannot succeed before it ends.
        let account = self.known_block(&keys.account, now);
        let network = self.known_block(&keys.network, now);
        match (account, network) {
            (Some(a), n) if n.is_none_or(|n| a >= n) => {
                return Box::pin(fut::ready(Err(backoff_denied(
                    backoff.ceiling_label(),
                    a,
                    now,
                ))));
            }
            (_, Some(n)) => {
                return Box::pin(fut::ready(Err(backoff_denied(backoff.as_str(), n, now))));
            }
            _ => {}
        }
        let (policy, ceiling) = (self.policy(backoff), self.ceiling);
        let store = self.store.clone();
        let seen = self.successes;
        Box::pin(
            async move {
                let (keys, outcome) = store
                    .run(move |c| {
                        let [network, account] = keys.both();
                        let outcome = backoffs::attempt(
                            c,
                            network,
                            account,
                            now,
                            |f| policy.wait_ms(f),
                            |f| ceiling.wait_ms(f),
                        )?;
                        Ok((keys, outcome))
                    })
                    .await?;
                Ok((keys, outcome))
            }
            .into_actor(self)
            .map(
                move |res: Result<(GuessKeys, backoffs::Attempt), StoreError>, act, _| {
                    let (keys, outcome) = res?;
                    match outcome {
                        backoffs::Attempt::Admitted {
                            network_until_ms,
                            account_until_ms,
                            ..
                        } => {
                            act.remember_blocked(
                                keys.network.0,
                                keys.network.1,
                                network_until_ms,
                                seen,
                            );
                            act.remember_blocked(
                                keys.account.0,
                                keys.account.1,
                                account_until_ms,
                                seen,
                            );
                            Ok(Admitted {
                                network_waits: network_until_ms > now,
                                account_waits: account_until_ms > now,
                            })
                        }
                        backoffs::Attempt::NetworkRefused { blocked_until_ms } => {
                            act.remember_blocked(
                                keys.network.0,
                                keys.network.1,
                                blocked_until_ms,
                                seen,
                            );
                            Err(backoff_denied(backoff.as_str(), blocked_until_ms, now))
                        }
                        backoffs::Attempt::AccountRefused { blocked_until_ms } => {
                            act.remember_blocked(
                                keys.account.0,
                                keys.account.1,
                                blocked_until_ms,
                                seen,
                            );
                            Err(backoff_denied(
                                backoff.ceiling_label(),
                                blocked_until_ms,
                                now,
                            ))
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
        let now = now_ms();
        let keys = self.guess_keys(&msg.0);
        let store = self.store.clone();
        Box::pin(async move {
            let until = store
                .read(move |c| backoffs::blocked_until(c, &keys.both(), now))
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

/// A successful attempt ends the streak of the guesser's network and of the account (a right
/// answer proves the owner); other networks' waits stay.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Success(pub Guesser);

impl Handler<Success> for RateLimiter {
    type Result = ResponseActFuture<Self, Result<(), StoreError>>;

    fn handle(&mut self, msg: Success, _: &mut Self::Context) -> Self::Result {
        let keys = self.guess_keys(&msg.0);
        self.blocked.remove(&keys.network);
        self.blocked.remove(&keys.account);
        // Before and after the clear commits: a read that overlapped it is not cached.
        self.successes += 1;
        let store = self.store.clone();
        Box::pin(
            async move { store.run(move |c| backoffs::clear(c, &keys.both())).await }
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

    /// Wrong guesses one account admits within `horizon` when an attacker guesses from
    /// `networks` networks, each as soon as it may (the schedule the store enforces: a
    /// network key and the account key, each counted per admitted guess).
    fn admitted_within(
        network: BackoffPolicy,
        ceiling: BackoffPolicy,
        networks: usize,
        horizon_ms: i64,
    ) -> u32 {
        let mut net = vec![(0i32, 0i64); networks];
        let (mut acct_failures, mut acct_until, mut admitted, mut t) = (0i32, 0i64, 0u32, 0i64);
        while t < horizon_ms {
            let mut progressed = false;
            for n in &mut net {
                if n.1 <= t && acct_until <= t {
                    n.0 += 1;
                    acct_failures += 1;
                    admitted += 1;
                    n.1 = t + network.wait_ms(n.0);
                    acct_until = t + ceiling.wait_ms(acct_failures);
                    progressed = true;
                }
            }
            if !progressed {
                let next_net = net.iter().map(|n| n.1).min().unwrap_or(i64::MAX);
                t = next_net.max(acct_until).max(t + 1);
            }
        }
        admitted
    }

    #[test]
    fn an_account_admits_a_bounded_number_of_wrong_guesses_from_one_and_from_many_networks() {
        let network = BackoffPolicy {
            free_failures: 3,
            initial: Duration::from_secs(2),
            max: Duration::from_secs(900),
        };
        let ceiling = BackoffPolicy {
            free_failures: 100,
            initial: Duration::from_secs(900),
            max: Duration::from_secs(86_400),
        };
        let (ten_min, day) = (600_000, 86_400_000);
        assert_eq!(admitted_within(network, ceiling, 1, ten_min), 11);
        assert_eq!(admitted_within(network, ceiling, 1, day), 102);
        assert_eq!(admitted_within(network, ceiling, 1_000, ten_min), 100);
        assert_eq!(admitted_within(network, ceiling, 1_000, day), 106);
    }

    #[test]
    fn a_network_is_an_ipv4_address_or_an_ipv6_slash_64() {
        let of = |s: &str| Network::of(s.parse().unwrap());
        assert_eq!(of("2001:db8:1:2:aaaa::1"), of("2001:db8:1:2:ffff::9"));
        assert_ne!(of("2001:db8:1:2::1"), of("2001:db8:1:3::1"));
        assert_ne!(of("192.0.2.1"), of("192.0.2.2"));
        assert_eq!(of("::ffff:192.0.2.1"), of("192.0.2.1"));
        assert_eq!(of("2001:db8:1:2:aaaa::1").to_string(), "2001:db8:1:2::/64");
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
    buckets: HashMap<(IpGroup, Network), Bucket>,
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
        let key = (group, Network::of(ip));
        if self.buckets.len() >= self.cap && !self.buckets.contains_key(&key) {
            self.make_room(n, now);
        }
        self.buckets
            .entry(key)
            .or_insert(Bucket {
                tokens: share.capacity,
                at: now,
            })
            .take(share, now)
    }
}

impl IpBudgets {
    /// Frees at least a quarter of the capacity, so the next quarter of new clients costs
    /// nothing (the sweep is amortised O(1) per new client, not O(n) per request). Full
    /// buckets hold no information and go first; if the table is still full (a spray of live
    /// clients), arbitrary buckets go, which at worst gives those clients a fresh budget.
    fn make_room(&mut self, replicas: f64, now: std::time::Instant) {
        let policies = &self.policies;
        self.buckets.retain(|(g, _), b| {
            let Some(pol) = policies.get(g) else {
                return false;
            };
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * pol.per_second / replicas
                < pol.capacity / replicas
        });
        let target = self.cap - self.cap / 4;
        if self.buckets.len() > target {
            let mut excess = self.buckets.len() - target;
            self.buckets.retain(|_, _| {
                if excess == 0 {
                    return true;
                }
                excess -= 1;
                false
            });
        }
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

    #[test]
    fn ipv6_clients_share_the_budget_of_their_slash_64() {
        let p = BucketPolicy {
            capacity: 2.0,
            per_second: 0.0,
        };
        let mut b = IpBudgets::new(HashMap::from([(IpGroup::Login, p)]), 100);
        let t0 = Instant::now();
        for i in 0..2 {
            let ip: IpAddr = format!("2001:db8:0:1::{i}").parse().unwrap();
            assert!(b.take(IpGroup::Login, ip, t0).is_ok());
        }
        let other: IpAddr = "2001:db8:0:1:ffff::7".parse().unwrap();
        assert!(b.take(IpGroup::Login, other, t0).is_err(), "same /64");
        let next: IpAddr = "2001:db8:0:2::1".parse().unwrap();
        assert!(b.take(IpGroup::Login, next, t0).is_ok(), "another /64");
    }

    #[test]
    fn a_spray_of_clients_never_holds_more_buckets_than_the_cap() {
        let p = BucketPolicy {
            capacity: 5.0,
            per_second: 0.001,
        };
        let mut b = IpBudgets::new(HashMap::from([(IpGroup::Reset, p)]), 1000);
        let t0 = Instant::now();
        for i in 0..20_000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert!(b.take(IpGroup::Reset, ip, t0).is_ok());
            assert!(b.buckets.len() <= 1000);
        }
    }
}
