//! Per-client-IP budgets: a token bucket per client network and group of unauthenticated
//! routes, in memory, shared out among the live replicas.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::Network;

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

/// One bucket policy per [`IpGroup`]: a limiter cannot be built with a group left
/// unconfigured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketPolicies {
    pub login: BucketPolicy,
    pub reset: BucketPolicy,
}

impl BucketPolicies {
    pub fn get(&self, group: IpGroup) -> BucketPolicy {
        match group {
            IpGroup::Login => self.login,
            IpGroup::Reset => self.reset,
        }
    }
}

/// One client's bucket. Buckets live in memory; each of N live replicas enforces 1/N of the
/// configured budget, so the total across replicas is the budget (a client pinned to one
/// replica gets less, never more).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Takes one token; `Err(wait)` when the bucket is empty.
    fn take(&mut self, p: BucketPolicy, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * p.per_second).min(p.capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else if p.per_second > 0.0 {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / p.per_second))
        } else {
            // A bucket that never refills: an hour stands for "not soon".
            Err(Duration::from_secs(3600))
        }
    }
}

/// The per-IP state of the RateLimiter, kept apart from the database-backed limits.
#[derive(Debug)]
pub struct IpBudgets {
    policies: BucketPolicies,
    buckets: HashMap<(IpGroup, Network), Bucket>,
    replicas: u32,
    cap: usize,
}

impl IpBudgets {
    /// Budgets for one replica until told otherwise; at most `cap` buckets in memory.
    pub fn new(policies: BucketPolicies, cap: usize) -> Self {
        Self {
            policies,
            buckets: HashMap::new(),
            replicas: 1,
            cap,
        }
    }

    /// The number of live replicas among which the budgets are shared out (at least 1).
    pub(crate) fn set_replicas(&mut self, n: u32) {
        self.replicas = n.max(1);
    }

    /// Takes one request from `ip`'s bucket of `group`; `Err(wait)` when it is empty.
    pub(crate) fn take(
        &mut self,
        group: IpGroup,
        ip: std::net::IpAddr,
        now: Instant,
    ) -> Result<(), Duration> {
        let p = self.policies.get(group);
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

    /// Frees at least a quarter of the capacity, so the next quarter of new clients costs
    /// nothing (the sweep is amortised O(1) per new client, not O(n) per request). Full
    /// buckets hold no information and go first; if the table is still full (a spray of live
    /// clients), arbitrary buckets go, which at worst gives those clients a fresh budget.
    fn make_room(&mut self, replicas: f64, now: Instant) {
        let policies = self.policies;
        self.buckets.retain(|(g, _), b| {
            let pol = policies.get(*g);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn both(p: BucketPolicy) -> BucketPolicies {
        BucketPolicies { login: p, reset: p }
    }

    #[test]
    fn a_bucket_allows_its_capacity_then_refills_and_is_shared_among_replicas() {
        let p = BucketPolicy {
            capacity: 4.0,
            per_second: 2.0,
        };
        let mut b = IpBudgets::new(both(p), 100);
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
        assert!(b.take(IpGroup::Reset, ip, t0).is_ok(), "its own bucket");

        let mut two = IpBudgets::new(both(p), 100);
        two.set_replicas(2);
        assert!(two.take(IpGroup::Login, ip, t0).is_ok());
        assert!(two.take(IpGroup::Login, ip, t0).is_ok());
        assert!(
            two.take(IpGroup::Login, ip, t0).is_err(),
            "half of the capacity per replica"
        );
    }

    #[test]
    fn each_group_takes_its_own_policy() {
        let p = |capacity| BucketPolicy {
            capacity,
            per_second: 0.0,
        };
        let mut b = IpBudgets::new(
            BucketPolicies {
                login: p(1.0),
                reset: p(2.0),
            },
            100,
        );
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        let admitted = |b: &mut IpBudgets, g| (0..5).filter(|_| b.take(g, ip, t0).is_ok()).count();
        assert_eq!(admitted(&mut b, IpGroup::Login), 1);
        assert_eq!(admitted(&mut b, IpGroup::Reset), 2);
    }

    #[test]
    fn ipv6_clients_share_the_budget_of_their_slash_64() {
        let p = BucketPolicy {
            capacity: 2.0,
            per_second: 0.0,
        };
        let mut b = IpBudgets::new(both(p), 100);
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
        let mut b = IpBudgets::new(both(p), 1000);
        let t0 = Instant::now();
        for i in 0..20_000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert!(b.take(IpGroup::Reset, ip, t0).is_ok());
            assert!(b.buckets.len() <= 1000);
        }
    }
}
