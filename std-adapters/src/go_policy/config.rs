//! The Go package's `BudgetConfig` JSON, read and written exactly.

use std::time::Duration;

use ratebound_core::budget::{Budget, BudgetConfig, Dimension, Horizon};
use serde::{Deserialize, Serialize};

use super::numbers::{fraction_bp, go_duration, usd};
use crate::config::{from_json, ConfigLoadError};

/// Go's `BudgetConfig`, field for field, under its JSON names, with exact
/// integer units: dollars become micro-USD and the alert threshold basis
/// points when read, and are written back digit for digit as Go writes them.
///
/// A limit of `0` (or a field left out) means **no limit**, and an alert
/// threshold of `0` means no alerts: Go would refuse every request (or alert
/// on every record) with those zero values, so no working Go config has
/// them. Unknown fields are an error naming the field; amounts with more
/// decimals than micro-USD (or basis points) are refused, never rounded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GoBudgetConfig {
    /// `max_tokens_per_request`.
    pub max_tokens_per_request: u64,
    /// `max_tokens_per_minute`.
    pub max_tokens_per_minute: u64,
    /// `max_tokens_per_hour`.
    pub max_tokens_per_hour: u64,
    /// `max_tokens_per_day`.
    pub max_tokens_per_day: u64,
    /// `max_cost_per_request` (float dollars in JSON) in micro-USD.
    #[serde(rename = "max_cost_per_request", with = "usd")]
    pub max_cost_per_request_micros: u64,
    /// `max_cost_per_day` (float dollars in JSON) in micro-USD.
    #[serde(rename = "max_cost_per_day", with = "usd")]
    pub max_cost_per_day_micros: u64,
    /// `alert_threshold` (a fraction 0.0–1.0 in JSON) in basis points.
    #[serde(rename = "alert_threshold", with = "fraction_bp")]
    pub alert_threshold_bp: u16,
    /// `auto_throttle`.
    pub auto_throttle: bool,
    /// `throttle_delay`: nanoseconds in JSON (or a Go duration string when read).
    #[serde(with = "go_duration")]
    pub throttle_delay: Duration,
}

impl Default for GoBudgetConfig {
    /// All zero, as Go's zero value: no limits (see the type's docs).
    fn default() -> Self {
        GoBudgetConfig {
            max_tokens_per_request: 0,
            max_tokens_per_minute: 0,
            max_tokens_per_hour: 0,
            max_tokens_per_day: 0,
            max_cost_per_request_micros: 0,
            max_cost_per_day_micros: 0,
            alert_threshold_bp: 0,
            auto_throttle: false,
            throttle_delay: Duration::ZERO,
        }
    }
}

/// Where auto-throttle pacing starts for Go's single alert threshold: at
/// the threshold, or at 100 % without one.
fn pacing_from(alert_threshold_bp: u16) -> u16 {
    match alert_threshold_bp {
        0 => 10_000,
        bp => bp,
    }
}

