//! Several named limits decided together, all or nothing (core's policy
//! sets), as one [`Limiter`] a keyed store can hold per key.

use ratebound_core::policy::{bind, check_all, fold, peek_all, Member, PolicyDecision};
use ratebound_core::{CarryOver, ConfigError, CostError, Decision, Instant, Limiter};

use super::{AnyLimiter, AnyState};

/// The most members a set may have.
pub const MAX_SET_MEMBERS: usize = 8;

/// Named limits decided together: a request is admitted only if every
/// member admits it, and then every member counts it (core's
/// [`check_all`]). One member is a plain limiter under a name.
///
/// ```
/// use ratebound_core::{Duration, Gcra, Instant, SlidingCounter};
/// use ratebound_std::limiter::{AnyLimiter, LimitSet};
///
/// let set = LimitSet::new([
///     ("per_second", AnyLimiter::Gcra(Gcra::per_second(10)?)),
///     ("per_minute", AnyLimiter::SlidingCounter(SlidingCounter::new(100, Duration::from_secs(60))?)),
/// ])?;
/// let mut state = Default::default();
/// let now = Instant::from_secs(1_000);
/// let d = set.check_set(&mut state, now, 10)?;
/// assert!(d.decision.allowed);
/// let d = set.check_set(&mut state, now, 1)?;
/// assert!(!d.decision.allowed);
/// assert_eq!(set.name(d.binding.unwrap()), "per_second");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitSet {
    members: Vec<(String, AnyLimiter)>,
}

/// The state of a [`LimitSet`] for one key: one [`AnyState`] per member,
/// the first held in place (a set of one allocates nothing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetState {
    first: AnyState,
    rest: Box<[AnyState]>,
}

impl SetState {
    /// The state of member `i` (fresh when never used).
    pub fn member(&self, i: usize) -> Option<&AnyState> {
        match i {
            0 => Some(&self.first),
            _ => self.rest.get(i - 1),
        }
    }
}

impl LimitSet {
    /// A set of `(name, limiter)` members: 1 to [`MAX_SET_MEMBERS`], names
    /// unique, 1 to 64 bytes of visible ASCII (no spaces) other than `{`,
    /// `}`, `"` and `\` (they name Redis keys and quoted header items).
    pub fn new<N: Into<String>>(
        members: impl IntoIterator<Item = (N, AnyLimiter)>,
    ) -> Result<Self, ConfigError> {
        let members: Vec<(String, AnyLimiter)> =
            members.into_iter().map(|(n, l)| (n.into(), l)).collect();
        if members.is_empty() {
            return Err(ConfigError::Zero { field: "limits" });
        }
        if members.len() > MAX_SET_MEMBERS {
            return Err(ConfigError::TooLarge {
                field: "limits",
                max: MAX_SET_MEMBERS as u64,
            });
        }
        for (i, (name, _)) in members.iter().enumerate() {
            if !ratebound_core::wire::limit_name_valid(name.as_bytes()) {
                return Err(ConfigError::Invalid {
                    field: "limits",
                    reason: "names are 1 to 64 bytes of visible ASCII (no spaces) but { } \" \\",
                });
            }
            if members[..i].iter().any(|(n, _)| n == name) {
                return Err(ConfigError::Invalid {
                    field: "limits",
                    reason: "names must be unique",
                });
            }
        }
        Ok(LimitSet { members })
    }

    /// One limiter named `name`.
    pub fn one(name: impl Into<String>, limiter: AnyLimiter) -> Result<Self, ConfigError> {
        Self::new([(name.into(), limiter)])
    }

