//! Budget operations: reserve, settle, release, record, spend, status.

use super::outcome::{Admission, BudgetError, Denial, DenyReason, Reserved, Settled, Spent};
use super::{
    Alert, AlertKind, Budget, BudgetState, BudgetStatus, Dimension, Hold, LimitStatus, Reservation,
    StateView, Usage, WindowLimit, WindowUsage, BP, MAX_LIMITS,
};
use crate::time::mul_div_floor;
use crate::Instant;

/// Alerts produced by one operation: at most one threshold alert and one
/// limit-hit per limit.
pub type Alerts = heapless::Vec<Alert, { 2 * MAX_LIMITS }>;

const LIMIT_HIT_BIT: u8 = 0x80;
/// Settled usage saturates here (far above any limit), keeping sums below 2^53.
pub(super) const USED_CAP: u64 = 1 << 52;

/// `used / max` in basis points, capped at [`MAX_UTILIZATION_BP`](super::MAX_UTILIZATION_BP).
pub(super) fn utilization_bp(used: u64, max: u64) -> u64 {
    mul_div_floor(used, BP, max).min(super::MAX_UTILIZATION_BP)
}

pub(super) fn clamp_usage(u: Usage) -> Usage {
    Usage {
        requests: u.get(Dimension::Requests),
        tokens: u.get(Dimension::Tokens),
        cost: u.get(Dimension::Cost),
    }
}

impl Budget {
    pub(crate) fn limits(&self) -> impl Iterator<Item = (usize, &WindowLimit)> {
        self.config.limits.iter().enumerate()
    }

    /// Errors for an amount that can never fit (reporting the amount as given).
    pub(crate) fn validate(&self, u: &Usage) -> Result<(), BudgetError> {
        let raw = |d: Dimension| match d {
            Dimension::Requests => u.requests,
            Dimension::Tokens => u.tokens,
            Dimension::Cost => u.cost,
        };
        for (dimension, max) in [
            (Dimension::Tokens, self.config.max_tokens_per_request),
            (Dimension::Cost, self.config.max_cost_per_request),
        ] {
            if let Some(max) = max {
                let requested = raw(dimension);
                if requested > max {
                    return Err(BudgetError::ExceedsLimit {
                        dimension,
                        requested,
                        max,
                        limit: None,
                    });
                }
            }
        }
        for (i, l) in self.limits() {
            let requested = raw(l.dimension);
            if requested > l.max {
                return Err(BudgetError::ExceedsLimit {
                    dimension: l.dimension,
                    requested,
                    max: l.max,
                    limit: Some(i as u8),
                });
            }
        }
        Ok(())
    }

    /// Bring `st` to `now`: clamp time, roll windows, lapse expired holds,
    /// and re-read a state another config wrote (see [`Budget::reconfigure`]).
    pub(super) fn sync(&self, st: &mut StateView, now: Instant) -> u64 {
        let now = now.as_micros().max(st.last);
        st.last = now;
        self.lay_out(st, now);
        for ((_, l), w) in self.limits().zip(st.windows.iter_mut()) {
            let (start, _) = self.bounds(l, now);
            if w.start != start {
                // Live holds carry into the new window: their settle is charged there.
                *w = WindowUsage {
                    start,
                    used: 0,
                    reserved: w.reserved,
                    fired: 0,
                    kind: w.kind,
                    limit: w.limit,
                };
            }
        }
        let (holds, windows) = (&mut st.holds, &mut st.windows);
        for h in holds.iter_mut().filter(|h| !h.lapsed && h.expires <= now) {
            h.lapsed = true;
            self.unhold(windows, h);
        }
        self.reread_changed(st);
        now
    }

    /// Remove a live hold's amounts (they count in whichever window is current).
    fn unhold(&self, windows: &mut [WindowUsage; MAX_LIMITS], h: &Hold) {
        for ((_, l), w) in self.limits().zip(windows.iter_mut()) {
            w.reserved = w.reserved.saturating_sub(h.usage.get(l.dimension));
        }
    }

    fn alert(
        &self,
        kind: AlertKind,
        i: usize,
        l: &WindowLimit,
        w: &WindowUsage,
        threshold_bp: u16,
        now: u64,
    ) -> Alert {
        Alert {
            kind,
            limit: i as u8,
            dimension: l.dimension,
            horizon: l.horizon,
            threshold_bp,
            utilization_bp: utilization_bp(w.used, l.max),
            at: Instant::from_micros(now),
            window_start: Instant::from_micros(w.start),
        }
    }

