//! A [`Budget`] as a [`Limiter`], for policy sets and keyed tables.

use super::outcome::BudgetError;
use super::{Budget, BudgetState, Dimension, Usage, MAX_AMOUNT};
use crate::{CostError, Decision, Instant, Limiter};

impl Budget {
    /// Use this budget as a [`Limiter`] whose cost counts in `dimension`
    /// (for policy sets and keyed tables).
    pub fn as_limiter<const R: usize>(&self, dimension: Dimension) -> BudgetLimiter<'_, R> {
        BudgetLimiter {
            budget: self,
            dimension,
        }
    }
}

/// A [`Budget`] seen as a [`Limiter`]: `check(cost)` is
/// [`try_spend`](Budget::try_spend) of `cost` in one dimension.
///
/// The decision's `remaining` and `limit` come from the tightest limit on
/// that dimension (`MAX_AMOUNT` when none limits it). A denial charges
/// nothing but, as `try_spend`'s, notes its limit-hit alert (the alerts
/// themselves are not returned: use the budget directly for them).
#[derive(Clone, Copy, Debug)]
pub struct BudgetLimiter<'a, const R: usize = 16> {
    budget: &'a Budget,
    dimension: Dimension,
}

impl<const R: usize> BudgetLimiter<'_, R> {
    /// The decision for `allowed` / `retry_at`, from the state as it is now.
    fn decision(
        &self,
        st: &BudgetState<R>,
        now: Instant,
        allowed: bool,
        retry_at: Instant,
    ) -> Decision {
        let status = self.budget.status(st, now);
        let mut remaining = MAX_AMOUNT;
        let mut limit = MAX_AMOUNT;
        let mut reset_at = status.throttle_until.unwrap_or(now).max(now);
        for l in status
            .limits
            .iter()
            .filter(|l| l.limit.dimension == self.dimension)
        {
            let left = l
                .limit
                .max
                .saturating_sub(l.used.saturating_add(l.reserved));
            if left < remaining {
                remaining = left;
                limit = l.limit.max;
            }
            if (l.used > 0 || l.reserved > 0) && l.window_end > reset_at {
                reset_at = l.window_end;
            }
        }
        if status.throttled {
            remaining = 0; // nothing more goes before the throttle ends
        }
        Decision {
            allowed,
            remaining,
            limit,
            reset_at,
            retry_at,
        }
    }

    fn cost_error(e: BudgetError, cost: u64) -> CostError {
        match e {
            BudgetError::ExceedsLimit { requested, max, .. } => CostError::InsufficientCapacity {
                cost: requested,
                capacity: max,
            },
            _ => CostError::InsufficientCapacity { cost, capacity: 0 },
        }
    }
}

impl<const R: usize> Limiter for BudgetLimiter<'_, R> {
    type State = BudgetState<R>;

    fn check(
        &self,
        st: &mut BudgetState<R>,
        now: Instant,
        cost: u64,
    ) -> Result<Decision, CostError> {
        let spent = self
            .budget
            .try_spend(st, now, Usage::of(self.dimension, cost))
            .map_err(|e| Self::cost_error(e, cost))?;
        Ok(match spent.denied {
            None => self.decision(st, now, true, now),
            Some(d) => self.decision(st, now, false, d.retry_at),
        })
    }

    fn peek(&self, st: &BudgetState<R>, now: Instant, cost: u64) -> Result<Decision, CostError> {
        let denied = self
            .budget
            .peek(st, now, Usage::of(self.dimension, cost))
            .map_err(|e| Self::cost_error(e, cost))?;
        Ok(match denied {
            None => self.decision(st, now, true, now),
            Some(d) => self.decision(st, now, false, d.retry_at),
        })
    }

    fn is_idle(&self, st: &BudgetState<R>, now: Instant) -> bool {
        self.budget.status(st, now).is_idle()
    }
}
