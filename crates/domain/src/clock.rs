//! The one clock of the service. Every instant authd stores or compares (code and token
//! expiries, limit windows, backoffs, TOTP steps, mail retries, heartbeats) is read from a
//! [`Clock`] handed to the actors and services at start, so a test can move time forward
//! instead of sleeping through a window.
//!
//! The clock is wall-clock time: instants are stored in the database and compared across
//! replicas. What only measures a duration inside one process (request latency, the per-IP
//! token buckets' refill) uses the monotonic `std::time::Instant` instead.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock time in milliseconds since the Unix epoch. Cheap to clone; clones share their
/// offset, so moving one moves them all.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// `None` for the system clock. For an adjustable clock, the milliseconds added to the
    /// system time.
    offset_ms: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock, the only one the service itself builds.
    pub fn system() -> Self {
        Self { offset_ms: None }
    }

    /// A clock that runs with the system clock but can be moved forward with
    /// [`Clock::advance`]: for tests, where real time still passes (timeouts, polling) while
    /// windows and expiries are crossed at once.
    pub fn adjustable() -> Self {
        Self {
            offset_ms: Some(Arc::new(AtomicI64::new(0))),
        }
    }

    /// Moves an adjustable clock forward.
    ///
    /// # Panics
    /// On the system clock: moving it would be a bug in the caller.
    pub fn advance(&self, by: Duration) {
        let offset = self
            .offset_ms
            .as_ref()
            .expect("only an adjustable clock can be moved");
        offset.fetch_add(
            i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 4),
            Ordering::SeqCst,
        );
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4));
        system
            + self
                .offset_ms
                .as_ref()
                .map_or(0, |o| o.load(Ordering::SeqCst))
    }

    /// Whole seconds since the Unix epoch (JWT and TOTP time).
    pub fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_is_the_system_time() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let now = Clock::system().now_ms();
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        assert!(i128::from(now) >= before as i128 && i128::from(now) <= after as i128);
    }

    #[test]
    fn an_adjustable_clock_moves_with_all_its_clones() {
        let clock = Clock::adjustable();
        let clone = clock.clone();
        let start = clone.now_ms();
        clock.advance(Duration::from_secs(3600));
        let moved = clone.now_ms() - start;
        assert!((3_600_000..3_610_000).contains(&moved), "moved {moved} ms");
        assert_eq!(clone.now_secs(), clone.now_ms().div_euclid(1000));
    }

    #[test]
    #[should_panic(expected = "only an adjustable clock")]
    fn the_system_clock_cannot_be_moved() {
        Clock::system().advance(Duration::from_secs(1));
    }
}
