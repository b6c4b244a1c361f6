//! Read and write the JSON of Go's `policy` package (`BudgetConfig`,
//! `BudgetStatus`, `Alert`, `UsageRecord`), so a team moving a service to
//! ratebound keeps its config files and dashboards.
//!
//! Every amount is converted exactly: dollars to integer micro-USD, the
//! alert threshold to basis points, durations to whole microseconds; a
//! value that cannot be represented is refused with an error naming the
//! field, never rounded. Written JSON matches what Go's `encoding/json`
//! writes for the same values, byte for byte, with two differences: times
//! are written in UTC (`Z`; Go writes the time's own offset), and an
//! alert's `current` utilization is exact to the basis point (0.0001).
//!
//! ```
//! use ratebound_std::budget::BudgetManager;
//! use ratebound_std::clock::ManualClock;
//! use ratebound_std::go_policy::{GoBudgetConfig, GoBudgetStatus};
//! use ratebound_core::{budget::Usage, Instant};
//!
//! // As Go's json.Marshal(policy.BudgetConfig{...}) writes it.
//! let json = r#"{"max_tokens_per_request":4000,"max_tokens_per_minute":10000,
//!   "max_tokens_per_hour":100000,"max_tokens_per_day":1000000,
//!   "max_cost_per_request":0.5,"max_cost_per_day":25,"alert_threshold":0.8,
//!   "auto_throttle":false,"throttle_delay":1000000000}"#;
//! let config = GoBudgetConfig::from_json(json)?;
//! assert_eq!(config.max_cost_per_day_micros, 25_000_000);
//!
//! let clock = ManualClock::new(Instant::from_secs(1_795_392_000)); // a UTC midnight
//! let budget = BudgetManager::new(config.to_budget_config(), clock)?;
//! budget.reserve(Usage::request(3_000, 200_000))?.settle(Usage::request(2_500, 125_000));
//!
//! let status = serde_json::to_string(&GoBudgetStatus::from(&budget.status()))?;
//! assert_eq!(status, r#"{"tokens_used_minute":2500,"tokens_used_hour":2500,"tokens_used_day":2500,"cost_used_day":0.125,"minute_utilization":0.25,"hour_utilization":0.025,"day_utilization":0.0025,"cost_utilization":0.005,"is_throttled":false}"#);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Where ratebound decides differently from the Go package, on purpose:
//!
//! | | Go `policy` | ratebound |
//! |---|---|---|
//! | minute and hour windows | start at the first call after the previous one ended, so they drift | clock minutes and hours (UTC), the same on every replica |
//! | concurrent calls | `CheckBudget` then `RecordUsage`: calls in between overshoot | `reserve` holds the estimate, `settle` charges the actual usage |
//! | auto-throttle | blocks for `throttle_delay` after a check exceeded the minute limit | from the alert threshold on, paces admissions so what is left lasts the window, at least `throttle_delay` apart |
//! | a limit of 0, an alert threshold of 0 | refuses every request / alerts on every record | no limit / no alerts |
//! | `limit_hit` alerts | declared, never sent | sent once per window when a limit is reached or refuses a call |
//! | alert handlers | one goroutine per handler per alert | one delivery thread, in order; a panicking handler is logged |

mod config;
mod numbers;
mod report;

pub use config::{GoBudgetConfig, NotExpressible};
pub use report::{GoAlert, GoBudgetStatus, GoUsageRecord};
