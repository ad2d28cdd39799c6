#![doc = include_str!("../README.md")]

use std::time::Duration;

use authd_store::StoreError;
use hmac::{Hmac, Mac};
use sha2::Sha256;

mod actor;
mod backoffs;
mod gate;
mod ip_budgets;
mod network;
mod windows;

pub use actor::{
    Acquire, BeginAttempt, GiveBack, NextAttempt, NextTake, RateLimiter, SetReplicas, Success,
};
pub use backoffs::{Admitted, Backoff, BackoffPolicies, BackoffPolicy, Guesser};
pub use gate::Gate;
pub use ip_budgets::{BucketPolicies, BucketPolicy, IpBudgets, IpGroup};
pub use network::Network;
pub use windows::{Limit, Permit, Policy, WindowPolicies};

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("limit reached; retry after {0:?}")]
    Denied(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Keyed hashes of limit keys, so neither the database nor memory holds raw addresses.
#[derive(Clone)]
pub(crate) struct KeyHasher(pub(crate) Vec<u8>);

impl KeyHasher {
    pub(crate) fn hash(&self, name: &str, key: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(key.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The wait until `until_ms` (none: zero).
fn wait_until(until_ms: Option<i64>, now_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(until_ms.map_or(0, |u| u - now_ms)).unwrap_or(0))
}
