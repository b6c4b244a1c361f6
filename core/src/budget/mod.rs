//! Budget windows for LLM traffic: requests, tokens and money over several
//! horizons at once, in one plain-data state.
//!
//! * **Limits** on [`Dimension::Requests`], [`Dimension::Tokens`] and
//!   [`Dimension::Cost`] (integer micro-units of a currency: $1 = 1 000 000)
//!   per request and per window: [`Horizon::MINUTE`], [`Horizon::HOUR`],
//!   [`Horizon::DAY`], any fixed length, or [`Horizon::CalendarMonth`].
//!   Windows start at local midnight of a fixed UTC offset, computed from
//!   `now` (no reset job).
//! * **Two-phase use**: [`Budget::reserve`] holds an estimate before a call,
//!   [`Budget::settle`] charges the actual usage afterwards (up or down) and
//!   [`Budget::release`] drops the hold of a call that never ran. A hold
//!   lapses after the configured TTL so a crashed caller cannot pin budget.
//!   Concurrent callers therefore cannot overshoot between check and record.
//!   A live hold counts in whatever window is current (it carries over when
//!   a window rolls, since its settle will be charged there).
//! * **Alerts** are values: crossing a utilization threshold fires once per
//!   window per limit; hitting a limit fires a limit-hit once per window.
//! * **Auto-throttle**: past a threshold, admissions are paced so that what
//!   is left lasts until the window ends.
//!
//! Every field of the seed Go package's `BudgetConfig` (tokens per
//! request/minute/hour/day, cost per request/day, alert threshold, auto
//! throttle, throttle delay), `BudgetStatus`, `AlertType` and `UsageRecord`
//! maps onto these types; see [`BudgetConfig`]'s builder methods and
//! [`Alert::alert_type`].
//!
//! ```
//! use ratebound_core::budget::{Budget, BudgetConfig, BudgetState, Usage, Admission};
//! use ratebound_core::{Duration, Instant};
//!
//! let budget = Budget::new(
//!     BudgetConfig::new()
//!         .tokens_per_request(8_000)
//!         .tokens_per_minute(10_000)
//!         .cost_per_day(5_000_000) // $5.00
//!         .alert_threshold_bp(8_000) // 80 %
//! )?;
//! let mut state = BudgetState::<16>::default();
//! let now = Instant::from_secs(1_790_000_000);
//!
//! let r = budget.reserve(&mut state, now, Usage::request(6_000, 30_000))?;
//! let Admission::Granted(hold) = r.admission else { panic!("denied") };
//! // The call used fewer tokens than estimated; the difference is given back.
//! let s = budget.settle(&mut state, now, hold, Usage::request(4_500, 22_500))?;
//! assert!(s.alerts.is_empty());
//! assert_eq!(budget.status(&state, now).used(budget::Dimension::Tokens, ratebound_core::budget::Horizon::MINUTE), Some(4_500));
//! # use ratebound_core::budget;
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```

mod admission;
mod calendar;
mod config;
mod layout;
use layout::{digest, kind};
mod limiter;
pub mod llm;
mod ops;
mod outcome;
mod report;

pub use config::BudgetConfig;
pub use limiter::BudgetLimiter;
pub use ops::Alerts;
pub use outcome::{Admission, BudgetError, Denial, DenyReason, Reserved, Settled, Spent};
pub use report::{Alert, AlertKind, BudgetStatus, LimitStatus};

use crate::error::{require_at_most, require_nonzero};
use crate::time::mul_div_ceil;
use crate::{ConfigError, Duration, Instant};

/// The most window limits one budget holds.
pub const MAX_LIMITS: usize = 12;
/// The most alert thresholds one budget holds.
pub const MAX_THRESHOLDS: usize = 4;
/// The largest limit or amount: 2^50. Larger usage amounts are clamped to it
/// (the budget is exhausted either way), keeping all sums below 2^53.
pub const MAX_AMOUNT: u64 = 1 << 50;
/// Utilization is reported up to this many basis points (100 × the limit),
/// keeping it an exact integer everywhere.
pub const MAX_UTILIZATION_BP: u64 = 1_000_000;
/// Basis points in 100 %.
pub const BP: u64 = 10_000;
/// The longest fixed window, in µs (2^50 − 1, about 35 years): every
/// instant and window a backend computes stays exact below 2^53.
pub const MAX_HORIZON_US: u64 = (1 << 50) - 1;

/// What a limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Dimension {
    /// Calls.
    Requests,
    /// LLM tokens (prompt + completion, as the caller counts them).
    Tokens,
    /// Money in integer micro-units of a currency.
    Cost,
}

/// The span a window limit covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Horizon {
    /// Back-to-back windows of this length, aligned to local midnight at the budget's UTC offset.
    Fixed(Duration),
    /// Calendar months at the budget's UTC offset (needs a Unix-epoch clock).
    CalendarMonth,
}

impl Horizon {
    /// One minute.
    pub const MINUTE: Horizon = Horizon::Fixed(Duration::from_secs(60));
    /// One hour.
    pub const HOUR: Horizon = Horizon::Fixed(Duration::from_secs(3_600));
    /// One (local calendar) day.
    pub const DAY: Horizon = Horizon::Fixed(Duration::from_secs(86_400));
}

/// One window limit: at most `max` of `dimension` per `horizon`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct WindowLimit {
    /// What it counts.
    pub dimension: Dimension,
    /// The window.
    pub horizon: Horizon,
    /// The most per window, 1..=2^50.
    pub max: u64,
}

/// An amount of usage: what a call is estimated to use, or did use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct Usage {
    /// Calls (1 for one call).
    pub requests: u64,
    /// Tokens.
    pub tokens: u64,
    /// Money in micro-units.
    pub cost: u64,
}

impl Usage {
    /// One call using `tokens` tokens and `cost` micro-units.
    pub const fn request(tokens: u64, cost: u64) -> Usage {
        Usage {
            requests: 1,
            tokens,
            cost,
        }
    }
    /// `amount` in one dimension, nothing in the others.
    pub const fn of(dimension: Dimension, amount: u64) -> Usage {
        match dimension {
            Dimension::Requests => Usage {
                requests: amount,
                tokens: 0,
                cost: 0,
            },
            Dimension::Tokens => Usage {
                requests: 0,
                tokens: amount,
                cost: 0,
            },
            Dimension::Cost => Usage {
                requests: 0,
                tokens: 0,
                cost: amount,
            },
        }
    }
    /// The amount in `dimension`, clamped to [`MAX_AMOUNT`].
    pub const fn get(&self, dimension: Dimension) -> u64 {
        let v = match dimension {
            Dimension::Requests => self.requests,
            Dimension::Tokens => self.tokens,
            Dimension::Cost => self.cost,
        };
        if v > MAX_AMOUNT {
            MAX_AMOUNT
        } else {
            v
        }
    }
}

/// Auto-throttle: once a window limit's committed usage (settled + held)
/// reaches `after_bp` of its max, each admission is followed by a pause
/// that spreads what is left over the rest of the window, and at least
/// `min_delay` (Go `policy`'s `ThrottleDelay`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Throttle {
    /// Utilization (basis points, 1..=10 000) at which pacing starts.
    pub after_bp: u16,
    /// The least pause between admissions while pacing.
    pub min_delay: Duration,
}

/// A validated budget configuration. Construct with [`Budget::new`];
/// change it under live states with [`Budget::reconfigure`]. With `serde`
/// it (de)serializes as its [`BudgetConfig`] (a deserialized budget starts
/// a new reconfigure chain).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(try_from = "BudgetConfig", into = "BudgetConfig")
)]
pub struct Budget {
    config: BudgetConfig,
    offset_us: i64,
    /// `ceil(max × threshold / 10 000)` per limit and threshold.
    threshold_amounts: [[u64; MAX_THRESHOLDS]; MAX_LIMITS],
    /// `ceil(max × throttle.after_bp / 10 000)` per limit.
    throttle_amounts: [u64; MAX_LIMITS],
    /// Per limit, what it counts (dimension and horizon, exactly) and a
    /// digest of its max and the thresholds, kept in each window it writes:
    /// windows are matched to limits by the first and re-read when the
    /// second differs ([`Budget::reconfigure`]).
    kinds: [u64; MAX_LIMITS],
    digests: [u64; MAX_LIMITS],
    /// The kinds and digests of the config this budget was first made with
    /// (kept through [`Budget::reconfigure`]): the limits that wrote the
    /// windows of states from before windows recorded them.
    root: [(u64, u64); MAX_LIMITS],
}

impl TryFrom<BudgetConfig> for Budget {
    type Error = ConfigError;
    fn try_from(c: BudgetConfig) -> Result<Self, ConfigError> {
        Budget::new(c)
    }
}
impl From<Budget> for BudgetConfig {
    fn from(b: Budget) -> Self {
        b.config
    }
}

/// The largest `utc_offset_secs` either way: 18 hours.
pub const MAX_OFFSET_SECS: i32 = 18 * 3_600;

impl Budget {
    /// Validate a configuration. Errors name the field: zero or oversized
    /// maxima, thresholds outside 1..=10 000 or not ascending, offsets beyond
    /// ±18 h, a zero window length or one above [`MAX_HORIZON_US`], a zero
    /// hold TTL, two limits on one dimension over one horizon (a serde
    /// config; the builder sets the one limit's max), too many limits or
    /// thresholds.
    pub fn new(config: BudgetConfig) -> Result<Budget, ConfigError> {
        if config.overflowed {
            return Err(ConfigError::Invalid {
                field: "limits / alert_thresholds_bp",
                reason: "has more entries than fit (at most 12 limits and 4 thresholds)",
            });
        }
        if !(-MAX_OFFSET_SECS..=MAX_OFFSET_SECS).contains(&config.utc_offset_secs) {
            return Err(ConfigError::Invalid {
                field: "utc_offset_secs",
                reason: "must be within ±64800 (18 hours)",
            });
        }
        for (v, field) in [
            (config.max_tokens_per_request, "max_tokens_per_request"),
            (config.max_cost_per_request, "max_cost_per_request"),
        ] {
            if let Some(v) = v {
                require_nonzero(v, field)?;
                require_at_most(v, MAX_AMOUNT, field)?;
            }
        }
        for l in &config.limits {
            require_nonzero(l.max, "limits[].max")?;
            require_at_most(l.max, MAX_AMOUNT, "limits[].max")?;
            if let Horizon::Fixed(d) = l.horizon {
                require_nonzero(d.as_micros(), "limits[].horizon")?;
                require_at_most(d.as_micros(), MAX_HORIZON_US, "limits[].horizon")?;
            }
        }
        for (i, l) in config.limits.iter().enumerate() {
            if config.limits.iter().take(i).any(|o| kind(o) == kind(l)) {
                return Err(ConfigError::Invalid {
                    field: "limits",
                    reason:
                        "has two limits on one dimension over one horizon (keep the smaller max)",
                });
            }
        }
        let mut prev = 0u16;
        for &bp in &config.alert_thresholds_bp {
            if bp == 0 || u64::from(bp) > BP || bp <= prev {
                return Err(ConfigError::Invalid {
                    field: "alert_thresholds_bp",
                    reason: "must be ascending basis points in 1..=10000",
                });
            }
            prev = bp;
        }
        if let Some(t) = config.throttle {
            if t.after_bp == 0 || u64::from(t.after_bp) > BP {
                return Err(ConfigError::Invalid {
                    field: "throttle.after_bp",
                    reason: "must be in 1..=10000",
                });
            }
        }
        require_nonzero(config.hold_ttl.as_micros(), "hold_ttl")?;
        let mut threshold_amounts = [[0; MAX_THRESHOLDS]; MAX_LIMITS];
        let mut throttle_amounts = [0; MAX_LIMITS];
        for (i, l) in config.limits.iter().enumerate() {
            for (j, &bp) in config.alert_thresholds_bp.iter().enumerate() {
                if let Some(slot) = threshold_amounts.get_mut(i).and_then(|r| r.get_mut(j)) {
                    *slot = mul_div_ceil(l.max, u64::from(bp), BP);
                }
            }
            if let (Some(t), Some(slot)) = (config.throttle, throttle_amounts.get_mut(i)) {
                *slot = mul_div_ceil(l.max, u64::from(t.after_bp), BP);
            }
        }
        let mut budget = Budget {
            offset_us: i64::from(config.utc_offset_secs) * 1_000_000,
            kinds: core::array::from_fn(|i| config.limits.get(i).map_or(0, kind)),
            digests: core::array::from_fn(|i| {
                config
                    .limits
                    .get(i)
                    .map_or(0, |l| digest(l, &config.alert_thresholds_bp))
            }),
            root: [(0, 0); MAX_LIMITS],
            config,
            threshold_amounts,
            throttle_amounts,
        };
        budget.root = core::array::from_fn(|i| (budget.kind(i), budget.digest(i)));
        Ok(budget)
    }

    /// Limit `i`'s threshold amounts and throttle amount (see
    /// [`wire::budget_amounts`](crate::wire::budget_amounts)).
    pub(crate) fn amounts(&self, i: usize) -> ([u64; MAX_THRESHOLDS], Option<u64>) {
        let t = self.threshold_amounts.get(i).copied().unwrap_or_default();
        let throttle = self
            .config
            .throttle
            .and_then(|_| self.throttle_amounts.get(i).copied());
        (t, throttle)
    }

    /// The configuration.
    pub fn config(&self) -> &BudgetConfig {
        &self.config
    }

    /// `[start, end)` of limit `i`'s window containing `at`.
    pub(crate) fn bounds(&self, l: &WindowLimit, at: u64) -> (u64, u64) {
        self.bounds_of(l.horizon, at)
    }

    /// `[start, end)` of the `horizon` window containing `at`.
    pub(crate) fn bounds_of(&self, horizon: Horizon, at: u64) -> (u64, u64) {
        calendar::bounds(horizon, self.offset_us, at)
    }
}

/// Usage of one window limit in a [`BudgetState`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct WindowUsage {
    /// Start of the window this usage belongs to (µs).
    pub start: u64,
    /// Settled usage in the window.
    pub used: u64,
    /// Held by live reservations made in the window.
    pub reserved: u64,
    /// Alerts fired in this window: bit `j` for threshold `j`, bit 7 for limit hit.
    pub fired: u8,
    /// What its limit counts (dimension code × 2^50 + horizon µs, the
    /// horizon 0 for a calendar month; 0: none recorded — an empty window,
    /// or one written before windows recorded their limits): windows are
    /// matched to a config's limits by it ([`Budget::reconfigure`]).
    #[cfg_attr(feature = "serde", serde(default))]
    pub kind: u64,
    /// The digest of the limit's max and thresholds that last wrote it
    /// (0: none); under another, its alert flags are cleared first.
    #[cfg_attr(feature = "serde", serde(default))]
    pub limit: u64,
}

/// A live (or lapsed but not yet settled) reservation inside a [`BudgetState`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Hold {
    /// Reservation id.
    pub id: u64,
    /// When it was made (µs).
    pub at: u64,
    /// When it lapses (µs).
    pub expires: u64,
    /// What it holds.
    pub usage: Usage,
    /// True once expired: it holds nothing, but a late settle still charges.
    pub lapsed: bool,
}

/// The whole state of one budget: all windows and up to `R` reservations.
pub type BudgetState<const R: usize = 16> = BudgetStateOf<heapless::Vec<Hold, R>>;

/// A [`BudgetState`] read inside core whatever its `R`: one copy of the
/// deciding code serves every reservation count.
pub(crate) type StateView = BudgetStateOf<heapless::vec::VecView<Hold>>;

/// A budget's state with its reservations kept in `H`: a
/// `heapless::Vec<Hold, R>` ([`BudgetState`], the type to use), or inside
/// core an unsized view of one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BudgetStateOf<H: ?Sized> {
    /// The latest `now` seen; earlier times are treated as this one.
    pub last: u64,
    /// The id the next reservation gets.
    pub next_id: u64,
    /// No admission before this instant (µs) while auto-throttled.
    pub throttle_until: u64,
    /// Usage per configured window limit (same order as the config).
    pub windows: [WindowUsage; MAX_LIMITS],
    /// Reservations, oldest first.
    pub holds: H,
}

/// A granted reservation: hand it back to [`Budget::settle`] or [`Budget::release`].
///
/// Deliberately not `Clone` (nor `Copy`): settling twice would charge twice.
///
/// ```compile_fail,E0277
/// fn copies<T: Clone>(_: &T) {}
/// let r: ratebound_core::budget::Reservation = unimplemented!();
/// copies(&r);
/// ```
#[derive(Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[must_use = "a reservation holds budget until settled, released or expired"]
pub struct Reservation {
    /// Its id within the state.
    pub id: u64,
    /// What it holds.
    pub usage: Usage,
    /// When it lapses.
    pub expires: Instant,
}
