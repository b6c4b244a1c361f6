//! A replica's share of a shared limit: what one of `replicas` servers may
//! admit alone while the store they share is unavailable, so that together
//! they stay within the limit.
//!
//! Each count is divided by `replicas`, rounded down, but never below 1 (a
//! limit smaller than the number of replicas can then be exceeded, by at
//! most `replicas − limit`). Rates are divided the same way; windows,
//! periods and per-request maxima are unchanged.
//!
//! ```
//! use ratebound_core::{share::share_of, Duration, Gcra};
//! assert_eq!(share_of(100, 3), 33);
//! assert_eq!(share_of(2, 3), 1);
//! let g = Gcra::per_minute(90)?.share(3)?;
//! assert_eq!((g.capacity(), g.reduced_rate()), (30, (2_000_000, 1))); // one every 2 s: 30 a minute
//! # Ok::<(), ratebound_core::ConfigError>(())
//! ```

use crate::budget::BudgetConfig;
use crate::model_quota::ModelQuota;
use crate::{ConfigError, Duration, Gcra, SlidingCounter, SlidingLog};

/// `limit / replicas`, rounded down, at least 1 (`replicas` 0 counts as 1).
pub const fn share_of(limit: u64, replicas: u32) -> u64 {
    let n = if replicas == 0 { 1 } else { replicas as u64 };
    let s = limit / n;
    if s == 0 {
        1
    } else {
        s
    }
}

const fn scaled(d: Duration, replicas: u32) -> Result<Duration, ConfigError> {
    let n = if replicas == 0 { 1 } else { replicas as u64 };
    match d.as_micros().checked_mul(n) {
        Some(us) => Ok(Duration::from_micros(us)),
        None => Err(ConfigError::TooLarge {
            field: "period × replicas",
            max: u64::MAX,
        }),
    }
}

impl Gcra {
    /// One replica's share: capacity and rate divided by `replicas` (the
    /// period multiplied, so the rate stays exact).
    pub const fn share(&self, replicas: u32) -> Result<Gcra, ConfigError> {
        let period = match scaled(self.period(), replicas) {
            Ok(p) => p,
            Err(e) => return Err(e),
        };
        Gcra::new(share_of(self.capacity(), replicas), self.amount(), period)
    }
}

impl<const N: usize> SlidingLog<N> {
    /// One replica's share: the limit divided by `replicas`, same window.
    pub const fn share(&self, replicas: u32) -> Result<Self, ConfigError> {
        SlidingLog::new(share_of(self.limit(), replicas), self.window())
    }
}

impl SlidingCounter {
    /// One replica's share: the limit divided by `replicas`, same window.
    pub const fn share(&self, replicas: u32) -> Result<Self, ConfigError> {
        SlidingCounter::new(share_of(self.limit(), replicas), self.window())
    }
}

impl ModelQuota {
    /// One replica's share: both counts divided by `replicas`, same
    /// period, window and hold TTL.
    pub fn share(&self, replicas: u32) -> Result<ModelQuota, ConfigError> {
        ModelQuota::new(
            self.total_max().map(|n| share_of(n, replicas)),
            share_of(self.success_max(), replicas),
            self.period(),
            self.window(),
            self.hold_ttl(),
        )
    }
}

impl BudgetConfig {
    /// One replica's share: every window limit divided by `replicas`;
    /// per-request maxima, alerts and pacing unchanged.
    pub fn share(&self, replicas: u32) -> BudgetConfig {
        let mut c = self.clone();
        for l in c.limits.iter_mut() {
            l.max = share_of(l.max, replicas);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_never_add_up_to_more_than_the_limit_unless_it_is_below_the_replicas() {
        for limit in 1..200u64 {
            for n in 1..10u32 {
                let s = share_of(limit, n);
                assert!(s >= 1);
                if limit >= n as u64 {
                    assert!(s * n as u64 <= limit, "{limit} / {n}");
                    assert!(
                        (s + 1) * n as u64 > limit,
                        "{limit} / {n}: not the largest share"
                    );
                } else {
                    assert_eq!(s, 1);
                }
            }
        }
    }

    #[test]
    fn a_shared_bucket_refills_at_its_share_of_the_rate() {
        let g = Gcra::new(10, 6, Duration::from_secs(1)).unwrap();
        let s = g.share(3).unwrap();
        assert_eq!(s.capacity(), 3);
        // 6 per 3 s = 2 per second: a third of 6 per second.
        assert_eq!(s.reduced_rate(), (500_000, 1));
        assert!(Gcra::per_second(5).unwrap().share(u32::MAX).is_ok());
    }
}
