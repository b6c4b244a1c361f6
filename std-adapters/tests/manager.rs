//! The seed's Manager: limiter wait + budget check / hold.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use ratebound_core::budget::{BudgetConfig, Usage};
use ratebound_core::Instant;
use ratebound_std::budget::{BudgetDenied, BudgetManager, UsageRecord};
use ratebound_std::clock::TokioClock;
use ratebound_std::limiter::RateLimiter;
use ratebound_std::manager::{Manager, PreCheckError};

#[tokio::test(start_paused = true)]
async fn pre_check_waits_on_the_limiter_and_checks_the_budget() {
    let clock = TokioClock::anchored_at(Instant::from_secs(1_795_392_000));
    let budget =
        Arc::new(BudgetManager::new(BudgetConfig::new().tokens_per_minute(1_000), clock).unwrap());
    let m = Manager::new()
        .with_budget(budget.clone())
        .with_limiter(Arc::new(
            RateLimiter::gcra(2, 2, StdDuration::from_secs(1), clock).unwrap(),
        ));
    let start = tokio::time::Instant::now();
    for _ in 0..3 {
        m.pre_check(100, 0).await.unwrap();
    }
    assert_eq!(
        start.elapsed(),
        StdDuration::from_millis(500),
        "the third call waited for a token"
    );
    m.record_usage(&UsageRecord {
        tokens: 950,
        ..Default::default()
    });
    // Over budget: fails fast, without waiting on the limiter.
    let before = tokio::time::Instant::now();
    assert!(matches!(
        m.pre_check(100, 0).await,
        Err(PreCheckError::Budget(BudgetDenied::Denied(_)))
    ));
    assert_eq!(before.elapsed(), StdDuration::ZERO);
    // admit holds the estimate: two concurrent admits cannot both take the last 50.
    let a = m.admit(Usage::request(50, 0)).await.unwrap().unwrap();
    assert!(m.admit(Usage::request(50, 0)).await.is_err());
    a.settle(Usage::request(10, 0));
    assert!(m.admit(Usage::request(40, 0)).await.unwrap().is_some());
}
