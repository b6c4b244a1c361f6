//! Token bucket as GCRA (the generic cell rate algorithm), exact to the token.
//!
//! A bucket holds up to `capacity` tokens and refills `amount` tokens every
//! `period`. GCRA stores no token count: it stores the *theoretical arrival
//! time* (TAT), the instant at which the bucket would be full again. A call
//! of cost `c` moves the TAT forward by `c × period / amount` and is allowed
//! when the TAT stays within `capacity × period / amount` of `now`.
//!
//! # Exactness
//!
//! `period / amount` is rarely a whole number of microseconds (3 per second
//! is 333 333⅓ µs), and rounding it would either lose a token of burst or
//! drift the rate. So the TAT is kept as a mixed number: whole microseconds
//! plus a remainder in units of `1 / a` µs, where `p / a` is `period / amount`
//! in lowest terms. Every comparison is then exact integer arithmetic, with all
//! values below 2^53 (checked at construction), which is what lets the Redis
//! script and the wasm build give bit-identical decisions.
//!
//! ```
//! use ratebound_core::{Duration, Gcra, GcraState, Instant};
//!
//! // 3 requests per second, bursts of 3.
//! let limiter = Gcra::new(3, 3, Duration::from_secs(1))?;
//! let mut state = GcraState::default(); // plain data: store it anywhere
//! let t0 = Instant::from_secs(1_700_000_000);
//!
//! for _ in 0..3 {
//!     assert!(limiter.check(&mut state, t0, 1)?.allowed);
//! }
//! let denied = limiter.check(&mut state, t0, 1)?;
//! assert!(!denied.allowed);
//! // The next token arrives after exactly 1/3 s, rounded up to the microsecond.
//! assert_eq!(denied.retry_after(t0), Duration::from_micros(333_334));
//! // A cost that can never fit is an error, not a denial.
//! assert!(limiter.check(&mut state, t0, 4).is_err());
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```

use crate::{CostError, Decision, Instant, Limiter, MAX_TICKS};

mod config;
pub use config::GcraConfig;
mod mixed;
use mixed::Mixed;

#[cfg(feature = "atomic")]
mod linear;
#[cfg(feature = "atomic")]
pub(crate) use linear::Timeline;

/// The largest burst window `capacity × period / amount` accepted: 2^50 µs (≈ 35.7 years).
pub const MAX_BURST_WINDOW_MICROS: u64 = 1 << 50;

/// A GCRA token bucket configuration: `capacity` tokens, refilled at
/// `amount` per `period`. Validated once; deciding cannot fail for config reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "GcraConfig", into = "GcraConfig"))]
pub struct Gcra {
    capacity: u64,
    amount: u64,
    period: u64,
    /// `period / amount` in lowest terms: `p` µs per `a` tokens.
    p: u64,
    a: u64,
    /// The burst window `capacity × p / a` as whole µs and remainder in 1/a µs.
    tau_us: u64,
    tau_rem: u64,
    /// One token's interval `p / a`, as whole µs and remainder.
    t_us: u64,
    t_rem: u64,
    /// The burst window less one token's interval, `(capacity − 1) × p / a`:
    /// a check of one token is denied exactly when the TAT is past `now`
    /// plus this, so the commonest denial needs neither a division nor the
    /// count of tokens left.
    dvt_us: u64,
    dvt_rem: u64,
    /// `⌊(2^64 − 1) / p⌋`: divides by `p` with a multiplication ([`Gcra::div_p`]).
    p_inv: u64,
}

/// The state of one GCRA bucket: its theoretical arrival time (TAT).
///
/// Absolute plain data — two integers relative to the caller's epoch — so it
/// can live in an atomic, a Redis hash, a KV store or a Durable Object. The
/// default (`0, 0`) is a full bucket. A state is meaningful for the config
/// that produced it; read under another config (see [`reconfigure`](crate::reconfigure)),
/// a `rem` at or above that config's `a` counts as the next whole µs past
/// `tat` — never earlier than what it meant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct GcraState {
    /// Whole microseconds of the TAT.
    pub tat: u64,
    /// Sub-microsecond part of the TAT, in units of `1 / a` µs (`a` from
    /// [`Gcra::reduced_rate`]); always `< a` when written by core.
    pub rem: u64,
}

/// The result of [`Gcra::check_at_most`]: how much was taken, and the decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taken {
    /// Tokens consumed, between 0 and the `n` asked for.
    pub taken: u64,
    /// `allowed` is true when `taken > 0` (or `n == 0`); on denial `retry_at`
    /// is when one token will be available.
    pub decision: Decision,
}

/// Whether a cost fits, decided without the figures a [`Decision`] reports,
/// which [`Gcra::decision`] works out from it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Admission {
    /// The TAT the admission starts from.
    base: Mixed,
    /// The TAT after admitting, or `None` when the cost does not fit.
    next: Option<Mixed>,
}

impl Gcra {
    /// The one error a GCRA decision has: a cost above the capacity can
    /// never be admitted, whatever the state (every path checks it here).
    #[inline(always)]
    pub(crate) fn fits_at_all(&self, cost: u64) -> Result<(), CostError> {
        if cost > self.capacity {
            return Err(CostError::InsufficientCapacity {
                cost,
                capacity: self.capacity,
            });
        }
        Ok(())
    }

    /// Whether `cost` fits at `now`: `cost` fits exactly when admitting it
    /// leaves the TAT within the burst window, which needs no division by
    /// the rate (none at all for one token, whose interval is precomputed).
    /// `cost == 0` always fits.
    #[inline]
    pub(crate) fn admit(
        &self,
        s: &GcraState,
        now: Instant,
        cost: u64,
    ) -> Result<Admission, CostError> {
        self.fits_at_all(cost)?;
        let n = now.as_micros();
        let base = self.base(s, n);
        let next = self.add(base, self.inc(cost));
        Ok(Admission {
            base,
            next: (cost == 0 || next <= self.limit(n)).then_some(next),
        })
    }

    /// The decision reporting `admission` of `cost` at `now`.
    #[inline]
    pub(crate) fn decision(&self, admission: &Admission, now: Instant, cost: u64) -> Decision {
        let n = now.as_micros();
        let avail = self.available(admission.base, n);
        match admission.next {
            Some(next) => Decision {
                allowed: true,
                remaining: avail.saturating_sub(cost),
                limit: self.capacity,
                reset_at: Instant::from_micros(Self::ceil(next)),
                retry_at: now,
            },
            None => self.denial(admission.base, avail, cost),
        }
    }

    /// A denial of `cost` from `base` (the stored TAT, past `now`) with
    /// `avail` tokens left: retry when `base + cost's interval − tau` comes.
    #[inline]
    fn denial(&self, base: Mixed, avail: u64, cost: u64) -> Decision {
        let x = self.sub(
            self.add(base, self.inc(cost)),
            Mixed {
                us: self.tau_us,
                fr: self.tau_rem,
            },
        );
        Decision {
            allowed: false,
            remaining: avail,
            limit: self.capacity,
            reset_at: Instant::from_micros(Self::ceil(base)),
            retry_at: Instant::from_micros(Self::ceil(x)),
        }
    }

    /// The commonest denial, decided by one comparison: one token asked,
    /// and the TAT `(tat, rem)` past `now` plus the burst window less one
    /// token, `(dvt_us, dvt_rem)`. No token fits, so none is left to count,
    /// and since `rem` and `dvt_rem` are both below `a`, the retry time
    /// `⌈tat + rem/a − dvt_us − dvt_rem/a⌉` is `tat − dvt_us`, plus one
    /// when `rem > dvt_rem`. `None` when the shortcut does not apply.
    #[inline(always)]
    pub(crate) fn one_token_denial(
        &self,
        s: &GcraState,
        now: Instant,
        cost: u64,
    ) -> Option<Decision> {
        if cost != 1 || s.rem >= self.a {
            return None;
        }
        let edge = now.as_micros() + self.dvt_us;
        if s.tat < edge || (s.tat == edge && s.rem <= self.dvt_rem) {
            return None;
        }
        Some(self.one_token_denial_of(s))
    }

    /// The figures of a one-token denial from `s` (see
    /// [`one_token_denial`](Gcra::one_token_denial)): nothing left, and a
    /// retry when the TAT less the burst window less one token comes.
    #[inline(always)]
    pub(crate) const fn one_token_denial_of(&self, s: &GcraState) -> Decision {
        Decision {
            allowed: false,
            remaining: 0,
            limit: self.capacity,
            reset_at: Instant::from_micros(s.tat.saturating_add((s.rem > 0) as u64)),
            retry_at: Instant::from_micros(
                (s.tat - self.dvt_us).saturating_add((s.rem > self.dvt_rem) as u64),
            ),
        }
    }

    // Always inlined on 64-bit hosts: left to the inliner it stayed a call
    // in criterion's `gcra_check_allow` loop, 14.6 ns a check instead of
    // 2.4. On wasm32 one copy, never inlined: forced into every call site
    // it cost the npm module 1.5 KB; as `#[inline]` each crate using it
    // kept a copy of its own (two in the npm module, 0.6 KB each), and the
    // npm `allow()` took 77 ns instead of 61 (`node bench/bench.mjs`; the
    // callers V8 compiles are smaller without it). On MCUs the inliner
    // decides: inlined, a check read for its verdict alone drops the
    // figures and the division they need (benches/embedded's 512-byte
    // bound on thumbv7em).
    #[cfg_attr(target_pointer_width = "64", inline(always))]
    #[cfg_attr(target_arch = "wasm32", inline(never))]
    #[cfg_attr(not(any(target_pointer_width = "64", target_arch = "wasm32")), inline)]
    fn decide(
        &self,
        s: &GcraState,
        now: Instant,
        cost: u64,
    ) -> Result<(Decision, Mixed), CostError> {
        let admission = self.admit(s, now, cost)?;
        let d = self.decision(&admission, now, cost);
        Ok((d, admission.next.unwrap_or(admission.base)))
    }

    /// Consume `cost` tokens if they are available at `now`; otherwise deny and
    /// leave `state` untouched.
    ///
    /// A `now` earlier than a previous call's sees the bucket as it was left
    /// (never fuller). `cost == 0` is always allowed and changes nothing.
    /// Errors only when `cost > capacity`.
    #[inline(always)]
    pub fn check(
        &self,
        state: &mut GcraState,
        now: Instant,
        cost: u64,
    ) -> Result<Decision, CostError> {
        if let Some(d) = self.one_token_denial(state, now, cost) {
            return Ok(d);
        }
        let (d, next) = self.decide(state, now, cost)?;
        if d.allowed && cost > 0 {
            *state = GcraState {
                tat: next.us,
                rem: next.fr,
            };
        }
        Ok(d)
    }

    /// [`check`](Gcra::check)'s verdict alone: the same admission and the
    /// same change of `state`, without the decision's figures (what remains,
    /// when to retry), which cost a division. For callers that only need
    /// the yes or no, such as the npm package's `allow()`.
    ///
    /// ```
    /// use ratebound_core::{Gcra, GcraState, Instant};
    /// let g = Gcra::per_second(2)?;
    /// let (mut s, now) = (GcraState::default(), Instant::from_secs(1));
    /// assert_eq!((g.allow(&mut s, now, 2), g.allow(&mut s, now, 1)), (Ok(true), Ok(false)));
    /// assert!(g.allow(&mut s, now, 3).is_err());
    /// # Ok::<(), ratebound_core::ConfigError>(())
    /// ```
    #[inline]
    pub fn allow(&self, state: &mut GcraState, now: Instant, cost: u64) -> Result<bool, CostError> {
        if self.one_token_denial(state, now, cost).is_some() {
            return Ok(false);
        }
        match self.admit(state, now, cost)?.next {
            Some(next) => {
                if cost > 0 {
                    *state = GcraState {
                        tat: next.us,
                        rem: next.fr,
                    };
                }
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// What [`check`](Gcra::check) would decide, consuming nothing.
    #[inline]
    pub fn peek(&self, state: &GcraState, now: Instant, cost: u64) -> Result<Decision, CostError> {
        if let Some(d) = self.one_token_denial(state, now, cost) {
            return Ok(d);
        }
        self.decide(state, now, cost).map(|(d, _)| d)
    }

    /// Take as many tokens as are available, up to `n`.
    ///
    /// Never errors: `n` above capacity is simply capped by what is there.
    /// When nothing is available the decision is a denial whose `retry_at` is
    /// when one token will be.
    pub fn check_at_most(&self, state: &mut GcraState, now: Instant, n: u64) -> Taken {
        let (_, avail) = self.position(state, now.as_micros());
        let want = if n > avail { avail } else { n };
        let cost = if want == 0 && n > 0 { 1 } else { want };
        match self.decide(state, now, cost) {
            Ok((decision, next)) if decision.allowed => {
                if want > 0 {
                    *state = GcraState {
                        tat: next.us,
                        rem: next.fr,
                    };
                }
                Taken {
                    taken: want,
                    decision,
                }
            }
            Ok((decision, _)) => Taken { taken: 0, decision },
            // Unreachable: cost <= avail <= capacity or cost == 1 <= capacity.
            Err(_) => Taken {
                taken: 0,
                decision: self.empty_decision(now),
            },
        }
    }

    fn empty_decision(&self, now: Instant) -> Decision {
        Decision {
            allowed: false,
            remaining: 0,
            limit: self.capacity,
            reset_at: now,
            retry_at: now,
        }
    }

    /// Give back `n` tokens (for a call that was admitted but did not happen).
    ///
    /// The bucket never rises above full: the refund is capped at what is
    /// missing at `now`, so refunding more than was taken grants nothing
    /// extra. Returns what [`peek`](Gcra::peek) of cost 0 says afterwards.
    pub fn refund(&self, state: &mut GcraState, now: Instant, n: u64) -> Decision {
        let n = if n > self.capacity { self.capacity } else { n };
        let tat = self.norm(state);
        let floor = Mixed {
            us: now.as_micros(),
            fr: 0,
        };
        if tat > floor {
            let back = self.inc(n);
            let lowered = if self.add(floor, back) <= tat {
                self.sub(tat, back)
            } else {
                floor
            };
            *state = GcraState {
                tat: lowered.us,
                rem: lowered.fr,
            };
        }
        match self.decide(state, now, 0) {
            Ok((d, _)) => d,
            Err(_) => self.empty_decision(now),
        }
    }

    /// Take `n` tokens (at most `capacity`) whether or not they are there:
    /// the bucket may go into debt, and later checks wait until it is paid
    /// off. For usage that has already happened and must be counted.
    pub fn charge(&self, state: &mut GcraState, now: Instant, n: u64) {
        let n = if n > self.capacity { self.capacity } else { n };
        let tat = self.norm(state);
        let base = if tat.us >= now.as_micros() {
            tat
        } else {
            Mixed {
                us: now.as_micros(),
                fr: 0,
            }
        };
        let next = self.add(base, self.inc(n));
        *state = if next.us >= MAX_TICKS {
            GcraState {
                tat: MAX_TICKS,
                rem: 0,
            }
        } else {
            GcraState {
                tat: next.us,
                rem: next.fr,
            }
        };
    }

    /// True when the bucket is full at `now`: the state can be dropped.
    #[inline]
    pub fn is_full(&self, state: &GcraState, now: Instant) -> bool {
        Self::ceil(self.norm(state)) <= now.as_micros()
    }
}

impl Limiter for Gcra {
    type State = GcraState;
    // Always inlined: a `Decision` returned through memory from a call is
    // read back wider than it was written, a store-forwarding stall that
    // cost the keyed store a fifth of its lookup time.
    #[inline(always)]
    fn check(&self, state: &mut GcraState, now: Instant, cost: u64) -> Result<Decision, CostError> {
        Gcra::check(self, state, now, cost)
    }
    #[inline]
    fn peek(&self, state: &GcraState, now: Instant, cost: u64) -> Result<Decision, CostError> {
        Gcra::peek(self, state, now, cost)
    }
    #[inline]
    fn is_idle(&self, state: &GcraState, now: Instant) -> bool {
        self.is_full(state, now)
    }
}

#[cfg(test)]
mod tests;