    /// The members, in order.
    pub fn members(&self) -> impl ExactSizeIterator<Item = (&str, &AnyLimiter)> {
        self.members.iter().map(|(n, l)| (n.as_str(), l))
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Never true: a set has at least one member.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Member `i`'s name (`""` past the end).
    pub fn name(&self, i: usize) -> &str {
        self.members.get(i).map_or("", |(n, _)| n.as_str())
    }

    /// Member `i`'s limiter.
    pub fn limiter(&self, i: usize) -> Option<&AnyLimiter> {
        self.members.get(i).map(|(_, l)| l)
    }

    /// The most one call can ever be granted: the smallest member's capacity.
    pub fn capacity(&self) -> u64 {
        self.members
            .iter()
            .map(|(_, l)| l.capacity())
            .min()
            .unwrap_or(0)
    }

    /// A cost no member can refuse for size, else the first member's error.
    pub fn fits(&self, cost: u64) -> Result<(), (usize, CostError)> {
        match self.members.iter().position(|(_, l)| cost > l.capacity()) {
            None => Ok(()),
            Some(i) => Err((
                i,
                CostError::InsufficientCapacity {
                    cost,
                    capacity: self.members[i].1.capacity(),
                },
            )),
        }
    }

    /// The same set with every member replaced by `f` of it (e.g. one
    /// replica's share).
    pub fn try_map(
        &self,
        f: impl Fn(&AnyLimiter) -> Result<AnyLimiter, ConfigError>,
    ) -> Result<Self, ConfigError> {
        let members = self
            .members
            .iter()
            .map(|(n, l)| Ok((n.clone(), f(l)?)))
            .collect::<Result<Vec<_>, ConfigError>>()?;
        Ok(LimitSet { members })
    }

    /// The binding member of `d` alone, from `state` after `d`: what it has
    /// left and when it is full again (a set of one: `d`'s own figures).
    pub fn binding_figures(
        &self,
        state: &SetState,
        d: PolicyDecision,
        now: Instant,
    ) -> (u64, Instant) {
        let own = (d.decision.remaining, d.decision.reset_at);
        let b = d.binding.unwrap_or(0);
        match (self.members.len(), self.limiter(b), state.member(b)) {
            (1, _, _) => own,
            (_, Some(l), Some(s)) => l.peek(s, now, 0).map_or(own, |p| (p.remaining, p.reset_at)),
            _ => own,
        }
    }

    fn states<'a>(&self, state: &'a mut SetState) -> impl Iterator<Item = &'a mut AnyState> {
        if state.rest.len() != self.members.len() - 1 {
            let mut rest = std::mem::take(&mut state.rest).into_vec();
            rest.resize(self.members.len() - 1, AnyState::Fresh);
            state.rest = rest.into_boxed_slice();
        }
        std::iter::once(&mut state.first).chain(state.rest.iter_mut())
    }

    /// Check every member at `now`, all or nothing; the decision names the
    /// binding member. A cost some member can never fit errors, consuming
    /// nothing.
    pub fn check_set(
        &self,
        state: &mut SetState,
        now: Instant,
        cost: u64,
    ) -> Result<PolicyDecision, CostError> {
        if let [(_, l)] = self.members.as_slice() {
            // One member: its own check is all or nothing already.
            let d = l.check(&mut state.first, now, cost)?;
            return Ok(fold(now, std::iter::once((0, d))));
        }
        let mut bound: Vec<_> = self
            .members
            .iter()
            .zip(self.states(state))
            .map(|((_, l), s)| bind(l, s))
            .collect();
        let mut members: Vec<(&mut dyn Member, u64)> = bound
            .iter_mut()
            .map(|b| (b as &mut dyn Member, cost))
            .collect();
        check_all(now, &mut members).map_err(|e| e.error)
    }

    /// What [`check_set`](Self::check_set) would decide, changing nothing.
    pub fn peek_set(
        &self,
        state: &SetState,
        now: Instant,
        cost: u64,
    ) -> Result<PolicyDecision, CostError> {
        let fresh = AnyState::Fresh;
        let peeks: Vec<Peek<'_>> = self
            .members
            .iter()
            .enumerate()
            .map(|(i, (_, l))| Peek {
                limiter: l,
                state: state.member(i).unwrap_or(&fresh),
            })
            .collect();
        let members: Vec<(&dyn Member, u64)> =
            peeks.iter().map(|p| (p as &dyn Member, cost)).collect();
        peek_all(now, &members).map_err(|e| e.error)
    }
}

/// A member that is only peeked.
struct Peek<'a> {
    limiter: &'a AnyLimiter,
    state: &'a AnyState,
}

impl Member for Peek<'_> {
    fn peek(&self, now: Instant, cost: u64) -> Result<Decision, CostError> {
        self.limiter.peek(self.state, now, cost)
    }
    fn check(&mut self, now: Instant, cost: u64) -> Result<Decision, CostError> {
        // peek_all never checks.
        self.limiter.peek(self.state, now, cost)
    }
}

