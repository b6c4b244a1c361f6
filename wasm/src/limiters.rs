//! The single limiters (feature `limiters`, the main entry `ratebound`):
//! a GCRA, a sliding log or a sliding counter with its state, as one type
//! over [`Machine`] (one copy of the code for all three). Numbers in (times
//! in µs), status codes out, a decision's numbers in one output array per
//! object that JS reads through a view of memory; exported to JS by
//! `src/abi/limiters.rs`.

use crate::machine::{Machine, State};
use crate::{int, valid};
use ratebound_core::{
    CostError, Decision, GcraState, Instant, Limiter, LogEntry, LogViewMut, SlidingCounterState,
};

/// The last decision's numbers, `[remaining, limit, reset_at, retry_at]`,
/// read from JS through `outPtr`: zeros after a cost that can never fit;
/// left as they were by calls that report no decision (`allow`, a new key
/// refused by a full keyed store).
#[derive(Default)]
pub(crate) struct Last {
    pub(crate) out: [f64; 4],
}

impl Last {
    fn record(&mut self, d: Decision) {
        self.out = [
            d.remaining as f64,
            d.limit as f64,
            d.reset_at.as_micros() as f64,
            d.retry_at.as_micros() as f64,
        ];
    }
    pub(crate) fn set(&mut self, r: Result<Decision, CostError>) -> i32 {
        match r {
            Ok(d) => {
                self.record(d);
                i32::from(d.allowed)
            }
            Err(_) => {
                self.out = [0.0; 4];
                -1
            }
        }
    }
}

macro_rules! decision_getters {
    ($t:ty) => {
        impl $t {
            /// Address in wasm memory of `[remaining, limit, resetAt, retryAt]`
            /// of the last decision (f64s; stable for this object's life).
            pub fn out_ptr(&self) -> *const f64 {
                self.last.out.as_ptr()
            }
            /// The last decision's `[remaining, limit, reset_at, retry_at]`.
            pub fn last(&self) -> [f64; 4] {
                self.last.out
            }
        }
    };
}

/// One limiter with its state: the JS `TokenBucket` (a GCRA),
/// `SlidingLog` or `SlidingWindow` (a sliding counter).
pub struct Single {
    machine: Machine,
    state: State,
    last: Last,
    taken: u64,
}

fn at(now_us: f64) -> Instant {
    Instant::from_micros(int(now_us))
}

