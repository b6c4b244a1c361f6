//! [`AtomicGcra`]: the same GCRA shared across threads and interrupt handlers,
//! lock-free over one `portable_atomic::AtomicU64`.
//!
//! The state word holds the TAT as one integer, `tat · a + rem` in units
//! of `1/a` µs, where `a` is the reduced rate denominator (see
//! [`Gcra::reduced_rate`]): an admission inside the compare-and-swap loop is
//! then one `max`, one comparison and one addition. Every TAT core produces
//! is below 2^53 µs, so the word fits 64 bits when `a` is at most 2048. That
//! covers every rate whose `period / amount` is a whole number of
//! microseconds and most others (3/s, 7/s, 1000/s, 7 000 000/min…); a rate
//! like 2049/s is rejected at construction with [`ConfigError::Invalid`] —
//! use the plain [`Gcra`] behind a lock for it.
//!
//! Every decision is exactly what [`Gcra::check`] says for the same state;
//! a denial writes nothing.
//!
//! On x86_64 and aarch64 the word has 128 bytes of cache to itself, so that
//! threads writing it do not evict the configuration other cores read on
//! every check: an `AtomicGcra` takes 256 bytes there, and 136 bytes on
//! every other target (microcontrollers among them, where padding would
//! only waste RAM).
//!
//! ```
//! use ratebound_core::{AtomicGcra, Gcra, Instant};
//! static LIMITER: AtomicGcra = match AtomicGcra::new(match Gcra::per_second(10) {
//!     Ok(g) => g,
//!     Err(_) => panic!("bad config"),
//! }) {
//!     Ok(l) => l,
//!     Err(_) => panic!("rate not packable"),
//! };
//! let now = Instant::from_secs(1);
//! assert!(LIMITER.check(now, 10).unwrap().allowed);
//! assert!(!LIMITER.check(now, 1).unwrap().allowed);
//! ```

use portable_atomic::{AtomicU64, Ordering};

use crate::gcra::Timeline;
use crate::{ConfigError, CostError, Decision, Gcra, GcraState, Instant};

// The size the module docs state, checked wherever the crate is built.
const _: () = assert!(
    core::mem::size_of::<AtomicGcra>()
        == if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
            256
        } else {
            136
        }
);

/// The largest reduced-rate denominator an [`AtomicGcra`] can hold.
pub const MAX_ATOMIC_DENOMINATOR: u64 = Timeline::MAX_DENOMINATOR;

/// A lock-free GCRA limiter: one bucket shared by reference.
#[derive(Debug)]
pub struct AtomicGcra {
    word: Word,
    gcra: Gcra,
    line: Timeline,
}

/// The state word, on cache lines of its own where threads share caches
/// (see the module docs).
#[cfg_attr(any(target_arch = "x86_64", target_arch = "aarch64"), repr(align(128)))]
#[derive(Debug)]
struct Word(AtomicU64);

impl AtomicGcra {
    /// A full bucket for `gcra`; errors when its rate cannot be packed (see module docs).
    pub const fn new(gcra: Gcra) -> Result<AtomicGcra, ConfigError> {
        AtomicGcra::with_state(gcra, GcraState { tat: 0, rem: 0 })
    }

    /// Start from a saved state (as produced by [`state`](AtomicGcra::state) or the pure [`Gcra`]).
    ///
    /// A `tat` at or beyond 2^53 µs cannot come from core; it is rejected. A
    /// state written under another config is read as core reads it (its instant
    /// moves by less than 1 µs, see [`reconfigure`](crate::reconfigure)).
    pub const fn with_state(gcra: Gcra, state: GcraState) -> Result<AtomicGcra, ConfigError> {
        let Some(line) = Timeline::new(&gcra) else {
            return Err(ConfigError::Invalid {
                field: "amount",
                reason: "and period reduce to a fraction whose denominator exceeds 2048; AtomicGcra cannot pack it (use Gcra behind a lock)",
            });
        };
        // A state another config wrote may hold a finer `rem`: like the
        // pure GCRA, count it as the next whole µs.
        let state = match gcra.reduced_rate() {
            (_, a) if state.rem >= a => GcraState {
                tat: state.tat.saturating_add(1),
                rem: 0,
            },
            _ => state,
        };
        let Some(w) = line.point(state) else {
            return Err(ConfigError::Invalid {
                field: "state",
                reason: "is outside what core produces",
            });
        };
        Ok(AtomicGcra {
            gcra,
            line,
            word: Word(AtomicU64::new(w)),
        })
    }

    /// The configuration.
    pub const fn config(&self) -> &Gcra {
        &self.gcra
    }

    /// A snapshot of the current state.
    pub fn state(&self) -> GcraState {
        self.line.state(self.word.0.load(Ordering::Acquire))
    }