/// A ratebound budget config that Go's `BudgetConfig` cannot express.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not expressible as Go's BudgetConfig: {0}")]
pub struct NotExpressible(pub &'static str);

impl GoBudgetConfig {
    /// Go's `DefaultBudgetConfig()`: 100 000 tokens per request, 500 000 per
    /// minute, 5 000 000 per hour, 50 000 000 per day, $10 per request,
    /// $1 000 per day, alerts at 0.8, auto-throttle with a 1 s delay. It
    /// converts to [`BudgetConfig::llm_defaults`].
    pub fn go_defaults() -> Self {
        GoBudgetConfig {
            max_tokens_per_request: 100_000,
            max_tokens_per_minute: 500_000,
            max_tokens_per_hour: 5_000_000,
            max_tokens_per_day: 50_000_000,
            max_cost_per_request_micros: 10_000_000,
            max_cost_per_day_micros: 1_000_000_000,
            alert_threshold_bp: 8_000,
            auto_throttle: true,
            throttle_delay: Duration::from_secs(1),
        }
    }

    /// Read the JSON Go's `json.Marshal(BudgetConfig{..})` writes. Errors
    /// name the field: `max_cost_per_day: 0.0000001 has more than 6 decimal
    /// places, ...`.
    pub fn from_json(text: &str) -> Result<Self, ConfigLoadError> {
        from_json(text)
    }

    /// The JSON Go writes for the same config, byte for byte.
    pub fn to_json(&self) -> String {
        // Serializing plain integers, strings and validated raw numbers into
        // a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The ratebound config with the same limits: each non-zero limit as a
    /// ratebound limit (minute, hour and day windows aligned to UTC clock
    /// boundaries), the alert threshold as one threshold, and
    /// `auto_throttle` as pacing from the alert threshold (from 100 %
    /// without one) at least `throttle_delay` apart.
    ///
    /// Validate the result with [`ratebound_core::budget::Budget::new`] (or
    /// hand it to a budget manager, which does): limits above 2^50 are
    /// refused there, naming the field.
    pub fn to_budget_config(&self) -> BudgetConfig {
        let mut c = BudgetConfig::new();
        if self.max_tokens_per_request > 0 {
            c = c.tokens_per_request(self.max_tokens_per_request);
        }
        if self.max_cost_per_request_micros > 0 {
            c = c.cost_per_request(self.max_cost_per_request_micros);
        }
        for (max, dimension, horizon) in [
            (
                self.max_tokens_per_minute,
                Dimension::Tokens,
                Horizon::MINUTE,
            ),
            (self.max_tokens_per_hour, Dimension::Tokens, Horizon::HOUR),
            (self.max_tokens_per_day, Dimension::Tokens, Horizon::DAY),
            (self.max_cost_per_day_micros, Dimension::Cost, Horizon::DAY),
        ] {
            if max > 0 {
                c = c.limit(dimension, horizon, max);
            }
        }
        if self.alert_threshold_bp > 0 {
            c = c.alert_threshold_bp(self.alert_threshold_bp);
        }
        if self.auto_throttle {
            // Whole microseconds when read from JSON; a delay set directly
            // with a fraction of one is rounded up (never less pacing).
            let micros = self.throttle_delay.as_nanos().div_ceil(1_000);
            let delay =
                ratebound_core::Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX));
            c = c.auto_throttle(pacing_from(self.alert_threshold_bp), delay);
        }
        c
    }

    /// The Go config for a ratebound one, when Go's shape can hold it: only
    /// tokens per minute/hour/day and cost per day (each once), at most one
    /// alert threshold with the throttle (if any) pacing from it, UTC
    /// windows and the default 10-minute hold TTL.
    pub fn from_budget_config(c: &BudgetConfig) -> Result<Self, NotExpressible> {
        if Budget::new(c.clone()).is_err() {
            return Err(NotExpressible(
                "a config that does not validate (see Budget::new)",
            ));
        }
        let mut g = GoBudgetConfig {
            max_tokens_per_request: c.max_tokens_per_request.unwrap_or(0),
            max_cost_per_request_micros: c.max_cost_per_request.unwrap_or(0),
            ..GoBudgetConfig::default()
        };
        for l in &c.limits {
            let slot = match (l.dimension, l.horizon) {
                (Dimension::Tokens, h) if h == Horizon::MINUTE => &mut g.max_tokens_per_minute,
                (Dimension::Tokens, h) if h == Horizon::HOUR => &mut g.max_tokens_per_hour,
                (Dimension::Tokens, h) if h == Horizon::DAY => &mut g.max_tokens_per_day,
                (Dimension::Cost, h) if h == Horizon::DAY => &mut g.max_cost_per_day_micros,
                _ => {
                    return Err(NotExpressible(
                        "only tokens per minute/hour/day and cost per day",
                    ))
                }
            };
            if *slot != 0 {
                return Err(NotExpressible("two limits on the same window"));
            }
            *slot = l.max;
        }
        g.alert_threshold_bp = match c.alert_thresholds_bp.as_slice() {
            [] => 0,
            [bp] => *bp,
            _ => return Err(NotExpressible("more than one alert threshold")),
        };
        if let Some(t) = c.throttle {
            if t.after_bp != pacing_from(g.alert_threshold_bp) {
                return Err(NotExpressible(
                    "auto-throttle pacing from other than the alert threshold",
                ));
            }
            g.auto_throttle = true;
            g.throttle_delay = t.min_delay.into();
        }
        if c.utc_offset_secs != 0 {
            return Err(NotExpressible("windows at a UTC offset"));
        }
        if c.hold_ttl != BudgetConfig::new().hold_ttl {
            return Err(NotExpressible("a hold TTL other than 10 minutes"));
        }
        Ok(g)
    }
}
