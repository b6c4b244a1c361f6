//! What a budget reports: alerts (values, fired once per window) and
//! status snapshots.

use super::{Dimension, Horizon, WindowLimit, MAX_LIMITS};
use crate::Instant;

/// What an [`Alert`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum AlertKind {
    /// Settled usage crossed a configured threshold.
    Threshold,
    /// A limit was reached (settled usage ≥ max) or a reservation was denied by it.
    LimitHit,
}

/// A budget alert, returned as a value (core has no callbacks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Alert {
    /// Threshold or limit hit.
    pub kind: AlertKind,
    /// Index of the limit in the config's `limits`.
    pub limit: u8,
    /// The limit's dimension.
    pub dimension: Dimension,
    /// The limit's horizon.
    pub horizon: Horizon,
    /// The threshold crossed (basis points); 10 000 for a limit hit.
    pub threshold_bp: u16,
    /// Utilization when it fired, basis points of max (may exceed 10 000).
    pub utilization_bp: u64,
    /// When it fired.
    pub at: Instant,
    /// Start of the window it belongs to.
    pub window_start: Instant,
}

impl Alert {
    /// The alert's type as the Go `policy` package names it:
    /// `token_minute_threshold`, `token_hour_threshold`,
    /// `token_day_threshold`, `cost_day_threshold`, `limit_hit`; thresholds
    /// of other limits give `threshold`.
    pub fn alert_type(&self) -> &'static str {
        match (self.kind, self.dimension, self.horizon) {
            (AlertKind::LimitHit, _, _) => "limit_hit",
            (_, Dimension::Tokens, h) if h == Horizon::MINUTE => "token_minute_threshold",
            (_, Dimension::Tokens, h) if h == Horizon::HOUR => "token_hour_threshold",
            (_, Dimension::Tokens, h) if h == Horizon::DAY => "token_day_threshold",
            (_, Dimension::Cost, h) if h == Horizon::DAY => "cost_day_threshold",
            _ => "threshold",
        }
    }
}

/// One limit in a [`BudgetStatus`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LimitStatus {
    /// The limit.
    pub limit: WindowLimit,
    /// Settled usage in the current window.
    pub used: u64,
    /// Held by live reservations.
    pub reserved: u64,
    /// `used / max` in basis points (may exceed 10 000).
    pub utilization_bp: u64,
    /// Current window start.
    pub window_start: Instant,
    /// Current window end (exclusive).
    pub window_end: Instant,
}

/// A snapshot of a budget (Go `policy`'s `BudgetStatus`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BudgetStatus {
    /// One entry per configured limit, in config order.
    pub limits: heapless::Vec<LimitStatus, MAX_LIMITS>,
    /// True while auto-throttle pacing holds admissions back.
    pub throttled: bool,
    /// Until when, if throttled.
    pub throttle_until: Option<Instant>,
    /// Live reservations.
    pub holds: usize,
}

impl LimitStatus {
    /// What is left in the window: max − used − reserved, at least 0.
    pub const fn remaining(&self) -> u64 {
        self.limit
            .max
            .saturating_sub(self.used.saturating_add(self.reserved))
    }

    /// The window's length (a calendar month's varies).
    pub const fn window(&self) -> crate::Duration {
        self.window_end.saturating_duration_since(self.window_start)
    }
}

impl BudgetStatus {
    /// Nothing to remember: no usage or holds in any current window, not
    /// throttled. Forgetting such a budget's state grants nothing.
    pub fn is_idle(&self) -> bool {
        self.holds == 0
            && !self.throttled
            && self.limits.iter().all(|l| l.used == 0 && l.reserved == 0)
    }

    fn find(&self, d: Dimension, h: Horizon) -> Option<&LimitStatus> {
        self.limits
            .iter()
            .find(|l| l.limit.dimension == d && l.limit.horizon == h)
    }
    /// Settled usage of the first limit on `d` over `h` (seed: `TokensUsedMinute` etc.).
    pub fn used(&self, d: Dimension, h: Horizon) -> Option<u64> {
        self.find(d, h).map(|l| l.used)
    }
    /// Utilization in basis points of the first limit on `d` over `h` (seed: `MinuteUtilization` etc.).
    pub fn utilization_bp(&self, d: Dimension, h: Horizon) -> Option<u64> {
        self.find(d, h).map(|l| l.utilization_bp)
    }
}
