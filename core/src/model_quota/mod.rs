//! Model-level counts for LLM gateways: a **total** count of admitted
//! requests and a **success** count settled by each request's outcome, as
//! one state machine. The std `model_limit` module adds config, keys and
//! stores; the Redis script and the wasm build replay this module exactly
//! (guarded by `fixtures/traces/model_quota.json`).
//!
//! # Semantics
//!
//! Every rule below is decided here and only replayed elsewhere.
//!
//! - **Admission reserves.** A request is admitted when the total count has
//!   room for one more and the success count has room for this request *and*
//!   every request still in flight. Admission records one total unit at `now`
//!   and a **hold** `{id, expires = now + hold_ttl}`; the id comes from the
//!   state's counter. Admission is all or nothing.
//! - **A success settle is always counted.** Settling a success removes the
//!   hold and records one success at the settle time — never dropped, even
//!   when the count is full (then the count goes over its limit and the next
//!   admissions wait for it). A failure only removes the hold.
//! - **An expired hold frees its reservation** at the first operation at or
//!   after its expiry, as a failure would: a server that died mid-request
//!   cannot hold a slot forever.
//! - **A late settle** (its hold expired, or the id is unknown) of a success
//!   is still counted (the success happened); of a failure, does nothing.
//!   [`Settled::Lapsed`] says which case it was.
//! - **Time never runs backwards inside a state.** Every operation except a
//!   peek first takes `now' = max(now, last)` and stores it as `last`; a clock
//!   stepping back sees the state as it was left, never fuller.
//! - **Scope.** One state per subject and model (see [`scope`]): a user's
//!   group only picks the limits the count is held to. A user who switches
//!   groups keeps their count; the new limits apply to it at once.
//!
//! # Windows and what they guarantee
//!
//! [`Window::Sliding`] (the default): **at most `max` in any window of one
//! period.** Admissions (total) and success settles are logged with their
//! times; a unit counts while `at + period > now`. The log keeps up to
//! [`LOG_SLOTS`] entries; beyond that the two closest adjacent entries are
//! merged into the later one, so a unit may count for longer than its
//! period (capacity comes back later, never sooner). A count goes over
//! `max` only by a success settled after its hold expired, or when a group
//! switch holds it to a lower limit; admissions then wait until it is back
//! under.
//!
//! [`Window::Bucket`]: a token bucket (core's exact [`Gcra`]) of `max` that
//! refills `max` per period: at most `max` at once and `max` per period
//! sustained, so any one-period window sees at most `2·max − 1`.
//!
//! # Retry times
//!
//! A denial says what blocks it ([`Blocked`]). When the count alone would
//! admit the request and only requests in flight fill it
//! ([`Blocked::InFlight`]), capacity comes back as soon as one of them fails,
//! which no one can predict: `retry_at` is then at most [`IN_FLIGHT_RETRY`]
//! away. At most [`MAX_IN_FLIGHT`] requests of one state are in flight at once.
//!
//! ```
//! use ratebound_core::model_quota::{ModelQuota, ModelState, Outcome, Settled, Window};
//! use ratebound_core::{Duration, Instant};
//! let minute = Duration::from_secs(60);
//! let q = ModelQuota::new(None, 2, minute, Window::Sliding, Duration::from_secs(600))?;
//! let mut st = ModelState::default();
//! let now = Instant::from_secs(100);
//! let a = q.admit(&mut st, now);
//! let b = q.admit(&mut st, now);
//! assert!(a.allowed() && b.allowed());
//! assert!(!q.admit(&mut st, now).allowed()); // two in flight hold both slots
//! assert_eq!(q.settle(&mut st, now, a.hold.unwrap(), Outcome::Failure), Settled::Held);
//! let c = q.admit(&mut st, now); // the failure gave its slot back
//! assert!(c.allowed());
//! q.settle(&mut st, now, b.hold.unwrap(), Outcome::Success);
//! q.settle(&mut st, now, c.hold.unwrap(), Outcome::Success);
//! let d = q.admit(&mut st, Instant::from_secs(159));
//! assert!(!d.allowed()); // two successes in the last minute
//! assert_eq!(d.success.retry_at, Instant::from_secs(160));
//! # Ok::<(), ratebound_core::ConfigError>(())
//! ```

mod ops;
pub mod scope;
mod state;

pub use state::{CountState, ModelHold, ModelState};

use crate::error::require_nonzero;
use crate::{ConfigError, Decision, Duration, Gcra, Instant};

