//! Model-level counts for LLM gateways: a **total** count of admitted
//! requests and a **success** count settled by each request's outcome, as
//! one state machine (the std `model_limit` module adds config, keys and
//! stores; the Redis script ports this file).
//!
//! - Admission is all or nothing: one total token, and a success token for
//!   this request *and* every request still in flight (`inflight`).
//! - Settling a success takes its token; a failure takes none. Nothing is
//!   ever refunded, so a request that settles late cannot add capacity.
//!
//! ```
//! use ratebound_core::model_quota::{ModelQuota, ModelState, Outcome};
//! use ratebound_core::{Duration, Gcra, Instant};
//! let q = ModelQuota::new(None, Gcra::new(2, 2, Duration::from_secs(60))?);
//! let mut st = ModelState::default();
//! let now = Instant::from_secs(100);
//! assert!(q.admit(&mut st, now).allowed());
//! assert!(q.admit(&mut st, now).allowed());
//! assert!(!q.admit(&mut st, now).allowed()); // two in flight hold both tokens
//! q.settle(&mut st, now, Outcome::Failure);
//! assert!(q.admit(&mut st, now).allowed());
//! # Ok::<(), ratebound_core::ConfigError>(())
//! ```

use crate::{CostError, Decision, Duration, Gcra, GcraState, Instant, Limiter};

/// The limits for one (group or model or global) scope: both buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelQuota {
    total: Option<Gcra>,
    success: Gcra,
}

/// The state of one key under a [`ModelQuota`]: both buckets, and the
/// admitted requests whose outcome is not known yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ModelState {
    /// The total count's bucket.
    pub total: GcraState,
    /// The success count's bucket: charged when a success settles.
    pub success: GcraState,
    /// Admitted requests not settled yet; each holds one success token in
    /// reserve (the bucket must cover all of them plus a new one to admit).
    #[cfg_attr(feature = "serde", serde(default))]
    pub inflight: u64,
}

/// One admission decision: the success count's and (when limited) the total's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelDecision {
    /// The total count's decision; `None` when the total is unlimited.
    pub total: Option<Decision>,
    /// The success count's decision.
    pub success: Decision,
    /// The instant it was made at.
    pub now: Instant,
}

impl ModelDecision {
    /// True when both counts admitted the request.
    pub fn allowed(&self) -> bool {
        self.success.allowed && self.total.is_none_or(|t| t.allowed)
    }

    /// The decision that binds: a denying one (the later retry, if both
    /// deny), else the one with the least remaining.
    pub fn binding(&self) -> (Policy, Decision) {
        let s = (Policy::Success, self.success);
        let Some(t) = self.total else { return s };
        let t = (Policy::Total, t);
        match (t.1.allowed, s.1.allowed) {
            (false, true) => t,
            (true, false) => s,
            (false, false) if t.1.retry_at > s.1.retry_at => t,
            (false, false) => s,
            (true, true) if t.1.remaining < s.1.remaining => t,
            (true, true) => s,
        }
    }

    /// When to try again (zero when allowed).
    pub fn retry_after(&self) -> Duration {
        let (_, d) = self.binding();
        if self.allowed() {
            Duration::ZERO
        } else {
            d.retry_after(self.now)
        }
    }
}

/// Which count a header or error talks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Every admitted request.
    Total,
    /// Successful requests.
    Success,
}

impl Policy {
    /// The name used in headers and errors: `total` or `success`.
    pub const fn name(self) -> &'static str {
        match self {
            Policy::Total => "total",
            Policy::Success => "success",
        }
    }
}

impl ModelQuota {
    /// The two buckets: `total` (`None` = unlimited) and `success`.
    pub const fn new(total: Option<Gcra>, success: Gcra) -> Self {
        ModelQuota { total, success }
    }

    /// The total count's bucket (`None` = unlimited).
    pub fn total_bucket(&self) -> Option<&Gcra> {
        self.total.as_ref()
    }

    /// The success count's bucket.
    pub fn success_bucket(&self) -> &Gcra {
        &self.success
    }

    /// The total count's limit per period (`None` = unlimited).
    pub fn total_max(&self) -> Option<u64> {
        self.total.map(|g| g.capacity())
    }

    /// The success count's limit per period.
    pub fn success_max(&self) -> u64 {
        self.success.capacity()
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.success.period()
    }

