//! Policy sets: several limits decided all-or-nothing.
//!
//! Every member is peeked at the same `now`; only if all allow is each one
//! checked (consumed). If any denies, nothing is consumed and the decision
//! names the binding member: the denying one with the latest `retry_at`.
//!
//! ```
//! use ratebound_core::policy::{bind, check_all, Member};
//! use ratebound_core::{Duration, Gcra, GcraState, Instant, SlidingCounter, SlidingCounterState};
//!
//! let per_second = Gcra::per_second(5)?;
//! let per_minute = SlidingCounter::new(6, Duration::from_secs(60))?;
//! let (mut a, mut b) = (GcraState::default(), SlidingCounterState::default());
//! let now = Instant::from_secs(1_000);
//!
//! let d = check_all(now, &mut [(&mut bind(&per_second, &mut a), 5), (&mut bind(&per_minute, &mut b), 5)])?;
//! assert!(d.decision.allowed);
//! // One more fits the minute window, but not the per-second bucket: nothing is consumed.
//! let d = check_all(now, &mut [(&mut bind(&per_second, &mut a), 1), (&mut bind(&per_minute, &mut b), 1)])?;
//! assert!(!d.decision.allowed);
//! assert_eq!(d.binding, Some(0));
//! assert_eq!(per_minute.peek(&b, now, 0)?.remaining, 1);
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```

use core::fmt;

use crate::{CostError, Decision, Instant, Limiter};

/// One member of a policy set: a limiter bound to its state (object safe).
pub trait Member {
    /// [`Limiter::peek`].
    fn peek(&self, now: Instant, cost: u64) -> Result<Decision, CostError>;
    /// [`Limiter::check`].
    fn check(&mut self, now: Instant, cost: u64) -> Result<Decision, CostError>;
}

/// A limiter and a mutable borrow of its state; see [`bind`].
#[derive(Debug)]
pub struct Bound<'a, L: Limiter> {
    /// The limiter.
    pub limiter: &'a L,
    /// Its state.
    pub state: &'a mut L::State,
}

/// Pair a limiter with its state as a policy-set [`Member`].
pub fn bind<'a, L: Limiter>(limiter: &'a L, state: &'a mut L::State) -> Bound<'a, L> {
    Bound { limiter, state }
}

impl<L: Limiter> Member for Bound<'_, L> {
    fn peek(&self, now: Instant, cost: u64) -> Result<Decision, CostError> {
        self.limiter.peek(self.state, now, cost)
    }
    fn check(&mut self, now: Instant, cost: u64) -> Result<Decision, CostError> {
        self.limiter.check(self.state, now, cost)
    }
}

/// The decision of a policy set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyDecision {
    /// Allowed only if every member allows. `remaining` is the smallest
    /// member's, `limit` the binding member's, `reset_at` the latest,
    /// `retry_at` the binding member's.
    pub decision: Decision,
    /// On denial, the denying member with the latest `retry_at`; when
    /// allowed, the member with the least remaining. `None` for an empty set.
    pub binding: Option<usize>,
}

/// A member's cost can never fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyError {
    /// Index of the member.
    pub member: usize,
    /// Its error.
    pub error: CostError,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "policy member #{}: {}", self.member, self.error)
    }
}

impl core::error::Error for PolicyError {}

/// Combine members' decisions (index, decision) into the set's, exactly as
/// [`check_all`] does: for shells that decide members elsewhere (the Redis
/// scripts) and must name the binding member the same way.
pub fn fold(now: Instant, decisions: impl Iterator<Item = (usize, Decision)>) -> PolicyDecision {
    let mut out = PolicyDecision {
        decision: Decision {
            allowed: true,
            remaining: u64::MAX,
            limit: 0,
            reset_at: now,
            retry_at: now,
        },
        binding: None,
    };
    for (i, d) in decisions {
        let o = &mut out.decision;
        o.reset_at = o.reset_at.max(d.reset_at);
        let binds = match (o.allowed, d.allowed) {
            (true, false) => true,
            (false, false) => d.retry_at > o.retry_at,
            (true, true) => d.remaining < o.remaining || out.binding.is_none(),
            (false, true) => false,
        };
        o.remaining = o.remaining.min(d.remaining);
        if binds {
            o.allowed = d.allowed;
            o.limit = d.limit;
            o.retry_at = d.retry_at;
            out.binding = Some(i);
        }
    }
    if out.binding.is_none() {
        out.decision.remaining = 0;
    }
    out
}

/// A set's answer when the store deciding it is unavailable and the
/// policy admits uncounted (fails open): each member's
/// [`Decision::uncounted`] for its capacity and cost (`members`), folded as
/// [`fold`] does, so the binding member is the one with least left, as in
/// a counted decision.
///
/// ```
/// use ratebound_core::{policy, Instant};
/// let now = Instant::from_secs(5);
/// let set = policy::uncounted(now, [(10, 3), (5, 3)]);
/// assert!(set.decision.allowed);
/// assert_eq!((set.binding, set.decision.remaining, set.decision.limit), (Some(1), 2, 5));
/// ```
pub fn uncounted(now: Instant, members: impl IntoIterator<Item = (u64, u64)>) -> PolicyDecision {
    let decisions = members
        .into_iter()
        .enumerate()
        .map(|(i, (capacity, cost))| (i, Decision::uncounted(now, capacity, cost)));
    fold(now, decisions)
}

/// What [`check_all`] would decide, consuming nothing.
pub fn peek_all(
    now: Instant,
    members: &[(&dyn Member, u64)],
) -> Result<PolicyDecision, PolicyError> {
    let mut peeks = members.iter().map(|(m, c)| m.peek(now, *c));
    fold_results(now, &mut peeks)
}

/// Check every member at `now`, all-or-nothing. Errors (consuming nothing)
/// when some member's cost can never fit.
pub fn check_all(
    now: Instant,
    members: &mut [(&mut dyn Member, u64)],
) -> Result<PolicyDecision, PolicyError> {
    let mut peeks = members.iter().map(|(m, c)| m.peek(now, *c));
    let peeked = fold_results(now, &mut peeks)?;
    if !peeked.decision.allowed {
        return Ok(peeked);
    }
    // Every member allows at `now`, so each check admits exactly what its peek said.
    let mut checks = members.iter_mut().map(|(m, c)| m.check(now, *c));
    fold_results(now, &mut checks)
}

fn fold_results(
    now: Instant,
    results: &mut dyn Iterator<Item = Result<Decision, CostError>>,
) -> Result<PolicyDecision, PolicyError> {
    let mut error = None;
    let out = fold(
        now,
        results.enumerate().map_while(|(i, r)| match r {
            Ok(d) => Some((i, d)),
            Err(e) => {
                error = Some(PolicyError {
                    member: i,
                    error: e,
                });
                None
            }
        }),
    );
    match error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
