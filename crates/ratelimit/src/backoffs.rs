//! Two-level guessing backoffs: each wrong guess counts against the guesser's network (per
//! account) and against the account as a whole (the ceiling shared by every network). The
//! database rows are the authority; this module holds the policies, the keys and the cache
//! of waits this process has seen.

use std::collections::HashMap;
use std::time::Duration;

use authd_store::backoffs as stored;

use crate::{millis, KeyHasher, Network};

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
    pub(crate) fn ceiling_label(self) -> &'static str {
        self.account_str()
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

/// One network policy per [`Backoff`] and the account-wide ceiling: a limiter cannot be
/// built with a backoff left unconfigured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicies {
    pub password: BackoffPolicy,
    pub totp: BackoffPolicy,
    pub recovery_code: BackoffPolicy,
    pub emailed_code: BackoffPolicy,
    /// Counts every network's failures of one kind against the account as a whole.
    pub account_ceiling: BackoffPolicy,
}

impl BackoffPolicies {
    /// The policy of one network's guesses at an account.
    pub fn network(&self, backoff: Backoff) -> BackoffPolicy {
        match backoff {
            Backoff::Password => self.password,
            Backoff::Totp => self.totp,
            Backoff::RecoveryCode => self.recovery_code,
            Backoff::EmailedCode => self.emailed_code,
        }
    }
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

/// An admitted attempt, and whether counting it started a wait (worth a security log line:
/// a lockout of the guesser's network, or of the whole account).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub network_waits: bool,
    pub account_waits: bool,
}

/// A database limit name and a key hash.
pub(crate) type BlockKey = (&'static str, String);

/// The hashed database keys of a guesser: its network's and its account's.
#[derive(Clone)]
pub(crate) struct GuessKeys {
    pub(crate) network: BlockKey,
    pub(crate) account: BlockKey,
}

impl GuessKeys {
    pub(crate) fn of(hasher: &KeyHasher, g: &Guesser) -> Self {
        let network = Network::of(g.ip);
        let net_name = g.backoff.as_str();
        let acct_name = g.backoff.account_str();
        Self {
            network: (
                net_name,
                hasher.hash(net_name, &format!("{}\0{network}", g.account)),
            ),
            account: (acct_name, hasher.hash(acct_name, &g.account)),
        }
    }

    pub(crate) fn both(&self) -> [stored::Key<'_>; 2] {
        [
            stored::Key {
                limit: self.network.0,
                hash: &self.network.1,
            },
            stored::Key {
                limit: self.account.0,
                hash: &self.account.1,
            },
        ]
    }
}

/// The backoff policies and the waits this process knows of, so a guesser that must wait is
/// refused without touching the database.
#[derive(Debug)]
pub(crate) struct Backoffs {
    pub(crate) policies: BackoffPolicies,
    /// (database limit name, key hash) → refused until (ms since the epoch); network and
    /// account keys alike.
    blocked: HashMap<BlockKey, i64>,
    /// Bumped by every success: a database answer obtained before a success must not put a
    /// block back into `blocked` after the success cleared it.
    successes: u64,
    cap: usize,
}

impl Backoffs {
    pub(crate) fn new(policies: BackoffPolicies, cap: usize) -> Self {
        Self {
            policies,
            blocked: HashMap::new(),
            successes: 0,
            cap,
        }
    }

    /// The value to hand back to [`Backoffs::remember_blocked`] with a database answer.
    pub(crate) fn seen(&self) -> u64 {
        self.successes
    }

    /// The wait this process already knows of for a key, dropping ended ones.
    pub(crate) fn known_block(&mut self, key: &BlockKey, now: i64) -> Option<i64> {
        match self.blocked.get(key) {
            Some(&until) if until > now => Some(until),
            Some(_) => {
                self.blocked.remove(key);
                None
            }
            None => None,
        }
    }

    /// Caches a block read from or written to the database, unless a success happened since
    /// the database was asked (`seen` is [`Backoffs::seen`] at that time). Answers of parallel
    /// requests may finish in any order: the latest wait wins, as in the database.
    pub(crate) fn remember_blocked(&mut self, key: BlockKey, until: i64, seen: u64, now: i64) {
        if seen != self.successes || until <= now {
            return;
        }
        if let Some(known) = self.blocked.get_mut(&key) {
            *known = (*known).max(until);
        } else if self.blocked.len() < self.cap {
            self.blocked.insert(key, until);
        }
    }

    /// A success is about to be written: the guesser's waits end here and now, and answers
    /// read before it must not bring them back. Call [`Backoffs::success_written`] once the
    /// database has it, so answers that overlapped the write are not cached either.
    pub(crate) fn success_begins(&mut self, keys: &GuessKeys) {
        self.blocked.remove(&keys.network);
        self.blocked.remove(&keys.account);
        self.successes += 1;
    }

    pub(crate) fn success_written(&mut self) {
        self.successes += 1;
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
    fn each_backoff_has_its_own_network_policy() {
        let p = |free_failures| BackoffPolicy {
            free_failures,
            initial: Duration::from_secs(2),
            max: Duration::from_secs(900),
        };
        let policies = BackoffPolicies {
            password: p(1),
            totp: p(2),
            recovery_code: p(3),
            emailed_code: p(4),
            account_ceiling: p(100),
        };
        let free: Vec<u32> = Backoff::ALL
            .iter()
            .map(|b| policies.network(*b).free_failures)
            .collect();
        assert_eq!(free, [1, 2, 3, 4]);
    }
}