/// Entries a sliding count keeps before merging (see [`Window::Sliding`]).
pub const LOG_SLOTS: usize = 16;
/// Requests of one state in flight at once.
pub const MAX_IN_FLIGHT: usize = 64;
/// The longest `retry_at` of a denial caused by requests in flight.
pub const IN_FLIGHT_RETRY: Duration = Duration::from_secs(1);
/// The largest count limit accepted (2^31 − 1).
pub const MAX_COUNT: u64 = i32::MAX as u64;

/// How a count forgets: a sliding window (default) or a token bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Window {
    /// At most `max` in any window of one period.
    #[default]
    Sliding,
    /// A bucket of `max` refilled `max` per period (smooth refill).
    Bucket,
}

impl Window {
    /// The name used in config and headers: `sliding` or `bucket`.
    pub const fn name(self) -> &'static str {
        match self {
            Window::Sliding => "sliding",
            Window::Bucket => "bucket",
        }
    }
}

/// The limits for one scope: both counts, their window and the hold lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelQuota {
    total: Option<u64>,
    success: u64,
    period: Duration,
    window: Window,
    hold_ttl: Duration,
    total_bucket: Option<Gcra>,
    success_bucket: Option<Gcra>,
}

/// Which count a header or error talks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Count {
    /// Every admitted request.
    Total,
    /// Successful requests.
    Success,
}

impl Count {
    /// The name used in headers and errors: `total` or `success`.
    pub const fn name(self) -> &'static str {
        match self {
            Count::Total => "total",
            Count::Success => "success",
        }
    }
}

/// What denied a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Blocked {
    /// The total count is full.
    Total,
    /// The success count is full with settled successes.
    Success,
    /// Requests in flight hold the rest of the success count (or
    /// [`MAX_IN_FLIGHT`] are in flight): it frees when one of them settles.
    InFlight,
}

impl Blocked {
    /// The name used in headers and errors.
    pub const fn name(self) -> &'static str {
        match self {
            Blocked::Total => "total",
            Blocked::Success => "success",
            Blocked::InFlight => "in_flight",
        }
    }
}

/// One admission decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ModelDecision {
    /// The total count's decision; `None` when the total is unlimited.
    pub total: Option<Decision>,
    /// The success count's decision (its `remaining` leaves out requests in flight).
    pub success: Decision,
    /// The instant it was made at (after clamping to the state's `last`).
    pub now: Instant,
    /// The hold's id when admitted: pass it to [`ModelQuota::settle`].
    pub hold: Option<u64>,
    /// Requests in flight after this decision.
    pub in_flight: u64,
    /// What denied it; `None` when admitted.
    pub blocked: Option<Blocked>,
}

impl ModelDecision {
    /// True when both counts admitted the request.
    pub fn allowed(&self) -> bool {
        self.blocked.is_none()
    }

    /// The decision that binds: the denying count (the later retry if both
    /// deny), else the one with the least remaining.
    pub fn binding(&self) -> (Count, Decision) {
        let s = (Count::Success, self.success);
        let Some(t) = self.total else { return s };
        let t = (Count::Total, t);
        match (t.1.allowed, s.1.allowed) {
            (false, true) => t,
            (true, false) => s,
            (false, false) if t.1.retry_at > s.1.retry_at => t,
            (false, false) => s,
            (true, true) if t.1.remaining < s.1.remaining => t,
            (true, true) => s,
        }
    }

    /// When to try again (zero when allowed).
    pub fn retry_after(&self) -> Duration {
        if self.allowed() {
            return Duration::ZERO;
        }
        let t = self.total.filter(|t| !t.allowed).map(|t| t.retry_at);
        let s = Some(self.success.retry_at).filter(|_| !self.success.allowed);
        let at = match (t, s) {
            (Some(a), Some(b)) => a.max(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => self.now,
        };
        at.duration_after(self.now)
    }
}

/// How a settle found its hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Settled {
    /// The hold was live: it is gone (and a success outcome was counted).
    Held,
    /// No live hold had that id (it expired): a success outcome was still counted.
    Lapsed,
}

/// How an admitted request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Outcome {
    /// The upstream answered well (by default: status < 400): it counts.
    Success,
    /// It failed (status ≥ 400, an error, or it was dropped): its slot comes back.
    Failure,
}

impl Outcome {
    /// Status < 400 is a success.
    pub fn from_status(status: u16) -> Outcome {
        if status < 400 {
            Outcome::Success
        } else {
            Outcome::Failure
        }
    }
}

