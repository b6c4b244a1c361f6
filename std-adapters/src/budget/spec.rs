//! A budget written the way operators say it ("200 000 tokens a minute,
//! $50 a month"), turned into core's [`BudgetConfig`].

use ratebound_core::budget::{
    BudgetConfig, Dimension, Horizon, BP, MAX_OFFSET_SECS, MAX_THRESHOLDS,
};
use ratebound_core::ConfigError;
use ratebound_core::Duration;
use serde::{Deserialize, Serialize};

/// One budget in config form (TOML / JSON): any of the window limits, the
/// per-request caps, alert thresholds and the UTC offset its days and
/// months follow. Money is in integer micro-units (1 USD = 1 000 000).
///
/// ```
/// use ratebound_std::budget::BudgetSpec;
/// let spec: BudgetSpec = toml::from_str(r#"
///     tokens_per_minute = 200_000
///     cost_per_month = 50_000_000   # $50
///     max_tokens_per_request = 32_000
///     alert_at_percent = [80]
///     utc_offset_minutes = 120      # months start at local midnight, UTC+2
/// "#)?;
/// let config = spec.to_config();
/// assert_eq!(config.limits.len(), 2);
/// ratebound_core::budget::Budget::new(config)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetSpec {
    /// Requests per clock minute.
    pub requests_per_minute: Option<u64>,
    /// Requests per clock hour.
    pub requests_per_hour: Option<u64>,
    /// Requests per local day.
    pub requests_per_day: Option<u64>,
    /// Tokens (prompt + completion) per clock minute.
    pub tokens_per_minute: Option<u64>,
    /// Tokens per clock hour.
    pub tokens_per_hour: Option<u64>,
    /// Tokens per local day.
    pub tokens_per_day: Option<u64>,
    /// Tokens per local calendar month.
    pub tokens_per_month: Option<u64>,
    /// Money (micro-units) per local day.
    pub cost_per_day: Option<u64>,
    /// Money (micro-units) per local calendar month.
    pub cost_per_month: Option<u64>,
    /// Most tokens one request may reserve (its estimate: prompt and output
    /// cap); a request over it is refused outright (it could never fit).
    pub max_tokens_per_request: Option<u64>,
    /// Most money one request's estimate may cost.
    pub max_cost_per_request: Option<u64>,
    /// Alert when a limit's usage crosses these percentages (ascending, 1..=100).
    pub alert_at_percent: Vec<u16>,
    /// Minutes local time is ahead of UTC (−1 080..=1 080): days and months
    /// begin at local midnight.
    pub utc_offset_minutes: i32,
}

impl BudgetSpec {
    /// Core's config. Out-of-range values are left for
    /// [`Budget::new`](ratebound_core::budget::Budget::new) to report,
    /// naming core's field ([`named`](Self::named) turns it into this
    /// spec's).
    pub fn to_config(&self) -> BudgetConfig {
        use Dimension::{Cost, Requests, Tokens};
        let limits = [
            (Requests, Horizon::MINUTE, self.requests_per_minute),
            (Requests, Horizon::HOUR, self.requests_per_hour),
            (Requests, Horizon::DAY, self.requests_per_day),
            (Tokens, Horizon::MINUTE, self.tokens_per_minute),
            (Tokens, Horizon::HOUR, self.tokens_per_hour),
            (Tokens, Horizon::DAY, self.tokens_per_day),
            (Tokens, Horizon::CalendarMonth, self.tokens_per_month),
            (Cost, Horizon::DAY, self.cost_per_day),
            (Cost, Horizon::CalendarMonth, self.cost_per_month),
        ];
        let mut c = BudgetConfig::new();
        for (d, h, max) in limits {
            if let Some(max) = max {
                c = c.limit(d, h, max);
            }
        }
        if let Some(m) = self.max_tokens_per_request {
            c = c.tokens_per_request(m);
        }
        if let Some(m) = self.max_cost_per_request {
            c = c.cost_per_request(m);
        }
        for p in &self.alert_at_percent {
            c = c.alert_threshold_bp(p.saturating_mul(100));
        }
        let offset = i64::from(self.utc_offset_minutes) * 60;
        c.utc_offset_secs(offset.clamp(i32::MIN.into(), i32::MAX.into()) as i32)
            .hold_ttl(Duration::from_secs(600))
    }

    /// Core's error for this spec's config, naming the spec's own field
    /// where the two differ (`alert_at_percent` in percent, not core's
    /// basis points; `utc_offset_minutes`, not seconds); others as they are.
    pub fn named(&self, error: ConfigError) -> ConfigError {
        // The reasons below restate core's bounds in the spec's units.
        const _: () = assert!(BP == 100 * 100 && MAX_THRESHOLDS == 4);
        const _: () = assert!(MAX_OFFSET_SECS == 1_080 * 60);
        match error {
            ConfigError::Invalid {
                field: "alert_thresholds_bp",
                ..
            } => ConfigError::Invalid {
                field: "alert_at_percent",
                reason: "must be ascending percentages in 1..=100",
            },
            // A spec has at most 9 limits: only thresholds can overflow.
            ConfigError::Invalid {
                field: "limits / alert_thresholds_bp",
                ..
            } => ConfigError::Invalid {
                field: "alert_at_percent",
                reason: "has more than 4 entries",
            },
            // Out of range, or (reconfiguring) changed while states live:
            // core's reason is in seconds only for the first.
            ConfigError::Invalid {
                field: "utc_offset_secs",
                reason,
            } => ConfigError::Invalid {
                field: "utc_offset_minutes",
                reason: if self.utc_offset_minutes.unsigned_abs() > 1_080 {
                    "must be within ±1080 (18 hours)"
                } else {
                    reason
                },
            },
            _ => error,
        }
    }
}
