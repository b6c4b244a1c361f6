//! A budget's configuration: plain data, a builder, and recommended defaults.

#[cfg(doc)]
use super::Budget;
use super::{Dimension, Horizon, Throttle, WindowLimit, MAX_LIMITS, MAX_THRESHOLDS};
use crate::Duration;

/// A budget's configuration, as plain data (serde) and as a builder.
/// Turn it into a [`Budget`] with [`Budget::new`], which validates it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct BudgetConfig {
    /// Most tokens one call may use (seed: `MaxTokensPerRequest`).
    pub max_tokens_per_request: Option<u64>,
    /// Most money one call may cost, micro-units (seed: `MaxCostPerRequest`).
    pub max_cost_per_request: Option<u64>,
    /// Window limits, at most [`MAX_LIMITS`].
    pub limits: heapless::Vec<WindowLimit, MAX_LIMITS>,
    /// Alert thresholds in basis points, ascending (seed: `AlertThreshold` × 10 000).
    pub alert_thresholds_bp: heapless::Vec<u16, MAX_THRESHOLDS>,
    /// Optional pacing (seed: `AutoThrottle` + `ThrottleDelay`).
    pub throttle: Option<Throttle>,
    /// Offset of local time from UTC in seconds, −18 h..=+18 h; aligns days and months.
    pub utc_offset_secs: i32,
    /// How long a reservation holds budget before it lapses (default 10 minutes).
    pub hold_ttl: Duration,
    /// Set by the builder when more limits or thresholds were added than fit.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub(super) overflowed: bool,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig::new()
    }
}

impl BudgetConfig {
    /// No limits, no alerts, UTC, 10-minute holds.
    pub const fn new() -> Self {
        BudgetConfig {
            max_tokens_per_request: None,
            max_cost_per_request: None,
            limits: heapless::Vec::new(),
            alert_thresholds_bp: heapless::Vec::new(),
            throttle: None,
            utc_offset_secs: 0,
            hold_ttl: Duration::from_secs(600),
            overflowed: false,
        }
    }
    /// True when it limits money (a window on cost or a per-request cost
    /// cap): calls need a price to be charged.
    pub fn limits_cost(&self) -> bool {
        self.max_cost_per_request.is_some()
            || self.limits.iter().any(|l| l.dimension == Dimension::Cost)
    }

    /// Recommended limits for one API key of an LLM application, the same
    /// numbers as the Go `policy` package's `DefaultBudgetConfig()`:
    ///
    /// | limit | value | why |
    /// |---|---|---|
    /// | tokens per request | 100 000 | above one long-context call, below a runaway prompt loop |
    /// | tokens per minute | 500 000 | about five such calls a minute: bursts pass, a loop does not |
    /// | tokens per hour | 5 000 000 | ten minutes at the minute rate: a sustained loop stops within the hour |
    /// | tokens per day | 50 000 000 | ten hours at the hourly rate |
    /// | cost per request | $10 (10 000 000 µ) | no single call can cost more than this by mistake |
    /// | cost per day | $1 000 (1 000 000 000 µ) | a hard daily ceiling on spend |
    /// | alert threshold | 80 % | time to react before a limit bites |
    /// | auto-throttle | from 80 %, at least 1 s apart | past the alert, what is left is spread over the rest of the window instead of being spent at once |
    ///
    /// Windows are UTC-aligned (a UTC day, clock minutes and hours); holds
    /// lapse after 10 minutes. Change any of it with the builder methods.
    ///
    /// ```
    /// use ratebound_core::budget::{Budget, BudgetConfig, Dimension, Horizon};
    /// let budget = Budget::new(BudgetConfig::llm_defaults().tokens_per_request(32_000))?;
    /// assert_eq!(budget.config().max_tokens_per_request, Some(32_000));
    /// assert_eq!(budget.config().limits.len(), 4);
    /// assert!(budget.config().limits.iter().any(|l| l.dimension == Dimension::Cost && l.horizon == Horizon::DAY && l.max == 1_000_000_000));
    /// # Ok::<(), ratebound_core::ConfigError>(())
    /// ```
    pub fn llm_defaults() -> Self {
        BudgetConfig::new()
            .tokens_per_request(100_000)
            .cost_per_request(10_000_000)
            .tokens_per_minute(500_000)
            .tokens_per_hour(5_000_000)
            .tokens_per_day(50_000_000)
            .cost_per_day(1_000_000_000)
            .alert_threshold_bp(8_000)
            .auto_throttle(8_000, Duration::from_secs(1))
    }
    /// Add a window limit, or set the max of the one already on
    /// `dimension` over `horizon` (so `llm_defaults().tokens_per_day(x)`
    /// changes the default). More than [`MAX_LIMITS`] is reported by
    /// [`Budget::new`].
    pub fn limit(mut self, dimension: Dimension, horizon: Horizon, max: u64) -> Self {
        if let Some(l) = self
            .limits
            .iter_mut()
            .find(|l| l.dimension == dimension && l.horizon == horizon)
        {
            l.max = max;
            return self;
        }
        if self
            .limits
            .push(WindowLimit {
                dimension,
                horizon,
                max,
            })
            .is_err()
        {
            self.overflowed = true;
        }
        self
    }
    /// Append `limit` as given, without merging it into one already on its
    /// dimension and horizon (as a serde config lists them: [`Budget::new`]
    /// refuses such a pair, and more than [`MAX_LIMITS`]).
    pub fn push_limit(mut self, limit: WindowLimit) -> Self {
        if self.limits.push(limit).is_err() {
            self.overflowed = true;
        }
        self
    }
    /// Seed `MaxTokensPerRequest`.
    pub fn tokens_per_request(mut self, max: u64) -> Self {
        self.max_tokens_per_request = Some(max);
        self
    }
    /// Seed `MaxCostPerRequest` (micro-units).
    pub fn cost_per_request(mut self, max: u64) -> Self {
        self.max_cost_per_request = Some(max);
        self
    }
    /// Seed `MaxTokensPerMinute`.
    pub fn tokens_per_minute(self, max: u64) -> Self {
        self.limit(Dimension::Tokens, Horizon::MINUTE, max)
    }
    /// Seed `MaxTokensPerHour`.
    pub fn tokens_per_hour(self, max: u64) -> Self {
        self.limit(Dimension::Tokens, Horizon::HOUR, max)
    }
    /// Seed `MaxTokensPerDay`.
    pub fn tokens_per_day(self, max: u64) -> Self {
        self.limit(Dimension::Tokens, Horizon::DAY, max)
    }
    /// Seed `MaxCostPerDay` (micro-units).
    pub fn cost_per_day(self, max: u64) -> Self {
        self.limit(Dimension::Cost, Horizon::DAY, max)
    }
    /// Add an alert threshold in basis points (8 000 = 80 %).
    pub fn alert_threshold_bp(mut self, bp: u16) -> Self {
        if self.alert_thresholds_bp.push(bp).is_err() {
            self.overflowed = true;
        }
        self
    }
    /// Seed `AutoThrottle = true` with `ThrottleDelay = min_delay`, pacing from `after_bp`.
    pub fn auto_throttle(mut self, after_bp: u16, min_delay: Duration) -> Self {
        self.throttle = Some(Throttle {
            after_bp,
            min_delay,
        });
        self
    }
    /// Local time offset from UTC in seconds.
    pub fn utc_offset_secs(mut self, secs: i32) -> Self {
        self.utc_offset_secs = secs;
        self
    }
    /// Reservation time-to-live.
    pub fn hold_ttl(mut self, ttl: Duration) -> Self {
        self.hold_ttl = ttl;
        self
    }
}
