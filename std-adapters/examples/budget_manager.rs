//! An LLM budget: reserve an estimate, settle the actual, watch alerts.
//!
//! `cargo run -p ratebound-std --example budget_manager`

use ratebound_core::budget::{BudgetConfig, Dimension, Horizon, Usage};
use ratebound_std::budget::{BudgetDenied, BudgetManager, UsageRecord};
use ratebound_std::clock::{Clock, SystemClock};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let budget = BudgetManager::new(
        BudgetConfig::new()
            .tokens_per_request(8_000)
            .tokens_per_minute(20_000)
            .cost_per_day(1_000_000) // $1.00 in micro-dollars
            .alert_threshold_bp(5_000)
            .alert_threshold_bp(8_000),
        SystemClock,
    )?;
    budget.on_alert(|a| {
        println!(
            "  ALERT {} at {:.1}%",
            a.alert_type(),
            a.utilization_bp as f64 / 100.0
        )
    });

    for (estimate, actual) in [(6_000, 5_200), (6_000, 6_800), (6_000, 4_000), (6_000, 0)] {
        match budget.reserve(Usage::request(estimate, estimate * 10)) {
            Ok(hold) if actual == 0 => {
                drop(hold); // the call never ran: the hold is released
                println!("reserved {estimate}, call cancelled");
            }
            Ok(hold) => {
                hold.settle(Usage::request(actual, actual * 10));
                println!("reserved {estimate}, used {actual}");
            }
            Err(BudgetDenied::Denied(d)) => println!(
                "denied ({:?}): retry in {} s",
                d.reason,
                d.retry_at.duration_after(SystemClock.now()).as_secs_ceil()
            ),
            Err(e) => println!("never fits: {e}"),
        }
    }
    budget.record_usage(&UsageRecord {
        tokens: 1_000,
        cost: 10_000,
        model: "gpt-4o".into(),
        user_id: "alice".into(),
        ..Default::default()
    });
    budget.wait_alerts_blocking();
    let s = budget.status();
    println!(
        "minute: {} tokens ({} bp), day cost: {} µ$; throttled: {}",
        s.used(Dimension::Tokens, Horizon::MINUTE).unwrap_or(0),
        s.utilization_bp(Dimension::Tokens, Horizon::MINUTE)
            .unwrap_or(0),
        s.used(Dimension::Cost, Horizon::DAY).unwrap_or(0),
        s.throttled
    );
    Ok(())
}
