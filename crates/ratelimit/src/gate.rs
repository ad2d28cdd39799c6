//! The part of the RateLimiter that memory alone answers: a client's per-IP budget, and a key
//! this process has just refused. The RateLimiter owns these rules and the state behind them;
//! it hands the request handlers a [`Gate`] onto that state so that such an answer costs a
//! lock on the handler's own thread instead of a message to the RateLimiter's arbiter and
//! back (two thread hand-offs per check, on the path a flood takes).
//!
//! Whatever needs the database (taking a unit of a window, the backoffs) still goes through
//! the RateLimiter's messages.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use authd_domain::Clock;

use crate::actor::denied;
use crate::ip_budgets::{IpBudgets, IpGroup};
use crate::windows::{Limit, Windows};
use crate::{KeyHasher, LimitError};

/// A cheap handle (clone it freely) on the RateLimiter's in-memory state.
#[derive(Clone)]
pub struct Gate {
    shared: Arc<Shared>,
}

struct Shared {
    hasher: KeyHasher,
    clock: Clock,
    ip: Mutex<IpBudgets>,
    windows: Mutex<Windows>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("denied", &self.windows().cached())
            .finish_non_exhaustive()
    }
}

impl Gate {
    pub(crate) fn new(hasher: KeyHasher, clock: Clock, ip: IpBudgets, windows: Windows) -> Self {
        Self {
            shared: Arc::new(Shared {
                hasher,
                clock,
                ip: Mutex::new(ip),
                windows: Mutex::new(windows),
            }),
        }
    }

    /// Takes one request from `ip`'s budget for `group`: `Denied(wait)` when it is spent.
    pub fn ip_budget(&self, group: IpGroup, ip: IpAddr) -> Result<(), LimitError> {
        let taken = self.ip().take(group, ip, Instant::now());
        taken.map_err(|wait| {
            metrics::counter!(authd_telemetry::names::THROTTLE_HITS_TOTAL, "limit" => group.as_str())
                .increment(1);
            LimitError::Denied(wait)
        })
    }

    /// `Denied(wait)` when this process refused `key` under `limit` and the refusal has not
    /// ended: the answer [`crate::Acquire`] would give, without asking. `Ok` means only that
    /// memory does not know; the RateLimiter (and the database) decide.
    pub fn refused(&self, limit: Limit, key: &str) -> Result<(), LimitError> {
        let key_hash = self.hash(limit.as_str(), key);
        let now = self.shared.clock.now_ms();
        let until = self.windows().refused_until(limit, &key_hash, now);
        match until {
            Some(until) => Err(denied(limit.as_str(), until, now)),
            None => Ok(()),
        }
    }

    pub(crate) fn hash(&self, name: &str, key: &str) -> String {
        self.shared.hasher.hash(name, key)
    }

    pub(crate) fn hasher(&self) -> &KeyHasher {
        &self.shared.hasher
    }

    /// The budgets. A panic while the lock was held cannot leave them inconsistent in a way
    /// that matters (a bucket is two numbers), so a poisoned lock is used as it is.
    pub(crate) fn ip(&self) -> MutexGuard<'_, IpBudgets> {
        self.shared
            .ip
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn windows(&self) -> MutexGuard<'_, Windows> {
        self.shared
            .windows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