fn count(field: &'static str, n: u64) -> Result<u64, ConfigError> {
    require_nonzero(n, field)?;
    if n > MAX_COUNT {
        return Err(ConfigError::TooLarge {
            field,
            max: MAX_COUNT,
        });
    }
    Ok(n)
}

impl ModelQuota {
    /// Limits of `total` admissions (`None` = unlimited) and `success`
    /// successes per `period`, counted by `window`; an unsettled request
    /// holds its slot for at most `hold_ttl`.
    ///
    /// Counts must be 1 to [`MAX_COUNT`]; `period` and `hold_ttl` nonzero; a
    /// [`Window::Bucket`] must also be a valid [`Gcra`] (`max` per `period`).
    pub fn new(
        total: Option<u64>,
        success: u64,
        period: Duration,
        window: Window,
        hold_ttl: Duration,
    ) -> Result<ModelQuota, ConfigError> {
        let total = match total {
            Some(n) => Some(count("total_max", n)?),
            None => None,
        };
        let success = count("success_max", success)?;
        require_nonzero(period.as_micros(), "period")?;
        require_nonzero(hold_ttl.as_micros(), "hold_ttl")?;
        let bucket = |n: u64| Gcra::new(n, n, period);
        let (total_bucket, success_bucket) = match window {
            Window::Sliding => (None, None),
            Window::Bucket => (
                match total {
                    Some(n) => Some(bucket(n)?),
                    None => None,
                },
                Some(bucket(success)?),
            ),
        };
        Ok(ModelQuota {
            total,
            success,
            period,
            window,
            hold_ttl,
            total_bucket,
            success_bucket,
        })
    }

    /// The total count's limit per period (`None` = unlimited).
    pub fn total_max(&self) -> Option<u64> {
        self.total
    }

    /// The success count's limit per period.
    pub fn success_max(&self) -> u64 {
        self.success
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The total count's bucket, for [`Window::Bucket`] with a total limit.
    pub fn total_bucket(&self) -> Option<&Gcra> {
        self.total_bucket.as_ref()
    }

    /// The success count's bucket, for [`Window::Bucket`].
    pub fn success_bucket(&self) -> Option<&Gcra> {
        self.success_bucket.as_ref()
    }

    /// How the counts forget.
    pub fn window(&self) -> Window {
        self.window
    }

    /// How long an unsettled request holds its slot.
    pub fn hold_ttl(&self) -> Duration {
        self.hold_ttl
    }

    /// The most one window of one period can see of a count limited to
    /// `max` (successes settled after their hold expired aside): `max` for a
    /// sliding window, `2·max − 1` for a bucket.
    pub fn window_bound(&self, max: u64) -> u64 {
        match self.window {
            Window::Sliding => max,
            Window::Bucket => max.saturating_mul(2).saturating_sub(1),
        }
    }
}

/// The instant `retry_at` of an in-flight denial is capped at.
fn in_flight_retry(now: Instant) -> Instant {
    now.saturating_add(IN_FLIGHT_RETRY)
}

/// The serialized form of a [`ModelQuota`] (validated on load).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct ModelQuotaConfig {
    /// Admissions per period; `None` = unlimited.
    pub total: Option<u64>,
    /// Successes per period.
    pub success: u64,
    /// The period (µs).
    pub period_us: u64,
    /// How the counts forget.
    pub window: Window,
    /// How long an unsettled request holds its slot (µs).
    pub hold_ttl_us: u64,
}

impl TryFrom<ModelQuotaConfig> for ModelQuota {
    type Error = ConfigError;
    fn try_from(c: ModelQuotaConfig) -> Result<ModelQuota, ConfigError> {
        ModelQuota::new(
            c.total,
            c.success,
            Duration::from_micros(c.period_us),
            c.window,
            Duration::from_micros(c.hold_ttl_us),
        )
    }
}

impl From<ModelQuota> for ModelQuotaConfig {
    fn from(q: ModelQuota) -> ModelQuotaConfig {
        ModelQuotaConfig {
            total: q.total,
            success: q.success,
            period_us: q.period.as_micros(),
            window: q.window,
            hold_ttl_us: q.hold_ttl.as_micros(),
        }
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for ModelQuota {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ModelQuotaConfig::from(*self).serialize(s)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for ModelQuota {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ModelQuota, D::Error> {
        let c = ModelQuotaConfig::deserialize(d)?;
        ModelQuota::try_from(c).map_err(serde::de::Error::custom)
    }
}
