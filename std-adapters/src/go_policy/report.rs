//! What a budget reports, in the Go package's JSON shapes: `BudgetStatus`,
//! `Alert` and `UsageRecord`.

use std::time::SystemTime;

use ratebound_core::budget::{Alert, AlertKind, BudgetStatus, Dimension, Horizon, LimitStatus, BP};
use serde::{Deserialize, Serialize};

use super::numbers::{go_time, ser_go_float, usd};
use crate::budget::UsageRecord;
use crate::time_text::from_unix_micros;

/// Go's `BudgetStatus`, computed from a ratebound [`BudgetStatus`].
///
/// Sums are the settled usage of the current window (live holds are not
/// included; Go has none). Utilizations are `used / max` as floats, each
/// the correctly rounded quotient of the exact integers, and `0` where the
/// limit is not configured (Go would divide by zero).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GoBudgetStatus {
    /// Tokens settled in the current minute.
    pub tokens_used_minute: u64,
    /// Tokens settled in the current hour.
    pub tokens_used_hour: u64,
    /// Tokens settled in the current day.
    pub tokens_used_day: u64,
    /// Dollars settled in the current day.
    #[serde(serialize_with = "ser_go_float")]
    pub cost_used_day: f64,
    /// `tokens_used_minute / max_tokens_per_minute`.
    #[serde(serialize_with = "ser_go_float")]
    pub minute_utilization: f64,
    /// `tokens_used_hour / max_tokens_per_hour`.
    #[serde(serialize_with = "ser_go_float")]
    pub hour_utilization: f64,
    /// `tokens_used_day / max_tokens_per_day`.
    #[serde(serialize_with = "ser_go_float")]
    pub day_utilization: f64,
    /// `cost_used_day / max_cost_per_day`.
    #[serde(serialize_with = "ser_go_float")]
    pub cost_utilization: f64,
    /// True while auto-throttle pacing holds admissions back.
    pub is_throttled: bool,
    /// Until when, if throttled (left out otherwise, as Go's `omitempty`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "go_time::option"
    )]
    pub throttle_until: Option<SystemTime>,
}

fn find(s: &BudgetStatus, d: Dimension, h: Horizon) -> Option<&LimitStatus> {
    s.limits
        .iter()
        .find(|l| l.limit.dimension == d && l.limit.horizon == h)
}

fn utilization(l: Option<&LimitStatus>) -> f64 {
    // Both are below 2^53, so each converts exactly and the quotient is
    // correctly rounded.
    l.map_or(0.0, |l| l.used as f64 / l.limit.max as f64)
}

impl From<&BudgetStatus> for GoBudgetStatus {
    fn from(s: &BudgetStatus) -> Self {
        let minute = find(s, Dimension::Tokens, Horizon::MINUTE);
        let hour = find(s, Dimension::Tokens, Horizon::HOUR);
        let day = find(s, Dimension::Tokens, Horizon::DAY);
        let cost = find(s, Dimension::Cost, Horizon::DAY);
        GoBudgetStatus {
            tokens_used_minute: minute.map_or(0, |l| l.used),
            tokens_used_hour: hour.map_or(0, |l| l.used),
            tokens_used_day: day.map_or(0, |l| l.used),
            cost_used_day: cost.map_or(0.0, |l| l.used as f64 / 1_000_000.0),
            minute_utilization: utilization(minute),
            hour_utilization: utilization(hour),
            day_utilization: utilization(day),
            cost_utilization: utilization(cost),
            is_throttled: s.throttled,
            throttle_until: s
                .throttle_until
                .filter(|_| s.throttled)
                .map(|t| from_unix_micros(t.as_micros())),
        }
    }
}

