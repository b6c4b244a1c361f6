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

use crate::budget::{Budget, BudgetConfig, BudgetError, Denial, DenyReason, Dimension, Usage};
use crate::model_quota::ModelQuota;
use crate::{
    ConfigError, CostError, Decision, Duration, Gcra, Instant, SlidingCounter, SlidingLog,
};

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

impl Budget {
    /// Before a replica decides `usage` alone on its share of this budget
    /// ([`BudgetConfig::share`]`(replicas)`): a denial until `retry_at` (when
    /// the shared store may be back) if the whole budget can fit `usage` but
    /// the share never can, as only the shared store can decide it; `None`
    /// if the share can fit it (decide it there); this budget's error if
    /// nothing can.
    ///
    /// ```
    /// use ratebound_core::budget::{Budget, BudgetConfig, Dimension, Horizon, Usage};
    /// use ratebound_core::{Duration, Instant};
    /// let budget = Budget::new(BudgetConfig::new().limit(Dimension::Tokens, Horizon::DAY, 900))?;
    /// let retry_at = Instant::from_secs(1_800_000_000) + Duration::from_secs(1);
    /// // A third of 900 is 300: 300 tokens are the share's to decide.
    /// assert_eq!(budget.share_refusal(3, &Usage::request(300, 0), retry_at)?, None);
    /// // 400: within the budget, never within the share.
    /// let d = budget.share_refusal(3, &Usage::request(400, 0), retry_at)?.unwrap();
    /// assert_eq!((d.retry_at, d.limit), (retry_at, Some(0)));
    /// // 901: an error wherever it is asked.
    /// assert!(budget.share_refusal(3, &Usage::request(901, 0), retry_at).is_err());
    /// # Ok::<(), Box<dyn core::error::Error>>(())
    /// ```
    pub fn share_refusal(
        &self,
        replicas: u32,
        usage: &Usage,
        retry_at: Instant,
    ) -> Result<Option<Denial>, BudgetError> {
        self.validate(usage)?;
        let binding = self.limits().find(|(_, l)| {
            let amount = match l.dimension {
                Dimension::Requests => usage.requests,
                Dimension::Tokens => usage.tokens,
                Dimension::Cost => usage.cost,
            };
            amount > share_of(l.max, replicas)
        });
        Ok(binding.map(|(i, _)| Denial {
            reason: DenyReason::AboveShare,
            retry_at,
            limit: Some(i as u8),
        }))
    }
}

