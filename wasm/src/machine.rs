//! The limiter kinds of the main entry as one type: a [`Machine`] (the
//! config, one of GCRA, sliding log, sliding counter) and its [`State`].
//! The keyed store and the single limiters are written once over them, so
//! the module carries one copy of their code rather than one per kind; a
//! log's state comes in three sizes (8, 64 or 256 slots) but is decided
//! through core's view of a log of any size, so only its allocation is
//! written per size.

use alloc::boxed::Box;
use core::mem::ManuallyDrop;

use crate::int;
use ratebound_core::{
    CostError, Decision, Duration, Gcra as CoreGcra, GcraState, Instant, Limiter, LogEntry,
    LogView, LogViewMut, SlidingCounter as CoreCounter, SlidingCounterState, SlidingLog as CoreLog,
    SlidingLogState,
};

/// One of the kinds of limiter the JS limiters are. Code over it runs
/// once for all of them; only the decisions themselves (core's, per kind)
/// are matched on.
#[derive(Clone, Copy)]
pub(crate) enum Machine {
    Gcra(CoreGcra),
    /// A log's limit and window (the slot count's `N` unused: its states
    /// are decided through views), and its states' size.
    Log(CoreLog, Slots),
    Counter(CoreCounter),
}

/// The slots of a log's state: one of the three sizes the JS API offers.
#[derive(Clone, Copy)]
pub(crate) enum Slots {
    S8,
    S64,
    S256,
}

/// One key's state, of its store's kind (a log's on the heap: up to 4 KB).
/// `Fresh` until first decided.
///
/// A log's box frees its memory without running the log's drop: its entries
/// are plain numbers with nothing to drop (checked below), and the deque's
/// drop, generic over three slot counts, was 0.45 KB of the module.
#[derive(Default)]
pub(crate) enum State {
    #[default]
    Fresh,
    Gcra(GcraState),
    Log8(Box<ManuallyDrop<SlidingLogState<8>>>),
    Log64(Box<ManuallyDrop<SlidingLogState<64>>>),
    Log256(Box<ManuallyDrop<SlidingLogState<256>>>),
    Counter(SlidingCounterState),
}

const _: () = assert!(!core::mem::needs_drop::<LogEntry>());

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

/// Apart and once, so each use of `own!` carries a call, not a panic's
/// data; in the npm build a bare trap (no message to carry).
#[cold]
#[inline(never)]
fn other_kind() -> ! {
    #[cfg(all(target_arch = "wasm32", not(feature = "std")))]
    core::arch::wasm32::unreachable();
    #[cfg(not(all(target_arch = "wasm32", not(feature = "std"))))]
    unreachable!("a state of another kind")
}

impl State {
    /// A log's state, of whichever size, read as core's view of a log.
    pub(crate) fn log(&self) -> Option<LogView<'_>> {
        match self {
            State::Log8(s) => Some(s.view()),
            State::Log64(s) => Some(s.view()),
            State::Log256(s) => Some(s.view()),
            _ => None,
        }
    }

    /// A log's state to change, made one of `slots` in place if still
    /// fresh; another kind traps, as in `own!`.
    pub(crate) fn log_mut(&mut self, slots: Slots) -> LogViewMut<'_> {
        if matches!(self, State::Fresh) {
            *self = slots.fresh();
        }
        match self {
            State::Log8(s) => s.view_mut(),
            State::Log64(s) => s.view_mut(),
            State::Log256(s) => s.view_mut(),
            _ => other_kind(),
        }
    }
}

impl Slots {
    /// An empty log of this size, on the heap.
    fn fresh(self) -> State {
        match self {
            Slots::S8 => State::Log8(Box::new(ManuallyDrop::new(SlidingLogState::EMPTY))),
            Slots::S64 => State::Log64(Box::new(ManuallyDrop::new(SlidingLogState::EMPTY))),
            Slots::S256 => State::Log256(Box::new(ManuallyDrop::new(SlidingLogState::EMPTY))),
        }
    }
}

impl Machine {
    /// The machine of `kind`, as the exports `one_new` and `keyed_new` take
    /// it (`src/abi/limiters.rs`): 0 a GCRA of `(capacity, amount, period_us)`, 1 a
    /// sliding log of `(limit, window_us, slots)`, 2 a sliding counter of
    /// `(limit, window_us)`; another kind gives `"kind"`.
    pub(crate) fn of_kind(kind: u32, a: f64, b: f64, c: f64) -> Result<Machine, &'static str> {
        match kind {
            0 => Machine::gcra(a, b, c),
            1 => Machine::sliding_log(a, b, c),
            2 => Machine::sliding_counter(a, b),
            _ => Err("kind"),
        }
    }

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
        let slots = match int(slots) {
            8 => Slots::S8,
            64 => Slots::S64,
            256 => Slots::S256,
            _ => return Err("slots"),
        };
        let log = CoreLog::new(int(limit), Duration::from_micros(int(window_us)));
        Ok(Machine::Log(log.map_err(|e| e.field())?, slots))
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
            Machine::Log(_, slots) => slots.fresh(),
            Machine::Counter(_) => State::Counter(SlidingCounterState::default()),
        }
    }
}

impl Limiter for Machine {
    type State = State;
    fn check(&self, state: &mut State, now: Instant, cost: u64) -> Result<Decision, CostError> {
        match self {
            Machine::Gcra(l) => l.check(own!(state, Gcra), now, cost),
            Machine::Log(l, slots) => l.check_in(state.log_mut(*slots), now, cost),
            Machine::Counter(l) => l.check(own!(state, Counter), now, cost),
        }
    }
    fn peek(&self, state: &State, now: Instant, cost: u64) -> Result<Decision, CostError> {
        match (self, state) {
            (Machine::Gcra(l), State::Gcra(s)) => l.peek(s, now, cost),
            (Machine::Gcra(l), _) => l.peek(&Default::default(), now, cost),
            (Machine::Log(l, _), s) => match s.log() {
                Some(v) => l.peek_in(v, now, cost),
                // Fresh: an empty log of any size decides alike.
                None => l.peek_in(SlidingLogState::<1>::EMPTY.view(), now, cost),
            },
            (Machine::Counter(l), State::Counter(s)) => l.peek(s, now, cost),
            (Machine::Counter(l), _) => l.peek(&Default::default(), now, cost),
        }
    }
    fn is_idle(&self, state: &State, now: Instant) -> bool {
        match (self, state) {
            (Machine::Gcra(l), State::Gcra(s)) => l.is_idle(s, now),
            (Machine::Log(l, _), s) => s.log().is_none_or(|v| l.is_idle_in(v, now)),
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