    /// Add settled usage and fire threshold / limit-hit alerts once per window.
    fn charge(&self, st: &mut StateView, now: u64, u: &Usage, alerts: &mut Alerts) {
        let thresholds = &self.config.alert_thresholds_bp;
        for ((i, l), w) in self.limits().zip(st.windows.iter_mut()) {
            let amt = u.get(l.dimension);
            if amt == 0 {
                continue;
            }
            w.used = w.used.saturating_add(amt).min(USED_CAP);
            let amounts = self.threshold_amounts.get(i).copied().unwrap_or_default();
            let crossed = thresholds
                .iter()
                .zip(amounts.iter())
                .enumerate()
                .rev()
                .find(|(j, (_, &amount))| w.used >= amount && w.fired & (1 << j) == 0);
            if let Some((j, (&bp, _))) = crossed {
                w.fired |= ((1u16 << (j + 1)) - 1) as u8;
                let _ = alerts.push(self.alert(AlertKind::Threshold, i, l, w, bp, now));
            }
            if w.used >= l.max && w.fired & LIMIT_HIT_BIT == 0 {
                w.fired |= LIMIT_HIT_BIT;
                let _ = alerts.push(self.alert(AlertKind::LimitHit, i, l, w, BP as u16, now));
            }
        }
    }

    /// Evaluate and, on denial, fire a limit-hit alert (once per window) for
    /// each denying limit.
    fn admit(
        &self,
        st: &mut StateView,
        now: u64,
        u: &Usage,
        alerts: &mut Alerts,
    ) -> Option<Denial> {
        let (denial, mask) = self.evaluate(st, now, u);
        for ((i, l), w) in self.limits().zip(st.windows.iter_mut()) {
            if mask & (1 << i) != 0 && w.fired & LIMIT_HIT_BIT == 0 {
                w.fired |= LIMIT_HIT_BIT;
                let _ = alerts.push(self.alert(AlertKind::LimitHit, i, l, w, BP as u16, now));
            }
        }
        denial
    }

    /// Hold `estimate` against every limit until settled, released or lapsed.
    ///
    /// Errors when the estimate can never fit (per-request maximum, or a
    /// window limit's whole max). A denial names the binding limit and fires
    /// a limit-hit alert (once per window).
    pub fn reserve<const R: usize>(
        &self,
        st: &mut BudgetState<R>,
        now: Instant,
        estimate: Usage,
    ) -> Result<Reserved, BudgetError> {
        self.reserve_in(st, now, estimate)
    }

    // Inlined into the generic wrappers: a result carries its alerts (a
    // 24-slot vector), which a call boundary would copy once more.
    #[inline]
    fn reserve_in(
        &self,
        st: &mut StateView,
        now: Instant,
        estimate: Usage,
    ) -> Result<Reserved, BudgetError> {
        self.validate(&estimate)?;
        if st.holds.capacity() == 0 {
            return Err(BudgetError::NoReservationSlots);
        }
        let estimate = clamp_usage(estimate);
        let now = self.sync(st, now);
        let mut alerts = Alerts::new();
        if let Some(d) = self.admit(st, now, &estimate, &mut alerts) {
            return Ok(Reserved {
                admission: Admission::Denied(d),
                alerts,
            });
        }
        if st.holds.is_full() {
            match st.holds.iter().position(|h| h.lapsed) {
                Some(i) => {
                    st.holds.remove(i);
                }
                None => {
                    let retry = st.holds.iter().map(|h| h.expires).min().unwrap_or(now);
                    let d = Denial {
                        reason: DenyReason::TooManyReservations,
                        retry_at: Instant::from_micros(retry),
                        limit: None,
                    };
                    return Ok(Reserved {
                        admission: Admission::Denied(d),
                        alerts,
                    });
                }
            }
        }
        // Ids never go below the current time in µs, so a reservation from
        // before a reset or an eviction cannot match a new hold.
        let id = st.next_id.max(now);
        st.next_id = id.saturating_add(1);
        let expires = now.saturating_add(self.config.hold_ttl.as_micros());
        let _ = st.holds.push(Hold {
            id,
            at: now,
            expires,
            usage: estimate,
            lapsed: false,
        });
        for ((_, l), w) in self.limits().zip(st.windows.iter_mut()) {
            w.reserved = w.reserved.saturating_add(estimate.get(l.dimension));
        }
        self.pace(st, now, &estimate);
        let r = Reservation {
            id,
            usage: estimate,
            expires: Instant::from_micros(expires),
        };
        Ok(Reserved {
            admission: Admission::Granted(r),
            alerts,
        })
    }

    /// Charge the actual usage of a reserved call and drop its hold.
    ///
    /// Charges `actual` whether it is above or below the estimate (settled
    /// usage may then exceed a limit; later reservations are denied). A
    /// lapsed hold is still charged and reported `late`. Errors, charging
    /// nothing, when the state has no such reservation.
    pub fn settle<const R: usize>(
        &self,
        st: &mut BudgetState<R>,
        now: Instant,
        r: Reservation,
        actual: Usage,
    ) -> Result<Settled, BudgetError> {
        self.settle_in(st, now, r, actual)
    }