/// Go's `Alert`, from a ratebound [`Alert`]: the type string of
/// [`Alert::alert_type`], Go's message for it, the threshold as a fraction
/// (1 for a limit hit) and the utilization when it fired as a fraction, to
/// the basis point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GoAlert {
    /// `token_minute_threshold`, `token_hour_threshold`,
    /// `token_day_threshold`, `cost_day_threshold`, `limit_hit` (or
    /// `threshold` for limits Go does not have).
    #[serde(rename = "type")]
    pub alert_type: String,
    /// A sentence for people.
    pub message: String,
    /// The threshold crossed, 0.0–1.0.
    #[serde(serialize_with = "ser_go_float")]
    pub threshold: f64,
    /// Utilization when it fired (may exceed 1).
    #[serde(serialize_with = "ser_go_float")]
    pub current: f64,
    /// When it fired.
    #[serde(with = "go_time")]
    pub timestamp: SystemTime,
}

fn window_name(d: Dimension, h: Horizon) -> String {
    let what = match d {
        Dimension::Requests => "request",
        Dimension::Tokens => "token",
        Dimension::Cost => "cost",
    };
    match (d, h) {
        (Dimension::Cost, h) if h == Horizon::DAY => "Daily cost".into(),
        (_, h) if h == Horizon::MINUTE => format!("Minute {what}"),
        (_, h) if h == Horizon::HOUR => format!("Hour {what}"),
        (_, h) if h == Horizon::DAY => format!("Day {what}"),
        (_, Horizon::CalendarMonth) => format!("Monthly {what}"),
        (_, Horizon::Fixed(len)) => format!("{}s {what}", len.as_micros() / 1_000_000),
    }
}

impl From<&Alert> for GoAlert {
    fn from(a: &Alert) -> Self {
        let window = window_name(a.dimension, a.horizon);
        let message = match (a.kind, a.dimension) {
            (AlertKind::LimitHit, _) => format!("{window} limit reached"),
            // Go's own sentences for its four thresholds.
            (AlertKind::Threshold, Dimension::Cost) => format!("{window} threshold exceeded"),
            (AlertKind::Threshold, _) => format!("{window} usage threshold exceeded"),
        };
        GoAlert {
            alert_type: a.alert_type().into(),
            message,
            threshold: f64::from(a.threshold_bp) / BP as f64,
            current: a.utilization_bp as f64 / BP as f64,
            timestamp: from_unix_micros(a.at.as_micros()),
        }
    }
}

/// Go's `UsageRecord`: what one call used, as Go services log it. Converts
/// into ratebound's [`UsageRecord`] for
/// [`BudgetManager::record_usage`](crate::budget::BudgetManager::record_usage);
/// Go's zero timestamp (`0001-01-01T00:00:00Z`) means "now".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoUsageRecord {
    /// When it happened.
    #[serde(with = "go_time::option")]
    pub timestamp: Option<SystemTime>,
    /// Tokens used.
    pub tokens: u64,
    /// `cost` (float dollars in JSON) in micro-USD.
    #[serde(rename = "cost", with = "usd")]
    pub cost_micros: u64,
    /// Model name.
    pub model: String,
    /// Request id.
    pub request_id: String,
    /// User id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_id: String,
    /// Agent id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub agent_id: String,
}

impl GoUsageRecord {
    /// Read one record from Go's JSON, naming the field on error.
    pub fn from_json(text: &str) -> Result<Self, crate::config::ConfigLoadError> {
        crate::config::from_json(text)
    }
}

impl From<&GoUsageRecord> for UsageRecord {
    /// A timestamp before 1970 (which ratebound's clock cannot hold) is
    /// read as "now", like Go's zero time.
    fn from(r: &GoUsageRecord) -> Self {
        UsageRecord {
            tokens: r.tokens,
            cost: r.cost_micros,
            model: r.model.clone(),
            request_id: r.request_id.clone(),
            user_id: r.user_id.clone(),
            agent_id: r.agent_id.clone(),
            timestamp: r.timestamp.and_then(|t| {
                let us = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_micros();
                Some(ratebound_core::Instant::from_micros(
                    u64::try_from(us).ok()?,
                ))
            }),
        }
    }
}
