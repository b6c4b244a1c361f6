//! Any core limiter, chosen at run time (from config), and its state.

use ratebound_core::{
    CarryOver, ConfigError, CostError, Decision, Gcra, GcraState, Instant, Limiter, SlidingCounter,
    SlidingCounterState, SlidingLog, SlidingLogState,
};

/// Sliding logs built from config hold this many entries.
pub const CONFIG_LOG_SLOTS: usize = 256;

/// What a sliding log that has admitted nothing looks like, so peeking a
/// fresh state copies nothing.
static FRESH_LOG: SlidingLogState<CONFIG_LOG_SLOTS> = SlidingLogState::EMPTY;

/// Any core rate limiter, chosen at run time (from config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnyLimiter {
    /// GCRA.
    Gcra(Gcra),
    /// Sliding log.
    SlidingLog(SlidingLog<CONFIG_LOG_SLOTS>),
    /// Sliding counter.
    SlidingCounter(SlidingCounter),
}

impl AnyLimiter {
    /// The most one call can ever be granted: the bucket's capacity or the
    /// window's limit.
    pub fn capacity(&self) -> u64 {
        match self {
            AnyLimiter::Gcra(g) => g.capacity(),
            AnyLimiter::SlidingLog(l) => l.limit(),
            AnyLimiter::SlidingCounter(c) => c.limit(),
        }
    }
}

/// The state of an [`AnyLimiter`]; `Fresh` until first used. A state of
/// another kind than its limiter (the limiter was swapped) counts as fresh.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AnyState {
    /// Never used: a fresh state of whichever kind.
    #[default]
    Fresh,
    /// GCRA state.
    Gcra(GcraState),
    /// Sliding log state (boxed: 4 KiB).
    SlidingLog(Box<SlidingLogState<CONFIG_LOG_SLOTS>>),
    /// Sliding counter state.
    SlidingCounter(SlidingCounterState),
}

impl Limiter for AnyLimiter {
    type State = AnyState;
    fn check(&self, state: &mut AnyState, now: Instant, cost: u64) -> Result<Decision, CostError> {
        match (self, state) {
            (AnyLimiter::Gcra(l), AnyState::Gcra(s)) => l.check(s, now, cost),
            (AnyLimiter::SlidingLog(l), AnyState::SlidingLog(s)) => l.check(s, now, cost),
            (AnyLimiter::SlidingCounter(l), AnyState::SlidingCounter(s)) => l.check(s, now, cost),
            (AnyLimiter::Gcra(l), state) => {
                let mut s = GcraState::default();
                let d = l.check(&mut s, now, cost)?;
                *state = AnyState::Gcra(s);
                Ok(d)
            }
            (AnyLimiter::SlidingLog(l), state) => {
                let mut s = Box::<SlidingLogState<CONFIG_LOG_SLOTS>>::default();
                let d = l.check(&mut s, now, cost)?;
                *state = AnyState::SlidingLog(s);
                Ok(d)
            }
            (AnyLimiter::SlidingCounter(l), state) => {
                let mut s = SlidingCounterState::default();
                let d = l.check(&mut s, now, cost)?;
                *state = AnyState::SlidingCounter(s);
                Ok(d)
            }
        }
    }
    fn peek(&self, state: &AnyState, now: Instant, cost: u64) -> Result<Decision, CostError> {
        match (self, state) {
            (AnyLimiter::Gcra(l), AnyState::Gcra(s)) => l.peek(s, now, cost),
            (AnyLimiter::SlidingLog(l), AnyState::SlidingLog(s)) => l.peek(s, now, cost),
            (AnyLimiter::SlidingCounter(l), AnyState::SlidingCounter(s)) => l.peek(s, now, cost),
            (AnyLimiter::Gcra(l), _) => l.peek(&GcraState::default(), now, cost),
            (AnyLimiter::SlidingLog(l), _) => l.peek(&FRESH_LOG, now, cost),
            (AnyLimiter::SlidingCounter(l), _) => {
                l.peek(&SlidingCounterState::default(), now, cost)
            }
        }
    }
    fn is_idle(&self, state: &AnyState, now: Instant) -> bool {
        match (self, state) {
            (AnyLimiter::Gcra(l), AnyState::Gcra(s)) => l.is_idle(s, now),
            (AnyLimiter::SlidingLog(l), AnyState::SlidingLog(s)) => l.is_idle(s, now),
            (AnyLimiter::SlidingCounter(l), AnyState::SlidingCounter(s)) => l.is_idle(s, now),
            _ => true, // fresh, or a state of another kind: nothing counted here
        }
    }
}

impl CarryOver for AnyLimiter {
    /// When both are the same kind and core's rule for that kind carries
    /// (a sliding counter keeps its window); another kind would read the
    /// state as fresh, forgetting what it counted.
    fn carries_over_from(&self, old: &Self) -> Result<(), ConfigError> {
        match (self, old) {
            (AnyLimiter::Gcra(n), AnyLimiter::Gcra(o)) => n.carries_over_from(o),
            (AnyLimiter::SlidingLog(n), AnyLimiter::SlidingLog(o)) => n.carries_over_from(o),
            (AnyLimiter::SlidingCounter(n), AnyLimiter::SlidingCounter(o)) => {
                n.carries_over_from(o)
            }
            _ => Err(ConfigError::Invalid {
                field: "kind",
                reason: "of a limiter cannot change while its states live \
                         (the new kind would forget what the old one counted)",
            }),
        }
    }
}
