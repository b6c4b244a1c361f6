//! [`AtomicGcra`]: the same GCRA shared across threads and interrupt handlers,
//! lock-free over one `portable_atomic::AtomicU64`.
//!
//! The state word packs the TAT's whole microseconds (below 2^53) in the high
//! 53 bits and its sub-microsecond remainder in the low 11 bits, so the
//! reduced rate denominator `a` (see [`Gcra::reduced_rate`]) must be at most
//! 2048. That covers every rate whose `period / amount` is a whole number of
//! microseconds and most others (3/s, 7/s, 1000/s, 7 000 000/min…); a rate
//! like 2049/s is rejected at construction with [`ConfigError::Invalid`] —
//! use the plain [`Gcra`] behind a lock for it.
//!
//! Every decision is exactly what [`Gcra::check`] says for the same state;
//! a denial writes nothing.
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

use crate::{ConfigError, CostError, Decision, Gcra, GcraState, Instant};

const REM_BITS: u32 = 11;
const REM_MASK: u64 = (1 << REM_BITS) - 1;
/// The largest reduced-rate denominator an [`AtomicGcra`] can hold.
pub const MAX_ATOMIC_DENOMINATOR: u64 = 1 << REM_BITS;

/// A lock-free GCRA limiter: one bucket shared by reference.
#[derive(Debug)]
pub struct AtomicGcra {
    gcra: Gcra,
    word: AtomicU64,
}

#[inline]
const fn pack(s: GcraState) -> u64 {
    (s.tat << REM_BITS) | s.rem
}

#[inline]
const fn unpack(w: u64) -> GcraState {
    GcraState {
        tat: w >> REM_BITS,
        rem: w & REM_MASK,
    }
}

impl AtomicGcra {
    /// A full bucket for `gcra`; errors when its rate cannot be packed (see module docs).
    pub const fn new(gcra: Gcra) -> Result<AtomicGcra, ConfigError> {
        AtomicGcra::with_state(gcra, GcraState { tat: 0, rem: 0 })
    }

    /// Start from a saved state (as produced by [`state`](AtomicGcra::state) or the pure [`Gcra`]).
    ///
    /// A `tat` at or beyond 2^53 µs cannot come from core; it is rejected.
    pub const fn with_state(gcra: Gcra, state: GcraState) -> Result<AtomicGcra, ConfigError> {
        if gcra.reduced_rate().1 > MAX_ATOMIC_DENOMINATOR {
            return Err(ConfigError::Invalid {
                field: "amount",
                reason: "and period reduce to a fraction whose denominator exceeds 2048; AtomicGcra cannot pack it (use Gcra behind a lock)",
            });
        }
        if state.tat >= 1 << 53 || state.rem >= gcra.reduced_rate().1 {
            return Err(ConfigError::Invalid {
                field: "state",
                reason: "is outside what core produces",
            });
        }
        Ok(AtomicGcra {
            gcra,
            word: AtomicU64::new(pack(state)),
        })
    }

    /// The configuration.
    pub const fn config(&self) -> &Gcra {
        &self.gcra
    }

    /// A snapshot of the current state.
    pub fn state(&self) -> GcraState {
        unpack(self.word.load(Ordering::Acquire))
    }

    /// The one compare-and-swap loop: run `f` on a copy of the state and
    /// publish the result if `f` asks to write and the state changed.
    #[inline]
    fn update<T>(&self, f: impl FnMut(&mut GcraState) -> (T, bool)) -> T {
        self.update_from(self.word.load(Ordering::Acquire), f)
    }

    /// [`update`](AtomicGcra::update) starting from the word `cur` already
    /// loaded.
    #[inline]
    fn update_from<T>(&self, mut cur: u64, mut f: impl FnMut(&mut GcraState) -> (T, bool)) -> T {
        loop {
            let mut s = unpack(cur);
            let (out, write) = f(&mut s);
            let next = pack(s);
            if !write || next == cur {
                return out;
            }
            match self
                .word
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return out,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Consume `cost` if available: [`Gcra::check`] in a compare-and-swap
    /// loop; a denial writes nothing.
    #[inline(always)]
    pub fn check(&self, now: Instant, cost: u64) -> Result<Decision, CostError> {
        // A denial writes nothing: the commonest is decided on one load,
        // which the admission below starts from (one read of a contended
        // word, not two).
        let cur = self.word.load(Ordering::Acquire);
        if let Some(d) = self.gcra.one_token_denial(&unpack(cur), now, cost) {
            return Ok(d);
        }
        self.admit(cur, now, cost)
    }

    /// [`check`](AtomicGcra::check) past the one-load denial, from the word
    /// `cur` it loaded.
    #[inline]
    fn admit(&self, cur: u64, now: Instant, cost: u64) -> Result<Decision, CostError> {
        // Only the admission runs inside the loop (for one token, no
        // division); the figures of the decision are worked out once,
        // after it.
        let admission = self.update_from(cur, |s| {
            let admission = self.gcra.admit(s, now, cost);
            let next = match &admission {
                Ok(a) if cost > 0 => a.next_state(),
                _ => None,
            };
            if let Some(next) = next {
                *s = next;
            }
            (admission, next.is_some())
        })?;
        Ok(self.gcra.decision(&admission, now, cost))
    }

    /// What [`check`](AtomicGcra::check) would say, consuming nothing.
    #[inline]
    pub fn peek(&self, now: Instant, cost: u64) -> Result<Decision, CostError> {
        self.gcra.peek(&self.state(), now, cost)
    }

    /// Take up to `n` tokens, as [`Gcra::check_at_most`].
    pub fn check_at_most(&self, now: Instant, n: u64) -> crate::Taken {
        self.update(|s| (self.gcra.check_at_most(s, now, n), true))
    }

    /// Give back up to `n` tokens, never above full, as [`Gcra::refund`].
    pub fn refund(&self, now: Instant, n: u64) -> Decision {
        self.update(|s| (self.gcra.refund(s, now, n), true))
    }

    /// Back to a full bucket.
    pub fn reset(&self) {
        self.word.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Duration;

    #[test]
    fn pack_round_trips_extremes() {
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
            assert_eq!(unpack(pack(s)), s);
        }
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
