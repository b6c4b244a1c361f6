//! The limiters (feature `limiters`, the main entry `ratebound`): GCRA,
//! sliding log and sliding counter objects with their state. Numbers in
//! (times in µs), status codes out, a decision's numbers in one output
//! array per object that JS reads through a view of memory; exported to JS
//! by [`abi`](crate::abi).

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use crate::{int, valid};
use ratebound_core::{
    CostError, Decision, Duration, Gcra as CoreGcra, GcraState, Instant, Limiter, LogEntry,
    SlidingCounter as CoreCounter, SlidingCounterState, SlidingLog as CoreLog, SlidingLogState,
};

/// The last decision's numbers, `[remaining, limit, reset_at, retry_at]`,
/// read from JS through `outPtr`: zeros after a cost that can never fit;
/// left as they were by calls that report no decision (`allow`, a new key
/// refused by a full keyed store).
#[derive(Default)]
pub(crate) struct Last {
    pub(crate) out: [f64; 4],
}

/// A decision's status code (1 allowed, 0 denied, -1 the cost can never
/// fit) without keeping its numbers.
fn status(r: Result<Decision, CostError>) -> i32 {
    match r {
        Ok(d) => i32::from(d.allowed),
        Err(_) => -1,
    }
}

impl Last {
    pub(crate) fn record(&mut self, d: Decision) {
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

/// A GCRA token bucket with its state.
pub struct Gcra {
    cfg: CoreGcra,
    st: GcraState,
    last: Last,
    taken: u64,
}

impl Gcra {
    /// `capacity` tokens refilled with `amount` per `period_us`; throws the
    /// offending field's name on a bad config.
    pub fn new(capacity: f64, amount: f64, period_us: f64) -> Result<Gcra, &'static str> {
        let cfg = CoreGcra::new(
            int(capacity),
            int(amount),
            Duration::from_micros(int(period_us)),
        )
        .map_err(|e| e.field())?;
        Ok(Gcra {
            cfg,
            st: GcraState::default(),
            last: Last::default(),
            taken: 0,
        })
    }
    /// Consume `cost` at `now_us` if allowed.
    pub fn check(&mut self, now_us: f64, cost: f64) -> i32 {
        self.last.set(
            self.cfg
                .check(&mut self.st, Instant::from_micros(int(now_us)), int(cost)),
        )
    }
    /// What `check` would say.
    pub fn peek(&mut self, now_us: f64, cost: f64) -> i32 {
        self.last.set(
            self.cfg
                .peek(&self.st, Instant::from_micros(int(now_us)), int(cost)),
        )
    }
    /// `check`'s status alone (the decision's numbers are not kept): the
    /// JS `allow()`.
    pub fn allow(&mut self, now_us: f64, cost: f64) -> i32 {
        status(
            self.cfg
                .check(&mut self.st, Instant::from_micros(int(now_us)), int(cost)),
        )
    }
    /// Take up to `n`; returns core's status (`1` allowed, `0` denied) and
    /// leaves how many were taken in [`taken`](Gcra::taken).
    pub fn at_most(&mut self, now_us: f64, n: f64) -> i32 {
        let t = self
            .cfg
            .check_at_most(&mut self.st, Instant::from_micros(int(now_us)), int(n));
        self.taken = t.taken;
        self.last.set(Ok(t.decision))
    }
    /// Tokens taken by the last `atMost`.
    pub fn taken(&self) -> f64 {
        self.taken as f64
    }
    /// Give back up to `n` tokens, never above full.
    pub fn refund(&mut self, now_us: f64, n: f64) -> i32 {
        self.last.set(Ok(self.cfg.refund(
            &mut self.st,
            Instant::from_micros(int(now_us)),
            int(n),
        )))
    }
    /// True when the bucket is full at `now_us` (its state can be dropped).
    pub fn is_idle(&self, now_us: f64) -> bool {
        self.cfg
            .is_full(&self.st, Instant::from_micros(int(now_us)))
    }
    /// The state as `[tat, rem]` (integers ≤ 2^53 − 1).
    pub fn export_state(&self) -> Vec<f64> {
        vec![self.st.tat as f64, self.st.rem as f64]
    }
    /// Restore a state made by `exportState`; false (and unchanged) if malformed.
    pub fn import_state(&mut self, s: &[f64]) -> bool {
        match s {
            [tat, rem] if valid(*tat) && valid(*rem) => {
                self.st = GcraState {
                    tat: int(*tat),
                    rem: int(*rem),
                };
                true
            }
            _ => false,
        }
    }
}
decision_getters!(Gcra);

/// A sliding log of one of the supported slot counts.
enum Log {
    S8(CoreLog<8>, Box<SlidingLogState<8>>),
    S64(CoreLog<64>, Box<SlidingLogState<64>>),
    S256(CoreLog<256>, Box<SlidingLogState<256>>),
}

macro_rules! with_log {
    ($log:expr, |$l:ident, $s:ident| $body:expr) => {
        match $log {
            Log::S8($l, $s) => $body,
            Log::S64($l, $s) => $body,
            Log::S256($l, $s) => $body,
        }
    };
}

/// A sliding log in `slots` (8, 64 or 256) entries; beyond them entries merge
/// conservatively (core's rule): never over the limit.
pub struct SlidingLog {
    log: Log,
    last: Last,
}

impl SlidingLog {
    /// `limit` per `window_us`, in a log of `slots` entries (8, 64 or 256;
    /// anything else throws `"slots"`).
    pub fn new(limit: f64, window_us: f64, slots: f64) -> Result<SlidingLog, &'static str> {
        let (limit, window) = (int(limit), Duration::from_micros(int(window_us)));
        let log = match int(slots) {
            8 => Log::S8(
                CoreLog::new(limit, window).map_err(|e| e.field())?,
                Box::default(),
            ),
            64 => Log::S64(
                CoreLog::new(limit, window).map_err(|e| e.field())?,
                Box::default(),
            ),
            256 => Log::S256(
                CoreLog::new(limit, window).map_err(|e| e.field())?,
                Box::default(),
            ),
            _ => return Err("slots"),
        };
        Ok(SlidingLog {
            log,
            last: Last::default(),
        })
    }
    /// Consume `cost` at `now_us` if allowed.
    pub fn check(&mut self, now_us: f64, cost: f64) -> i32 {
        let now = Instant::from_micros(int(now_us));
        let r = with_log!(&mut self.log, |l, s| l.check(s, now, int(cost)));
        self.last.set(r)
    }
    /// `check`'s status alone (the JS `allow()`).
    pub fn allow(&mut self, now_us: f64, cost: f64) -> i32 {
        let now = Instant::from_micros(int(now_us));
        status(with_log!(&mut self.log, |l, s| l.check(s, now, int(cost))))
    }
    /// What `check` would say.
    pub fn peek(&mut self, now_us: f64, cost: f64) -> i32 {
        let now = Instant::from_micros(int(now_us));
        let r = with_log!(&self.log, |l, s| l.peek(s, now, int(cost)));
        self.last.set(r)
    }
    /// True when nothing counts any more at `now_us` (the state can be dropped).
    pub fn is_idle(&self, now_us: f64) -> bool {
        let now = Instant::from_micros(int(now_us));
        with_log!(&self.log, |l, s| Limiter::is_idle(l, &**s, now))
    }
    /// Restore a state made by `exportState`; false (and unchanged) if
    /// malformed (odd length, non-integers, more entries than slots).
    pub fn import_state(&mut self, v: &[f64]) -> bool {
        if v.is_empty() || v.len().is_multiple_of(2) || !v.iter().all(|x| valid(*x)) {
            return false;
        }
        with_log!(&mut self.log, |_l, s| {
            match restore_log(v) {
                Some(st) => {
                    **s = st;
                    true
                }
                None => false,
            }
        })
    }
    /// The state as `[last, at₀, cost₀, at₁, cost₁, …]`.
    pub fn export_state(&self) -> Vec<f64> {
        with_log!(&self.log, |_l, s| {
            let mut v = vec![s.last() as f64];
            for e in s.entries() {
                v.push(e.at as f64);
                v.push(e.cost as f64);
            }
            v
        })
    }
}
decision_getters!(SlidingLog);