    /// Run `f` on a copy of the state in a compare-and-swap loop and
    /// publish the result if it changed. For the rarer operations; `check`
    /// has a loop of its own that works on the word directly.
    fn update<T>(&self, mut f: impl FnMut(&mut GcraState) -> T) -> T {
        let mut cur = self.word.0.load(Ordering::Acquire);
        loop {
            let mut s = self.line.state(cur);
            let out = f(&mut s);
            // Core never leaves a state off the timeline; were it to, the
            // word keeps its value rather than take a wrong one.
            let next = self.line.point(s).unwrap_or(cur);
            if next == cur {
                return out;
            }
            match self
                .word
                .0
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return out,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Consume `cost` if available: exactly [`Gcra::check`], in a
    /// compare-and-swap loop; a denial writes nothing.
    #[inline(always)]
    pub fn check(&self, now: Instant, cost: u64) -> Result<Decision, CostError> {
        // The commonest denial is decided on one load, which the admission
        // below starts from (one read of a contended word, not two).
        let cur = self.word.0.load(Ordering::Acquire);
        if let Some(d) = self.line.one_token_denial(&self.gcra, cur, now, cost) {
            return Ok(d);
        }
        self.admit(cur, now, cost)
    }

    /// [`check`](AtomicGcra::check) past the one-load denial, from the word
    /// `cur` it loaded. Inlined with `check`, so that a caller reading only
    /// `allowed` skips the figures.
    #[inline(always)]
    fn admit(&self, mut cur: u64, now: Instant, cost: u64) -> Result<Decision, CostError> {
        let window = self.line.window(&self.gcra, now, cost)?;
        // Only the admission runs inside the loop; the figures of the
        // decision are worked out once, after it.
        let (base, admitted) = loop {
            let (base, next) = window.admit(cur);
            let next = match next {
                // A cost of zero always fits and changes nothing.
                _ if cost == 0 => break (base, true),
                None => break (base, false),
                Some(next) => next,
            };
            match self
                .word
                .0
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break (base, true),
                Err(actual) => cur = actual,
            }
        };
        Ok(self.line.decision(&self.gcra, base, admitted, now, cost))
    }

    /// What [`check`](AtomicGcra::check) would say, consuming nothing.
    #[inline]
    pub fn peek(&self, now: Instant, cost: u64) -> Result<Decision, CostError> {
        self.gcra.peek(&self.state(), now, cost)
    }

    /// Take up to `n` tokens, as [`Gcra::check_at_most`].
    pub fn check_at_most(&self, now: Instant, n: u64) -> crate::Taken {
        self.update(|s| self.gcra.check_at_most(s, now, n))
    }

    /// Give back up to `n` tokens, never above full, as [`Gcra::refund`].
    pub fn refund(&self, now: Instant, n: u64) -> Decision {
        self.update(|s| self.gcra.refund(s, now, n))
    }

    /// Back to a full bucket.
    pub fn reset(&self) {
        self.word.0.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Duration;

    #[test]
    fn the_word_round_trips_extremes() {
        // 2048 tokens per 1,000,001 µs: the largest denominator, 2048.
        let line =
            Timeline::new(&Gcra::new(10, 2048, Duration::from_micros(1_000_001)).unwrap()).unwrap();
        for s in [
            GcraState { tat: 0, rem: 0 },
            GcraState {
                tat: (1 << 53) - 1,
                rem: 2047,
            },
            GcraState {
                tat: 1_700_000_000_000_000,
                rem: 2,
            },
        ] {
            assert_eq!(line.state(line.point(s).unwrap()), s);
        }
        assert_eq!(line.point(GcraState { tat: 0, rem: 2048 }), None);
    }

    #[test]
    fn rejects_unpackable_rates() {
        let g = Gcra::new(10, 2049, Duration::from_secs(1)).unwrap();
        assert!(matches!(
            AtomicGcra::new(g),
            Err(ConfigError::Invalid {
                field: "amount",
                ..
            })
        ));
        let ok = Gcra::new(10, 2048, Duration::from_secs(1)).unwrap();
        assert!(AtomicGcra::new(ok).is_ok());
        assert!(AtomicGcra::with_state(
            ok,
            GcraState {
                tat: 1 << 53,
                rem: 0
            }
        )
        .is_err());
    }

    #[test]
    fn a_restored_state_at_the_top_of_the_timeline_is_denied_not_overflowed() {
        // a = 2048 and the largest TAT `with_state` takes: the word is
        // 2^64 − 1, and a cost of 2 would overflow it were it added first.
        let g = Gcra::new(2, 2048, Duration::from_micros(1)).unwrap();
        let top = GcraState {
            tat: (1 << 53) - 1,
            rem: 2047,
        };
        let l = AtomicGcra::with_state(g, top).unwrap();
        let mut s = top;
        let now = Instant::from_micros(0);
        assert_eq!(l.check(now, 2), g.check(&mut s, now, 2));
        assert!(!l.check(now, 2).unwrap().allowed);
        assert_eq!(l.check(now, 1), g.check(&mut s, now, 1));
        assert_eq!(l.state(), top);
    }

    #[test]
    fn the_last_token_fits_exactly_at_the_edge() {
        // 3 per second: after 2 tokens the TAT is `now` plus the burst
        // window less one token, exactly; the third token still fits.
        let l = AtomicGcra::new(Gcra::per_second(3).unwrap()).unwrap();
        let now = Instant::from_secs(5);
        assert!(l.check(now, 2).unwrap().allowed);
        let last = l.check(now, 1).unwrap();
        assert!(last.allowed);
        assert_eq!(last.remaining, 0);
        let denied = l.check(now, 1).unwrap();
        assert!(!denied.allowed);
        assert_eq!(denied.retry_at, Instant::from_micros(5_333_334));
        assert_eq!(denied.reset_at, Instant::from_secs(6));
    }

    #[test]
    fn denial_writes_nothing() {
        let l = AtomicGcra::new(Gcra::new(3, 3, Duration::from_secs(1)).unwrap()).unwrap();
        let now = Instant::from_secs(9);
        assert!(l.check(now, 3).unwrap().allowed);
        let before = l.state();
        assert!(!l.check(now, 1).unwrap().allowed);
        assert_eq!(l.state(), before);
        assert_eq!(l.refund(now, 1).remaining, 1);
        assert_eq!(l.check_at_most(now, 5).taken, 1);
    }
}