    /// Admit one request if both counts allow it (all or nothing): take one
    /// from the total count and reserve one success — the success bucket
    /// must hold a token for every request in flight plus this one.
    pub fn admit(&self, state: &mut ModelState, now: Instant) -> ModelDecision {
        let total = self.total.map(|g| one(&g, &mut state.total, now, false));
        let success = self.success_view(state, now, 1);
        if !(success.allowed && total.is_none_or(|t| t.allowed)) {
            // Report the counts as they stand (nothing was taken), not as
            // they would be had the request been admitted.
            return ModelDecision {
                total: total.map(|t| match self.total {
                    Some(g) if t.allowed => current(&g, &state.total, now),
                    _ => t,
                }),
                success: if success.allowed {
                    self.success_view(state, now, 0)
                } else {
                    success
                },
                now,
            };
        }
        state.inflight = state.inflight.saturating_add(1);
        ModelDecision {
            total: self.total.map(|g| one(&g, &mut state.total, now, true)),
            success,
            now,
        }
    }

    /// The success bucket as seen by a new request: as if every request in
    /// flight plus `extra` more had succeeded.
    fn success_view(&self, state: &ModelState, now: Instant, extra: u64) -> Decision {
        let cap = self.success.capacity();
        let want = state.inflight.saturating_add(extra);
        let mut copy = state.success;
        let d = one_cost(&self.success, &mut copy, now, want.min(cap));
        if want <= cap {
            return d;
        }
        // More in flight than the bucket holds: a new request waits for one
        // of them to settle, so no sooner than one refill interval.
        let interval = Duration::from_micros(self.success.period().as_micros().div_ceil(cap));
        Decision {
            allowed: false,
            remaining: 0,
            limit: cap,
            reset_at: d.reset_at.max(now.saturating_add(interval)),
            retry_at: d.retry_at.max(now.saturating_add(interval)),
        }
    }

    /// Settle an admitted request: a success takes its token from the
    /// bucket; a failure only frees its reservation. Nothing is ever given
    /// back to the bucket, so a late settlement cannot add capacity.
    pub fn settle(&self, state: &mut ModelState, now: Instant, outcome: Outcome) {
        state.inflight = state.inflight.saturating_sub(1);
        if outcome == Outcome::Success {
            // Admission reserved this token, so it is there (a state created
            // afresh meanwhile is full); should it not be, nothing is granted.
            let _ = self.success.check(&mut state.success, now, 1);
        }
    }

    /// What [`admit`](ModelQuota::admit) would decide, changing nothing.
    pub fn peek(&self, state: &ModelState, now: Instant) -> ModelDecision {
        let mut copy = *state;
        self.admit(&mut copy, now)
    }
}

/// Check (or peek) one unit. Every bucket holds at least one, so core
/// cannot refuse the cost; should it, the result is a denial, never a grant.
fn one(g: &Gcra, st: &mut GcraState, now: Instant, take: bool) -> Decision {
    if take {
        one_cost(g, st, now, 1)
    } else {
        let mut copy = *st;
        one_cost(g, &mut copy, now, 1)
    }
}

fn one_cost(g: &Gcra, st: &mut GcraState, now: Instant, cost: u64) -> Decision {
    g.check(st, now, cost).unwrap_or(Decision {
        allowed: false,
        remaining: 0,
        limit: g.capacity(),
        reset_at: Instant::MAX,
        retry_at: Instant::MAX,
    })
}

/// A bucket as it stands at `now` (a peek of cost 0).
fn current(g: &Gcra, st: &GcraState, now: Instant) -> Decision {
    let mut copy = *st;
    one_cost(g, &mut copy, now, 0)
}

impl Limiter for ModelQuota {
    type State = ModelState;
    /// Admits `cost` requests one by one is not meaningful here: any nonzero
    /// cost admits one request (see [`ModelQuota::admit`]); the decision is
    /// the binding count's.
    fn check(
        &self,
        state: &mut ModelState,
        now: Instant,
        cost: u64,
    ) -> Result<Decision, CostError> {
        if cost == 0 {
            return Ok(ModelQuota::peek(self, state, now).binding().1);
        }
        Ok(self.admit(state, now).binding().1)
    }
    fn peek(&self, state: &ModelState, now: Instant, _cost: u64) -> Result<Decision, CostError> {
        Ok(ModelQuota::peek(self, state, now).binding().1)
    }
    fn is_idle(&self, state: &ModelState, now: Instant) -> bool {
        state.inflight == 0
            && self.success.is_full(&state.success, now)
            && self.total.is_none_or(|g| g.is_full(&state.total, now))
    }
}

/// How an admitted request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered well (by default: status < 400): keep the success slot.
    Success,
    /// It failed (status ≥ 400, an error, or it was dropped): give the slot back.
    Failure,
}

impl Outcome {
    /// The seed's rule: status < 400 is a success.
    pub fn from_status(status: u16) -> Outcome {
        if status < 400 {
            Outcome::Success
        } else {
            Outcome::Failure
        }
    }
}