    #[inline]
    fn settle_in(
        &self,
        st: &mut StateView,
        now: Instant,
        r: Reservation,
        actual: Usage,
    ) -> Result<Settled, BudgetError> {
        let now = self.sync(st, now);
        let hold = self.take_hold(st, r.id)?;
        let actual = clamp_usage(actual);
        let mut alerts = Alerts::new();
        self.charge(st, now, &actual, &mut alerts);
        Ok(Settled {
            charged: actual,
            late: hold.lapsed,
            alerts,
        })
    }

    /// Drop the hold of a call that never ran; nothing is charged.
    pub fn release<const R: usize>(
        &self,
        st: &mut BudgetState<R>,
        now: Instant,
        r: Reservation,
    ) -> Result<(), BudgetError> {
        let st: &mut StateView = st;
        self.sync(st, now);
        self.take_hold(st, r.id).map(|_| ())
    }

    fn take_hold(&self, st: &mut StateView, id: u64) -> Result<Hold, BudgetError> {
        let i = st
            .holds
            .iter()
            .position(|h| h.id == id)
            .ok_or(BudgetError::UnknownReservation { id })?;
        let hold = st.holds.remove(i);
        if !hold.lapsed {
            self.unhold(&mut st.windows, &hold);
        }
        Ok(hold)
    }

    /// Charge usage without a reservation or any check (Go `policy`'s
    /// `RecordUsage`), returning the alerts it fires.
    pub fn record<const R: usize>(
        &self,
        st: &mut BudgetState<R>,
        now: Instant,
        usage: Usage,
    ) -> Alerts {
        self.record_in(st, now, usage)
    }

    #[inline]
    fn record_in(&self, st: &mut StateView, now: Instant, usage: Usage) -> Alerts {
        let now = self.sync(st, now);
        let mut alerts = Alerts::new();
        self.charge(st, now, &clamp_usage(usage), &mut alerts);
        alerts
    }

    /// Check and charge in one step (a reservation settled at once with the
    /// same usage). Nothing is charged on denial.
    pub fn try_spend<const R: usize>(
        &self,
        st: &mut BudgetState<R>,
        now: Instant,
        usage: Usage,
    ) -> Result<Spent, BudgetError> {
        self.try_spend_in(st, now, usage)
    }

    #[inline]
    fn try_spend_in(
        &self,
        st: &mut StateView,
        now: Instant,
        usage: Usage,
    ) -> Result<Spent, BudgetError> {
        self.validate(&usage)?;
        let usage = clamp_usage(usage);
        let now = self.sync(st, now);
        let mut alerts = Alerts::new();
        if let Some(d) = self.admit(st, now, &usage, &mut alerts) {
            return Ok(Spent {
                denied: Some(d),
                alerts,
            });
        }
        self.charge(st, now, &usage, &mut alerts);
        // The amounts are now in `used`, as a reservation's are in `reserved`.
        self.pace(st, now, &usage);
        Ok(Spent {
            denied: None,
            alerts,
        })
    }

    /// A snapshot at `now` (the state is not changed).
    pub fn status<const R: usize>(&self, st: &BudgetState<R>, now: Instant) -> BudgetStatus {
        self.status_in(&mut st.clone(), now)
    }

    /// [`status`](Self::status) of a copy of the state, which it syncs.
    fn status_in(&self, s: &mut StateView, now: Instant) -> BudgetStatus {
        let now = self.sync(s, now);
        let mut limits = heapless::Vec::new();
        for ((_, l), w) in self.limits().zip(s.windows.iter()) {
            let (start, end) = self.bounds(l, now);
            let _ = limits.push(LimitStatus {
                limit: *l,
                used: w.used,
                reserved: w.reserved,
                utilization_bp: utilization_bp(w.used, l.max),
                window_start: Instant::from_micros(start),
                window_end: Instant::from_micros(end),
            });
        }
        let throttled = now < s.throttle_until;
        BudgetStatus {
            limits,
            throttled,
            throttle_until: throttled.then(|| Instant::from_micros(s.throttle_until)),
            holds: s.holds.iter().filter(|h| !h.lapsed).count(),
        }
    }

    /// Forget all usage, holds and throttling (Go `policy`'s `Reset`). The
    /// reservation counter and the latest time seen are kept, so a
    /// reservation made before the reset can never match a hold made after.
    pub fn reset<const R: usize>(&self, st: &mut BudgetState<R>) {
        *st = BudgetState {
            last: st.last,
            next_id: st.next_id,
            ..BudgetState::default()
        };
    }
}
