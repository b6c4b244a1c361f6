//! The TAT as one integer: `tat · a + rem`, in units of `1/a` µs.
//!
//! [`AtomicGcra`](crate::AtomicGcra) keeps its state in this form. An
//! admission is then one `max`, one comparison and one addition, as for a
//! whole-number rate — short enough that two threads racing on one word
//! rarely invalidate each other's compare-and-swap. The mixed form is
//! recovered (by a multiplication on 64-bit targets, a division by `a` on
//! others, nothing when `a = 1`) only to report figures: after an
//! admission is published, or for a denial. The figures themselves come
//! from the same code as [`Gcra::check`]'s.

use core::num::NonZeroU64;

use super::{Admission, Gcra, GcraState, Mixed};
use crate::{CostError, Decision, Instant};

/// A [`Gcra`]'s constants on the linear timeline. Built only for rates whose
/// linear TAT fits 64 bits (`a ≤ 2048`, checked by [`Timeline::new`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeline {
    /// The denominator `a` of the reduced rate. Non-zero by type, so that
    /// a division by it has no panic path and is dropped when a caller
    /// never reads the figures it serves.
    a: NonZeroU64,
    /// `⌊(2^64 − 1) / a⌋`: divides by `a` with a multiplication.
    a_inv: u64,
    /// The burst window, `capacity · p`.
    tau: u64,
    /// The burst window less one token, `(capacity − 1) · p`.
    dvt: u64,
}

/// The bounds of admitting one cost at one instant, worked out before a
/// compare-and-swap loop so that the loop does no more than compare.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    /// `now · a`.
    now: u64,
    /// The latest TAT the cost may start from: `now · a + tau − cost · p`.
    ceiling: u64,
    /// The cost's interval, `cost · p`.
    step: u64,
}

impl Window {
    /// From the stored TAT `w`: the TAT the admission starts from, and the
    /// TAT after admitting, `None` when the cost does not fit.
    #[inline(always)]
    pub(crate) fn admit(&self, w: u64) -> (u64, Option<u64>) {
        let base = if w > self.now { w } else { self.now };
        // Added only when it fits: base ≤ ceiling < 2^63 + 2^53 and
        // step ≤ 2^53, where a restored state near 2^53 µs could
        // otherwise overflow.
        let next = if base <= self.ceiling {
            Some(base + self.step)
        } else {
            None
        };
        (base, next)
    }
}

impl Timeline {
    /// The largest `a` whose linear TAT fits 64 bits for every TAT core
    /// produces (below 2^53 µs).
    pub(crate) const MAX_DENOMINATOR: u64 = 1 << 11;

    /// `None` when `a` exceeds [`MAX_DENOMINATOR`](Timeline::MAX_DENOMINATOR).
    pub(crate) const fn new(g: &Gcra) -> Option<Timeline> {
        let Some(a) = NonZeroU64::new(g.a) else {
            return None; // Gcra::new never leaves `a` zero
        };
        if a.get() > Self::MAX_DENOMINATOR {
            return None;
        }
        let tau = g.capacity * g.p; // < 2^53, checked by Gcra::new
        Some(Timeline {
            a,
            a_inv: u64::MAX / a.get(),
            tau,
            dvt: tau - g.p,
        })
    }

    /// `s` on the timeline; `None` when it is not a state core writes for
    /// this rate (`tat ≥ 2^53` or `rem ≥ a`).
    pub(crate) const fn point(&self, s: GcraState) -> Option<u64> {
        let a = self.a.get();
        if s.tat >= 1 << 53 || s.rem >= a {
            return None;
        }
        Some(s.tat * a + s.rem) // < 2^53 · 2^11 = 2^64
    }

    /// The state at point `w`.
    #[inline]
    pub(crate) fn state(&self, w: u64) -> GcraState {
        let tat = self.div_a(w);
        GcraState {
            tat,
            rem: w - tat * self.a.get(),
        }
    }

    /// `⌊x / a⌋`, exact for every `x < 2^64`: the reciprocal's product is
    /// short by at most one (`x · a_inv ≥ x · 2^64/a − x`), which the
    /// comparison corrects.
    #[inline(always)]
    fn div_a(&self, x: u64) -> u64 {
        let a = self.a.get();
        if a == 1 {
            x
        } else if cfg!(target_pointer_width = "64") {
            let q = ((x as u128 * self.a_inv as u128) >> 64) as u64;
            if x - q * a >= a {
                q + 1
            } else {
                q
            }
        } else {
            x / self.a
        }
    }

    /// The bounds for admitting `cost` at `now`, or the error
    /// [`Gcra::check`] gives for a cost above capacity.
    #[inline(always)]
    pub(crate) fn window(&self, g: &Gcra, now: Instant, cost: u64) -> Result<Window, CostError> {
        g.fits_at_all(cost)?;
        let now = now.as_micros() * self.a.get(); // < 2^52 · 2^11
        let step = if cost == 1 { g.p } else { cost * g.p }; // ≤ tau
        Ok(Window {
            now,
            ceiling: now + self.tau - step,
            step,
        })
    }

    /// [`Gcra::one_token_denial`] for the point `w`: one token asked and
    /// `w` past `now` plus the burst window less one token.
    #[inline(always)]
    pub(crate) fn one_token_denial(
        &self,
        g: &Gcra,
        w: u64,
        now: Instant,
        cost: u64,
    ) -> Option<Decision> {
        if cost != 1 || w <= now.as_micros() * self.a.get() + self.dvt {
            return None;
        }
        Some(g.one_token_denial_of(&self.state(w)))
    }

    /// The decision [`Gcra::check`] reports for an admission that started
    /// from point `base` and was `admitted` or not.
    #[inline]
    pub(crate) fn decision(
        &self,
        g: &Gcra,
        base: u64,
        admitted: bool,
        now: Instant,
        cost: u64,
    ) -> Decision {
        let s = self.state(base);
        let base = Mixed {
            us: s.tat,
            fr: s.rem,
        };
        let admission = Admission {
            base,
            next: admitted.then(|| g.add(base, g.inc(cost))),
        };
        g.decision(&admission, now, cost)
    }
}