impl Single {
    /// A GCRA: `capacity` tokens refilled with `amount` per `period_us`;
    /// a bad config gives the offending field's name.
    pub fn gcra(capacity: f64, amount: f64, period_us: f64) -> Result<Single, &'static str> {
        Machine::gcra(capacity, amount, period_us).map(Self::of)
    }

    /// A sliding log: `limit` per `window_us` in `slots` (8, 64 or 256)
    /// entries; any other slot count gives `"slots"`.
    pub fn sliding_log(limit: f64, window_us: f64, slots: f64) -> Result<Single, &'static str> {
        Machine::sliding_log(limit, window_us, slots).map(Self::of)
    }

    /// An O(1) sliding window counter: `limit` per `window_us`.
    pub fn sliding_counter(limit: f64, window_us: f64) -> Result<Single, &'static str> {
        Machine::sliding_counter(limit, window_us).map(Self::of)
    }

    pub(crate) fn of(machine: Machine) -> Single {
        Single {
            state: machine.fresh(),
            machine,
            last: Last::default(),
            taken: 0,
        }
    }

    /// Consume `cost` at `now_us` if allowed.
    pub fn check(&mut self, now_us: f64, cost: f64) -> i32 {
        let r = self.machine.check(&mut self.state, at(now_us), int(cost));
        self.last.set(r)
    }
    /// What `check` would say.
    pub fn peek(&mut self, now_us: f64, cost: f64) -> i32 {
        let r = self.machine.peek(&self.state, at(now_us), int(cost));
        self.last.set(r)
    }
    /// `check`'s status alone (the decision's numbers are not kept): the
    /// JS `allow()`.
    pub fn allow(&mut self, now_us: f64, cost: f64) -> i32 {
        match self.machine.allow(&mut self.state, at(now_us), int(cost)) {
            Ok(allowed) => i32::from(allowed),
            Err(_) => -1,
        }
    }
    /// True when the state holds nothing at `now_us` (it can be dropped).
    pub fn is_idle(&self, now_us: f64) -> bool {
        self.machine.is_idle(&self.state, at(now_us))
    }

    /// A GCRA's: take up to `n`; returns core's status (`1` allowed, `0`
    /// denied) and leaves how many were taken in [`taken`](Single::taken).
    /// `-1` (nothing taken) for the other kinds.
    pub fn at_most(&mut self, now_us: f64, n: f64) -> i32 {
        self.taken = 0;
        let (Machine::Gcra(g), State::Gcra(st)) = (&self.machine, &mut self.state) else {
            return -1;
        };
        let t = g.check_at_most(st, at(now_us), int(n));
        self.taken = t.taken;
        self.last.set(Ok(t.decision))
    }
    /// Tokens taken by the last `at_most`.
    pub fn taken(&self) -> f64 {
        self.taken as f64
    }
    /// A GCRA's: give back up to `n` tokens, never above full. `-1` for
    /// the other kinds.
    pub fn refund(&mut self, now_us: f64, n: f64) -> i32 {
        let (Machine::Gcra(g), State::Gcra(st)) = (&self.machine, &mut self.state) else {
            return -1;
        };
        let d = g.refund(st, at(now_us), int(n));
        self.last.set(Ok(d))
    }

    /// The state as numbers (integers ≤ 2^53 − 1), handed to `each` in
    /// order: a GCRA's `[tat, rem]`, a log's `[last, at₀, cost₀, at₁, cost₁,
    /// …]`, a counter's `[start, prev, curr]`.
    pub fn export_state(&self, mut each: impl FnMut(f64)) {
        match &self.state {
            State::Gcra(s) => [s.tat, s.rem].into_iter().for_each(|x| each(x as f64)),
            State::Counter(s) => [s.start, s.prev, s.curr]
                .into_iter()
                .for_each(|x| each(x as f64)),
            state => {
                // A log's (fresh: never, made of its kind at construction).
                if let Some(log) = state.log() {
                    each(log.last() as f64);
                    for e in log.entries() {
                        each(e.at as f64);
                        each(e.cost as f64);
                    }
                }
            }
        }
    }

    /// Restore a state made by `export_state`; false (and unchanged) if
    /// malformed (a wrong length, non-integers, a log's entries out of
    /// order or more than its slots).
    pub fn import_state(&mut self, v: &[f64]) -> bool {
        if !v.iter().all(|x| valid(*x)) {
            return false;
        }
        match (&mut self.state, v) {
            (State::Gcra(s), [tat, rem]) => {
                *s = GcraState {
                    tat: int(*tat),
                    rem: int(*rem),
                };
                true
            }
            (State::Counter(s), [start, prev, curr]) => {
                *s = SlidingCounterState {
                    start: int(*start),
                    prev: int(*prev),
                    curr: int(*curr),
                };
                true
            }
            (state, v) => match self.machine {
                Machine::Log(_, slots) => import_log(state.log_mut(slots), v),
                _ => false,
            },
        }
    }
}
decision_getters!(Single);

/// `[last, at₀, cost₀, …]` into `log` if well formed (odd length, entries
/// in order, no more than its slots).
fn import_log(mut log: LogViewMut<'_>, v: &[f64]) -> bool {
    let Some((last, flat)) = v.split_first() else {
        return false;
    };
    if !flat.len().is_multiple_of(2) {
        return false;
    }
    let entries = flat.chunks_exact(2).map(|c| match c {
        [at, cost] => LogEntry {
            at: int(*at),
            cost: int(*cost),
        },
        _ => LogEntry { at: 0, cost: 0 },
    });
    log.restore(int(*last), entries)
}
