//! The TAT as a mixed number: whole microseconds plus a remainder in units
//! of `1/a` µs, and the arithmetic every decision is made of (see the
//! module docs of [`gcra`](super) on exactness).

use core::num::NonZeroU64;

use super::{Gcra, GcraState};

/// A mixed number `us + fr / a`, `fr < a`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Mixed {
    pub(super) us: u64,
    pub(super) fr: u64,
}

impl Gcra {
    #[inline]
    pub(super) const fn norm(&self, s: &GcraState) -> Mixed {
        if s.rem < self.a {
            Mixed {
                us: s.tat,
                fr: s.rem,
            }
        } else {
            // Written under a config with a finer unit (a reconfigured or
            // hand-made state): whatever it meant, it was less than one µs
            // past `tat`, so the next whole µs is never early.
            Mixed {
                us: s.tat.saturating_add(1),
                fr: 0,
            }
        }
    }

    #[inline]
    pub(super) const fn add(&self, x: Mixed, y: Mixed) -> Mixed {
        let fr = x.fr + y.fr;
        if fr >= self.a {
            Mixed {
                us: x.us.saturating_add(y.us).saturating_add(1),
                fr: fr - self.a,
            }
        } else {
            Mixed {
                us: x.us.saturating_add(y.us),
                fr,
            }
        }
    }

    /// `x - y` for `x >= y`.
    #[inline]
    pub(super) const fn sub(&self, x: Mixed, y: Mixed) -> Mixed {
        if x.fr >= y.fr {
            Mixed {
                us: x.us - y.us,
                fr: x.fr - y.fr,
            }
        } else {
            Mixed {
                us: x.us - y.us - 1,
                fr: x.fr + self.a - y.fr,
            }
        }
    }

    /// The timeline cost of `n ≤ capacity` tokens.
    #[inline]
    pub(super) const fn inc(&self, n: u64) -> Mixed {
        if n == 1 {
            return Mixed {
                us: self.t_us,
                fr: self.t_rem,
            };
        }
        let x = n * self.p;
        if self.a == 1 {
            Mixed { us: x, fr: 0 }
        } else {
            Mixed {
                us: x / self.a,
                fr: x % self.a,
            }
        }
    }

    #[inline]
    pub(super) const fn ceil(m: Mixed) -> u64 {
        m.us.saturating_add((m.fr > 0) as u64)
    }

    /// The TAT the next admission starts from: the stored one, or `now`
    /// if that is later.
    #[inline]
    pub(super) fn base(&self, s: &GcraState, now: u64) -> Mixed {
        let tat = self.norm(s);
        if tat.us >= now {
            tat
        } else {
            Mixed { us: now, fr: 0 }
        }
    }

    /// The latest TAT an admission may leave at `now`: `now` plus the
    /// burst window.
    #[inline]
    pub(super) const fn limit(&self, now: u64) -> Mixed {
        Mixed {
            us: now + self.tau_us,
            fr: self.tau_rem,
        }
    }

    /// How many tokens fit at `now` starting from `base`.
    #[inline]
    pub(super) fn available(&self, base: Mixed, now: u64) -> u64 {
        let limit = self.limit(now);
        if base > limit {
            return 0; // the clock went backwards past the burst window: nothing fits
        }
        let d = self.sub(limit, base);
        let x = d.us * self.a + d.fr; // ≤ capacity · p < 2^53
                                      // The division is the costliest step; an empty or a full bucket
                                      // (most denials, and idle keys) needs none.
        if x < self.p {
            0
        } else if x == self.capacity * self.p {
            self.capacity
        } else {
            self.div_p(x)
        }
    }

    /// `⌊x / p⌋` for `x < 2^53`. On 64-bit targets by a multiplication:
    /// with `p_inv = (2^64 − ε) / p`, `0 < ε ≤ p`, the estimate
    /// `⌊x · p_inv / 2^64⌋` falls short of the quotient by less than
    /// `x · ε / (p · 2^64) < 1`, so it is the quotient or one less, and one
    /// comparison settles which. (A 64-bit division costs tens of cycles;
    /// 32-bit targets divide, as a 128-bit product costs them more — by a
    /// `NonZeroU64`, which has no panic path, so that a caller reading only
    /// `allowed` links no division.)
    #[inline]
    pub(super) fn div_p(&self, x: u64) -> u64 {
        if cfg!(target_pointer_width = "64") {
            let q = ((x as u128 * self.p_inv as u128) >> 64) as u64;
            if x - q * self.p >= self.p {
                q + 1
            } else {
                q
            }
        } else {
            match NonZeroU64::new(self.p) {
                Some(p) => x / p,
                None => 0, // Gcra::new never leaves `p` zero
            }
        }
    }

    /// `(base, avail)`: the TAT the next admission starts from, and how many
    /// tokens fit now.
    #[inline]
    pub(super) fn position(&self, s: &GcraState, now: u64) -> (Mixed, u64) {
        let base = self.base(s, now);
        (base, self.available(base, now))
    }
}
