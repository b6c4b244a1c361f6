//! The value every rate limiter returns, and the trait they share.

use crate::{CostError, Duration, Instant};

/// The outcome of a `check` or `peek`: allowed or not, and what is left.
///
/// A denial is a normal value, not an error: `retry_at` says when the same
/// request would be allowed if nothing else happened in between.
///
/// ```
/// use ratebound_core::{Duration, Gcra, GcraState, Instant};
/// let limiter = Gcra::new(2, 1, Duration::from_secs(1)).unwrap();
/// let mut state = GcraState::default();
/// let now = Instant::from_secs(100);
/// assert!(limiter.check(&mut state, now, 2).unwrap().allowed);
/// let d = limiter.check(&mut state, now, 1).unwrap();
/// assert!(!d.allowed);
/// assert_eq!(d.retry_after(now), Duration::from_secs(1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Decision {
    /// True when the cost was (for `check`) or would be (for `peek`) admitted.
    pub allowed: bool,
    /// Units that could still be admitted at `now` after this decision.
    pub remaining: u64,
    /// The limiter's capacity: burst size or window limit.
    pub limit: u64,
    /// When the limiter is back to full capacity if nothing else is admitted
    /// (`now` when it already is).
    pub reset_at: Instant,
    /// When to try again: `now` when allowed; on denial the earliest instant at
    /// which the same cost would be allowed (always after `now`, except that it
    /// saturates at [`Instant::MAX`] like all times).
    pub retry_at: Instant,
}

impl Decision {
    /// An admission that counted nothing, as a fail-open policy gives while
    /// the store holding the counts is unavailable: allowed, `remaining`
    /// `limit − cost` (0 when the cost exceeds it), nothing to wait for.
    ///
    /// ```
    /// use ratebound_core::{Decision, Instant};
    /// let now = Instant::from_secs(5);
    /// let d = Decision::uncounted(now, 10, 3);
    /// assert!(d.allowed && d.remaining == 7 && d.retry_at == now);
    /// ```
    pub const fn uncounted(now: Instant, limit: u64, cost: u64) -> Decision {
        Decision {
            allowed: true,
            remaining: limit.saturating_sub(cost),
            limit,
            reset_at: now,
            retry_at: now,
        }
    }

    /// A denial that no count explains: the cost can only be decided
    /// elsewhere, for example it is above one replica's share of a limit
    /// while the store holding the whole limit is unavailable. Nothing
    /// remains; try again at `retry_at`.
    ///
    /// ```
    /// use ratebound_core::{Decision, Duration, Instant};
    /// let now = Instant::from_secs(5);
    /// let d = Decision::refused(now, 3, now + Duration::from_secs(1));
    /// assert!(!d.allowed && d.remaining == 0 && d.retry_after(now) == Duration::from_secs(1));
    /// ```
    pub const fn refused(now: Instant, limit: u64, retry_at: Instant) -> Decision {
        Decision {
            allowed: false,
            remaining: 0,
            limit,
            reset_at: now,
            retry_at,
        }
    }

    /// How long to wait from `now` before retrying (zero when allowed).
    #[inline]
    pub const fn retry_after(&self, now: Instant) -> Duration {
        self.retry_at.duration_after(now)
    }
    /// How long from `now` until the limiter is full again.
    #[inline]
    pub const fn reset_after(&self, now: Instant) -> Duration {
        self.reset_at.duration_after(now)
    }
}

/// A rate limiter: a config (this type) deciding over a separate plain-data state.
///
/// Implemented by [`Gcra`](crate::Gcra), [`SlidingLog`](crate::SlidingLog),
/// [`SlidingCounter`](crate::SlidingCounter) and
/// [`BudgetLimiter`](crate::budget::BudgetLimiter). Policy sets and keyed
/// tables are generic over it.
pub trait Limiter {
    /// The plain-data state this limiter decides over. `Default` is "fresh, full capacity".
    type State: Default;

    /// Consume `cost` if it fits now, else deny, charging nothing (GCRA and
    /// the sliding limiters write nothing then; a
    /// [`BudgetLimiter`](crate::budget::BudgetLimiter) keeps its budget's
    /// bookkeeping, as `try_spend` does: the latest time seen, and the
    /// limit-hit alert it notes once per window).
    ///
    /// Errors only when `cost` can never fit.
    fn check(
        &self,
        state: &mut Self::State,
        now: Instant,
        cost: u64,
    ) -> Result<Decision, CostError>;

    /// What [`check`](Limiter::check) would decide, consuming nothing.
    fn peek(&self, state: &Self::State, now: Instant, cost: u64) -> Result<Decision, CostError>;

    /// True when `state` is indistinguishable from `Default` at `now`: fully
    /// recovered, so it can be dropped (evicted) without granting anything.
    fn is_idle(&self, state: &Self::State, now: Instant) -> bool;
}
