//! Building a [`Gcra`]: validation of the three numbers a user chooses,
//! the derived figures every decision uses, and the serialized form.

use super::{Gcra, MAX_BURST_WINDOW_MICROS};
use crate::error::{require_at_most, require_nonzero};
use crate::time::MAX_SAFE_INTEGER;
use crate::{ConfigError, Duration};

/// The serialized form of [`Gcra`]: the three numbers the user chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct GcraConfig {
    /// Bucket size: the largest burst, and the largest cost of one call.
    pub capacity: u64,
    /// Tokens added per `period`.
    pub amount: u64,
    /// Refill period in microseconds.
    pub period_us: u64,
}

impl TryFrom<GcraConfig> for Gcra {
    type Error = ConfigError;
    fn try_from(c: GcraConfig) -> Result<Self, ConfigError> {
        Gcra::new(c.capacity, c.amount, Duration::from_micros(c.period_us))
    }
}

impl From<Gcra> for GcraConfig {
    fn from(g: Gcra) -> Self {
        GcraConfig {
            capacity: g.capacity,
            amount: g.amount,
            period_us: g.period,
        }
    }
}

impl Gcra {
    /// A bucket of `capacity` tokens refilled with `amount` tokens per `period`.
    ///
    /// Rejects zero values, an `amount` above 2^53 − 1, sizes whose exact
    /// arithmetic would leave 2^53 (`capacity × period / gcd(amount, period)`
    /// µs), and burst windows `capacity × period / amount` (rounded up) above
    /// [`MAX_BURST_WINDOW_MICROS`]. (`period` is at most [`Duration::MAX`].)
    ///
    /// ```
    /// use ratebound_core::{ConfigError, Duration, Gcra};
    /// assert!(Gcra::new(100, 100, Duration::from_secs(60)).is_ok());
    /// assert_eq!(
    ///     Gcra::new(0, 1, Duration::from_secs(1)),
    ///     Err(ConfigError::Zero { field: "capacity" })
    /// );
    /// ```
    pub const fn new(capacity: u64, amount: u64, period: Duration) -> Result<Gcra, ConfigError> {
        let period = period.as_micros();
        if let Err(e) = require_nonzero(capacity, "capacity") {
            return Err(e);
        }
        if let Err(e) = require_nonzero(amount, "amount") {
            return Err(e);
        }
        if let Err(e) = require_nonzero(period, "period") {
            return Err(e);
        }
        if let Err(e) = require_at_most(amount, MAX_SAFE_INTEGER, "amount") {
            return Err(e);
        }
        let g = gcd(amount, period);
        let p = period / g;
        let a = amount / g;
        let scaled = match capacity.checked_mul(p) {
            Some(v) if v <= MAX_SAFE_INTEGER => v,
            _ => {
                return Err(ConfigError::TooLarge {
                    field: "capacity",
                    max: MAX_SAFE_INTEGER / p,
                })
            }
        };
        let tau_us = scaled / a;
        let dvt = scaled - p; // capacity ≥ 1
        if let Err(e) = require_at_most(
            tau_us + (scaled % a > 0) as u64,
            MAX_BURST_WINDOW_MICROS,
            "capacity × period / amount (burst window, µs)",
        ) {
            return Err(e);
        }
        Ok(Gcra {
            capacity,
            amount,
            period,
            p,
            a,
            tau_us,
            tau_rem: scaled % a,
            t_us: p / a,
            t_rem: p % a,
            dvt_us: dvt / a,
            dvt_rem: dvt % a,
            p_inv: u64::MAX / p,
        })
    }

    /// `n` per second with bursts of `n`.
    pub const fn per_second(n: u64) -> Result<Gcra, ConfigError> {
        Gcra::new(n, n, Duration::from_secs(1))
    }
    /// `n` per minute with bursts of `n`.
    pub const fn per_minute(n: u64) -> Result<Gcra, ConfigError> {
        Gcra::new(n, n, Duration::from_secs(60))
    }
    /// `n` per hour with bursts of `n`.
    pub const fn per_hour(n: u64) -> Result<Gcra, ConfigError> {
        Gcra::new(n, n, Duration::from_secs(3_600))
    }
    /// The same refill rate with a different burst size.
    pub const fn with_capacity(self, capacity: u64) -> Result<Gcra, ConfigError> {
        Gcra::new(capacity, self.amount, Duration::from_micros(self.period))
    }

    /// Bucket size: the largest burst and the largest single cost.
    pub const fn capacity(&self) -> u64 {
        self.capacity
    }
    /// Tokens refilled per [`period`](Gcra::period).
    pub const fn amount(&self) -> u64 {
        self.amount
    }
    /// The refill period.
    pub const fn period(&self) -> Duration {
        Duration::from_micros(self.period)
    }
    /// `(p, a)`: the rate as `a` tokens per `p` µs in lowest terms. `a` is
    /// the denominator of [`GcraState::rem`](super::GcraState::rem).
    pub const fn reduced_rate(&self) -> (u64, u64) {
        (self.p, self.a)
    }
    /// Time to refill an empty bucket, rounded up to the microsecond.
    pub const fn burst_window(&self) -> Duration {
        Duration::from_micros(self.tau_us + (self.tau_rem > 0) as u64)
    }
}

const fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}
