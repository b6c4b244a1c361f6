//! Does a usage fit now, and if not, from when? Shared by `reserve`,
//! `try_spend` and `peek`, so the three can never disagree.
//!
//! A window limit's committed amount at time `t` is
//!
//! ```text
//! used(t) + held(t) + amount,   used(t) = 0 once t ≥ the window's end,
//!                               held(t) = live holds not yet lapsed at t
//! ```
//!
//! Live holds count in whatever window is current: a reservation made at
//! 23:59:59 still holds budget at 00:00:00, because its settle will be
//! charged then. The earliest fit is found among `now`, the window's end and
//! the holds' expiry times, taken in time order, only when denied: holds
//! are kept in the order they were made, so with one TTL their expiries are
//! already sorted and a pass over them suffices; after a change of TTL each
//! next expiry is found by a scan (`O(R²)` for `R` holds).

use super::outcome::{Denial, DenyReason};
use super::{Budget, BudgetState, StateView, Usage, WindowLimit, WindowUsage};
use crate::Instant;

impl Budget {
    /// The earliest instant ≥ `now` at which `amt` more fits limit `l`
    /// (`now` when it fits already).
    fn fit_time(
        &self,
        st: &StateView,
        l: &WindowLimit,
        w: &WindowUsage,
        amt: u64,
        now: u64,
    ) -> u64 {
        let (start, end) = self.bounds(l, now);
        let used_now = if w.start == start { w.used } else { 0 };
        let fits = |t: u64, freed: u64| {
            let used = if t >= end { 0 } else { used_now };
            used.saturating_add(w.reserved.saturating_sub(freed))
                .saturating_add(amt)
                <= l.max
        };
        let live = || {
            st.holds
                .iter()
                .filter(|h| !h.lapsed)
                .map(|h| (h.expires, h.usage.get(l.dimension)))
                .filter(|&(_, a)| a > 0)
        };
        let freed_now = live()
            .filter(|&(e, _)| e <= now)
            .fold(0u64, |s, (_, a)| s.saturating_add(a));
        if fits(now, freed_now) {
            return now;
        }
        // The expiries after `now`, earliest first, each once with the
        // holds that end then. Holds are made in time order with one TTL, so
        // their expiries usually come sorted: one pass then; otherwise
        // (after a TTL change) each next expiry is found by a scan, as no
        // buffer of the holds' number is at hand.
        let in_order = live().map(|(e, _)| e).filter(|&e| e > now).is_sorted();
        let mut sorted = live().filter(|&(e, _)| e > now).peekable();
        let mut freed = freed_now;
        let mut end_checked = false;
        let mut after = now;
        loop {
            let t = if in_order {
                sorted.peek().map(|&(e, _)| e)
            } else {
                live().map(|(e, _)| e).filter(|&e| e > after).min()
            };
            let Some(t) = t else { break };
            if !end_checked && end < t {
                if fits(end, freed) {
                    return end;
                }
                end_checked = true;
            }
            freed = if in_order {
                let mut f = freed;
                while let Some((_, a)) = sorted.next_if(|&(e, _)| e == t) {
                    f = f.saturating_add(a);
                }
                f
            } else {
                live()
                    .filter(|&(e, _)| e == t)
                    .fold(freed, |s, (_, a)| s.saturating_add(a))
            };
            if fits(t, freed) {
                return t;
            }
            after = t;
        }
        // Past every expiry and the window's end nothing is held or used;
        // only a hand-made, inconsistent `reserved` can still fail here.
        end.max(after)
    }

    /// Evaluate `u` at `now` against every limit and the throttle, changing
    /// nothing. Returns the denial (if any) and a bit mask of the limits that
    /// deny (for limit-hit alerts).
    pub(super) fn evaluate(&self, st: &StateView, now: u64, u: &Usage) -> (Option<Denial>, u16) {
        let mut denial: Option<Denial> = None;
        let mut mask = 0u16;
        for ((i, l), w) in self.config.limits.iter().enumerate().zip(st.windows.iter()) {
            let amt = u.get(l.dimension);
            if amt == 0 {
                continue;
            }
            let t = self.fit_time(st, l, w, amt, now);
            if t > now {
                mask |= 1 << i;
                if denial.is_none_or(|d| t > d.retry_at.as_micros()) {
                    denial = Some(Denial {
                        reason: DenyReason::Limit,
                        retry_at: Instant::from_micros(t),
                        limit: Some(i as u8),
                    });
                }
            }
        }
        let empty = u.requests == 0 && u.tokens == 0 && u.cost == 0;
        if !empty && now < st.throttle_until {
            let until = Instant::from_micros(st.throttle_until);
            match &mut denial {
                Some(d) => d.retry_at = d.retry_at.max(until),
                None => {
                    denial = Some(Denial {
                        reason: DenyReason::Throttled,
                        retry_at: until,
                        limit: None,
                    })
                }
            }
        }
        (denial, mask)
    }

    /// After admitting `u` (already counted in `reserved` or `used`), set the
    /// pacing delay: the time left in the window × `u` / what was left before
    /// `u`, so that the remainder lasts until the window ends.
    pub(super) fn pace(&self, st: &mut StateView, now: u64, u: &Usage) {
        let Some(t) = self.config.throttle else {
            return;
        };
        let mut delay = 0u64;
        let mut pacing = false;
        for ((i, l), w) in self.config.limits.iter().enumerate().zip(st.windows.iter()) {
            let amt = u.get(l.dimension);
            let committed = w.used.saturating_add(w.reserved);
            if amt == 0 || committed < self.throttle_amounts.get(i).copied().unwrap_or(u64::MAX) {
                continue;
            }
            pacing = true;
            let left_before = l.max.saturating_sub(committed).saturating_add(amt);
            let rest = self.bounds(l, now).1.saturating_sub(now);
            delay = delay.max(crate::time::mul_div_ceil(rest, amt, left_before.max(1)));
        }
        if pacing {
            st.throttle_until = now.saturating_add(delay.max(t.min_delay.as_micros()));
        }
    }

    /// What [`try_spend`](Budget::try_spend) would decide for `usage` at
    /// `now`, changing nothing (Go `policy`'s `CheckBudget`). `None` means it
    /// would be admitted.
    pub fn peek<const R: usize>(
        &self,
        st: &BudgetState<R>,
        now: Instant,
        usage: Usage,
    ) -> Result<Option<Denial>, super::BudgetError> {
        self.validate(&usage)?;
        let usage = super::ops::clamp_usage(usage);
        if self.stale(st) {
            // Written under another config: read it as the next operation will.
            let mut synced = st.clone();
            let now = self.sync(&mut synced, now);
            return Ok(self.evaluate(&synced, now, &usage).0);
        }
        let now = now.as_micros().max(st.last);
        Ok(self.evaluate(st, now, &usage).0)
    }
}
