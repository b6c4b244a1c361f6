//! Coming from the Go `policy` package: load its `BudgetConfig` JSON as it
//! is, run the budget, and report status and alerts in its JSON shapes.
//!
//! `cargo run -p ratebound-std --example go_policy [CONFIG.json]`
//! (default: `std-adapters/examples/go_budget.json`)

use std::sync::mpsc;

use ratebound_core::budget::Usage;
use ratebound_std::budget::{BudgetDenied, BudgetManager, UsageRecord};
use ratebound_std::clock::SystemClock;
use ratebound_std::go_policy::{GoAlert, GoBudgetConfig, GoBudgetStatus, GoUsageRecord};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/examples/go_budget.json").into());
    let config = GoBudgetConfig::from_json(&std::fs::read_to_string(&path)?)
        .map_err(|e| format!("{path}: {e}"))?;
    println!("loaded {path}: {}", config.to_json());

    let budget = BudgetManager::new(config.to_budget_config(), SystemClock)?;
    let (tx, alerts) = mpsc::channel();
    budget.on_alert(move |a| {
        let _ = tx.send(GoAlert::from(a));
    });

    // Go: CheckBudget(ctx, 6000, 0.06) then RecordUsage(...). Here the
    // estimate is held, so concurrent calls cannot overshoot in between.
    for (estimate, used) in [(6_000, 5_200), (6_000, 6_800), (6_000, 4_100)] {
        match budget.reserve(Usage::request(estimate, estimate * 10)) {
            Ok(hold) => {
                hold.settle(Usage::request(used, used * 10));
                println!("reserved {estimate} tokens, settled {used}");
            }
            Err(BudgetDenied::Denied(d)) => println!("denied: {:?}", d.reason),
            Err(e) => println!("never fits: {e}"),
        }
    }

    // A usage record as a Go service logs it.
    let rec = GoUsageRecord::from_json(
        r#"{"timestamp":"0001-01-01T00:00:00Z","tokens":900,"cost":0.009,"model":"gpt-4o","request_id":"req-42","user_id":"alice"}"#,
    )?;
    budget.record_usage(&UsageRecord::from(&rec));

    budget.wait_alerts_blocking_for(std::time::Duration::from_secs(5))?;
    for alert in alerts.try_iter() {
        println!("alert: {}", serde_json::to_string(&alert)?);
    }
    let status = GoBudgetStatus::from(&budget.status());
    println!("status: {}", serde_json::to_string(&status)?);
    Ok(())
}
