//! Integer time: [`Instant`] and [`Duration`], both whole microseconds in a `u64`.
//!
//! Core never reads a clock: every operation takes `now` as an argument. The
//! caller chooses the epoch; use **microseconds since the Unix epoch** when
//! state is shared with other processes, Redis or JavaScript, because
//! calendar windows (days, months) assume it.
//!
//! # Bounds
//!
//! Both types saturate at [`Instant::MAX`] / [`Duration::MAX`] = 2^52 − 1 µs
//! (about 142 years; as a Unix time, September 2112). Keeping every time
//! below 2^52, and every configured burst window below 2^50 µs, leaves
//! all intermediate sums of the state machines below 2^53, so the Redis Lua
//! scripts (doubles) and JavaScript (numbers) reproduce core's arithmetic
//! exactly. Arithmetic never panics: it saturates at 0 and at `MAX`.
//!
//! A `now` earlier than one seen before is legal input; every state machine
//! documents what it does with it, and none grants extra capacity for it.

use core::fmt;
use core::ops::{Add, AddAssign, Sub};

/// The largest tick value any [`Instant`] or [`Duration`] holds: 2^52 − 1 µs.
pub const MAX_TICKS: u64 = (1 << 52) - 1;

/// Integers that Lua doubles and JS numbers represent exactly: below 2^53.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A point in time: whole microseconds since an epoch the caller chooses.
///
/// ```
/// use ratebound_core::{Duration, Instant};
/// let t = Instant::from_millis(1_500);
/// assert_eq!(t.as_micros(), 1_500_000);
/// assert_eq!(t + Duration::from_secs(1), Instant::from_millis(2_500));
/// // Saturating, never panicking:
/// assert_eq!(Instant::from_secs(1) - Instant::from_secs(5), Duration::ZERO);
/// assert_eq!(Instant::from_micros(u64::MAX), Instant::MAX);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(from = "u64", into = "u64"))]
pub struct Instant(u64);

/// A span of time in whole microseconds.
///
/// ```
/// use ratebound_core::Duration;
/// assert_eq!(Duration::from_secs(2).as_millis(), 2_000);
/// assert_eq!(Duration::from_secs(u64::MAX), Duration::MAX);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(from = "u64", into = "u64"))]
pub struct Duration(u64);

const fn clamp(t: u64) -> u64 {
    if t > MAX_TICKS {
        MAX_TICKS
    } else {
        t
    }
}

macro_rules! unit_ctors {
    ($t:ident) => {
        impl $t {
            /// Zero microseconds.
            pub const ZERO: $t = $t(0);
            /// The largest value, 2^52 − 1 µs; constructors and arithmetic saturate here.
            pub const MAX: $t = $t(MAX_TICKS);

            /// From whole microseconds, saturating at `MAX`.
            #[inline]
            pub const fn from_micros(us: u64) -> Self {
                $t(clamp(us))
            }
            /// From whole milliseconds, saturating at `MAX`.
            #[inline]
            pub const fn from_millis(ms: u64) -> Self {
                $t(clamp(ms.saturating_mul(1_000)))
            }
            /// From whole seconds, saturating at `MAX`.
            #[inline]
            pub const fn from_secs(s: u64) -> Self {
                $t(clamp(s.saturating_mul(1_000_000)))
            }
            /// Whole microseconds.
            #[inline]
            pub const fn as_micros(self) -> u64 {
                self.0
            }
            /// Whole milliseconds, rounded down.
            #[inline]
            pub const fn as_millis(self) -> u64 {
                self.0 / 1_000
            }
            /// Whole milliseconds, rounded up (for `Retry-After`-style waits).
            #[inline]
            pub const fn as_millis_ceil(self) -> u64 {
                self.0.div_ceil(1_000)
            }
            /// Whole seconds, rounded down.
            #[inline]
            pub const fn as_secs(self) -> u64 {
                self.0 / 1_000_000
            }
            /// Whole seconds, rounded up.
            #[inline]
            pub const fn as_secs_ceil(self) -> u64 {
                self.0.div_ceil(1_000_000)
            }
        }

        impl From<u64> for $t {
            /// Microseconds, saturating at `MAX`.
            #[inline]
            fn from(us: u64) -> Self {
                $t::from_micros(us)
            }
        }

        impl From<$t> for u64 {
            #[inline]
            fn from(t: $t) -> u64 {
                t.0
            }
        }
    };
}

unit_ctors!(Instant);
unit_ctors!(Duration);

impl Instant {
    /// `self + d`, saturating at [`Instant::MAX`].
    #[inline]
    pub const fn saturating_add(self, d: Duration) -> Instant {
        Instant(clamp(self.0.saturating_add(d.0)))
    }
    /// `self - d`, saturating at zero.
    #[inline]
    pub const fn saturating_sub(self, d: Duration) -> Instant {
        Instant(self.0.saturating_sub(d.0))
    }
    /// Time from `earlier` to `self`; zero if `earlier` is later.
    #[inline]
    pub const fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }
    /// Time from `now` until `self`; zero if `self` is not in the future.
    ///
    /// The usual way to turn a decision's `retry_at` into a sleep.
    #[inline]
    pub const fn duration_after(self, now: Instant) -> Duration {
        self.saturating_duration_since(now)
    }
}

