//! Fixed windows: at most `max` units per key per window (the mails a caller may trigger).
//! The database row counts the units; this module holds the policies and the cache of keys
//! just refused.

use std::collections::HashMap;
use std::time::Duration;

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

/// At most `max` per key per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub max: u32,
    pub window: Duration,
}

/// One policy per [`Limit`]: a limiter cannot be built with a limit left unconfigured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowPolicies {
    pub reset_mail: Policy,
    pub otp_mail: Policy,
    pub transfer_mail: Policy,
}

impl WindowPolicies {
    pub fn get(&self, limit: Limit) -> Policy {
        match limit {
            Limit::ResetMail => self.reset_mail,
            Limit::OtpMail => self.otp_mail,
            Limit::TransferMail => self.transfer_mail,
        }
    }
}

/// Proof that one unit of a limit was taken; hand it back with [`crate::GiveBack`] when the
/// work it paid for could not be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit {
    pub(crate) limit: Limit,
    pub(crate) key_hash: String,
    pub(crate) window_start_ms: i64,
}

/// The keys this process has just refused, so a flood against one key is answered from
/// memory until its window ends.
#[derive(Debug)]
pub(crate) struct Windows {
    /// (limit, key hash) → refused until (ms since the epoch).
    denied: HashMap<(Limit, String), i64>,
    cap: usize,
}

impl Windows {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            denied: HashMap::new(),
            cap,
        }
    }

    /// Until when a key is known to be refused, dropping a refusal that has ended.
    pub(crate) fn refused_until(&mut self, limit: Limit, key_hash: &str, now: i64) -> Option<i64> {
        let key = (limit, key_hash.to_owned());
        match self.denied.get(&key) {
            Some(&until) if until > now => Some(until),
            Some(_) => {
                self.denied.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Remembers a refusal; when the cache is full, ended refusals go first, and a refusal
    /// that still finds no room is not cached (the database answers it).
    pub(crate) fn remember_denied(&mut self, limit: Limit, key_hash: String, until: i64, now: i64) {
        if self.denied.len() >= self.cap {
            self.denied.retain(|_, until| *until > now);
        }
        if self.denied.len() < self.cap {
            self.denied.insert((limit, key_hash), until);
        }
    }

    /// A unit was given back: the key is no longer refused.
    pub(crate) fn forget(&mut self, limit: Limit, key_hash: &str) {
        self.denied.remove(&(limit, key_hash.to_owned()));
    }

    pub(crate) fn cached(&self) -> usize {
        self.denied.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies() -> WindowPolicies {
        let p = |max| Policy {
            max,
            window: Duration::from_secs(60),
        };
        WindowPolicies {
            reset_mail: p(1),
            otp_mail: p(2),
            transfer_mail: p(3),
        }
    }

    #[test]
    fn each_limit_has_its_own_policy() {
        let maxima: Vec<u32> = Limit::ALL.iter().map(|l| policies().get(*l).max).collect();
        assert_eq!(maxima, [1, 2, 3]);
    }

    #[test]
    fn a_refusal_is_remembered_until_it_ends_or_the_unit_is_given_back() {
        let mut w = Windows::new(10);
        w.remember_denied(Limit::ResetMail, "a".into(), 1_000, 0);
        assert_eq!(w.refused_until(Limit::ResetMail, "a", 999), Some(1_000));
        assert_eq!(w.refused_until(Limit::OtpMail, "a", 999), None, "per limit");
        assert_eq!(w.refused_until(Limit::ResetMail, "a", 1_000), None, "ended");
        assert_eq!(w.cached(), 0, "an ended refusal is dropped when seen");

        w.remember_denied(Limit::ResetMail, "a".into(), 1_000, 0);
        w.forget(Limit::ResetMail, "a");
        assert_eq!(w.refused_until(Limit::ResetMail, "a", 0), None);
    }

    #[test]
    fn the_refusal_cache_never_holds_more_than_its_cap_and_sweeps_ended_refusals() {
        let mut w = Windows::new(3);
        for i in 0..3 {
            w.remember_denied(Limit::OtpMail, format!("k{i}"), 100, 0);
        }
        w.remember_denied(Limit::OtpMail, "full".into(), 100, 0);
        assert_eq!(w.cached(), 3);
        assert_eq!(w.refused_until(Limit::OtpMail, "full", 0), None);
        // Once they have ended, the old refusals make room.
        w.remember_denied(Limit::OtpMail, "later".into(), 500, 100);
        assert_eq!(w.cached(), 1);
        assert_eq!(w.refused_until(Limit::OtpMail, "later", 100), Some(500));
    }
}