/// Before a replica decides a call alone on its share of a set of limits
/// (each [`share`](Gcra::share)d by `replicas`): `members` are each limit's
/// whole capacity (a bucket's capacity, a window's limit) and the cost the
/// call asks of it. The first member whose whole limit fits its cost but
/// whose share never can makes the call a refusal until `retry_at` (when the
/// shared store may be back), as only the shared store can decide it: that
/// member and its [`Decision::refused`], which is the call's decision, no
/// other member being asked. `None` when every share fits its cost (decide
/// the call there); the first member's error when a whole limit cannot fit
/// its cost.
///
/// ```
/// use ratebound_core::{share::limits_share_refusal, Duration, Instant};
/// let now = Instant::from_secs(1_800_000_000);
/// let retry_at = now + Duration::from_secs(1);
/// // Shares of 100 and 10 among 3 replicas: 33 and 3.
/// assert_eq!(limits_share_refusal([(100, 4), (10, 3)], 3, now, retry_at), Ok(None));
/// let (member, d) = limits_share_refusal([(100, 4), (10, 4)], 3, now, retry_at)?.unwrap();
/// assert_eq!((member, d.allowed, d.limit, d.retry_at), (1, false, 3, retry_at));
/// assert!(limits_share_refusal([(100, 101), (10, 4)], 3, now, retry_at).is_err());
/// # Ok::<(), (usize, ratebound_core::CostError)>(())
/// ```
pub fn limits_share_refusal(
    members: impl IntoIterator<Item = (u64, u64)>,
    replicas: u32,
    now: Instant,
    retry_at: Instant,
) -> Result<Option<(usize, Decision)>, (usize, CostError)> {
    let mut refusal = None;
    for (i, (capacity, cost)) in members.into_iter().enumerate() {
        if cost > capacity {
            return Err((i, CostError::InsufficientCapacity { cost, capacity }));
        }
        let share = share_of(capacity, replicas);
        if refusal.is_none() && cost > share {
            refusal = Some((i, Decision::refused(now, share, retry_at)));
        }
    }
    Ok(refusal)
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

    /// `limits_share_refusal` refuses exactly what every whole limit fits
    /// and some member's share (by the machines' own `share`) can never fit,
    /// names the first such member, and errs on the first whole limit that
    /// cannot fit.
    #[test]
    fn a_set_share_refuses_what_only_the_whole_limits_fit() {
        let now = Instant::from_secs(1_800_000_000);
        let retry_at = now + Duration::from_millis(300);
        for replicas in [1u32, 2, 3, 7] {
            for a in [1u64, 2, 5, 30] {
                for b in [1u64, 3, 10] {
                    // The shares the machines themselves compute.
                    let shares = [
                        Gcra::per_second(a)
                            .unwrap()
                            .share(replicas)
                            .unwrap()
                            .capacity(),
                        SlidingCounter::new(b, Duration::from_secs(1))
                            .unwrap()
                            .share(replicas)
                            .unwrap()
                            .limit(),
                    ];
                    for ca in 0..=31u64 {
                        for cb in 0..=11u64 {
                            let got =
                                limits_share_refusal([(a, ca), (b, cb)], replicas, now, retry_at);
                            let want = if ca > a {
                                Err((
                                    0,
                                    CostError::InsufficientCapacity {
                                        cost: ca,
                                        capacity: a,
                                    },
                                ))
                            } else if cb > b {
                                Err((
                                    1,
                                    CostError::InsufficientCapacity {
                                        cost: cb,
                                        capacity: b,
                                    },
                                ))
                            } else if ca > shares[0] {
                                Ok(Some((0, Decision::refused(now, shares[0], retry_at))))
                            } else if cb > shares[1] {
                                Ok(Some((1, Decision::refused(now, shares[1], retry_at))))
                            } else {
                                Ok(None)
                            };
                            assert_eq!(got, want, "{replicas} replicas, {a}/{ca} {b}/{cb}");
                        }
                    }
                }
            }
        }
        assert_eq!(limits_share_refusal([], 3, now, retry_at), Ok(None));
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

    /// `share_refusal` denies exactly what the whole budget fits and the
    /// share's own check refuses as never fitting, names the first such
    /// limit, and passes the whole budget's errors through.
    #[test]
    fn a_share_refuses_what_only_the_whole_budget_fits() {
        use crate::budget::{BudgetState, Horizon};
        // Requests: 2 a second, fewer than the replicas (a share of 1).
        let whole = BudgetConfig::new()
            .limit(
                Dimension::Requests,
                Horizon::Fixed(Duration::from_secs(1)),
                2,
            )
            .limit(Dimension::Requests, Horizon::MINUTE, 7)
            .limit(Dimension::Tokens, Horizon::HOUR, 1_000)
            .limit(Dimension::Cost, Horizon::DAY, 90)
            .tokens_per_request(800)
            .cost_per_request(60);
        let budget = Budget::new(whole.clone()).unwrap();
        let share = Budget::new(whole.share(3)).unwrap();
        let now = Instant::from_secs(1_800_000_000);
        let retry_at = now + Duration::from_millis(200);
        for requests in [0, 1, 2, 3, 7, 8] {
            for tokens in [0, 333, 334, 800, 801, 1_001] {
                for cost in [0, 30, 31, 60, 61, 90, 91] {
                    let u = Usage {
                        requests,
                        tokens,
                        cost,
                    };
                    let whole_fits = budget.validate(&u);
                    let share_fits = share.reserve(&mut BudgetState::<4>::default(), now, u);
                    match (budget.share_refusal(3, &u, retry_at), whole_fits) {
                        (Err(e), Err(whole)) => assert_eq!(e, whole, "{u:?}"),
                        (Ok(None), Ok(())) => assert!(share_fits.is_ok(), "{u:?}"),
                        (Ok(Some(d)), Ok(())) => {
                            let Err(BudgetError::ExceedsLimit { limit, .. }) = share_fits else {
                                panic!("{u:?}: the share fits it")
                            };
                            assert_eq!(d.limit, limit, "{u:?}");
                            assert_eq!((d.reason, d.retry_at), (DenyReason::AboveShare, retry_at));
                        }
                        (got, whole) => panic!("{u:?}: {got:?} while the whole says {whole:?}"),
                    }
                }
            }
        }
    }
}