impl Limiter for LimitSet {
    type State = SetState;
    fn check(&self, state: &mut SetState, now: Instant, cost: u64) -> Result<Decision, CostError> {
        self.check_set(state, now, cost).map(|d| d.decision)
    }
    fn peek(&self, state: &SetState, now: Instant, cost: u64) -> Result<Decision, CostError> {
        self.peek_set(state, now, cost).map(|d| d.decision)
    }
    fn is_idle(&self, state: &SetState, now: Instant) -> bool {
        let fresh = AnyState::Fresh;
        self.members
            .iter()
            .enumerate()
            .all(|(i, (_, l))| l.is_idle(state.member(i).unwrap_or(&fresh), now))
    }
}

impl CarryOver for LimitSet {
    /// When the members keep their names, order and kinds, and each
    /// carries over ([`AnyLimiter`]'s rule): a member's state is found by
    /// its place (in memory) and its name (in Redis). Numbers may change
    /// freely; a member added, removed or renamed is a new set — a new
    /// limit, with its own name.
    fn carries_over_from(&self, old: &Self) -> Result<(), ConfigError> {
        if self.len() != old.len()
            || self
                .members()
                .zip(old.members())
                .any(|((a, _), (b, _))| a != b)
        {
            return Err(ConfigError::Invalid {
                field: "limits",
                reason: "must keep their members' names and order to keep their states \
                         (a set with other members is a new limit)",
            });
        }
        self.members()
            .zip(old.members())
            .try_for_each(|((_, new), (_, old))| new.carries_over_from(old))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratebound_core::{Duration, Gcra, SlidingLog};

    fn set() -> LimitSet {
        LimitSet::new([
            ("burst", AnyLimiter::Gcra(Gcra::per_second(2).unwrap())),
            (
                "minute",
                AnyLimiter::SlidingLog(SlidingLog::new(3, Duration::from_secs(60)).unwrap()),
            ),
        ])
        .unwrap()
    }

    #[test]
    fn a_denial_by_one_member_consumes_nothing_from_the_others() {
        let s = set();
        let mut st = SetState::default();
        let t = Instant::from_secs(100);
        assert!(s.check_set(&mut st, t, 2).unwrap().decision.allowed);
        let d = s.check_set(&mut st, t, 1).unwrap();
        assert!(!d.decision.allowed);
        assert_eq!(s.name(d.binding.unwrap()), "burst");
        // The minute log still holds only the first 2.
        let later = t + Duration::from_secs(1);
        let d = s.peek_set(&st, later, 1).unwrap();
        assert!(d.decision.allowed);
        assert_eq!(d.decision.remaining, 0, "the log has 1 left; after this, 0");
        assert!(s.check_set(&mut st, later, 1).unwrap().decision.allowed);
        let d = s
            .check_set(&mut st, later + Duration::from_secs(1), 1)
            .unwrap();
        assert!(!d.decision.allowed);
        assert_eq!(s.name(d.binding.unwrap()), "minute");
    }

    #[test]
    fn bad_sets_are_typed_errors() {
        let g = AnyLimiter::Gcra(Gcra::per_second(1).unwrap());
        assert!(LimitSet::new(Vec::<(String, AnyLimiter)>::new()).is_err());
        assert!(LimitSet::new([("a", g), ("a", g)]).is_err());
        assert!(LimitSet::new([("a{b}", g)]).is_err());
        assert!(LimitSet::new([("", g)]).is_err());
        assert!(LimitSet::new((0..9).map(|i| (format!("m{i}"), g))).is_err());
        assert!(LimitSet::new((0..8).map(|i| (format!("m{i}"), g))).is_ok());
        // Names: 1 to 64 bytes of visible ASCII but { } " \.
        assert!(LimitSet::new([("a".repeat(64), g)]).is_ok());
        assert!(LimitSet::new([("a".repeat(65), g)]).is_err());
        assert!(LimitSet::new([("!#$%&'()*+,-./:;<=>?@[]^_`|~", g)]).is_ok());
        for bad in ["a b", "a\"b", "a\\b", "a{", "b}", "é", "a\tb", "a\u{7f}"] {
            assert!(LimitSet::new([(bad, g)]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_fresh_state_is_idle_and_a_used_one_is_not() {
        let s = set();
        let mut st = SetState::default();
        let t = Instant::from_secs(100);
        assert!(s.is_idle(&st, t));
        s.check_set(&mut st, t, 1).unwrap();
        assert!(!s.is_idle(&st, t));
        assert!(s.is_idle(&st, t + Duration::from_secs(61)));
    }
}
