//! The limiter kinds of the main entry as one type: a [`Machine`] (the
//! config, one of GCRA, sliding logs of 8, 64 or 256 slots, sliding
//! counter) and its [`State`]. The keyed store and the single limiters
//! are written once over them, so the module carries one copy of their
//! code rather than one per kind.

use alloc::boxed::Box;

use crate::int;
use ratebound_core::{
    CostError, Decision, Duration, Gcra as CoreGcra, GcraState, Instant, Limiter,
    SlidingCounter as CoreCounter, SlidingCounterState, SlidingLog as CoreLog, SlidingLogState,
};

/// One of the kinds of limiter the JS limiters are. Code over it runs
/// once for all of them; only the decisions themselves (core's, per kind)
/// are matched on.
#[derive(Clone, Copy)]
pub(crate) enum Machine {
    Gcra(CoreGcra),
    Log8(CoreLog<8>),
    Log64(CoreLog<64>),
    Log256(CoreLog<256>),
    Counter(CoreCounter),
}

/// One key's state, of its store's kind (a log's on the heap: up to 4 KB).
/// `Fresh` until first decided.
#[derive(Default)]
pub(crate) enum State {
    #[default]
    Fresh,
    Gcra(GcraState),
    Log8(Box<SlidingLogState<8>>),
    Log64(Box<SlidingLogState<64>>),
    Log256(Box<SlidingLogState<256>>),
    Counter(SlidingCounterState),
}

/// `$state` as `$kind`'s, made so in place if it is still fresh. A state
/// of another kind cannot occur (one machine per store or object) and
/// traps: made fresh it would grant a full limit.
macro_rules! own {
    ($state:expr, $kind:ident) => {{
        if matches!($state, State::Fresh) {
            *$state = State::$kind(Default::default());
        }
        match $state {
            State::$kind(s) => s,
            _ => other_kind(),
        }
    }};
}

/// Apart and once, so each use of `own!` carries a call, not a panic's data.
#[cold]
#[inline(never)]
fn other_kind() -> ! {
    unreachable!("a state of another kind")
}

impl Machine {
    /// A GCRA: `capacity` tokens refilled with `amount` per `period_us`;
    /// a bad config gives the offending field's name (as the others do).
    pub(crate) fn gcra(
        capacity: f64,
        amount: f64,
        period_us: f64,
    ) -> Result<Machine, &'static str> {
        let g = CoreGcra::new(
            int(capacity),
            int(amount),
            Duration::from_micros(int(period_us)),
        );
        Ok(Machine::Gcra(g.map_err(|e| e.field())?))
    }

    /// A sliding log: `limit` per `window_us` in `slots` (8, 64 or 256)
    /// entries, beyond which entries merge conservatively (core's rule:
    /// never over the limit); any other slot count gives `"slots"`.
    pub(crate) fn sliding_log(
        limit: f64,
        window_us: f64,
        slots: f64,
    ) -> Result<Machine, &'static str> {
        let (limit, window) = (int(limit), Duration::from_micros(int(window_us)));
        Ok(match int(slots) {
            8 => Machine::Log8(CoreLog::new(limit, window).map_err(|e| e.field())?),
            64 => Machine::Log64(CoreLog::new(limit, window).map_err(|e| e.field())?),
            256 => Machine::Log256(CoreLog::new(limit, window).map_err(|e| e.field())?),
            _ => return Err("slots"),
        })
    }

    /// An O(1) sliding window counter: `limit` per `window_us`.
    pub(crate) fn sliding_counter(limit: f64, window_us: f64) -> Result<Machine, &'static str> {
        let c = CoreCounter::new(int(limit), Duration::from_micros(int(window_us)));
        Ok(Machine::Counter(c.map_err(|e| e.field())?))
    }

    /// [`check`](Limiter::check)'s verdict alone, with its change of
    /// `state`: a GCRA's skips the decision's figures (core's `Gcra::allow`).
    pub(crate) fn allow(
        &self,
        state: &mut State,
        now: Instant,
        cost: u64,
    ) -> Result<bool, CostError> {
        match self {
            Machine::Gcra(l) => l.allow(own!(state, Gcra), now, cost),
            _ => self.check(state, now, cost).map(|d| d.allowed),
        }
    }

    /// A fresh state of this machine's kind.
    pub(crate) fn fresh(&self) -> State {
        match self {
            Machine::Gcra(_) => State::Gcra(GcraState::default()),
            Machine::Log8(_) => State::Log8(Box::default()),
            Machine::Log64(_) => State::Log64(Box::default()),
            Machine::Log256(_) => State::Log256(Box::default()),
            Machine::Counter(_) => State::Counter(SlidingCounterState::default()),
        }
    }
}

impl Limiter for Machine {
    type State = State;
    fn check(&self, state: &mut State, now: Instant, cost: u64) -> Result<Decision, CostError> {
        match self {
            Machine::Gcra(l) => l.check(own!(state, Gcra), now, cost),
            Machine::Log8(l) => l.check(own!(state, Log8), now, cost),
            Machine::Log64(l) => l.check(own!(state, Log64), now, cost),
            Machine::Log256(l) => l.check(own!(state, Log256), now, cost),
            Machine::Counter(l) => l.check(own!(state, Counter), now, cost),
        }
    }
    fn peek(&self, state: &State, now: Instant, cost: u64) -> Result<Decision, CostError> {
        match (self, state) {
            (Machine::Gcra(l), State::Gcra(s)) => l.peek(s, now, cost),
            (Machine::Gcra(l), _) => l.peek(&Default::default(), now, cost),
            (Machine::Log8(l), State::Log8(s)) => l.peek(s, now, cost),
            (Machine::Log8(l), _) => l.peek(&Default::default(), now, cost),
            (Machine::Log64(l), State::Log64(s)) => l.peek(s, now, cost),
            (Machine::Log64(l), _) => l.peek(&Default::default(), now, cost),
            (Machine::Log256(l), State::Log256(s)) => l.peek(s, now, cost),
            (Machine::Log256(l), _) => l.peek(&Default::default(), now, cost),
            (Machine::Counter(l), State::Counter(s)) => l.peek(s, now, cost),
            (Machine::Counter(l), _) => l.peek(&Default::default(), now, cost),
        }
    }
    fn is_idle(&self, state: &State, now: Instant) -> bool {
        match (self, state) {
            (Machine::Gcra(l), State::Gcra(s)) => l.is_idle(s, now),
            (Machine::Log8(l), State::Log8(s)) => l.is_idle(s, now),
            (Machine::Log64(l), State::Log64(s)) => l.is_idle(s, now),
            (Machine::Log256(l), State::Log256(s)) => l.is_idle(s, now),
            (Machine::Counter(l), State::Counter(s)) => l.is_idle(s, now),
            _ => true, // fresh: holds nothing
        }
    }
}

#[cfg(test)]
mod tests {
    /// What node/README.md says a keyed store's state costs per slot.
    #[test]
    fn a_state_is_32_bytes() {
        assert_eq!(core::mem::size_of::<super::State>(), 32);
    }
}