fn restore_log<const N: usize>(v: &[f64]) -> Option<SlidingLogState<N>> {
    let (last, flat) = v.split_first()?;
    let entries = flat.chunks_exact(2).map(|c| match c {
        [at, cost] => LogEntry {
            at: int(*at),
            cost: int(*cost),
        },
        _ => LogEntry { at: 0, cost: 0 },
    });
    SlidingLogState::from_parts(int(*last), entries)
}

/// An O(1) sliding window counter.
pub struct SlidingCounter {
    cfg: CoreCounter,
    st: SlidingCounterState,
    last: Last,
}

impl SlidingCounter {
    /// `limit` per `window_us`.
    pub fn new(limit: f64, window_us: f64) -> Result<SlidingCounter, &'static str> {
        let cfg = CoreCounter::new(int(limit), Duration::from_micros(int(window_us)))
            .map_err(|e| e.field())?;
        Ok(SlidingCounter {
            cfg,
            st: SlidingCounterState::default(),
            last: Last::default(),
        })
    }
    /// Consume `cost` at `now_us` if allowed.
    pub fn check(&mut self, now_us: f64, cost: f64) -> i32 {
        self.last.set(
            self.cfg
                .check(&mut self.st, Instant::from_micros(int(now_us)), int(cost)),
        )
    }
    /// `check`'s status alone (the JS `allow()`).
    pub fn allow(&mut self, now_us: f64, cost: f64) -> i32 {
        status(
            self.cfg
                .check(&mut self.st, Instant::from_micros(int(now_us)), int(cost)),
        )
    }
    /// What `check` would say.
    pub fn peek(&mut self, now_us: f64, cost: f64) -> i32 {
        self.last.set(
            self.cfg
                .peek(&self.st, Instant::from_micros(int(now_us)), int(cost)),
        )
    }
    /// True when nothing counts any more at `now_us` (the state can be dropped).
    pub fn is_idle(&self, now_us: f64) -> bool {
        Limiter::is_idle(&self.cfg, &self.st, Instant::from_micros(int(now_us)))
    }
    /// The state as `[start, prev, curr]`.
    pub fn export_state(&self) -> Vec<f64> {
        vec![
            self.st.start as f64,
            self.st.prev as f64,
            self.st.curr as f64,
        ]
    }
    /// Restore a state made by `exportState`; false (and unchanged) if malformed.
    pub fn import_state(&mut self, s: &[f64]) -> bool {
        match s {
            [a, b, c] if valid(*a) && valid(*b) && valid(*c) => {
                self.st = SlidingCounterState {
                    start: int(*a),
                    prev: int(*b),
                    curr: int(*c),
                };
                true
            }
            _ => false,
        }
    }
}
decision_getters!(SlidingCounter);