impl Duration {
    /// `self + other`, saturating at [`Duration::MAX`].
    #[inline]
    pub const fn saturating_add(self, other: Duration) -> Duration {
        Duration(clamp(self.0.saturating_add(other.0)))
    }
    /// `self - other`, saturating at zero.
    #[inline]
    pub const fn saturating_sub(self, other: Duration) -> Duration {
        Duration(self.0.saturating_sub(other.0))
    }
    /// `self * n`, saturating at [`Duration::MAX`].
    #[inline]
    pub const fn saturating_mul(self, n: u64) -> Duration {
        Duration(clamp(self.0.saturating_mul(n)))
    }
    /// True when zero.
    #[inline]
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    /// Saturating.
    #[inline]
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}
impl AddAssign<Duration> for Instant {
    #[inline]
    fn add_assign(&mut self, d: Duration) {
        *self = self.saturating_add(d);
    }
}
impl Sub<Duration> for Instant {
    type Output = Instant;
    /// Saturating at zero.
    #[inline]
    fn sub(self, d: Duration) -> Instant {
        self.saturating_sub(d)
    }
}
impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Saturating at zero.
    #[inline]
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}
impl Add for Duration {
    type Output = Duration;
    /// Saturating.
    #[inline]
    fn add(self, o: Duration) -> Duration {
        self.saturating_add(o)
    }
}
impl Sub for Duration {
    type Output = Duration;
    /// Saturating at zero.
    #[inline]
    fn sub(self, o: Duration) -> Duration {
        self.saturating_sub(o)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}µs", self.0)
    }
}
impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}µs", self.0)
    }
}

impl From<core::time::Duration> for Duration {
    /// Whole microseconds (sub-microsecond remainder truncated), saturating at `MAX`.
    fn from(d: core::time::Duration) -> Self {
        Duration::from_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }
}
impl From<Duration> for core::time::Duration {
    fn from(d: Duration) -> Self {
        core::time::Duration::from_micros(d.0)
    }
}

/// `floor(a * b / c)` computed exactly (in 64 bits when `a * b` fits, else
/// through a 128-bit product), saturating at `u64::MAX`; `c == 0` yields
/// `u64::MAX`.
///
/// The Redis scripts reproduce this with limb arithmetic; every place core
/// scales by a ratio goes through this function or [`mul_div_ceil`].
#[inline]
pub const fn mul_div_floor(a: u64, b: u64, c: u64) -> u64 {
    if c == 0 {
        return u64::MAX;
    }
    // The common case in 64 bits: a 128-bit division is a library call.
    if let Some(p) = a.checked_mul(b) {
        return p / c;
    }
    let p = a as u128 * b as u128;
    let (hi, lo) = ((p >> 64) as u64, p as u64);
    if hi >= c {
        return u64::MAX; // the quotient passes 64 bits
    }
    div_wide(hi, lo, c).0
}

/// `ceil(a * b / c)` computed exactly, saturating like [`mul_div_floor`].
#[inline]
pub const fn mul_div_ceil(a: u64, b: u64, c: u64) -> u64 {
    if c == 0 {
        return u64::MAX;
    }
    if let Some(p) = a.checked_mul(b) {
        return p.div_ceil(c);
    }
    let p = a as u128 * b as u128;
    let (hi, lo) = ((p >> 64) as u64, p as u64);
    if hi >= c {
        return u64::MAX;
    }
    let (q, r) = div_wide(hi, lo, c);
    if r == 0 {
        q
    } else {
        q.saturating_add(1)
    }
}

/// `(hi · 2^64 + lo) / d` and its remainder, for `hi < d` (the quotient
/// fits in 64 bits), in 64-bit operations: a 128-bit division is a library
/// routine of about 1 KB in the wasm module, this a few hundred bytes.
/// Knuth's algorithm D for two 32-bit digits (Hacker's Delight, `divlu`).
pub(crate) const fn div_wide(hi: u64, lo: u64, d: u64) -> (u64, u64) {
    const B: u64 = 1 << 32;
    const MASK: u64 = B - 1;
    // Normalise: the divisor's top bit set.
    let s = d.leading_zeros();
    let d = d << s;
    let (dn1, dn0) = (d >> 32, d & MASK);
    let un32 = if s == 0 {
        hi
    } else {
        (hi << s) | (lo >> (64 - s))
    };
    let un10 = lo << s;
    let (un1, un0) = (un10 >> 32, un10 & MASK);
    let q1 = quotient_digit(un32, un1, dn1, dn0);
    let un21 = un32
        .wrapping_mul(B)
        .wrapping_add(un1)
        .wrapping_sub(q1.wrapping_mul(d));
    let q0 = quotient_digit(un21, un0, dn1, dn0);
    let r = un21
        .wrapping_mul(B)
        .wrapping_add(un0)
        .wrapping_sub(q0.wrapping_mul(d));
    (q1 * B + q0, r >> s)
}

/// One 32-bit digit of [`div_wide`]'s quotient: the partial remainder `un`
/// (with the next dividend digit `next`) over the normalised divisor's
/// digits `dn1`, `dn0`, estimated from the high digit, then corrected (at
/// most twice).
const fn quotient_digit(un: u64, next: u64, dn1: u64, dn0: u64) -> u64 {
    const B: u64 = 1 << 32;
    let mut q = un / dn1;
    let mut rhat = un - q * dn1;
    while q >= B || q * dn0 > B * rhat + next {
        q -= 1;
        rhat += dn1;
        if rhat >= B {
            break;
        }
    }
    q
}

#[cfg(test)]
mod tests;
